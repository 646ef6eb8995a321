"""MarketState: the market-data stage's view of every instrument, fed by engine EVENT batches.

How it works
- Per instrument (ids 1..n_instruments): an md sequence number (+1 per published
  update: each level change, each trade), the L2 book replica (per side a sorted
  level array, marketdata/book.py; L1 is its top), the trade tape (the last
  `tape_len` trades, a ring), OHLCV candles for 1s, 1m and 1h (the running one and
  the last `candle_keep` - 1 closed ones per interval, a ring; at least 1441 so the
  24h ticker can be summed from the 1m candles), and the ticker computed on demand.
- `apply(events)` is one kernel call over the whole batch (state_kernels.apply_events)
  and returns views of preallocated output arrays: the MD_UPDATE increments to
  publish, the CLOSED MD_CANDLEs and the MD_BBO changes. The views stay valid until
  the next call; outputs grow to fit a batch before the call, so one call always
  takes the whole batch.
- `snapshot(i, depth)` gives the records of a book with the md_seq it is consistent
  with: between two apply() calls every update up to that seq has been returned, so
  a subscriber that takes the snapshot and then the increments after it is exact.
- Single writer: only apply()/close_candles()/running_candles() change the arrays.
Invariants: the book replica equals the engine's book after the same events (tests
compare with MatchingEngine.depth); md_seq is the number of updates ever published.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from microex.core.records import (CANDLE_WIDTH_NS, EVENT, MD_BBO, MD_BOOK, MD_CANDLE, MD_TICKER, MD_UPDATE,
                                  BookCause, BookFlag, CandleInterval, MdKind, MdMsg)
from microex.marketdata import state_kernels as K
from microex.marketdata.book import side_levels

DAY_NS = 86_400_000_000_000
SEQ_MASK = 0xFFFFFFFF


class MdOutput(NamedTuple):
    """What one apply() published (views, valid until the next apply)."""

    updates: np.ndarray  # MD_UPDATE, in event order
    candles: np.ndarray  # MD_CANDLE closed by these trades
    bbo: np.ndarray  # MD_BBO of the instruments whose L1 changed


class MarketState:
    def __init__(self, n_instruments: int, max_levels: int = 4096, tape_len: int = 1024,
                 candle_keep: int = 1536, batch: int = 8192) -> None:
        if n_instruments < 1 or max_levels < 1 or tape_len < 1:
            raise ValueError("n_instruments, max_levels and tape_len must be positive")
        if candle_keep < 1441:
            raise ValueError("candle_keep must be at least 1441 (the 24h ticker sums 1m candles)")
        n = n_instruments + 1  # row 0 unused: instrument ids index directly
        self.n_instruments = n_instruments
        self.max_levels = max_levels
        self.keys = np.zeros((n, 2, max_levels), np.int64)
        self.qty = np.zeros((n, 2, max_levels), np.int64)
        self.cnt = np.zeros((n, 2, max_levels), np.int64)
        self.nlev = np.zeros((n, 2), np.int64)
        self.inst = np.zeros((n, K.I_FIELDS), np.int64)
        self.tape = np.zeros((n, tape_len, K.T_FIELDS), np.int64)
        self.candles = np.zeros((n, K.N_INTERVALS, candle_keep, K.C_FIELDS), np.int64)
        self.cn = np.zeros((n, K.N_INTERVALS), np.int64)
        self.widths = np.array([CANDLE_WIDTH_NS[CandleInterval(j + 1)] for j in range(K.N_INTERVALS)], np.int64)
        self.stats = np.zeros(K.S_FIELDS, np.int64)
        self._touched = np.zeros(n, np.int64)
        self._res = np.zeros(4, np.int64)
        self._bbo = np.zeros(n, MD_BBO)
        self._ticker = np.zeros(n_instruments, MD_TICKER)
        self._timer_candles = np.zeros(n * K.N_INTERVALS, MD_CANDLE)
        self._alloc(batch)

    def _alloc(self, batch: int) -> None:
        self._upd = np.zeros(batch, MD_UPDATE)
        self._cdl = np.zeros(K.N_INTERVALS * batch + K.N_INTERVALS, MD_CANDLE)

    # -- feeding -------------------------------------------------------------------------------

    def apply(self, events: np.ndarray, min_seq: int = 0) -> MdOutput:
        """Apply a batch of EVENT records (events of commands with seq <= min_seq are skipped)."""
        if events.dtype != EVENT:
            raise TypeError(f"events must be EVENT records, not {events.dtype}")
        n = len(events)
        if n > len(self._upd):
            self._alloc(max(n, 2 * len(self._upd)))
        if not events.flags.c_contiguous:
            events = np.ascontiguousarray(events)
        res = self._res
        K.apply_events(events, 0, n, min_seq, self.keys, self.qty, self.cnt, self.nlev, self.inst, self.tape,
                       self.candles, self.cn, self.widths, self._upd, self._cdl, self._bbo, self._touched, res,
                       self.stats)
        assert res[K.R_PROCESSED] == n, "outputs are sized to take a whole batch"
        return MdOutput(self._upd[: res[K.R_UPDATES]], self._cdl[: res[K.R_CANDLES]], self._bbo[: res[K.R_BBO]])

    def close_candles(self, now_ns: int, grace_ns: int = 0) -> np.ndarray:
        """Close the running candles whose bucket ended `grace_ns` before now (CLOSED MD_CANDLEs, a view)."""
        k = K.close_due(now_ns, grace_ns, self.candles, self.cn, self.widths, self._timer_candles)
        return self._timer_candles[:k]

    def running_candles(self, only_changed: bool = True) -> np.ndarray:
        """Running (not yet closed) candles as MD_CANDLE records (flags 0), a view."""
        k = K.running_candles(self.candles, self.cn, self._timer_candles, only_changed)
        return self._timer_candles[:k]

    def tickers(self, now_ns: int) -> np.ndarray:
        """The 24h rolling ticker of every instrument (MD_TICKER, index i - 1), a view."""
        K.compute_tickers(now_ns, DAY_NS, self.candles, self.cn, self.widths, self.inst, self.keys, self.qty,
                          self.nlev, self._ticker)
        return self._ticker

    # -- reading -------------------------------------------------------------------------------

    def md_seq(self, instrument: int) -> int:
        return int(self.inst[instrument, K.I_MD_SEQ])

    def levels(self, instrument: int, side: int, depth: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prices, qtys, order counts) of one side, best first (depth 0: all)."""
        s = side - 1
        return side_levels(self.keys[instrument, s], self.qty[instrument, s], self.cnt[instrument, s],
                           int(self.nlev[instrument, s]), side, depth)

    def depth(self, instrument: int, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        """Like MatchingEngine.depth: top `levels` of a side, best first, (price, qty, orders)."""
        p, q, c = self.levels(instrument, side, levels)
        return list(zip(p.tolist(), q.tolist(), c.tolist()))

    def bbo(self, instrument: int) -> tuple[int, int, int, int]:
        """(bid, bid qty, ask, ask qty) of the book now (0s for an empty side)."""
        bp, bq, _ = self.levels(instrument, 1, 1)
        ap, aq, _ = self.levels(instrument, 2, 1)
        return (int(bp[0]) if len(bp) else 0, int(bq[0]) if len(bq) else 0,
                int(ap[0]) if len(ap) else 0, int(aq[0]) if len(aq) else 0)

    def bbo_record(self, instrument: int) -> np.ndarray:
        r = np.zeros(1, MD_BBO)
        seq = self.md_seq(instrument)
        r["length"], r["msg_type"], r["seq"], r["md_seq"] = MD_BBO.itemsize, MdMsg.BBO, seq & SEQ_MASK, seq
        r["ts_ns"] = self.inst[instrument, K.I_LAST_TS]
        r["bid_price"], r["bid_qty"], r["ask_price"], r["ask_qty"] = self.bbo(instrument)
        r["instrument"] = instrument
        return r

    def snapshot(self, instrument: int, depth: int = 0, cause: int = BookCause.REQUEST) -> tuple[int, bytes]:
        """(md_seq, frames): SNAPSHOT_BEGIN, one SNAPSHOT_LEVEL per level (bids best first, then
        asks best first; `depth` levels per side, 0: all), SNAPSHOT_END."""
        seq = self.md_seq(instrument)
        row = self.inst[instrument]
        truncated = depth > 0 and any(self.nlev[instrument, s] > depth for s in (0, 1))
        return seq, snapshot_frames(instrument, seq, int(row[K.I_LAST_TS]), int(row[K.I_LAST_ENGINE_SEQ]),
                                    self.levels(instrument, 1, depth), self.levels(instrument, 2, depth), depth,
                                    truncated, cause)

    def trades(self, instrument: int, last: int | None = None) -> np.ndarray:
        """The tape: the last `last` (default: all kept) trades as MD_UPDATE records, oldest first."""
        tape_len = self.tape.shape[1]
        total = int(self.inst[instrument, K.I_TAPE_N])
        k = min(total, tape_len, tape_len if last is None else last)
        slots = np.arange(total - k, total) % tape_len
        t = self.tape[instrument, slots]
        out = np.zeros(k, MD_UPDATE)
        out["length"], out["msg_type"] = 64, MdMsg.INCREMENT
        out["md_seq"] = t[:, K.T_MD_SEQ]
        out["seq"] = t[:, K.T_MD_SEQ] & SEQ_MASK
        out["ts_ns"], out["engine_seq"] = t[:, K.T_TS], t[:, K.T_ENGINE_SEQ]
        out["price_ticks"], out["qty_lots"], out["count"] = t[:, K.T_PRICE], t[:, K.T_QTY], t[:, K.T_TRADE_ID]
        out["side"], out["instrument"], out["kind"] = t[:, K.T_SIDE], instrument, MdKind.TRADE
        return out

    def candle_history(self, instrument: int, interval: int) -> np.ndarray:
        """Every kept candle of one interval, oldest first, the running one last (flags 0)."""
        j = int(interval) - 1
        keep = self.candles.shape[2]
        total = int(self.cn[instrument, j])
        k = min(total, keep)
        c = self.candles[instrument, j, np.arange(total - k, total) % keep]
        out = np.zeros(k, MD_CANDLE)
        out["length"], out["msg_type"] = MD_CANDLE.itemsize, MdMsg.CANDLE
        out["md_seq"], out["seq"] = c[:, K.C_MD_SEQ], c[:, K.C_MD_SEQ] & SEQ_MASK
        for name, f in (("open_ts_ns", K.C_OPEN_TS), ("open", K.C_OPEN), ("high", K.C_HIGH), ("low", K.C_LOW),
                        ("close", K.C_CLOSE), ("volume", K.C_VOLUME), ("quote_volume", K.C_QUOTE),
                        ("trades", K.C_TRADES)):
            out[name] = c[:, f]
        out["instrument"], out["interval"] = instrument, interval
        out["flags"] = np.where(c[:, K.C_RUNNING] == 1, 0, 1)
        return out

    def seed_book(self, instrument: int, side: int, levels: list[tuple[int, int, int]]) -> None:
        """Start-up only: set one side's levels (price, qty, orders) without publishing anything."""
        s = side - 1
        levels = sorted(levels, key=lambda lv: lv[0] if side == 1 else -lv[0])
        n = len(levels)
        if n > self.max_levels:
            raise ValueError(f"{n} levels do not fit max_levels={self.max_levels}")
        self.keys[instrument, s, :n] = [p if side == 1 else -p for p, _, _ in levels]
        self.qty[instrument, s, :n] = [q for _, q, _ in levels]
        self.cnt[instrument, s, :n] = [c for _, _, c in levels]
        self.nlev[instrument, s] = n
        bid, bq, ask, aq = self.bbo(instrument)
        self.inst[instrument, [K.I_BID, K.I_BID_QTY, K.I_ASK, K.I_ASK_QTY]] = bid, bq, ask, aq


def snapshot_frames(instrument: int, seq: int, ts_ns: int, engine_seq: int, bids: tuple, asks: tuple, depth: int,
                    truncated: bool, cause: int) -> bytes:
    """A FULL book's frames from its sides' (prices, qtys, counts), best first."""
    nb, na = len(bids[0]), len(asks[0])
    lv = np.zeros(nb + na, MD_UPDATE)
    lv["length"], lv["msg_type"], lv["seq"], lv["md_seq"] = 64, MdMsg.SNAPSHOT_LEVEL, seq & SEQ_MASK, seq
    lv["ts_ns"], lv["engine_seq"], lv["instrument"], lv["kind"] = ts_ns, engine_seq, instrument, MdKind.LEVEL
    for side, (p, q, c), sl in ((1, bids, slice(0, nb)), (2, asks, slice(nb, nb + na))):
        lv["price_ticks"][sl], lv["qty_lots"][sl], lv["count"][sl], lv["side"][sl] = p, q, c, side
    flags = BookFlag.FULL | (BookFlag.TRUNCATED if truncated else 0)
    begin, end = book_frames(instrument, seq, 0, ts_ns, nb + na, depth, flags, cause)
    return begin + lv.tobytes() + end


def book_frames(instrument: int, md_seq: int, first_seq: int, ts_ns: int, levels: int, depth: int, flags: int,
                cause: int) -> tuple[bytes, bytes]:
    """The SNAPSHOT_BEGIN and SNAPSHOT_END frames around `levels` SNAPSHOT_LEVEL frames."""
    r = np.zeros(2, MD_BOOK)
    r["length"], r["msg_type"] = MD_BOOK.itemsize, (MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_END)
    r["seq"], r["md_seq"], r["first_seq"], r["ts_ns"] = md_seq & SEQ_MASK, md_seq, first_seq, ts_ns
    r["instrument"], r["levels"], r["depth"], r["flags"], r["cause"] = instrument, levels, depth, flags, cause
    b = r.tobytes()
    return b[:MD_BOOK.itemsize], b[MD_BOOK.itemsize:]
