"""The REST API as an OpenAPI 3.0 document, from the same Structs the handlers return.

How it works: `ENDPOINTS` lists each operation's parameters (name, type, required)
and response type; `spec()` turns that into paths, and msgspec's
`schema_components` turns the response Structs (schemas.py) into components. The
app serves it at /openapi.json; docs/binance-openapi.json is the same document
(tests/unit/binance/test_app.py keeps the file in step; `python -m
microex.binance.openapi > docs/binance-openapi.json` rewrites it). Every operation
documents its 4XX answers as the Error shape, its request weight (limits.py's table)
in its description, the X-MBX-USED-WEIGHT-1M header on its answers (and an
order-placing one the X-MBX-ORDER-COUNT-* headers), and 429 (-1003 with Retry-After,
or -1015). Parameters travel in the query string (Binance also reads them from a form
body).
"""

from __future__ import annotations

import json
import sys
import typing
from typing import Union

import msgspec

from microex.binance import limits as L
from microex.binance import schemas as S

SYMBOL = ("symbol", "string", True)
SYMBOL_OPT = ("symbol", "string", False)
SYMBOLS = ("symbols", "string", False)
LIMIT = ("limit", "integer", False)
SIGNED = [("timestamp", "integer", True), ("recvWindow", "integer", False), ("signature", "string", True)]
ORDER_REF = [("orderId", "integer", False), ("origClientOrderId", "string", False)]
TIMES = [("startTime", "integer", False), ("endTime", "integer", False)]
NEW_ORDER = [SYMBOL, ("side", ["BUY", "SELL"], True), ("type", ["LIMIT", "MARKET", "LIMIT_MAKER"], True),
             ("timeInForce", ["GTC", "IOC", "FOK"], False), ("quantity", "decimal", False),
             ("quoteOrderQty", "decimal", False), ("price", "decimal", False), ("newClientOrderId", "string", False),
             ("newOrderRespType", ["ACK", "RESULT", "FULL"], False),
             ("selfTradePreventionMode", ["NONE", "EXPIRE_MAKER"], False)]
Kline = list[Union[int, str]]

# (method, path, summary, security, params, response type)
ENDPOINTS = [
    ("get", "/api/v3/ping", "Test connectivity", "NONE", [], S.Empty),
    ("get", "/api/v3/time", "Server time", "NONE", [], S.ServerTime),
    ("get", "/api/v3/exchangeInfo", "Symbols and their filters", "NONE", [SYMBOL_OPT, SYMBOLS], S.ExchangeInfo),
    ("get", "/api/v3/depth", "Order book", "NONE", [SYMBOL, LIMIT], S.Depth),
    ("get", "/api/v3/trades", "Recent trades", "NONE", [SYMBOL, LIMIT], list[S.Trade]),
    ("get", "/api/v3/historicalTrades", "Older trades", "NONE", [SYMBOL, LIMIT, ("fromId", "integer", False)],
     list[S.Trade]),
    ("get", "/api/v3/aggTrades", "Aggregate trades", "NONE", [SYMBOL, ("fromId", "integer", False), *TIMES, LIMIT],
     list[S.AggTrade]),
    ("get", "/api/v3/klines", "Candles", "NONE", [SYMBOL, ("interval", "string", True), *TIMES, LIMIT], list[Kline]),
    ("get", "/api/v3/uiKlines", "Candles", "NONE", [SYMBOL, ("interval", "string", True), *TIMES, LIMIT],
     list[Kline]),
    ("get", "/api/v3/avgPrice", "5-minute average price", "NONE", [SYMBOL], S.AvgPrice),
    ("get", "/api/v3/ticker/24hr", "24h statistics", "NONE", [SYMBOL_OPT, SYMBOLS],
     Union[S.Ticker24hr, list[S.Ticker24hr]]),
    ("get", "/api/v3/ticker/price", "Last price", "NONE", [SYMBOL_OPT, SYMBOLS],
     Union[S.PriceTicker, list[S.PriceTicker]]),
    ("get", "/api/v3/ticker/bookTicker", "Best bid and ask", "NONE", [SYMBOL_OPT, SYMBOLS],
     Union[S.BookTicker, list[S.BookTicker]]),
    ("post", "/api/v3/order", "New order", "SIGNED", NEW_ORDER, Union[S.OrderAck, S.OrderResult]),
    ("post", "/api/v3/order/test", "Test a new order (checks only)", "SIGNED", NEW_ORDER, S.Empty),
    ("get", "/api/v3/order", "Query an order", "SIGNED", [SYMBOL, *ORDER_REF], S.Order),
    ("delete", "/api/v3/order", "Cancel an order", "SIGNED", [SYMBOL, *ORDER_REF], S.CancelResult),
    ("get", "/api/v3/openOrders", "Open orders", "SIGNED", [SYMBOL_OPT], list[S.Order]),
    ("delete", "/api/v3/openOrders", "Cancel all open orders of a symbol", "SIGNED", [SYMBOL], list[S.CancelResult]),
    ("get", "/api/v3/allOrders", "All orders", "SIGNED", [SYMBOL, ("orderId", "integer", False), *TIMES, LIMIT],
     list[S.Order]),
    ("get", "/api/v3/myTrades", "Account trades", "SIGNED",
     [SYMBOL, ("orderId", "integer", False), *TIMES, ("fromId", "integer", False), LIMIT], list[S.MyTrade]),
    ("get", "/api/v3/account", "Balances", "SIGNED", [("omitZeroBalances", ["true", "false"], False)], S.Account),
    ("post", "/api/v3/userDataStream", "Start a user data stream", "KEY", [], S.ListenKey),
    ("put", "/api/v3/userDataStream", "Keep a listenKey alive", "KEY", [("listenKey", "string", True)], S.Empty),
    ("delete", "/api/v3/userDataStream", "Close a listenKey", "KEY", [("listenKey", "string", True)], S.Empty),
]


