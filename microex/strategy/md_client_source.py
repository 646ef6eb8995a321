"""MarketDataClientSource: the runtime's market data from the SDK's MarketDataClient (live mode).

How it works. The MarketDataClient (microex/client/marketdata.py) keeps an exact
OrderBookReplica per subscribed instrument (snapshot + increments, gaps healed)
and calls `on_book(instrument, replica)` once per received chunk that changed a
synced book, and `on_trade(record)` for each trade (an MD_UPDATE record of kind
TRADE). This adapter turns each call into one MARKET record (market.py) and
hands it to the runtime at once, in the client's callback (no extra loop hop:
tick-to-trade starts when the client delivers). A BOOK record carries the
replica's top of book and its md_seq as `seq` (ts_ns 0: a replica has no time);
a TRADE record the trade's ts_ns, md_seq, price, qty and aggressor side.
`depth()` reads the client's replicas, so BookView.depth() is the full book.

Invariants: the source only adds callbacks to the client (and removes them in
stop()); subscriptions are the caller's (`await subscribe_all()` is a shortcut);
records go out in the order the client called back.
"""

from __future__ import annotations

import numpy as np

from microex.strategy.market import MARKET, MdKind
from microex.strategy.source import MarketSink

_BOOK, _TRADE = int(MdKind.BOOK), int(MdKind.TRADE)


class MarketDataClientSource:
    def __init__(self, client, instruments=()) -> None:
        self.client = client
        self.instruments = tuple(instruments)
        self._sink: MarketSink | None = None
        self._one = np.zeros(1, dtype=MARKET)  # reused: the runtime keeps no reference to a chunk
        self.delivered = 0

    async def subscribe_all(self) -> None:
        for i in self.instruments:
            await self.client.subscribe(i)

    def start(self, on_market: MarketSink) -> None:
        self._sink = on_market
        self.client.on_book.append(self._on_book)
        self.client.on_trade.append(self._on_trade)

    def stop(self) -> None:
        self._sink = None
        for cbs, cb in ((self.client.on_book, self._on_book), (self.client.on_trade, self._on_trade)):
            if cb in cbs:
                cbs.remove(cb)

    def depth(self, instrument: int, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        replica = self.client.book(instrument)
        return replica.depth(side, levels) if replica is not None else []

    def _on_book(self, instrument: int, replica) -> None:
        if self._sink is None:
            return
        bid, bid_qty = replica.best_bid()
        ask, ask_qty = replica.best_ask()
        # MARKET fields: ts seq bid bid_qty ask ask_qty price qty instrument kind side
        self._one[0] = (0, replica.md_seq, bid, bid_qty, ask, ask_qty, 0, 0, instrument, _BOOK, 0)
        self.delivered += 1
        self._sink(self._one)

    def _on_trade(self, rec) -> None:
        if self._sink is None:
            return
        self._one[0] = (int(rec["ts_ns"]), int(rec["md_seq"]), 0, 0, 0, 0, int(rec["price_ticks"]),
                        int(rec["qty_lots"]), int(rec["instrument"]), _TRADE, int(rec["side"]))
        self.delivered += 1
        self._sink(self._one)
