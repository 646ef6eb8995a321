"""Live trading: the runtime on an asyncio loop, orders through the SDK Client.

How it works. `ClientLink` is the runtime's OrderLink over a logged-in
`microex.client.Client`: each order is one binary frame written at once
(`place_nowait` with the strategy's own client order id, `cancel_nowait`, and
a MODIFY frame written the same way cancel_nowait writes its CANCEL: the SDK
has no modify_nowait yet); nothing awaits, so a callback never yields the
loop. Reports come back through `client.on_report(runtime.on_report)`.

`LiveRunner.run()` wires a runtime, a client and a `MarketDataSource`
(source.py), starts the strategies, runs their timers every `timer_ms`, and at
the end (duration, or the `stop` event) cancels every open order and waits up
to `settle_s` for the venue to confirm, so positions are final when it returns.
The runtime's clock is time.monotonic_ns; one event loop runs everything.
A send on a lost connection (ConnectionError) is not an error of the
strategy: the order is dropped and counted in its `send_errors`.
"""

from __future__ import annotations

import asyncio

from microex.strategy.runtime import StrategyRuntime
from microex.strategy.source import MarketDataSource


class ClientLink:
    def __init__(self, client) -> None:
        self.client = client
        self._modify_nowait = getattr(client, "modify_nowait", None)

    def new_order(self, cid, instrument, side, price_ticks, qty_lots, ord_type, tif, flags) -> None:
        self.client.place_nowait(instrument, side, price_ticks, qty_lots, ord_type, tif, flags, client_order_id=cid)

    def cancel(self, cid) -> None:
        self.client.cancel_nowait(cid)

    def modify(self, cid, price_ticks, qty_lots) -> None:
        if self._modify_nowait is not None:
            self._modify_nowait(cid, price_ticks, qty_lots)
            return
        link = self.client._live()  # raises ConnectionError when not logged in, as cancel_nowait does
        link.transport.write(link.proto.modify(cid, price_ticks, qty_lots))


class LiveRunner:
    def __init__(self, runtime: StrategyRuntime, client, source: MarketDataSource, timer_ms: float = 1.0,
                 settle_s: float = 1.0) -> None:
        self.runtime, self.client, self.source = runtime, client, source
        self.timer_s = timer_ms / 1000
        self.settle_s = settle_s

    async def run(self, duration_s: float | None = None, stop: asyncio.Event | None = None) -> None:
        rt = self.runtime
        rt.attach(ClientLink(self.client))
        self.client.on_report(rt.on_report)
        if hasattr(self.source, "depth"):
            rt.set_depth(self.source.depth)
        self.source.start(rt.on_market)
        loop = asyncio.get_running_loop()
        end = None if duration_s is None else loop.time() + duration_s
        try:
            rt.start()
            while (end is None or loop.time() < end) and not (stop is not None and stop.is_set()):
                await asyncio.sleep(self.timer_s)
                rt.on_timer()
        finally:
            self.source.stop()
            rt.cancel_everything()
            await self.settled(self.settle_s)

    async def settled(self, timeout_s: float) -> bool:
        """Until no strategy has an open order (True) or timeout_s passed (False)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while any(s.orders for s in self.runtime.slots):
            if loop.time() >= end or not self.client.connected:
                return False
            await asyncio.sleep(0.005)
        return True