def _param(name: str, typ, required: bool) -> dict:
    if isinstance(typ, list):
        schema = {"type": "string", "enum": typ}
    elif typ == "decimal":
        schema = {"type": "string", "pattern": r"^[0-9]{1,20}(\.[0-9]{1,20})?$"}
    else:
        schema = {"type": typ}
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _headers(rules: list[L.Rule], required: bool) -> dict:
    return {r.header: {"description": f"{'Weight' if r.type == 'REQUEST_WEIGHT' else 'Orders'} used in the current "
                                      f"{r.num} {r.interval} window (limit {r.limit})",
                       "required": required, "schema": {"type": "integer", "minimum": 0}} for r in rules}


def _members(t) -> list:
    return list(typing.get_args(t)) if typing.get_origin(t) is Union else [t]


def _inline(schema, components: dict):
    """`schema` with every $ref replaced by the component it names (no cycles among ours)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(components[schema["$ref"].rsplit("/", 1)[1]], components)
        return {k: _inline(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(x, components) for x in schema]
    return schema


def spec() -> dict:
    members = [_members(t) for *_, t in ENDPOINTS]
    flat = [m for ms in members for m in ms] + [S.Error]
    out, components = msgspec.json.schema_components(flat, ref_template="#/components/schemas/{name}")
    schemas, pos = [], 0
    for ms in members:
        part = out[pos:pos + len(ms)]
        pos += len(ms)
        if len(part) == 1:
            schemas.append(part[0])
        else:  # refs inlined: schemathesis does not resolve $refs inside a response's anyOf
            schemas.append({"anyOf": [_inline(x, components) for x in part]})
    schemas.append(out[-1])
    rules = L.Limiter().rules  # Binance's limits, as a default edge has them
    paths: dict[str, dict] = {}
    for (method, path, summary, security, params, _), schema in zip(ENDPOINTS, schemas):
        ps = [_param(*p) for p in params]
        if security == "SIGNED":
            ps += [_param(*p) for p in SIGNED]
        if security in ("SIGNED", "KEY"):
            ps.append({"name": "X-MBX-APIKEY", "in": "header", "required": True, "schema": {"type": "string"}})
        error = {"description": "Binance error", "content": {"application/json": {"schema": schemas[-1]}}}
        bad_request = {"description": "Binance error; or, for a request line or header over 64 KiB, the HTTP "
                                      "layer's plain-text refusal (it never reaches the API)",
                       "content": {"application/json": {"schema": schemas[-1]},
                                   "text/plain": {"schema": {"type": "string"}}}}
        route = (method.upper(), path)
        counted = [rules[0]] + (rules[1:] if route in L.ORDER_ROUTES else [])
        too_many = {"description": "Past a rate limit: -1003 (request weight per IP, with Retry-After in seconds) "
                                   "or -1015 (new orders per account, without Retry-After)",
                    "content": {"application/json": {"schema": schemas[-1]}},
                    "headers": {**_headers(counted, False), "Retry-After": {
                        "description": "Seconds until the request weight window resets (-1003 only)",
                        "required": False, "schema": {"type": "integer", "minimum": 1}}}}
        paths.setdefault(path, {})[method] = {
            "summary": summary,
            "description": f"Request weight: {L.describe(*route)}"
                           + (". Counts one order against ORDERS." if route in L.ORDER_ROUTES else ""),
            "operationId": f"{method}{path.replace('/api/v3/', '_').replace('/', '_')}",
            "parameters": ps,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}},
                                  "headers": _headers(counted, True)},
                          "400": {**bad_request, "headers": _headers(counted[:1], False)},
                          "429": too_many, "4XX": {**error, "headers": _headers(counted[:1], True)}},
        }
    return {"openapi": "3.0.3",
            "info": {"title": "microex Binance-Spot-compatible REST API", "version": "1.0.0",
                     "description": "See docs/binance-api.md. Decimals are strings, ids and times integers. "
                                    "Rate limits (GET /api/v3/exchangeInfo rateLimits): request weight per IP "
                                    "per minute, new orders per account per 10 seconds and per day."},
            "paths": paths, "components": {"schemas": components}}


if __name__ == "__main__":
    json.dump(spec(), sys.stdout, indent=1)
    sys.stdout.write("\n")
