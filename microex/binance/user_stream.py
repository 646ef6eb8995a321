"""User data streams: executionReport and outboundAccountPosition per account, and listenKeys.

How it works
- Subscribers are callables taking one event dict, registered per account
  (`subscribe`): a /ws/<listenKey> connection or a WebSocket API subscription.
- After every journal frame the edge calls `on_frame`: the history's report rows
  (history_kernels.py: one per order touched, in event order) of the subscribed
  accounts become executionReport events (views.py), and each subscribed account
  that had a report, a deposit or a withdrawal in the frame gets one
  outboundAccountPosition with its balances after the frame (read from the replica's
  engine: exact). Accounts nobody listens to cost one numpy `isin` per frame.
- listenKeys: 60 random hex chars, valid 60 minutes, extended by PUT, removed by
  DELETE (Binance's flow). An unknown or expired key is -1125.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import numpy as np

from microex.binance import errors as E
from microex.binance import history_kernels as K
from microex.binance import views as V
from microex.core.records import Action

LISTEN_KEY_TTL_S = 3600.0


class UserStreams:
    def __init__(self, edge, clock=time.monotonic) -> None:
        self.edge = edge
        self.clock = clock
        self.listen_keys: dict[str, tuple[int, float]] = {}  # key -> (account, expires at)
        self.sinks: dict[int, set[Callable[[dict], None]]] = {}
        edge.hooks.append(self.on_frame)

    # -- listenKeys --------------------------------------------------------------------------------

    def new_listen_key(self, account: int) -> str:
        for k, (acc, _) in self.listen_keys.items():  # Binance returns the account's live key again
            if acc == account and self.account_of(k) is not None:
                self.keep_alive(k, account)
                return k
        key = secrets.token_hex(30)
        self.listen_keys[key] = (account, self.clock() + LISTEN_KEY_TTL_S)
        return key

    def account_of(self, listen_key: str) -> int | None:
        entry = self.listen_keys.get(listen_key)
        if entry is None:
            return None
        if entry[1] < self.clock():
            del self.listen_keys[listen_key]
            return None
        return entry[0]

    def keep_alive(self, listen_key: str, account: int) -> None:
        if self.account_of(listen_key) != account:
            raise E.ApiError(E.INVALID_LISTEN_KEY, "This listenKey does not exist.")
        self.listen_keys[listen_key] = (account, self.clock() + LISTEN_KEY_TTL_S)

    def close_listen_key(self, listen_key: str, account: int) -> None:
        if self.account_of(listen_key) != account:
            raise E.ApiError(E.INVALID_LISTEN_KEY, "This listenKey does not exist.")
        del self.listen_keys[listen_key]

    # -- subscribers -------------------------------------------------------------------------------

    def subscribe(self, account: int, sink: Callable[[dict], None]) -> None:
        self.sinks.setdefault(account, set()).add(sink)

    def unsubscribe(self, account: int, sink: Callable[[dict], None]) -> None:
        s = self.sinks.get(account)
        if s is not None:
            s.discard(sink)
            if not s:
                del self.sinks[account]

    def account_position(self, account: int, now_ms: int) -> dict:
        edge = self.edge
        return {"e": "outboundAccountPosition", "E": now_ms, "u": now_ms,
                "B": [{"a": edge.assets.names[a], "f": edge.assets.amount(a, free), "l": edge.assets.amount(a, held)}
                      for a, free, held in edge.balances(account)]}

    def _send(self, account: int, event: dict) -> None:
        for sink in list(self.sinks.get(account, ())):
            sink(event)

    def on_frame(self, cmds: np.ndarray, events: np.ndarray, reports: np.ndarray, new_trades: np.ndarray) -> None:
        if not self.sinks:
            return
        accs = np.fromiter(self.sinks, np.int64, len(self.sinks))
        mine = reports[np.isin(reports[:, K.RP_ACCOUNT], accs)]
        money = cmds[((cmds["action"] == Action.DEPOSIT) | (cmds["action"] == Action.WITHDRAW))
                     & np.isin(cmds["account"], accs)]
        if not len(mine) and not len(money):
            return
        now = time.time_ns() // 1_000_000
        edge = self.edge
        touched: list[int] = []
        for rep in mine.tolist():
            acc = rep[K.RP_ACCOUNT]
            m = edge.by_id.get(rep[K.RP_INST])
            if m is None:
                continue
            self._send(acc, V.execution_report(edge.history, m, rep, now))
            if acc not in touched:
                touched.append(acc)
        for acc in money["account"].tolist():
            if acc not in touched:
                touched.append(acc)
        for acc in touched:
            self._send(acc, self.account_position(acc, now))
