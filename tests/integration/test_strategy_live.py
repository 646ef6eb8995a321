"""The market maker example, live: the runtime on an event loop, orders through the SDK Client to an
InProcessVenue (risk mode), market data from the venue's engine events."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

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


def test_market_maker_live_against_an_in_process_venue():
    mod = load_example()
    venue_cfg = VenueConfig(instruments=(InstrumentSpec("SIM1", "B1", "USD"),), max_accounts=4)

    async def main():
        deposits = [(a, asset, DEPOSIT * 100_000) for a in (1, 2) for asset in (BASE, USD)]
        async with InProcessVenue(api_keys=KEYS, venue=venue_cfg, deposits=deposits) as venue:
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
            source = VenueTapSource(venue)
            stop = asyncio.Event()
            flow = asyncio.create_task(market_participant(market, stop))
            await LiveRunner(runtime, trader, source, settle_s=2.0).run(duration_s=1.0)
            stop.set()
            takers = await flow
            await asyncio.sleep(0.05)
            await market.close()
            await trader.close()
            return venue, runtime, mm, fills, first_reports, takers, source

    venue, runtime, mm, fills, first_reports, takers, source = asyncio.run(asyncio.wait_for(main(), 30))
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
