"""MarketView: the market-data side of the edge, over the stage's MarketState (issue #7).

How it works
- The replica's events go to `MarketState.apply` (microex/marketdata/state.py: per
  instrument L2 book, md_seq, 1s/1m/1h candles, 24h ticker). This module is the
  only one that touches MarketState, so a change of its API stays here.
- Depth update ids: an instrument's md_seq (+1 per level change and per trade) is
  Binance's update id. The REST snapshot's `lastUpdateId` is md_seq when it is
  taken; a diff stream (`DepthDiffs`, one per instrument and cadence) emits
  U = its previous u + 1 and u = md_seq now, with every level changed in between in
  its state now (qty 0: gone). So U/u chain without a gap, and the first event
  after any snapshot has U <= lastUpdateId + 1 <= u (or u <= lastUpdateId: drop it),
  exactly as Binance documents. Trades raise md_seq too: an id range may hold
  trades, which changes nothing for a client.
- Klines: 1s, 1m and 1h candles come from the stage; other Binance intervals are
  aggregated from them (3m..30m from 1m; 2h..1M from 1h; weeks start on Monday, as
  Binance's). Intervals with no trade have no candle (Binance would repeat the close).
- Seeding: a replica started from a snapshot seeds the books from the engine
  (`seed_books`), so depth is exact from the first request.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from microex.core.records import CandleInterval, MdKind
from microex.marketdata.state import MarketState

MS = 1_000_000
S1, M1, H1 = 1000, 60_000, 3_600_000
INTERVALS = {"1s": (CandleInterval.S1, S1), "1m": (CandleInterval.M1, M1), "3m": (CandleInterval.M1, 3 * M1),
             "5m": (CandleInterval.M1, 5 * M1), "15m": (CandleInterval.M1, 15 * M1),
             "30m": (CandleInterval.M1, 30 * M1), "1h": (CandleInterval.H1, H1), "2h": (CandleInterval.H1, 2 * H1),
             "4h": (CandleInterval.H1, 4 * H1), "6h": (CandleInterval.H1, 6 * H1),
             "8h": (CandleInterval.H1, 8 * H1), "12h": (CandleInterval.H1, 12 * H1),
             "1d": (CandleInterval.H1, 24 * H1), "3d": (CandleInterval.H1, 72 * H1),
             "1w": (CandleInterval.H1, 168 * H1), "1M": (CandleInterval.H1, 0)}
_MONDAY_OFFSET = 3 * 24 * H1  # the epoch was a Thursday


def bucket_start(ms: int, interval: str) -> int:
    width = INTERVALS[interval][1]
    if width == 0:  # calendar month
        d = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
        return int(dt.datetime(d.year, d.month, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    if interval == "1w":
        return (ms + _MONDAY_OFFSET) // width * width - _MONDAY_OFFSET
    return ms // width * width


def bucket_end(start: int, interval: str) -> int:
    """Last ms of the bucket starting at `start` (Binance's closeTime)."""
    width = INTERVALS[interval][1]
    if width == 0:
        d = dt.datetime.fromtimestamp(start / 1000, dt.timezone.utc)
        nxt = dt.datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=dt.timezone.utc)
        return int(nxt.timestamp() * 1000) - 1
    return start + width - 1


class DepthDiffs:
    """One diff-depth stream (an instrument at one cadence): changed levels since the last event."""

    def __init__(self, last_u: int) -> None:
        self.last_u = last_u
        self.changed: dict[tuple[int, int], int] = {}  # (side, price) -> qty now

    def take(self, md_seq: int) -> tuple[int, int, list, list] | None:
        """(U, u, bids, asks) with (price ticks, qty lots) pairs, or None if no level changed."""
        if not self.changed:
            return None
        bids = sorted(((p, q) for (s, p), q in self.changed.items() if s == 1), reverse=True)
        asks = sorted((p, q) for (s, p), q in self.changed.items() if s == 2)
        out = (self.last_u + 1, md_seq, bids, asks)
        self.last_u = md_seq
        self.changed = {}
        return out


