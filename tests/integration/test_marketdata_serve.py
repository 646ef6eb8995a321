"""`microex serve` with its market-data stage, as a user runs it: the SDK's MarketDataClient and two
trading Clients over loopback; the replica must equal the orders resting; a restarted venue's feed
starts with the same book (and the same md seqs); the recorded feed replays through `microex md replay`."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from microex.app.cli import build_parser
from microex.client import Client, MsgType, Side, Tif
from microex.client.marketdata import MarketDataClient
from microex.protocol.md_binary import MdStatus

BTC, ETH = 1, 2
PRICE = {BTC: 5_990_000, ETH: 299_000}  # inside the demo's 10% bands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_flags() -> set[str]:
    sub = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "serve")[1]
    return {o for a in sub._actions for o in a.option_strings}


def _wait_port(proc: subprocess.Popen, port: int, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"port {port} never opened: {log.read_text()[-2000:]}"
            time.sleep(0.1)


class Serve:
    def __init__(self, data: Path, *extra: str) -> None:
        self.port, self.md_port = _free_port(), _free_port()
        self.log = data.parent / f"serve-{self.port}.log"
        # only what this test needs: no metrics or HTTP edge (their default ports may be taken)
        flags = ["--metrics-port", "0"] if "--metrics-port" in _serve_flags() else []
        flags += ["--http-port", "0"]
        self.proc = subprocess.Popen([sys.executable, "-m", "microex.app.cli", "serve", "--data", str(data),
                                      "--bin-port", str(self.port), "--md-port", str(self.md_port), "--fsync", "none",
                                      *flags, *extra], stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        _wait_port(self.proc, self.md_port, self.log)
        _wait_port(self.proc, self.port, self.log)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def _book(clients: list[Client], instrument: int, side: int) -> list[tuple[int, int, int]]:
    """The book the venue must have: the open orders of every client, by price level, best first."""
    levels: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for c in clients:
        for o in c.orders.values():
            if o.instrument == instrument and o.side == side:
                levels[o.price_ticks][0] += o.leaves_lots
                levels[o.price_ticks][1] += 1
    return [(p, q, n) for p, (q, n) in sorted(levels.items(), reverse=side == Side.BUY)]


async def _until(pred, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


def test_feed_replica_restart_and_replay(tmp_path):
    data = tmp_path / "data"
    rec = tmp_path / "rec"
    venue = Serve(data, "--md-record", str(rec))
    keys = [k["api_key"].encode() for k in json.loads((data / "demo-keys.json").read_text())]
    try:
        async def first_run():
            trades, statuses = [], []
            md = await MarketDataClient.connect("127.0.0.1", venue.md_port, on_trade=trades.append)
            md.on_status.append(statuses.append)
            for i in (BTC, ETH):
                await md.subscribe(i)
            alice = await Client.connect("127.0.0.1", venue.port, keys[0])
            bob = await Client.connect("127.0.0.1", venue.port, keys[1])
            for i in (BTC, ETH):
                await md.wait_synced(i)
                for k in range(5):
                    assert (await alice.place(i, Side.BUY, PRICE[i] - 10 * k, 3 + k)).kind == MsgType.EXEC_ACCEPTED
                    assert (await bob.place(i, Side.SELL, PRICE[i] + 10 + 10 * k, 2 + k)).kind == MsgType.EXEC_ACCEPTED
            await alice.place(BTC, Side.BUY, PRICE[BTC] - 20, 1)  # a second order on a level
            # bob sweeps two of alice's BTC levels, alice lifts one of bob's ETH levels and cancels one bid
            await bob.place(BTC, Side.SELL, PRICE[BTC] - 10, 6, tif=Tif.IOC)
            await alice.place(ETH, Side.BUY, PRICE[ETH] + 10, 2, tif=Tif.IOC)
            first_bid = min(o.client_order_id for o in alice.orders.values() if o.instrument == ETH)
            await alice.cancel(first_bid)
            clients = [alice, bob]

            def matches() -> bool:
                return all(md.book(i).depth(s, 100) == _book(clients, i, s) for i in (BTC, ETH) for s in (1, 2))

            await _until(lambda: len(trades) >= 3 and matches())
            assert md.book(BTC).best_bid() == (PRICE[BTC] - 10, 1)  # 3 of its 4 lots were taken
            got = [(int(t["instrument"]), int(t["qty_lots"]), int(t["side"])) for t in trades]
            # in order per instrument (the feed's contract); instruments are sent in turns, so not across them
            assert sorted(got, key=lambda t: t[0]) == [(BTC, 3, Side.SELL), (BTC, 3, Side.SELL), (ETH, 2, Side.BUY)]
            assert all(s.status == MdStatus.SUBSCRIBED for s in statuses)
            assert all(v["gaps"] == 0 for v in md.stats().values())
            books = {i: (md.book(i).depth(1, 100), md.book(i).depth(2, 100), md.book(i).md_seq) for i in (BTC, ETH)}
            for c in (md, alice, bob):
                await c.close()
            return books, len(trades)

        books, n_trades = asyncio.run(asyncio.wait_for(first_run(), 90))
    finally:
        assert venue.stop() == 0
    [recording] = list(rec.glob("*.mdrec"))

    venue = Serve(data)
    try:
        async def second_run():
            md = await MarketDataClient.connect("127.0.0.1", venue.md_port)
            for i in (BTC, ETH):
                await md.subscribe(i)
                await md.wait_synced(i)
                bids, asks, seq = books[i]
                assert md.book(i).depth(1, 100) == bids and md.book(i).depth(2, 100) == asks
                assert md.book(i).md_seq == seq  # rebuilt by replaying the journal: the same seqs
            carol = await Client.connect("127.0.0.1", venue.port, keys[2])
            await carol.place(BTC, Side.SELL, PRICE[BTC] - 20, 1, tif=Tif.IOC)  # takes the last lot of the best bid
            await _until(lambda: md.book(BTC).best_bid() == (PRICE[BTC] - 20, 5 + 1))
            assert md.book(BTC).md_seq == books[BTC][2] + 2  # a trade and a level update
            await carol.close()
            await md.close()

        asyncio.run(asyncio.wait_for(second_run(), 60))
    finally:
        assert venue.stop() == 0

    port = _free_port()
    log = tmp_path / "replay.log"
    proc = subprocess.Popen([sys.executable, "-m", "microex.app.cli", "md", "replay", str(recording), "--speed", "0",
                             "--port", str(port), "--wait-subscribers", "1", "--linger", "0.5"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        _wait_port(proc, port, log, 60)

        async def replayed():
            trades, ended = [], []
            md = await MarketDataClient.connect("127.0.0.1", port, on_trade=trades.append)
            md.on_status.append(lambda s: ended.append(s) if s.status == MdStatus.END else None)
            for i in (BTC, ETH):
                await md.subscribe(i)
            await _until(lambda: len(ended) == 2)
            for i in (BTC, ETH):
                assert (md.book(i).depth(1, 100), md.book(i).depth(2, 100), md.book(i).md_seq) == books[i]
            assert len(trades) == n_trades
            await md.close()

        asyncio.run(asyncio.wait_for(replayed(), 60))
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "replayed" in log.read_text()
