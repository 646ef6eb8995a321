"""Acceptance: unmodified ccxt (`binance` and `ccxt.pro.binance`) trades on `microex serve` through
the Binance-compatible API, and what it sees agrees with the venue's own state (the engine
rebuilt from the data directory after a clean stop)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from microex.pipeline.datadir import DataDir
from microex.pipeline.recovery import recover
from tests.integration.test_serve import Serve, _free_port

ccxt = pytest.importorskip("ccxt")
import ccxt.pro  # noqa: E402

OPTIONS = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
           "fetchMargins": False, "warnOnFetchOpenOrdersWithoutSymbol": False}
DEC = {1: 10**8, 2: 10**6, 3: 10**8}  # demo asset ids: BTC, USDT, ETH (their units per coin)


def point(ex, port: int):
    for name in ("public", "private", "v3"):
        ex.urls["api"][name] = f"http://127.0.0.1:{port}/api/v3"
    ex.urls["api"]["ws"] = {"spot": f"ws://127.0.0.1:{port}/ws", "margin": f"ws://127.0.0.1:{port}/ws",
                            "ws-api": {"spot": f"ws://127.0.0.1:{port}/ws-api/v3"}}
    return ex


def client(cls, key: dict, port: int):
    return point(cls({"apiKey": key["api_key"], "secret": key["secret"], "options": dict(OPTIONS),
                      "timeout": 15000}), port)


@pytest.fixture
def venue(tmp_path):
    data = tmp_path / "data"
    http = _free_port()
    v = Serve(data, _free_port(), "--http-port", str(http), "--md-port", "0")
    v.http, v.data = http, data
    v.keys = json.loads((data / "demo-keys.json").read_text())
    try:
        yield v
    finally:
        v.stop()


def test_ccxt_rest_and_streams_trade_and_agree_with_the_venue(venue):
    alice, bob, carol = (client(ccxt.binance, venue.keys[i], venue.http) for i in range(3))
    markets = alice.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    m = markets["BTC/USDT"]
    assert (m["precision"]["price"], m["precision"]["amount"], m["limits"]["amount"]["min"]) == (0.01, 0.001, 0.001)
    bob.load_markets()
    carol.load_markets()

    bid = alice.create_order("BTC/USDT", "limit", "buy", 0.01, 59900)  # GTC
    assert bid["status"] == "open" and bid["filled"] == 0
    ioc = bob.create_order("BTC/USDT", "limit", "sell", 0.004, 59900, {"timeInForce": "IOC"})
    assert (ioc["status"], ioc["filled"], ioc["average"]) == ("closed", 0.004, 59900)
    [fill] = ioc["trades"]
    assert fill["fee"]["cost"] == pytest.approx(239.6 * 5 / 10000) and fill["fee"]["currency"] == "USDT"
    got = alice.fetch_order(bid["id"], "BTC/USDT")
    assert (got["status"], got["filled"], got["remaining"]) == ("open", 0.004, 0.006)
    [mine] = alice.fetch_my_trades("BTC/USDT")
    assert (mine["takerOrMaker"], mine["side"], mine["amount"], mine["price"]) == ("maker", "buy", 0.004, 59900)
    assert mine["fee"]["cost"] == pytest.approx(239.6 * 2 / 10000) and mine["order"] == bid["id"]
    book = alice.fetch_order_book("BTC/USDT")
    assert book["bids"] == [[59900, 0.006]] and book["asks"] == []
    [trade] = alice.fetch_trades("BTC/USDT")
    assert (trade["price"], trade["amount"], trade["side"]) == (59900, 0.004, "sell")
    candle = alice.fetch_ohlcv("BTC/USDT", "1m")[-1]
    assert candle[1:] == [59900, 59900, 59900, 59900, 0.004]
    ticker = alice.fetch_ticker("BTC/USDT")
    assert (ticker["last"], ticker["bid"], ticker["baseVolume"]) == (59900, 59900, 0.004)

    with pytest.raises(ccxt.OrderImmediatelyFillable):  # post-only that would cross
        bob.create_order("BTC/USDT", "limit", "sell", 0.001, 59900, {"postOnly": True})
    ask = bob.create_order("BTC/USDT", "limit", "sell", 0.01, 60100, {"postOnly": True})
    assert ask["status"] == "open" and ask["postOnly"] and ask["info"]["type"] == "LIMIT_MAKER"
    mkt = carol.create_order("BTC/USDT", "market", "buy", 0.002)
    assert (mkt["status"], mkt["filled"], mkt["average"]) == ("closed", 0.002, 60100)
    with pytest.raises(ccxt.InsufficientFunds):
        carol.create_order("BTC/USDT", "limit", "sell", 50, 60000)

    assert [o["id"] for o in alice.fetch_open_orders("BTC/USDT")] == [bid["id"]]
    assert alice.cancel_order(bid["id"], "BTC/USDT")["status"] == "canceled"
    assert alice.fetch_open_orders("BTC/USDT") == []
    with pytest.raises(ccxt.OrderNotFound):  # -2011 "Unknown order sent.": no longer open
        alice.cancel_order(bid["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        alice.fetch_order("123456", "BTC/USDT")

    async def streams():
        a, b = (client(ccxt.pro.binance, venue.keys[i], venue.http) for i in (0, 1))
        try:
            await a.load_markets()
            await b.load_markets()
            ob = await asyncio.wait_for(a.watch_order_book("BTC/USDT"), 15)
            assert ob["asks"][0] == [60100, 0.008]
            orders = asyncio.ensure_future(a.watch_orders("BTC/USDT"))
            trades = asyncio.ensure_future(a.watch_trades("BTC/USDT"))
            await asyncio.sleep(0.3)  # both subscriptions are live
            await b.create_order("BTC/USDT", "limit", "buy", 0.003, 59950)
            await a.create_order("BTC/USDT", "limit", "sell", 0.001, 59950)
            seen = await asyncio.wait_for(orders, 15)
            assert seen[-1]["status"] in ("open", "closed") and seen[-1]["side"] == "sell"
            [t] = (await asyncio.wait_for(trades, 15))[-1:]
            assert (t["price"], t["amount"]) == (59950, 0.001)
            for _ in range(50):  # the diff stream catches up with the REST book (U/u checked by ccxt)
                ob = await asyncio.wait_for(a.watch_order_book("BTC/USDT"), 15)
                if ob["bids"] and ob["bids"][0] == [59950, 0.002]:
                    break
            rest = await a.fetch_order_book("BTC/USDT")
            assert ob["bids"][:5] == rest["bids"][:5] and ob["asks"][:5] == rest["asks"][:5]
            # the listenKey flow: POST userDataStream, then /ws/<listenKey> pushes the account's events
            import aiohttp

            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{venue.http}/api/v3/userDataStream",
                                     headers={"X-MBX-APIKEY": venue.keys[1]["api_key"]}) as r:
                    listen_key = (await r.json())["listenKey"]
                async with http.ws_connect(f"ws://127.0.0.1:{venue.http}/ws/{listen_key}") as ws:
                    placed = await b.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)
                    first = await ws.receive_json(timeout=10)
                    second = await ws.receive_json(timeout=10)
            assert (first["e"], first["x"], first["X"], str(first["i"])) == ("executionReport", "NEW", "NEW",
                                                                            placed["id"])
            assert second["e"] == "outboundAccountPosition"
            assert {x["a"]: x for x in second["B"]}["USDT"]["l"] != "0.00000000"  # the bid's hold
            return {k: (await c.fetch_balance())["total"] for k, c in (("a", a), ("b", b))}
        finally:
            await a.close()
            await b.close()

    asyncio.run(streams())
    balances = {i: c.fetch_balance() for i, c in ((1, alice), (2, bob), (3, carol))}
    book = alice.fetch_order_book("BTC/USDT")
    assert venue.stop() == 0

    # the venue's own state: the engine rebuilt from the data directory
    _, _, engine = recover(DataDir(venue.data))
    b = engine.balances()
    names = {1: "BTC", 2: "USDT", 3: "ETH"}
    for acc, bal in balances.items():
        for asset, name in names.items():
            assert bal[name]["free"] == pytest.approx(int(b[acc, asset, 0]) / DEC[asset], abs=1e-12), (acc, name)
            assert bal[name]["used"] == pytest.approx(int(b[acc, asset, 1]) / DEC[asset], abs=1e-12), (acc, name)
    bids = [[p / 100, q / 1000] for p, q, _ in engine.depth(1, 1, 50)]
    asks = [[p / 100, q / 1000] for p, q, _ in engine.depth(1, 2, 50)]
    assert book["bids"] == bids and book["asks"] == asks
    Path(venue.log)  # kept for a failing run's post-mortem