class MarketView:
    def __init__(self, n_instruments: int, max_levels: int) -> None:
        self.state = MarketState(n_instruments, max_levels=max_levels)
        self.diffs: dict[tuple[int, str], DepthDiffs] = {}  # (instrument, "100ms" | "1000ms")
        self.bbo_changed: list[np.ndarray] = []  # MD_BBO records since the last take_bbo()

    def seed_books(self, engine) -> None:
        for i in range(1, self.state.n_instruments + 1):
            for side in (1, 2):
                levels = engine.depth(i, side, levels=engine.config.max_levels)
                if levels:
                    self.state.seed_book(i, side, levels)

    def apply(self, events: np.ndarray) -> None:
        out = self.state.apply(events)
        if len(out.bbo):
            self.bbo_changed.append(out.bbo.copy())
        if self.diffs and len(out.updates):
            lv = out.updates[out.updates["kind"] == MdKind.LEVEL]
            if len(lv):
                by_inst = {}
                for i, s, p, q in zip(lv["instrument"].tolist(), lv["side"].tolist(), lv["price_ticks"].tolist(),
                                      lv["qty_lots"].tolist()):
                    by_inst.setdefault(i, []).append((s, p, q))
                for (i, _), d in self.diffs.items():
                    for s, p, q in by_inst.get(i, ()):
                        d.changed[(s, p)] = q

    # -- depth ---------------------------------------------------------------------------------

    def md_seq(self, inst: int) -> int:
        return self.state.md_seq(inst)

    def book(self, inst: int, limit: int) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(lastUpdateId, bids, asks): (price ticks, qty lots), best first."""
        bp, bq, _ = self.state.levels(inst, 1, limit)
        ap, aq, _ = self.state.levels(inst, 2, limit)
        return self.md_seq(inst), list(zip(bp.tolist(), bq.tolist())), list(zip(ap.tolist(), aq.tolist()))

    def depth_stream(self, inst: int, cadence: str) -> DepthDiffs:
        key = (inst, cadence)
        d = self.diffs.get(key)
        if d is None:
            d = self.diffs[key] = DepthDiffs(self.md_seq(inst))
        return d

    def bbo(self, inst: int) -> tuple[int, int, int, int]:
        return self.state.bbo(inst)

    def take_bbo(self) -> list[tuple[int, int, int, int, int, int]]:
        """(instrument, md_seq, bid, bid qty, ask, ask qty) of every L1 change since the last call."""
        out = []
        for recs in self.bbo_changed:
            out.extend(zip(recs["instrument"].tolist(), recs["md_seq"].tolist(), recs["bid_price"].tolist(),
                           recs["bid_qty"].tolist(), recs["ask_price"].tolist(), recs["ask_qty"].tolist()))
        self.bbo_changed = []
        return out

    # -- candles and tickers -------------------------------------------------------------------

    def klines(self, inst: int, interval: str, start_ms: int | None = None, end_ms: int | None = None,
               limit: int = 500) -> list[list[int]]:
        """[open ms, open, high, low, close, volume lots, close ms, quote (ticks x lots), trades], oldest first."""
        base, _ = INTERVALS[interval]
        c = self.state.candle_history(inst, base)
        rows: list[list[int]] = []
        for t, o, h, lo, cl, v, q, n in zip((c["open_ts_ns"] // MS).tolist(), c["open"].tolist(),
                                            c["high"].tolist(), c["low"].tolist(), c["close"].tolist(),
                                            c["volume"].tolist(), c["quote_volume"].tolist(), c["trades"].tolist()):
            if n == 0:
                continue
            b = bucket_start(t, interval)
            if rows and rows[-1][0] == b:
                r = rows[-1]
                r[2], r[3], r[4], r[5], r[7], r[8] = max(r[2], h), min(r[3], lo), cl, r[5] + v, r[7] + q, r[8] + n
            else:
                rows.append([b, o, h, lo, cl, v, bucket_end(b, interval), q, n])
        if start_ms is not None:
            rows = [r for r in rows if r[0] >= start_ms]
            if end_ms is not None:
                rows = [r for r in rows if r[0] <= end_ms]
            return rows[:limit]
        if end_ms is not None:
            rows = [r for r in rows if r[0] <= end_ms]
        return rows[-limit:] if limit else []

    def tickers(self, now_ns: int) -> np.ndarray:
        """MD_TICKER per instrument (index i - 1): 24h open/high/low/last, volume, quote volume, trades, L1."""
        return self.state.tickers(now_ns)

    def close_candles(self, now_ns: int) -> None:
        self.state.close_candles(now_ns)
