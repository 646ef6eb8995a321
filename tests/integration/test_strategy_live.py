"""The market maker example, live: the runtime on an event loop, orders through the SDK Client to an
InProcessVenue (risk mode); market data either tapped from the venue's engine events (VenueTapSource) or
received by the SDK's MarketDataClient from a feed (the market-data stage's MarketState and Fanout over
TCP) through MarketDataClientSource."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from microex.client import Client, MsgType, Side, Tif
from microex.core.venue import InstrumentSpec, VenueConfig
from microex.gateway.inprocess import InProcessVenue
from microex.strategy import Limits, StopReason, StrategyRuntime
from microex.strategy.live import LiveRunner
from microex.strategy.source import VenueTapSource

KEYS = {b"market": 1, b"strategy": 2}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "strategy_market_maker.py"
BASE, USD = 1, 2  # asset ids: B1, USD
DEPOSIT = 1_000_000


def load_example():
    spec = importlib.util.spec_from_file_location("strategy_market_maker_live", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def market_participant(client: Client, stop: asyncio.Event, seed: int = 7) -> int:
    """A ladder around 10,000 refreshed now and then, and IOC takers through it: fills for the quotes."""
    import random

    rnd = random.Random(seed)
    fair, resting, takers = 10_000, [], 0
    while not stop.is_set():
        for cid in resting:
            client.cancel_nowait(cid)
        fair += rnd.choice((-1, 0, 1))
        resting = [client.place_nowait(1, side, fair + sign * (3 + k), rnd.randint(1, 10))
                   for k in range(5) for side, sign in ((Side.BUY, -1), (Side.SELL, 1))]
        for _ in range(3):
            await asyncio.sleep(0.01)
            side = rnd.choice((Side.BUY, Side.SELL))
            client.place_nowait(1, side, fair + (6 if side == Side.BUY else -6), rnd.randint(1, 3), tif=Tif.IOC)
            takers += 1
    return takers


class FeedServer:
    """A minimal market-data feed for the test: the stage's MarketState and Fanout over asyncio TCP, fed
    the venue engine's event chunks (behind the gateway's consumer, as VenueTapSource is)."""

    def __init__(self, venue, n_instruments: int = 1) -> None:
        from microex.marketdata.fanout import Fanout
        from microex.marketdata.state import MarketState

        self.state = MarketState(n_instruments)
        self.fanout = Fanout(self.state)
        self.link, self.prev = venue.link, venue.link._on_events
        self.link._on_events = self._tap
        self.ids = 0

    def _tap(self, events) -> None:
        self.prev(events)
        out = self.state.apply(events)
        self.fanout.publish(out.updates, out.bbo, out.candles)

    async def start(self) -> int:
        self.server = await asyncio.get_running_loop().create_server(lambda: _FeedConn(self), "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        self.server.close()


class _FeedConn(asyncio.Protocol):
    def __init__(self, feed: FeedServer) -> None:
        from microex.protocol.md_binary import CLIENT_MESSAGES, MdDecoder

        self.feed, self.decoder = feed, MdDecoder(CLIENT_MESSAGES)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.feed.ids += 1
        self.sub_id = self.feed.ids
        self.feed.fanout.add(self.sub_id, self)

    # the Fanout's Transport
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self) -> None:
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        from microex.core.records import MdMsg

        for item in self.decoder.feed(data):
            msg_type = getattr(item, "msg_type", None)
            for r in getattr(item, "records", ()):
                if msg_type == MdMsg.SUBSCRIBE:
                    self.feed.fanout.subscribe(self.sub_id, int(r["instrument"]), int(r["depth"]), int(r["flags"]),
                                               int(r["seq"]))
                elif msg_type == MdMsg.SNAPSHOT_REQUEST:
                    self.feed.fanout.snapshot_request(self.sub_id, int(r["instrument"]), int(r["depth"]),
                                                      int(r["seq"]))

    def connection_lost(self, exc) -> None:
        self.feed.fanout.remove(self.sub_id)


def run_live(market_data: str):
    """The market maker for 1 s against an InProcessVenue; market data from the engine tap or the feed."""
    mod = load_example()
    venue_cfg = VenueConfig(instruments=(InstrumentSpec("SIM1", "B1", "USD"),), max_accounts=4)

    async def main():
        deposits = [(a, asset, DEPOSIT * 100_000) for a in (1, 2) for asset in (BASE, USD)]
        async with InProcessVenue(api_keys=KEYS, venue=venue_cfg, deposits=deposits) as venue:
            md_client = feed = None
            if market_data == "tap":
                source = VenueTapSource(venue)
            else:
                from microex.client.marketdata import MarketDataClient
                from microex.strategy.md_client_source import MarketDataClientSource

                feed = FeedServer(venue)
                md_client = await MarketDataClient.connect("127.0.0.1", await feed.start())
                source = MarketDataClientSource(md_client, [1])
                await source.subscribe_all()
                await md_client.wait_synced(1)
            market = await Client.connect(venue.host, venue.port, b"market")
            trader = await Client.connect(venue.host, venue.port, b"strategy")
            fills, first_reports = [], {}

            @trader.on_report
            def seen(r):  # an independent record of what the venue said
                first_reports.setdefault(r.client_order_id, r.kind)
                if r.kind == MsgType.EXEC_FILL:
                    fills.append(r)

            runtime = StrategyRuntime(max_instruments=1)
            mm = mod.MarketMaker()
            runtime.add(mm, [1], Limits(max_position=60, max_order_rate=2_000, max_loss=10**9))
            stop = asyncio.Event()
            flow = asyncio.create_task(market_participant(market, stop))
            await LiveRunner(runtime, trader, source, settle_s=2.0).run(duration_s=1.0)
            stop.set()
            takers = await flow
            await asyncio.sleep(0.05)
            depth_seen = None
            if md_client is not None:  # the replica the strategy reads through BookView.depth is the venue's book
                await md_client.wait_until(lambda: md_client.book(1).md_seq == feed.state.md_seq(1), 5)
                depth_seen = (runtime.books[1].depth(1, 50), runtime.books[1].depth(2, 50),
                              venue.engine.depth(1, 1, 50), venue.engine.depth(1, 2, 50))
                await md_client.close()
                feed.close()
            await market.close()
            await trader.close()
            return venue, runtime, mm, fills, first_reports, takers, source, depth_seen

    return asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("market_data", ["tap", "feed"])
def test_market_maker_live_against_an_in_process_venue(market_data):
    venue, runtime, mm, fills, first_reports, takers, source, depth_seen = run_live(market_data)
    slot = runtime.slots[0]
    assert takers > 20 and source.delivered > 50
    assert slot.reason == StopReason.NONE and slot.active, slot.error
    assert slot.counts["orders"] > 5 and runtime.delivered[0] > 50
    # every order was acknowledged, and the runtime saw exactly the venue's answers
    assert slot.counts["acks"] + slot.counts["rejects"] >= slot.counts["orders"]
    ours = [cid for cid in first_reports if cid >> 32 == 1]
    assert len(ours) == slot.counts["orders"]
    assert all(first_reports[cid] in (MsgType.EXEC_ACCEPTED, MsgType.EXEC_REJECTED) for cid in ours)
    assert not slot.orders and runtime.foreign_reports == 0  # all cancelled at the end, and confirmed
    # positions equal the fills, and the venue's balances say the same
    assert fills, "no fills in a second of taker flow"
    net = sum(r.qty_lots if r.side == Side.BUY else -r.qty_lots for r in fills)
    assert mm.position(1) == net == runtime.pnl.position(0, 1)
    assert slot.counts["fills"] == len(fills)
    bal = venue.engine.balances()
    assert int(bal[2, BASE].sum()) == DEPOSIT * 100_000 + net
    cash = sum((r.qty_lots if r.side == Side.SELL else -r.qty_lots) * r.price_ticks for r in fills)
    assert int(bal[2, USD].sum()) == DEPOSIT * 100_000 + cash
    # latency was recorded on both paths
    assert runtime.ttt.samples(0) > 0 and runtime.ack.samples(0) >= slot.counts["orders"] - 1
    if depth_seen is not None:
        bids, asks, engine_bids, engine_asks = depth_seen
        assert bids == engine_bids and asks == engine_asks and bids and asks
