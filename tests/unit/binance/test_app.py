"""The HTTP edge's REST and WebSocket handlers in-process (aiohttp test client, read-only edge):
Binance's answers and error codes for good and bad input, never a 500."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer

from microex.binance.app import build_app, make_state
from microex.binance.auth import hmac_hex
from microex.binance.openapi import spec
from tests.unit.binance.venue import JournalVenue, orders, trading_rows

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def venue(tmp_path):
    v = JournalVenue(tmp_path / "data")
    v.append(orders(trading_rows()))
    yield v
    v.close()


def run(venue, scenario):
    async def main():
        edge = venue.edge()
        edge.catch_up()
        st = make_state(edge, venue.keys())
        ticker = asyncio.get_running_loop().create_task(st.streams.run())
        async with TestClient(TestServer(build_app(st))) as client:
            await scenario(client, st)
        ticker.cancel()
        edge.close()

    asyncio.run(main())


def signed(key, params: dict, secret: str | None = None, ts: int | None = None) -> str:
    q = urlencode({**params, "timestamp": ts if ts is not None else int(time.time() * 1000)})
    return q + "&signature=" + hmac_hex(secret or key.secret, q)


async def expect(resp, status: int, code: int | None = None):
    body = await resp.json()
    assert resp.status == status, body
    if code is not None:
        assert body["code"] == code, body
    return body


def test_public_endpoints_and_their_bad_input(venue):
    async def scenario(c, st):
        depth = await expect(await c.get("/api/v3/depth?symbol=BTCUSDT&limit=5"), 200)
        assert depth["bids"] == [["59900.00000000", "0.00600000"]]
        assert depth["asks"] == [["60100.00000000", "0.00500000"]]
        assert depth["lastUpdateId"] == st.edge.market.md_seq(1)
        trades = await expect(await c.get("/api/v3/trades?symbol=BTCUSDT"), 200)
        assert [(t["price"], t["qty"], t["isBuyerMaker"]) for t in trades] == [
            ("59900.00000000", "0.00400000", True), ("60100.00000000", "0.00200000", False)]
        aggs = await expect(await c.get("/api/v3/aggTrades?symbol=BTCUSDT&limit=1"), 200)
        assert aggs[0]["a"] == trades[1]["id"]
        kl = await expect(await c.get("/api/v3/klines?symbol=BTCUSDT&interval=1h"), 200)
        assert kl[-1][1:6] == ["59900.00000000", "60100.00000000", "59900.00000000", "60100.00000000",
                               "0.00600000"] and kl[-1][8] == 2
        info = await expect(await c.get('/api/v3/exchangeInfo?symbols=["ETHBTC","BTCUSDT"]'), 200)
        assert [s["symbol"] for s in info["symbols"]] == ["ETHBTC", "BTCUSDT"]
        assert info["symbols"][0]["filters"][0]["tickSize"] == "0.00001000"
        t = await expect(await c.get("/api/v3/ticker/bookTicker?symbol=ETHUSDT"), 200)
        assert (t["bidPrice"], t["bidQty"]) == ("2990.00000000", "0.05000000")
        assert len(await expect(await c.get("/api/v3/ticker/24hr"), 200)) == 3
        for path, code in [("/api/v3/depth", -1102), ("/api/v3/depth?symbol=NOPE", -1121),
                           ("/api/v3/depth?symbol=BTCUSDT&limit=x", -1100),
                           ("/api/v3/depth?symbol=BTCUSDT&limit=100000", -1100),
                           ("/api/v3/trades?symbol=BTCUSDT&limit=", -1105),
                           ("/api/v3/depth?symbol=BTCUSDT&symbol=ETHUSDT", -1101),
                           ("/api/v3/klines?symbol=BTCUSDT&interval=7m", -1120),
                           ("/api/v3/klines?symbol=BTCUSDT", -1102),
                           ("/api/v3/ticker/price?symbol=BTCUSDT&symbols=[]", -1128),
                           ("/api/v3/ticker/price?symbols=nope", -1100),
                           ("/api/v3/aggTrades?symbol=BTCUSDT&startTime=0&endTime=99999999", -1127),
                           ("/api/v3/nothing", -1000)]:
            r = await c.get(path)
            assert r.status in (400, 404) and (await r.json())["code"] == code, path
        assert (await c.post("/api/v3/depth?symbol=BTCUSDT")).status == 405

    run(venue, scenario)


def test_signed_endpoints_check_key_signature_and_time(venue):
    async def scenario(c, st):
        alice = st.auth.keys[venue.cfg.api_keys[0].api_key]
        h = {"X-MBX-APIKEY": alice.api_key}
        acct = await expect(await c.get("/api/v3/account?" + signed(alice, {}), headers=h), 200)
        assert {b["asset"]: b for b in acct["balances"]}["BTC"]["free"] == "10.00400000"
        # the same signed request in a form body works too
        body = signed(alice, {"symbol": "BTCUSDT"})
        r = await c.get("/api/v3/openOrders", data=body, headers={**h, "Content-Type":
                                                                   "application/x-www-form-urlencoded"})
        [o] = await expect(r, 200)
        assert (o["orderId"], o["status"], o["executedQty"]) == (11, "PARTIALLY_FILLED", "0.00400000")
        [mt] = await expect(await c.get("/api/v3/myTrades?" + signed(alice, {"symbol": "BTCUSDT"}), headers=h), 200)
        assert (mt["isMaker"], mt["isBuyer"], mt["commission"]) == (True, True, "0.04792000")
        got = await expect(await c.get("/api/v3/order?" + signed(alice, {"symbol": "BTCUSDT", "orderId": 11}),
                                       headers=h), 200)
        assert got["clientOrderId"] == "mx-11"
        await expect(await c.get("/api/v3/order?" + signed(alice, {"symbol": "BTCUSDT", "orderId": 12}),
                                 headers=h), 400, -2013)  # bob's order: not alice's to see
        await expect(await c.get("/api/v3/order?" + signed(alice, {"symbol": "BTCUSDT"}), headers=h), 400, -1102)
        assert len(await expect(await c.get("/api/v3/allOrders?" + signed(alice, {"symbol": "BTCUSDT"}),
                                            headers=h), 200)) == 1
        await expect(await c.get("/api/v3/account?" + signed(alice, {})), 401, -2014)
        await expect(await c.get("/api/v3/account?" + signed(alice, {}), headers={"X-MBX-APIKEY": "nope"}), 401,
                     -2015)
        await expect(await c.get("/api/v3/account?" + signed(alice, {}, secret="0" * 64), headers=h), 400, -1022)
        await expect(await c.get("/api/v3/account?" + signed(alice, {}, ts=int(time.time() * 1000) - 60_000),
                                 headers=h), 400, -1021)
        await expect(await c.get("/api/v3/account?" + signed(alice, {}, ts=int(time.time() * 1000) + 5_000),
                                 headers=h), 400, -1021)
        await expect(await c.get("/api/v3/account?" + signed(alice, {"recvWindow": 70_000}), headers=h), 400, -1131)
        await expect(await c.get("/api/v3/account?signature=00", headers=h), 400, -1102)
        await expect(await c.get("/api/v3/account", headers=h), 400, -1102)
        for params, code in [({"symbol": "BTCUSDT", "side": "UP", "type": "LIMIT"}, -1100),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP"}, -1116),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP_LOSS"}, -1116),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1",
                               "price": "100"}, -1102),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTD",
                               "quantity": "1", "price": "100"}, -1115),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                               "quantity": "0.0015", "price": "100"}, -1013),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                               "quantity": "0.001", "price": "100.001"}, -1013),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                               "quantity": "-1", "price": "100"}, -1100),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}, -1102),
                             ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1",
                               "quoteOrderQty": "10"}, -1102),
                             ({"symbol": "XBTUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}, -1121)]:
            await expect(await c.post("/api/v3/order/test", data=signed(alice, params), headers={
                **h, "Content-Type": "application/x-www-form-urlencoded"}), 400, code)
        ok = signed(alice, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                            "quantity": "0.001", "price": "100"})
        await expect(await c.post("/api/v3/order/test?" + ok, headers=h), 200)
        # this edge is read-only (no ring): order entry fails cleanly, never with a 500
        await expect(await c.post("/api/v3/order?" + ok, headers=h), 400, -1000)
        lk = await expect(await c.post("/api/v3/userDataStream", headers=h), 200)
        await expect(await c.put("/api/v3/userDataStream?listenKey=" + lk["listenKey"], headers=h), 200)
        await expect(await c.put("/api/v3/userDataStream?listenKey=nope", headers=h), 400, -1125)
        await expect(await c.delete("/api/v3/userDataStream?listenKey=" + lk["listenKey"], headers=h), 200)

    run(venue, scenario)


def test_market_stream_control_messages(venue):
    async def scenario(c, st):
        ws = await c.ws_connect("/ws/0")
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", "btcusdt@trade"],
                                      "id": 1}))
        assert await ws.receive_json() == {"result": None, "id": 1}
        await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await ws.receive_json() == {"result": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 2}
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["nope@trade"], "id": 3}))
        assert (await ws.receive_json())["error"]["code"] == 2
        await ws.send_str("{not json")
        assert (await ws.receive_json())["error"]["code"] == 3
        await ws.send_str(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 4}))
        assert await ws.receive_json() == {"result": None, "id": 4}
        await ws.close()
        ws = await c.ws_connect("/stream?streams=btcusdt@depth5@100ms")
        msg = await ws.receive_json(timeout=5)
        assert msg["stream"] == "btcusdt@depth5@100ms" and msg["data"]["bids"] == [["59900.00000000", "0.00600000"]]
        await ws.close()
        api = await c.ws_connect("/ws-api/v3")
        await api.send_str(json.dumps({"id": "x", "method": "userDataStream.subscribe.signature",
                                       "params": {"apiKey": "nope", "timestamp": 1, "signature": "00"}}))
        reply = await api.receive_json()
        assert reply["status"] == 401 and reply["error"]["code"] == -2015
        await api.close()

    run(venue, scenario)


def test_published_openapi_file_is_the_served_spec():
    doc = json.loads((ROOT / "docs" / "binance-openapi.json").read_text())
    assert doc == json.loads(json.dumps(spec()))
