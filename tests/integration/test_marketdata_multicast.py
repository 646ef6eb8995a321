"""`microex serve --md-multicast`: SDK receivers over UDP multicast with recovery over the market-data
port, as a user runs them. Their replicas must equal the orders resting: a receiver that joins late
(snapshot, then datagrams), and one that loses every third datagram (gaps healed from snapshots)."""

from __future__ import annotations

import asyncio
import json
import socket

from microex.client import Client, MsgType, Side, Tif
from microex.client.marketdata import MarketDataClient
from microex.marketdata.multicast import group_address

from tests.integration.test_marketdata_serve import PRICE, Serve, _book, _until

BTC, ETH = 1, 2
BASE = "239.77.0.0"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lossy(md: MarketDataClient, every: int) -> list[int]:
    """Drop every `every`-th datagram md receives (counted in the returned list's one cell)."""
    dropped = [0]
    seen = [0]
    inner = md._on_datagram

    def on_datagram(data: bytes) -> None:
        seen[0] += 1
        if seen[0] % every == 0:
            dropped[0] += 1
            return
        inner(data)

    md._on_datagram = on_datagram
    return dropped


def test_multicast_receivers_match_the_venue(tmp_path):
    data = tmp_path / "data"
    port = _free_udp_port()
    venue = Serve(data, "--md-multicast", f"{BASE}:{port}")
    keys = [k["api_key"].encode() for k in json.loads((data / "demo-keys.json").read_text())]
    try:
        async def run():
            trades = []
            md = await MarketDataClient.connect("127.0.0.1", venue.md_port, multicast=(BASE, port),
                                                on_trade=trades.append)
            lossy = await MarketDataClient.connect("127.0.0.1", venue.md_port, multicast=(BASE, port))
            dropped = _lossy(lossy, 3)
            for c in (md, lossy):
                for i in (BTC, ETH):
                    await c.subscribe(i)
                    await c.wait_synced(i)
            alice = await Client.connect("127.0.0.1", venue.port, keys[0])
            bob = await Client.connect("127.0.0.1", venue.port, keys[1])
            for i in (BTC, ETH):
                for k in range(8):
                    assert (await alice.place(i, Side.BUY, PRICE[i] - 10 * k, 3 + k)).kind == MsgType.EXEC_ACCEPTED
                    assert (await bob.place(i, Side.SELL, PRICE[i] + 10 + 10 * k, 2 + k)).kind == MsgType.EXEC_ACCEPTED
            await bob.place(BTC, Side.SELL, PRICE[BTC] - 10, 6, tif=Tif.IOC)  # takes two of alice's levels
            clients = [alice, bob]
            late = await MarketDataClient.connect("127.0.0.1", venue.md_port, multicast=(BASE, port))
            for i in (BTC, ETH):
                await late.subscribe(i)
            await alice.place(ETH, Side.BUY, PRICE[ETH] + 10, 2, tif=Tif.IOC)

            def matches(c: MarketDataClient) -> bool:
                return all(c.synced(i) and c.book(i).depth(s, 100) == _book(clients, i, s)
                           for i in (BTC, ETH) for s in (1, 2))

            await _until(lambda: matches(md) and matches(late) and matches(lossy) and len(trades) >= 3)
            assert all(v["gaps"] == 0 for v in md.stats().values())  # loopback with room: nothing lost
            got = sorted((int(t["instrument"]), int(t["qty_lots"])) for t in trades)
            assert got == [(BTC, 3), (BTC, 3), (ETH, 2)]  # every trade once
            assert dropped[0] > 0 and sum(v["gaps"] for v in lossy.stats().values()) > 0
            assert sum(v["resyncs"] for v in lossy.stats().values()) > 2  # healed from snapshots, not just joined
            for c in (md, lossy, late, alice, bob):
                await c.close()

        asyncio.run(asyncio.wait_for(run(), 90))
    finally:
        assert venue.stop() == 0
    assert "by UDP multicast" in venue.log.read_text() and group_address(BASE, 2) == "239.77.0.2"
