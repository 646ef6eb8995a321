"""Request weights and order-rate limits: the limiter's arithmetic on a fake clock, the weight table,
and the HTTP edge's headers, 429s and exchangeInfo rateLimits over the aiohttp test client."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from microex.binance import limits as L
from microex.binance.app import ROUTES, build_app, make_state
from microex.binance.limits import Limiter
from tests.unit.binance.test_app import expect, signed, venue  # noqa: F401 (venue is a fixture)

WEIGHT, O10S, O1D = "X-MBX-USED-WEIGHT-1M", "X-MBX-ORDER-COUNT-10S", "X-MBX-ORDER-COUNT-1D"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the limiter ----------------------------------------------------------------------------------

def test_weight_counts_up_to_the_limit_exactly_and_resets_on_the_minute():
    clk = Clock(120.0)  # a minute's first instant
    lim = Limiter(weight_per_minute=10, clock=clk)
    assert lim.charge("a", 4) is None and lim.charge("a", 6) is None  # 10 of 10: still allowed
    assert lim.used("a") == 10
    assert lim.charge("a", 1) == lim.rules[0]  # 11 > 10: refused, nothing counted
    assert lim.used("a") == 10 and lim.retry_after() == 60
    clk.t = 179.2
    assert lim.charge("a", 1) is not None and lim.retry_after() == 1  # 0.8 s left, rounded up
    clk.t = 179.999
    assert lim.used("a") == 10
    clk.t = 180.0  # the next minute starts from zero, whenever the first request came
    assert lim.used("a") == 0 and lim.charge("a", 10) is None and lim.used("a") == 10
    assert lim.reset_ms() == 240_000


def test_a_refused_heavy_request_leaves_room_for_a_light_one():
    lim = Limiter(weight_per_minute=10, clock=Clock(0.0))
    assert lim.charge("a", 8) is None
    assert lim.charge("a", 5) is not None
    assert lim.charge("a", 2) is None and lim.used("a") == 10


def test_weight_is_counted_per_ip():
    lim = Limiter(weight_per_minute=5, clock=Clock(0.0))
    assert lim.charge("10.0.0.1", 5) is None and lim.charge("10.0.0.1", 1) is not None
    assert lim.charge("10.0.0.2", 5) is None
    assert lim.weight_headers("10.0.0.1") == {WEIGHT: "5"} and lim.weight_headers("10.0.0.3") == {WEIGHT: "0"}
    assert lim.weight_status("10.0.0.2") == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                              "intervalNum": 1, "limit": 5, "count": 5}]


def test_orders_are_counted_per_account_in_10_second_and_day_windows():
    day = 86_400
    clk = Clock(3 * day + 5.0)  # windows sit on the clock: this 10 s one ends at +10.0, not at +15.0
    lim = Limiter(orders_per_10s=3, orders_per_day=5, clock=clk)
    ten_s, one_d = lim.rules[1], lim.rules[2]
    assert [lim.take_order(1) for _ in range(3)] == [None, None, None]
    assert lim.take_order(1) == ten_s  # the 4th in 10 s: refused, nothing counted
    assert lim.order_headers(1) == {O10S: "3", O1D: "3"}
    assert lim.take_order(2) is None and lim.order_headers(2) == {O10S: "1", O1D: "1"}  # another account
    clk.t = 3 * day + 9.999
    assert lim.take_order(1) == ten_s
    clk.t = 3 * day + 10.0
    assert lim.take_order(1) is None and lim.take_order(1) is None  # 5 of 5 today
    assert lim.order_headers(1) == {O10S: "2", O1D: "5"}
    clk.t = 3 * day + 20.0
    assert lim.take_order(1) == one_d and lim.order_headers(1) == {O10S: "0", O1D: "5"}
    clk.t = 4 * day - 0.001
    assert lim.take_order(1) == one_d
    clk.t = 4 * day  # 00:00 UTC: a new day
    assert lim.take_order(1) is None and lim.order_headers(1) == {O10S: "1", O1D: "1"}


def test_rules_messages_and_defaults_are_binances():
    lim = Limiter()
    assert [r.info() for r in lim.rules] == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000}]
    assert [r.header for r in lim.rules] == [WEIGHT, O10S, O1D]
    assert L.message(lim.rules[0]) == ("Too much request weight used; current limit is 6000 request weight per 1 "
                                       "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")
    assert L.message(lim.rules[1]) == "Too many new orders; current limit is 100 orders per 10 SECOND."
    assert L.message(lim.rules[2]) == "Too many new orders; current limit is 200000 orders per 1 DAY."
    with pytest.raises(ValueError):
        Limiter(weight_per_minute=0)


# -- the weight table -----------------------------------------------------------------------------

def test_every_route_has_a_weight_and_the_table_no_other():
    assert set(L.WEIGHTS) == {(method, path) for method, path, *_ in ROUTES}
    assert L.ORDER_ROUTES <= set(L.WEIGHTS)
    assert L.weight("GET", "/api/v3/nothing", {}) == 0


@pytest.mark.parametrize("route, params, want", [
    (("GET", "/api/v3/ping"), {}, 1),
    (("GET", "/api/v3/exchangeInfo"), {}, 20),
    (("GET", "/api/v3/depth"), {}, 5),
    (("GET", "/api/v3/depth"), {"limit": "100"}, 5),
    (("GET", "/api/v3/depth"), {"limit": "101"}, 25),
    (("GET", "/api/v3/depth"), {"limit": "500"}, 25),
    (("GET", "/api/v3/depth"), {"limit": "501"}, 50),
    (("GET", "/api/v3/depth"), {"limit": "1000"}, 50),
    (("GET", "/api/v3/depth"), {"limit": "1001"}, 250),
    (("GET", "/api/v3/depth"), {"limit": "5000"}, 250),
    (("GET", "/api/v3/depth"), {"limit": "x"}, 5),  # answered -1100; weighed as the default
    (("GET", "/api/v3/trades"), {}, 25),
    (("GET", "/api/v3/aggTrades"), {}, 4),
    (("GET", "/api/v3/klines"), {}, 2),
    (("GET", "/api/v3/ticker/24hr"), {"symbol": "BTCUSDT"}, 2),
    (("GET", "/api/v3/ticker/24hr"), {"symbols": json.dumps(["S"] * 20)}, 2),
    (("GET", "/api/v3/ticker/24hr"), {"symbols": json.dumps(["S"] * 21)}, 40),
    (("GET", "/api/v3/ticker/24hr"), {"symbols": json.dumps(["S"] * 100)}, 40),
    (("GET", "/api/v3/ticker/24hr"), {"symbols": json.dumps(["S"] * 101)}, 80),
    (("GET", "/api/v3/ticker/24hr"), {}, 80),
    (("GET", "/api/v3/ticker/price"), {"symbol": "BTCUSDT"}, 2),
    (("GET", "/api/v3/ticker/price"), {"symbols": '["BTCUSDT"]'}, 4),
    (("GET", "/api/v3/ticker/bookTicker"), {}, 4),
    (("POST", "/api/v3/order"), {}, 1),
    (("POST", "/api/v3/order/test"), {}, 1),
    (("POST", "/api/v3/order/test"), {"computeCommissionRates": "true"}, 20),
    (("GET", "/api/v3/order"), {}, 4),
    (("GET", "/api/v3/openOrders"), {"symbol": "BTCUSDT"}, 6),
    (("GET", "/api/v3/openOrders"), {}, 80),
    (("GET", "/api/v3/allOrders"), {}, 20),
    (("GET", "/api/v3/myTrades"), {}, 20),
    (("GET", "/api/v3/myTrades"), {"orderId": "11"}, 5),
    (("GET", "/api/v3/account"), {}, 20),
    (("PUT", "/api/v3/userDataStream"), {}, 2),
])
def test_documented_weights(route, params, want):
    assert L.weight(*route, params) == want


# -- over HTTP and the WebSocket API --------------------------------------------------------------

def run(venue, limits: Limiter, scenario):  # noqa: F811 (venue is the fixture)
    async def main():
        edge = venue.edge()
        edge.catch_up()
        st = make_state(edge, venue.keys(), limits)
        async with TestClient(TestServer(build_app(st))) as client:
            await scenario(client, st)
        edge.close()

    asyncio.run(main())


async def used(resp) -> int:
    await resp.read()
    return int(resp.headers[WEIGHT])


def test_every_answer_carries_the_weight_used_rising_by_the_documented_weights(venue):  # noqa: F811
    async def scenario(c, st):
        assert await used(await c.get("/api/v3/ping")) == 1
        assert await used(await c.get("/api/v3/depth?symbol=BTCUSDT&limit=500")) == 1 + 25
        assert await used(await c.get("/api/v3/ticker/24hr")) == 26 + 80
        assert await used(await c.get("/api/v3/ticker/price?symbol=BTCUSDT")) == 106 + 2
        r = await c.get("/api/v3/depth?symbol=NOPE")  # an error is weighed too
        assert (await r.json())["code"] == -1121 and int(r.headers[WEIGHT]) == 108 + 5
        alice = st.auth.keys[venue.cfg.api_keys[0].api_key]
        h = {"X-MBX-APIKEY": alice.api_key}
        r = await c.get("/api/v3/openOrders", data=signed(alice, {"symbol": "BTCUSDT"}),  # symbol in the body
                        headers={**h, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200 and await used(r) == 113 + 6
        r = await c.post("/api/v3/order/test?" + signed(alice, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                               "quantity": "0.001"}), headers=h)
        assert r.status == 200 and await used(r) == 119 + 1
        assert O10S not in r.headers  # a test order places nothing
        r = await c.get("/api/v3/nothing")  # no such route: answered, not weighed
        assert r.status == 404 and await used(r) == 120
        r = await c.get("/openapi.json")  # outside the REST API: not metered
        assert r.status == 200 and WEIGHT not in r.headers
        assert st.limits.used("127.0.0.1") == 120

    run(venue, Limiter(clock=Clock(60.0)), scenario)


def test_past_the_weight_limit_429_with_retry_after_until_the_minute_ends(venue):  # noqa: F811
    clk = Clock(1000.5)  # the minute [960, 1020): 19.5 s left

    async def scenario(c, st):
        assert await used(await c.get("/api/v3/exchangeInfo")) == 20
        assert await used(await c.get("/api/v3/depth?symbol=BTCUSDT")) == 25
        r = await c.get("/api/v3/trades?symbol=BTCUSDT")  # 25 more: past 30
        body = await expect(r, 429, -1003)
        assert body["msg"] == ("Too much request weight used; current limit is 30 request weight per 1 MINUTE. "
                               "Please use WebSocket Streams for live updates to avoid polling the API.")
        assert r.headers["Retry-After"] == "20" and r.headers[WEIGHT] == "25"
        assert await used(await c.get("/api/v3/avgPrice?symbol=BTCUSDT")) == 27  # a lighter one still fits
        clk.t = 1020.0
        r = await c.get("/api/v3/trades?symbol=BTCUSDT")
        assert r.status == 200 and await used(r) == 25

    run(venue, Limiter(weight_per_minute=30, clock=clk), scenario)


def test_past_the_order_limit_429_minus_1015_per_account(venue):  # noqa: F811
    async def scenario(c, st):
        alice, bob = (st.auth.keys[k.api_key] for k in venue.cfg.api_keys[:2])
        order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
                 "price": "100"}
        for n in (1, 2):  # a valid order counts before it is sent (this read-only edge then fails to send it)
            r = await c.post("/api/v3/order?" + signed(alice, order), headers={"X-MBX-APIKEY": alice.api_key})
            await expect(r, 400, -1000)
            assert (r.headers[O10S], r.headers[O1D]) == (str(n), str(n))
        r = await c.post("/api/v3/order?" + signed(alice, order), headers={"X-MBX-APIKEY": alice.api_key})
        body = await expect(r, 429, -1015)
        assert body["msg"] == "Too many new orders; current limit is 2 orders per 10 SECOND."
        assert "Retry-After" not in r.headers and (r.headers[O10S], r.headers[O1D]) == ("2", "2")
        bad = signed(alice, {**order, "price": "100.001"})  # invalid: answered -1013, not counted
        r = await c.post("/api/v3/order?" + bad, headers={"X-MBX-APIKEY": alice.api_key})
        await expect(r, 400, -1013)
        r = await c.post("/api/v3/order?" + signed(bob, order), headers={"X-MBX-APIKEY": bob.api_key})
        await expect(r, 400, -1000)
        assert (r.headers[O10S], r.headers[O1D]) == ("1", "1")
        assert r.headers[WEIGHT] == "5"  # 1 per order request, from one IP whatever the account

    run(venue, Limiter(orders_per_10s=2, clock=Clock(0.0)), scenario)


def test_exchange_info_lists_the_rate_limits(venue):  # noqa: F811
    async def scenario(c, st):
        info = await expect(await c.get("/api/v3/exchangeInfo"), 200)
        assert info["rateLimits"] == [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000}]

    run(venue, Limiter(weight_per_minute=1200, orders_per_10s=50, orders_per_day=160_000), scenario)


def test_websocket_api_requests_share_the_ips_weight_and_report_it(venue):  # noqa: F811
    clk = Clock(30.0)

    async def scenario(c, st):
        assert await used(await c.get("/api/v3/avgPrice?symbol=BTCUSDT")) == 2
        api = await c.ws_connect("/ws-api/v3")
        await api.send_str(json.dumps({"id": 1, "method": "time"}))
        reply = await api.receive_json()
        assert reply["status"] == 200 and reply["rateLimits"] == [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 4, "count": 3}]
        await api.send_str(json.dumps({"id": 2, "method": "session.status"}))  # weight 2: past 4
        reply = await api.receive_json()
        assert reply["status"] == 429 and reply["error"]["code"] == -1003
        assert reply["error"]["data"]["retryAfter"] == 60_000 and reply["rateLimits"][0]["count"] == 3
        await api.send_str(json.dumps({"id": 3, "method": "ping"}))
        assert (await api.receive_json())["rateLimits"][0]["count"] == 4
        await api.close()
        r = await c.get("/api/v3/ping")
        await expect(r, 429, -1003)

    run(venue, Limiter(weight_per_minute=4, clock=clk), scenario)
