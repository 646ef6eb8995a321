"""MarketState: its kernels against the plain-Python twin, and its book against the engine's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.records import (MD_BOOK, MD_UPDATE, BookFlag, CandleInterval, EventKind, MdKind, MdMsg, EVENT)
from microex.marketdata.reference import MarketReference
from microex.marketdata.state import DAY_NS, MarketState
from microex.perf.workload import match_mix
from microex.protocol.md_binary import MdDecoder, SERVER_MESSAGES

from tests.unit.marketdata._streams import T0, chunks, engine, random_commands


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and len(a) == len(b)
    assert a.tobytes() == b.tobytes(), "records differ"


def _books_equal(ms: MarketState, eng, n_inst: int) -> None:
    for i in range(1, n_inst + 1):
        for side in (1, 2):
            assert ms.depth(i, side, 10**6) == eng.depth(i, side, 10**6), (i, side)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 1500), spread=st.integers(0, 30),
       step=st.sampled_from([0, 1_000_000, 300_000_000, 5_000_000_000, 400_000_000_000]))
def test_kernel_equals_twin_and_engine_on_random_streams(seed, n, spread, step):
    _differential(seed, n, spread, step)


@pytest.mark.parametrize("seed,spread,step", [(1, 5, 50_000_000), (2, 25, 3_000_000_000)])
def test_kernel_equals_twin_on_long_streams(seed, spread, step):
    _differential(seed, 8000, spread, step)


def _differential(seed, n, spread, step):
    eng = engine()
    events = eng.process(random_commands(seed, n, spread=spread, max_step_ns=step))
    ms, ref = MarketState(3), MarketReference(3)
    rng = np.random.default_rng(seed)
    for part in chunks(events, rng):
        out = ms.apply(part)
        ru, rc, rb = ref.apply(part)
        _same(out.updates, ru)
        _same(out.candles, rc)
        _same(out.bbo, rb)
    _books_equal(ms, eng, 3)
    for i in (1, 2, 3):
        assert ms.depth(i, 1, 10**6) == ref.depth(i, 1, 10**6)
        n_updates = int(((events["kind"] == EventKind.TRADE) & (events["instrument"] == i)).sum())
        assert ms.md_seq(i) >= n_updates  # every trade is an update, and level changes too
    now = int(events["ts_ns"].max()) + 1 if len(events) else T0
    _same(ms.tickers(now), ref.tickers(now))
    _same(ms.running_candles(), ref.running_candles())
    _same(ms.running_candles(only_changed=False), ref.running_candles(only_changed=False))
    for later in (now + 500_000_000, now + 61_000_000_000, now + DAY_NS):
        _same(ms.close_candles(later), ref.close_candles(later))
        _same(ms.tickers(later), ref.tickers(later))


def test_match_mix_book_equals_the_engine_and_md_seq_counts_updates():
    w = match_mix(20_000, seed=3)
    eng = engine(instruments=1, max_levels=1 << 14)
    eng.process(w.setup)
    events = eng.process(w.cmds)
    ms = MarketState(1, max_levels=1 << 14)
    ms.apply(engine(1, 1 << 14).process(w.setup))
    published = 0
    for part in chunks(events, np.random.default_rng(1), 4096):
        out = ms.apply(part)
        published += len(out.updates)
        assert (np.diff(out.updates["md_seq"]) == 1).all()  # one instrument: consecutive seqs
    _books_equal(ms, eng, 1)
    trades = int((events["kind"] == EventKind.TRADE).sum())
    levels = int((events["kind"] == EventKind.LEVEL).sum())
    assert trades <= published <= trades + levels
    assert ms.trades(1)[-1]["count"] == ms.inst[1, 1]  # the tape's last trade id is the trade count


def test_events_up_to_min_seq_are_skipped():
    cmds = random_commands(5, 400)
    full = engine().process(cmds)
    eng = engine()
    head = eng.process(cmds[:250])
    ms = MarketState(3)
    ms.apply(head)
    seq_before = [ms.md_seq(i) for i in (1, 2, 3)]
    out = ms.apply(full, min_seq=250)  # a stream that starts before the state's seq
    assert (out.updates["engine_seq"] > 250).all()
    ms2 = MarketState(3)
    ms2.apply(full)
    for i in (1, 2, 3):
        assert ms.depth(i, 1, 100) == ms2.depth(i, 1, 100) and ms.depth(i, 2, 100) == ms2.depth(i, 2, 100)
        assert ms.md_seq(i) == ms2.md_seq(i) and ms.md_seq(i) >= seq_before[i - 1]
    assert ms.stats[0] > 0


def _trade(ts, price, qty, inst=1, seq=1):
    e = np.zeros(1, EVENT)
    e["kind"], e["ts_ns"], e["price_ticks"], e["qty_lots"], e["instrument"], e["side"], e["seq"] = (
        EventKind.TRADE, ts, price, qty, inst, 1, seq)
    return e


def test_candles_and_ticker_values():
    ms = MarketState(2)
    s = 1_000_000_000
    base = 1_000 * 86_400 * s  # a day boundary: every bucket starts here
    trades = [(base + 0, 100, 2), (base + s // 2, 105, 1), (base + s + 1, 99, 3), (base + 61 * s, 101, 1),
              (base + 61 * s, 90, 1)]
    closed = []
    for k, (ts, p, q) in enumerate(trades):
        closed.append(ms.apply(_trade(ts, p, q, seq=k + 1)).candles.copy())
    closed = np.concatenate(closed)
    one_s = closed[closed["interval"] == CandleInterval.S1]
    assert one_s[["open_ts_ns", "open", "high", "low", "close", "volume", "trades"]].tolist() == [
        (base, 100, 105, 100, 105, 3, 2), (base + s, 99, 99, 99, 99, 3, 1)]
    assert (one_s["flags"] == 1).all() and one_s["quote_volume"].tolist() == [305, 297]
    one_m = closed[closed["interval"] == CandleInterval.M1]
    assert one_m[["open", "high", "low", "close", "volume"]].tolist() == [(100, 105, 99, 99, 6)]
    running = ms.running_candles()
    assert sorted(running[["interval", "open", "close", "trades"]].tolist()) == [(1, 101, 90, 2), (2, 101, 90, 2),
                                                                                (3, 100, 90, 5)]
    assert len(ms.running_candles()) == 0  # nothing changed since
    t = ms.tickers(base + 62 * s)[0]
    assert (t["open"], t["high"], t["low"], t["last"], t["volume"], t["trades"]) == (100, 105, 90, 90, 8, 5)
    assert ms.tickers(base + 62 * s)[1]["trades"] == 0
    # a day later only the second minute is in the window; two days later nothing is
    t = ms.tickers(base + DAY_NS + 61 * s)[0]
    assert (t["open"], t["high"], t["low"], t["volume"], t["trades"]) == (101, 101, 90, 2, 2)
    t = ms.tickers(base + 2 * DAY_NS)[0]
    assert (t["open"], t["high"], t["low"], t["last"], t["volume"]) == (90, 90, 90, 90, 0)
    # the timer closes what is due, once; a late trade never reopens a closed bucket
    due = ms.close_candles(base + 62 * s)
    assert due[["interval", "open_ts_ns"]].tolist() == [(1, base + 61 * s)]
    assert len(ms.close_candles(base + 62 * s)) == 0
    ms.apply(_trade(base + 61 * s + 5, 95, 1, seq=9))
    last_1s = ms.candle_history(1, CandleInterval.S1)[-1]
    assert last_1s["open_ts_ns"] == base + 62 * s and last_1s["flags"] == 0


def test_snapshot_frames_decode_to_the_book():
    eng = engine()
    events = eng.process(random_commands(11, 2000, spread=20))
    ms = MarketState(3)
    ms.apply(events)
    for depth in (0, 3):
        seq, frames = ms.snapshot(2, depth)
        items = MdDecoder(SERVER_MESSAGES).feed(frames)
        assert [t for t, _ in items] == [MdMsg.SNAPSHOT_BEGIN, MdMsg.SNAPSHOT_LEVEL, MdMsg.SNAPSHOT_END]
        begin, levels, end = (r for _, r in items)
        assert begin.dtype == MD_BOOK and levels.dtype == MD_UPDATE
        assert begin["md_seq"][0] == end["md_seq"][0] == seq == ms.md_seq(2)
        assert begin["levels"][0] == len(levels)
        assert bool(begin["flags"][0] & BookFlag.TRUNCATED) == (depth > 0)
        for side in (1, 2):
            mine = levels[levels["side"] == side]
            assert list(zip(*(mine[f].tolist() for f in ("price_ticks", "qty_lots", "count")))) == \
                eng.depth(2, side, depth or 10**6)
        assert (levels["kind"] == MdKind.LEVEL).all() and (levels["seq"] == seq & 0xFFFFFFFF).all()


def test_unknown_instruments_and_bad_input():
    ms = MarketState(1)
    with pytest.raises(TypeError):
        ms.apply(np.zeros(3, MD_UPDATE))
    e = _trade(T0, 100, 1, inst=7)
    assert len(ms.apply(e).updates) == 0 and ms.stats[1] == 1
    with pytest.raises(ValueError):
        MarketState(1, candle_keep=100)
