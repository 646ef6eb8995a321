"""The aiohttp application of the HTTP edge: routes, auth, errors, WebSockets, /openapi.json.

How it works
- `ROUTES` is the whole REST API: (method, path, handler, security). Security NONE
  is public, KEY needs X-MBX-APIKEY (listenKeys), SIGNED a signed request
  (auth.py). One wrapper parses the query string and the form body (params.py),
  checks auth, calls the handler and encodes its Struct with msgspec.
- Errors: the middleware answers an ApiError as `{"code", "msg"}` with its 4XX
  status, an unknown route 404 and a wrong method 405 in the same shape, and any
  other exception -1000 with status 400 after logging it: the edge never answers
  500 (the schemathesis tests hold it to that).
- Limits (limits.py): the same middleware weighs every /api/v3 request (the weight
  table, from its query string and form body) and charges it to the client's IP
  before the handler runs; past the limit it answers 429 -1003 with Retry-After.
  Every /api/v3 answer, errors included, carries X-MBX-USED-WEIGHT-1M; an
  order-placing route's answer also carries the account's X-MBX-ORDER-COUNT-10S and
  -1D (the handler counts the order, rest_orders.py, and refuses past a limit: -1015).
- WebSockets: /ws, /ws/<names>, /stream?streams=a/b carry market streams
  (ws_market.py) and listenKey user data (user_stream.py); /ws-api/v3 is the
  WebSocket API (ws_api.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from microex.binance import errors as E
from microex.binance import limits as L
from microex.binance import rest_account as A
from microex.binance import rest_orders as O
from microex.binance import rest_public as P
from microex.binance import schemas as S
from microex.binance.auth import Auth
from microex.binance.edge import Edge
from microex.binance.params import Params
from microex.binance.user_stream import UserStreams
from microex.binance.ws_api import WsApiSession
from microex.binance.ws_market import MarketStreams, StreamConn
from microex.binance.wsconn import Outbox

log = logging.getLogger(__name__)
NONE, KEY, SIGNED = "NONE", "KEY", "SIGNED"
API = "/api/v3/"  # the metered REST API (the dashboard and the WebSockets are not)
ACCOUNT = web.RequestKey("account", int)  # the authenticated account, for X-MBX-ORDER-COUNT headers

ROUTES = [
    ("GET", "/api/v3/ping", P.ping, NONE),
    ("GET", "/api/v3/time", P.server_time, NONE),
    ("GET", "/api/v3/exchangeInfo", P.exchange_info, NONE),
    ("GET", "/api/v3/depth", P.depth, NONE),
    ("GET", "/api/v3/trades", P.trades, NONE),
    ("GET", "/api/v3/historicalTrades", P.historical_trades, NONE),
    ("GET", "/api/v3/aggTrades", P.agg_trades, NONE),
    ("GET", "/api/v3/klines", P.klines, NONE),
    ("GET", "/api/v3/uiKlines", P.klines, NONE),
    ("GET", "/api/v3/avgPrice", P.avg_price, NONE),
    ("GET", "/api/v3/ticker/24hr", P.ticker_24hr_handler, NONE),
    ("GET", "/api/v3/ticker/price", P.ticker_price, NONE),
    ("GET", "/api/v3/ticker/bookTicker", P.book_ticker, NONE),
    ("POST", "/api/v3/order", O.new_order, SIGNED),
    ("POST", "/api/v3/order/test", O.test_order, SIGNED),
    ("GET", "/api/v3/order", A.get_order, SIGNED),
    ("DELETE", "/api/v3/order", O.cancel_order, SIGNED),
    ("GET", "/api/v3/openOrders", A.open_orders, SIGNED),
    ("DELETE", "/api/v3/openOrders", O.cancel_open_orders, SIGNED),
    ("GET", "/api/v3/allOrders", A.all_orders, SIGNED),
    ("GET", "/api/v3/myTrades", A.my_trades, SIGNED),
    ("GET", "/api/v3/account", A.account, SIGNED),
    ("POST", "/api/v3/userDataStream", A.new_listen_key, KEY),
    ("PUT", "/api/v3/userDataStream", A.keep_listen_key, KEY),
    ("DELETE", "/api/v3/userDataStream", A.close_listen_key, KEY),
]


@dataclass
class State:
    edge: Edge
    auth: Auth
    users: UserStreams
    streams: MarketStreams | None = None
    limits: L.Limiter = field(default_factory=L.Limiter)


def _json(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=S.encode(body), status=status, content_type="application/json")


def _error_response(e: E.ApiError | web.HTTPException) -> web.Response:
    if isinstance(e, E.ApiError):
        return _json(e.body(), e.status)
    if e.status < 400:
        raise e
    resp = _json({"code": E.UNKNOWN, "msg": e.reason}, e.status if e.status < 500 else 400)
    if "Allow" in e.headers:  # 405: which methods the path has
        resp.headers["Allow"] = e.headers["Allow"]
    return resp


async def _charge(st: State, request: web.Request, ip: str) -> L.Rule | None:
    """Weigh a request and charge its IP: the rule it would break (nothing charged), or None."""
    body = await request.read()  # aiohttp keeps it for the handler
    raw = [request.rel_url.raw_query_string]
    if request.content_type != "application/json":  # as _route: Binance reads form bodies only
        raw.insert(0, body.decode("utf-8", "replace"))
    params: dict[str, str] = {}
    for part in raw:  # the query string last: it wins, as on Binance
        params.update(parse_qsl(part, keep_blank_values=True))
    return st.limits.charge(ip, L.weight(request.method, request.path, params))


def _middleware(st: State):
    @web.middleware
    async def api(request: web.Request, handler):
        metered = request.path.startswith(API)
        ip = request.remote or ""
        try:
            refused = await _charge(st, request, ip) if metered else None
            if refused is None:
                resp = await handler(request)
            else:
                resp = _json({"code": E.TOO_MANY_REQUESTS, "msg": L.message(refused)}, 429)
                resp.headers["Retry-After"] = str(st.limits.retry_after())
        except (E.ApiError, web.HTTPException) as e:
            resp = _error_response(e)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path_qs)
            resp = _json({"code": E.UNKNOWN, "msg": "An unknown error occurred while processing the request."}, 400)
        if metered:
            resp.headers.update(st.limits.weight_headers(ip))
            if (request.method, request.path) in L.ORDER_ROUTES and ACCOUNT in request:
                resp.headers.update(st.limits.order_headers(request[ACCOUNT]))
        return resp

    return api


def _route(st: State, fn, security: str):
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()  # read (and kept) by the middleware already
        try:
            raw_body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise E.ApiError(E.ILLEGAL_CHARS, "Illegal characters found in the request body.") from None
        if request.content_type == "application/json":
            raw_body = ""  # Binance reads form bodies only
        p = Params.parse(request.rel_url.raw_query_string, raw_body)
        key = None
        if security == SIGNED:
            key = st.auth.signed(request.headers.get("X-MBX-APIKEY"), p)
        elif security == KEY:
            key = st.auth.key(request.headers.get("X-MBX-APIKEY"))
        if key is not None:
            request[ACCOUNT] = key.account
        result = await fn(st, p, key)
        return web.Response(body=S.encode(result), content_type="application/json")

    return handle


async def _stream_socket(st: State, request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    combined = request.path.rstrip("/") == "/stream"
    outbox = Outbox(ws)
    conn = StreamConn(outbox, combined)
    user_sinks: list[tuple[int, object]] = []
    names = request.query.get("streams", "") if combined else request.match_info.get("tail", "")
    for name in [n for n in names.split("/") if n]:
        account = st.users.account_of(name)
        if account is not None:
            def sink(event, name=name):
                conn.push(name, event)
            st.users.subscribe(account, sink)
            user_sinks.append((account, sink))
        else:
            st.streams.subscribe(conn, [name])
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                reply = control(st, conn, msg.data)
                if reply is not None:
                    outbox.send(reply)
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        st.streams.drop(conn)
        for account, sink in user_sinks:
            st.users.unsubscribe(account, sink)
        await outbox.close()
    return ws


def control(st: State, conn: StreamConn, text: str) -> dict | None:
    """A market-stream connection's control message -> the reply."""
    try:
        msg = json.loads(text)
    except ValueError:
        return {"error": {"code": 3, "msg": "Invalid JSON: expected value"}}
    if not isinstance(msg, dict):
        return {"error": {"code": 3, "msg": "Invalid JSON: expected an object"}}
    rid = msg.get("id")
    method, params = msg.get("method"), msg.get("params", [])
    bad = {"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}, "id": rid}
    if rid is not None and not (isinstance(rid, (int, str)) and not isinstance(rid, bool)):
        return bad
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return {"error": {"code": 2, "msg": "Invalid request: params must be a list of stream names"}, "id": rid}
        unknown = [p for p in params if st.streams.parse(p) is None]
        if method == "SUBSCRIBE" and unknown:
            return {"error": {"code": 2, "msg": f"Invalid request: unknown stream {unknown[0]!r}"}, "id": rid}
        (st.streams.subscribe if method == "SUBSCRIBE" else st.streams.unsubscribe)(conn, params)
        return {"result": None, "id": rid}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": sorted(conn.streams), "id": rid}
    if method == "SET_PROPERTY" and isinstance(params, list) and len(params) == 2 and params[0] == "combined":
        if not isinstance(params[1], bool):
            return {"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": rid}
        conn.combined = params[1]
        return {"result": None, "id": rid}
    if method == "GET_PROPERTY" and params == ["combined"]:
        return {"result": conn.combined, "id": rid}
    return {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}


async def _ws_api(st: State, request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    outbox = Outbox(ws)
    session = WsApiSession(st, outbox, request.remote or "")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                outbox.send(session.handle(msg.data))
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        session.close()
        await outbox.close()
    return ws


# aiohttp refuses a request line or header over 8190 bytes with a plain-text 400 before any
# handler runs; a long query (many symbols, a fuzzer's) should get a Binance JSON error instead
MAX_LINE = 64 << 10


def build_app(st: State) -> web.Application:
    from microex.binance.openapi import spec

    app = web.Application(middlewares=[_middleware(st)], client_max_size=1 << 20,
                          handler_args={"max_line_size": MAX_LINE, "max_field_size": MAX_LINE})
    for method, path, fn, security in ROUTES:
        app.router.add_route(method, path, _route(st, fn, security))
    async def streams(request):
        return await _stream_socket(st, request)

    async def ws_api(request):
        return await _ws_api(st, request)

    doc = S.encode(spec())

    async def openapi(request):
        return web.Response(body=doc, content_type="application/json")

    app.router.add_get("/ws", streams)
    app.router.add_get("/ws/{tail:.*}", streams)
    app.router.add_get("/stream", streams)
    app.router.add_get("/ws-api/v3", ws_api)
    app.router.add_get("/openapi.json", openapi)
    return app


def make_state(edge: Edge, keys, limits: L.Limiter | None = None) -> State:
    """The app's state; `limits` defaults to Binance's (tests give small or large ones)."""
    st = State(edge=edge, auth=Auth(keys), users=UserStreams(edge), limits=limits or L.Limiter())
    st.streams = MarketStreams(st)
    return st
