"""What both market-data clients (TCP: marketdata.py, gRPC: md_grpc.py) do with decoded feed events.

`FeedEvents` holds the callback lists (`on_book`, `on_trade`, `on_candle`,
`on_ticker`, `on_bbo`, `on_status`), the feed errors, and `wait_until`; `_dispatch`
turns one protocol's events for one received chunk (or one multicast datagram) into
callback calls. A callback that raises is logged and the others still run: one bad
consumer never stops a feed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from microex.client.md_protocol import (
    BookChanged,
    Error,
    MarketDataProtocol,
    Records,
    Status,
    Trades,
    Violation,
)
from microex.core.records import MdMsg

log = logging.getLogger("microex.client.marketdata")


class FeedEvents:
    def __init__(self) -> None:
        self.errors: list[Error] = []
        self.last_error: BaseException | None = None
        self.on_book: list[Callable] = []
        self.on_trade: list[Callable] = []
        self.on_candle: list[Callable] = []
        self.on_ticker: list[Callable] = []
        self.on_bbo: list[Callable] = []
        self.on_status: list[Callable] = []
        self._changed = asyncio.Event()

    def _add_callbacks(self, on_book: Callable | None, on_trade: Callable | None, on_candle: Callable | None) -> None:
        for cbs, cb in ((self.on_book, on_book), (self.on_trade, on_trade), (self.on_candle, on_candle)):
            if cb is not None:
                cbs.append(cb)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None = 10.0) -> None:
        """Until predicate() holds, re-checked after every chunk received; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _dispatch(self, proto: MarketDataProtocol, data: bytes, feed: Callable | None = None) -> Violation | None:
        """Feed `data` to `proto` (`feed`: which of its feeds, default proto.feed; proto.feed_datagram
        for a multicast datagram) and call the callbacks; returns the violation that makes the stream
        unusable (the caller drops or restarts it), if any. Waiters are woken either way."""
        for ev in (feed or proto.feed)(data):
            kind = type(ev)
            if kind is Trades:
                self._call(self.on_trade, *((r,) for r in ev.records))
            elif kind is BookChanged:
                if proto.books[ev.instrument].live:
                    self._call(self.on_book, (ev.instrument, ev.replica))
            elif kind is Records:
                cbs = {MdMsg.CANDLE: self.on_candle, MdMsg.TICKER: self.on_ticker, MdMsg.BBO: self.on_bbo}[ev.msg_type]
                self._call(cbs, *((r,) for r in ev.records))
            elif kind is Status:
                self._call(self.on_status, (ev,))
            elif kind is Error:
                self.errors.append(ev)
            elif kind is Violation and ev.closing:
                self.last_error = ConnectionError(f"market data stream unusable (reason {ev.reason})")
                self._changed.set()
                return ev
        self._changed.set()
        return None

    @staticmethod
    def _call(callbacks: list[Callable], *arg_tuples: tuple) -> None:
        for cb in callbacks:
            for args in arg_tuples:
                try:
                    cb(*args)
                except Exception:
                    log.exception("market data callback %r failed", cb)
