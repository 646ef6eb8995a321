"""Acceptance: the official `binance-sdk-spot`, its REST base path and stream URL pointed at
`microex serve`: account, new order, query, cancel, open orders, my trades, depth and trade
streams; what it sees agrees with the venue's own state (the engine after a clean stop)."""

from __future__ import annotations

import asyncio
import json

import pytest

from microex.pipeline.datadir import DataDir
from microex.pipeline.recovery import recover
from tests.integration.test_serve import Serve, _free_port

pytest.importorskip("binance_sdk_spot")
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams  # noqa: E402
from binance_sdk_spot.rest_api.models import enums  # noqa: E402
from binance_sdk_spot.spot import Spot  # noqa: E402


def _plain(d):
    if isinstance(d, list):
        return [_plain(x) for x in d]
    return d.model_dump(by_alias=True) if hasattr(d, "model_dump") else d


def _data(resp):
    return _plain(resp.data())


def test_binance_sdk_spot_rest_and_streams(tmp_path):
    data = tmp_path / "data"
    http = _free_port()
    venue = Serve(data, _free_port(), "--http-port", str(http), "--md-port", "0")
    try:
        keys = json.loads((data / "demo-keys.json").read_text())

        def rest(i: int):
            return Spot(config_rest_api=ConfigurationRestAPI(
                api_key=keys[i]["api_key"], api_secret=keys[i]["secret"], base_path=f"http://127.0.0.1:{http}",
                timeout=15000, retries=0)).rest_api

        alice, bob = rest(0), rest(1)
        acct = _data(alice.get_account())
        usdt = {b["asset"]: b for b in acct["balances"]}["USDT"]
        assert usdt["free"] == "1000000.00000000" and usdt["locked"] == "0.00000000"

        events: dict[str, list] = {"depth": [], "trade": []}

        async def streams_and_orders():
            ws = Spot(config_ws_streams=ConfigurationWebSocketStreams(stream_url=f"ws://127.0.0.1:{http}"))
            conn = await ws.websocket_streams.create_connection()
            try:
                depth = await conn.diff_book_depth(symbol="btcusdt", update_speed="100ms")
                depth.on("message", lambda m: events["depth"].append(m))
                trade = await conn.trade(symbol="btcusdt")
                trade.on("message", lambda m: events["trade"].append(m))
                await asyncio.sleep(0.3)
                order = await asyncio.to_thread(lambda: _data(alice.new_order(
                    symbol="BTCUSDT", side=enums.NewOrderSideEnum.BUY, type=enums.NewOrderTypeEnum.LIMIT,
                    time_in_force=enums.NewOrderTimeInForceEnum.GTC, quantity=0.01, price=59900.0,
                    new_client_order_id="sdk-bid-1")))
                sell = await asyncio.to_thread(lambda: _data(bob.new_order(
                    symbol="BTCUSDT", side=enums.NewOrderSideEnum.SELL, type=enums.NewOrderTypeEnum.MARKET,
                    quantity=0.004)))
                for _ in range(100):
                    if events["trade"] and events["depth"]:
                        break
                    await asyncio.sleep(0.05)
                return order, sell
            finally:
                await conn.close_connection()

        order, sell = asyncio.run(asyncio.wait_for(streams_and_orders(), 60))
        assert order["clientOrderId"] == "sdk-bid-1" and order["status"] == "NEW"
        assert sell["status"] == "FILLED" and sell["executedQty"] == "0.00400000"
        assert [f["price"] for f in sell["fills"]] == ["59900.00000000"]
        q = _data(alice.get_order(symbol="BTCUSDT", orig_client_order_id="sdk-bid-1"))
        assert (q["orderId"], q["status"], q["executedQty"]) == (order["orderId"], "PARTIALLY_FILLED", "0.00400000")
        [op] = _data(alice.get_open_orders(symbol="BTCUSDT"))
        assert op["orderId"] == order["orderId"]
        [tr] = _data(alice.my_trades(symbol="BTCUSDT"))
        assert (tr["orderId"], tr["qty"], tr["isMaker"], tr["isBuyer"]) == (order["orderId"], "0.00400000", True, True)
        book = _data(alice.depth(symbol="BTCUSDT"))
        assert book["bids"] == [["59900.00000000", "0.00600000"]]
        cancelled = _data(alice.delete_order(symbol="BTCUSDT", order_id=order["orderId"]))
        assert cancelled["status"] == "CANCELED"
        assert _data(alice.get_open_orders(symbol="BTCUSDT")) == []
        acct = {b["asset"]: b for b in _data(alice.get_account())["balances"]}

        trades = _plain(events["trade"])
        assert [(t["p"], t["q"]) for t in trades] == [("59900.00000000", "0.00400000")]
        diffs = _plain(events["depth"])
        assert diffs and all(d["e"] == "depthUpdate" for d in diffs)
        for prev, nxt in zip(diffs, diffs[1:]):
            assert nxt["U"] == prev["u"] + 1
    finally:
        assert venue.stop() == 0
    _, _, engine = recover(DataDir(data))
    b = engine.balances()
    assert acct["USDT"]["free"] == f"{int(b[1, 2, 0]) / 10**6:.8f}" and acct["BTC"]["free"] == f"{int(b[1, 1, 0]) / 10**8:.8f}"
    assert acct["USDT"]["locked"] == "0.00000000" and int(b[1, 2, 1]) == 0
