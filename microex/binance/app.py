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
- WebSockets: /ws, /ws/<names>, /stream?streams=a/b carry market streams
  (ws_market.py) and listenKey user data (user_stream.py); /ws-api/v3 is the
  WebSocket API (ws_api.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from microex.binance import errors as E
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


def _json(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=S.encode(body), status=status, content_type="application/json")


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except E.ApiError as e:
        return _json(e.body(), e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = _json({"code": E.UNKNOWN, "msg": e.reason}, e.status if e.status < 500 else 400)
        if "Allow" in e.headers:  # 405: which methods the path has
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path_qs)
        return _json({"code": E.UNKNOWN, "msg": "An unknown error occurred while processing the request."}, 400)


def _route(st: State, fn, security: str):
    async def handle(request: web.Request) -> web.Response:
        body = await request.read() if request.can_read_body else b""
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
    session = WsApiSession(st, outbox)
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

    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20,
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


def make_state(edge: Edge, keys) -> State:
    st = State(edge=edge, auth=Auth(keys), users=UserStreams(edge))
    st.streams = MarketStreams(st)
    return st
