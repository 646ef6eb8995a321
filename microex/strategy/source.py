"""Market data for live runs: the `MarketDataSource` protocol and in-process implementations.

How it works. A source delivers MARKET record arrays (market.py) to one sink,
`on_market`, on the event loop the runtime runs on, and can answer depth
queries for the BookViews. The runtime does not care where the records come
from.

- `EngineEventsSource`: anything that sees the engine's EVENT records (an
  in-process engine, a consumer of the pipeline's outbound ring) calls
  `feed(events)`; a `BookFromEvents` keeps the books and the MARKET records go
  to the sink via `loop.call_soon` (a copy: the source's buffer is reused), so
  the sink never runs inside the feeder's call.
- `VenueTapSource`: an EngineEventsSource fed by an `InProcessVenue`'s engine
  link (tests and examples: the gateway gets each event chunk first, then the
  source, as execution reports leave a venue before its public market data).
- Over the SDK's MarketDataClient (microex/client/marketdata.py, the feed of
  the market-data stage): `MarketDataClientSource` in md_client_source.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import numpy as np

from microex.strategy.book_events import BookFromEvents

MarketSink = Callable[[np.ndarray], None]


class MarketDataSource(Protocol):
    def start(self, on_market: MarketSink) -> None:
        """Begin delivering MARKET record arrays to on_market (on the running event loop)."""

    def stop(self) -> None:
        """No more deliveries after this returns."""

    def depth(self, instrument: int, side: int, levels: int) -> list[tuple[int, int, int]]:
        """Best levels of one side, best first: (price, qty, orders)."""


class EngineEventsSource:
    def __init__(self, max_instruments: int = 256, max_levels: int = 1024) -> None:
        self.books = BookFromEvents(max_instruments, max_levels)
        self._sink: MarketSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.delivered = 0  # MARKET records handed to the sink

    def start(self, on_market: MarketSink) -> None:
        self._loop = asyncio.get_running_loop()
        self._sink = on_market

    def stop(self) -> None:
        self._sink = None

    def depth(self, instrument: int, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        return self.books.depth(instrument, side, levels)

    def feed(self, events: np.ndarray) -> None:
        """Engine EVENT records, in engine order (every chunk, so the books stay exact)."""
        md = self.books.apply(events)
        if len(md) and self._sink is not None:
            self._loop.call_soon(self._deliver, md.copy())

    def _deliver(self, md: np.ndarray) -> None:
        if self._sink is not None:
            self.delivered += len(md)
            self._sink(md)


class VenueTapSource(EngineEventsSource):
    """Market data from an InProcessVenue's engine (call start() after the venue started)."""

    def __init__(self, venue, max_instruments: int | None = None, max_levels: int = 1024) -> None:
        super().__init__(max_instruments or venue.engine.config.max_instruments, max_levels)
        self.link = venue.link
        self._gateway_sink = None

    def start(self, on_market: MarketSink) -> None:
        super().start(on_market)
        # the link has one consumer slot (the gateway's); chain behind it rather than replace it
        self._gateway_sink = self.link._on_events
        self.link._on_events = self._tap

    def _tap(self, events: np.ndarray) -> None:
        if self._gateway_sink is not None:
            self._gateway_sink(events)
        self.feed(events)

    def stop(self) -> None:
        super().stop()
        if self.link._on_events == self._tap:
            self.link._on_events = self._gateway_sink
