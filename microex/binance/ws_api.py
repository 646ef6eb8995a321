"""The WebSocket API at /ws-api/v3: user data subscriptions (and ping, time, session.*).

How it works
- Requests are `{"id": ..., "method": ..., "params": {...}}`; answers
  `{"id": ..., "status": 200, "result": ..., "rateLimits": [...]}` or
  `{"id": ..., "status": 4XX, "error": {"code": ..., "msg": ...}, "rateLimits": [...]}`.
- Each request's weight (limits.WS_WEIGHTS) is charged to the connection's IP, on the
  same REQUEST_WEIGHT count as the REST API's; `rateLimits` shows that count. Past the
  limit: status 429, -1003, with `data.retryAfter` (ms) when the window resets.
- `userDataStream.subscribe.signature` takes signed params (apiKey, timestamp,
  signature over the params sorted by name: auth.sign_ws) and answers
  `{"subscriptionId": n}`; `session.logon` authenticates the connection, after
  which `userDataStream.subscribe` needs no signature. From then on the account's
  executionReport and outboundAccountPosition events (user_stream.py) arrive as
  `{"subscriptionId": n, "event": {...}}`. `userDataStream.unsubscribe` ends one
  subscription (or all).
"""

from __future__ import annotations

import json
import time

from microex.binance import errors as E
from microex.binance import limits as L
from microex.binance.wsconn import Outbox


class WsApiSession:
    def __init__(self, st, outbox: Outbox, ip: str = "") -> None:
        self.st = st
        self.outbox = outbox
        self.ip = ip
        self.account: int | None = None
        self.api_key: str | None = None
        self.connected_ms = time.time_ns() // 1_000_000
        self.subs: dict[int, object] = {}  # subscriptionId -> sink
        self.next_sub = 0

    def _subscribe(self, account: int) -> dict:
        sid = self.next_sub
        self.next_sub += 1

        def sink(event, sid=sid, send=self.outbox.send):
            send({"subscriptionId": sid, "event": event})

        self.subs[sid] = (account, sink)
        self.st.users.subscribe(account, sink)
        return {"subscriptionId": sid}

    def close(self) -> None:
        for account, sink in self.subs.values():
            self.st.users.unsubscribe(account, sink)
        self.subs.clear()

    def _status(self) -> dict:
        now = time.time_ns() // 1_000_000
        return {"apiKey": self.api_key, "authorizedSince": self.connected_ms if self.api_key else None,
                "connectedSince": self.connected_ms, "returnRateLimits": False, "serverTime": now,
                "userDataStream": bool(self.subs)}

    def handle(self, text: str) -> dict:
        reply = self._reply(text)
        reply["rateLimits"] = self.st.limits.weight_status(self.ip)
        return reply

    def _reply(self, text: str) -> dict:
        try:
            msg, parsed = json.loads(text), True
        except ValueError:
            msg, parsed = None, False
        method = msg.get("method") if isinstance(msg, dict) else None
        weight = L.WS_WEIGHTS.get(method, L.WS_DEFAULT_WEIGHT) if isinstance(method, str) else L.WS_DEFAULT_WEIGHT
        limits = self.st.limits
        refused = limits.charge(self.ip, weight)
        rid = msg.get("id") if isinstance(msg, dict) else None
        if refused is not None:
            return {"id": rid, "status": 429, "error": {
                "code": E.TOO_MANY_REQUESTS, "msg": L.message(refused),
                "data": {"serverTime": time.time_ns() // 1_000_000, "retryAfter": limits.reset_ms()}}}
        if not parsed:
            return {"id": None, "status": 400, "error": {"code": E.INVALID_MESSAGE, "msg": "Malformed request."}}
        try:
            if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
                raise E.ApiError(E.INVALID_MESSAGE, "Malformed request: 'method' is required.")
            params = msg.get("params", {})
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise E.ApiError(E.INVALID_MESSAGE, "Malformed request: 'params' must be an object.")
            result = self._call(msg["method"], params)
            return {"id": rid, "status": 200, "result": result}
        except E.ApiError as e:
            return {"id": rid, "status": e.status, "error": e.body()}

    def _call(self, method: str, params: dict):
        users = self.st.users
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": time.time_ns() // 1_000_000}
        if method == "session.logon":
            key = self.st.auth.sign_ws(params)
            self.account, self.api_key = key.account, key.api_key
            return self._status()
        if method == "session.status":
            return self._status()
        if method == "session.logout":
            self.account = self.api_key = None
            return self._status()
        if method == "userDataStream.subscribe.signature":
            key = self.st.auth.sign_ws(params)
            return self._subscribe(key.account)
        if method == "userDataStream.subscribe":
            if self.account is None:
                raise E.ApiError(E.UNAUTHORIZED, "Unauthorized: log in first (session.logon).", status=401)
            return self._subscribe(self.account)
        if method == "userDataStream.unsubscribe":
            sid = params.get("subscriptionId")
            if sid is None:
                self.close()
                return {}
            if not isinstance(sid, int) or sid not in self.subs:
                raise E.ApiError(E.INVALID_PARAMETER, "Invalid subscriptionId.")
            account, sink = self.subs.pop(sid)
            users.unsubscribe(account, sink)
            return {}
        if method == "userDataStream.subscription.list":
            return [{"subscriptionId": s} for s in self.subs]
        raise E.ApiError(E.INVALID_MESSAGE, f"Unknown method '{method}'.")
