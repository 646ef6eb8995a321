"""`microex serve --grpc-port P`: the market-data feed over gRPC streaming, as a user runs it. After some
trades, the gRPC subscriber's books equal the TCP MarketDataClient's (and the orders resting), both saw the
same trades, and a stop ends the gRPC streams with ERROR SHUTDOWN."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from microex.client import Client, MsgType, Side, Tif
from microex.client.marketdata import MarketDataClient
from microex.client.md_grpc import GrpcMarketDataClient
from microex.core.records import MdReason

from tests.integration.test_marketdata_serve import PRICE, _book, _free_port, _until, _wait_port

BTC, ETH = 1, 2


def test_grpc_feed_equals_the_tcp_feed(tmp_path: Path):
    data = tmp_path / "data"
    port, md_port, grpc_port = _free_port(), _free_port(), _free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "microex.app.cli", "serve", "--data", str(data),
                             "--bin-port", str(port), "--md-port", str(md_port), "--grpc-port", str(grpc_port),
                             "--http-port", "0", "--metrics-port", "0", "--fsync", "none"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        for p in (grpc_port, md_port, port):
            _wait_port(proc, p, log)
        keys = [k["api_key"].encode() for k in json.loads((data / "demo-keys.json").read_text())]

        async def main():
            tcp_trades, grpc_trades = [], []
            tcp = await MarketDataClient.connect("127.0.0.1", md_port, on_trade=tcp_trades.append)
            gmd = await GrpcMarketDataClient.connect(f"127.0.0.1:{grpc_port}", on_trade=grpc_trades.append)
            alice = await Client.connect("127.0.0.1", port, keys[0])
            bob = await Client.connect("127.0.0.1", port, keys[1])
            await alice.place(BTC, Side.BUY, PRICE[BTC] - 50, 1)  # a book before the subscriptions
            await alice.place(BTC, Side.BUY, PRICE[BTC] - 50, 2)
            for i in (BTC, ETH):
                await tcp.subscribe(i)
                await gmd.subscribe(i)
                await tcp.wait_synced(i)
                await gmd.wait_synced(i)
            assert gmd.book(BTC).depth(1, 100) == [(PRICE[BTC] - 50, 3, 2)]
            for i in (BTC, ETH):
                for k in range(6):
                    assert (await alice.place(i, Side.BUY, PRICE[i] - 10 * k, 3 + k)).kind == MsgType.EXEC_ACCEPTED
                    assert (await bob.place(i, Side.SELL, PRICE[i] + 10 + 10 * k, 2 + k)).kind == MsgType.EXEC_ACCEPTED
            await bob.place(BTC, Side.SELL, PRICE[BTC] - 10, 6, tif=Tif.IOC)  # sweeps two bid levels: 2 trades
            await alice.place(ETH, Side.BUY, PRICE[ETH] + 20, 5, tif=Tif.IOC)  # lifts two ask levels: 2 trades
            clients = [alice, bob]

            def same() -> bool:
                return all(c.book(i).depth(s, 100) == _book(clients, i, s) and gmd.book(i).md_seq == tcp.book(i).md_seq
                           for c in (tcp, gmd) for i in (BTC, ETH) for s in (1, 2))

            await _until(lambda: len(tcp_trades) >= 4 and len(grpc_trades) >= 4 and same())
            for i in (BTC, ETH):
                g, t = gmd.book(i), tcp.book(i)
                assert (g.depth(1, 100), g.depth(2, 100), g.md_seq) == (t.depth(1, 100), t.depth(2, 100), t.md_seq)
            key = [(int(r["instrument"]), int(r["count"]), int(r["price_ticks"]), int(r["qty_lots"]))
                   for r in tcp_trades]
            assert key == [(int(r["instrument"]), int(r["count"]), int(r["price_ticks"]), int(r["qty_lots"]))
                           for r in grpc_trades] and len(key) == 4
            assert all(s["gaps"] == 0 and s["restarts"] == 0 for s in gmd.stats().values())
            snap = await gmd.snapshot(ETH)
            assert snap.depth(2, 100) == gmd.book(ETH).depth(2, 100)
            for c in (tcp, alice, bob):
                await c.close()
            gmd.reconnect = False
            proc.send_signal(signal.SIGTERM)  # the stage stops: SHUTDOWN on the streams
            await _until(lambda: any(e.reason == MdReason.SHUTDOWN for e in gmd.errors), 30)
            await gmd.close()

        asyncio.run(asyncio.wait_for(main(), 60))
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
