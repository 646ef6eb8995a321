"""Differential tests: the compiled MatchingEngine against the plain-Python ReferenceMatcher.

Hypothesis builds random COMMAND streams (valid and invalid commands, a narrow
price band so orders cross, few accounts so self-trade prevention acts) and a
random EngineConfig, often a tight one (tiny pools, 1-3 levels, an id map and
an event buffer that must grow mid-stream). The engine gets the stream in
random slices and kernel batch sizes; after every slice its events must equal
the reference's, its book must equal the reference's book, and
check_book_invariants must pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.invariants import check_book_invariants
from microex.core.idmap import ID_HEADER, id_map_full
from microex.core.records import EVENT, MAX_QTY_LOTS
from microex.core.reference import ReferenceMatcher

from ._helpers import command_dict, commands, engine_book, event_dict, reference_book

NEW, CANCEL, MODIFY = 1, 2, 3
BUY, SELL = 1, 2
LIMIT, MARKET = 1, 2
GTC, IOC, FOK = 1, 2, 3
POST_ONLY, STP = 1, 2

# Value pools of valid values (hypothesis shrinks towards the first element);
# a row's `fault` then makes one field, or several, invalid.
ACTIONS = [NEW] * 5 + [CANCEL] * 2 + [MODIFY] * 3
ACCOUNTS = [1, 2, 3]
SIDES = [BUY, SELL]
TYPES = [LIMIT] * 5 + [MARKET]
TIFS = [GTC] * 5 + [IOC, FOK]
FLAGS = [0] * 6 + [POST_ONLY, STP]
PRICES = list(range(8))  # offsets: buys at 95-102, sells at 99-106 (modify: either), so they often cross
QTYS = [1, 2, 3] * 6 + list(range(4, 11)) * 2 + [25]  # small lots: one order often meets many makers
FAULTS = ["none"] * 30 + ["action", "side", "type", "tif", "flags", "account", "instrument", "price", "qty", "many"]
BAD = {  # invalid values for each field
    "action": [0, 7],
    "side": [0, 7],
    "type": [0, 7],
    "tif": [0, 7],
    "flags": [3, 0x80, 7],
    "account": [0, -1],
    "price": [0, -5],
    "qty": [0, -2],
}


@dataclass
class Scenario:
    config: EngineConfig
    rows: list[tuple]  # COMMAND fields in _helpers.CMD_FIELDS order
    cuts: list[int]  # the engine gets rows[0:c1], rows[c1:c2], ...
    batch: int  # kernel batch size for MatchingEngine.run (1 << 16: use engine.process)

    def slices(self):
        bounds = [0, *self.cuts, len(self.rows)]
        return list(zip(bounds, bounds[1:]))


@st.composite
def engine_configs(draw) -> EngineConfig:
    if draw(st.booleans()):  # tight: capacities are hit often
        return EngineConfig(
            max_instruments=2,
            max_orders=draw(st.integers(3, 8)),
            max_levels=draw(st.integers(1, 3)),
            id_capacity=draw(st.sampled_from([2, 4])),
            event_capacity=draw(st.sampled_from([16, 16, 1])),  # 1: even the first command must grow it
        )
    return EngineConfig(
        max_instruments=draw(st.integers(1, 4)),
        max_orders=draw(st.sampled_from([256, 16])),
        max_levels=draw(st.sampled_from([64, 4])),
        id_capacity=draw(st.sampled_from([2, 4, 1024])),
        event_capacity=draw(st.sampled_from([16, 64, 4096])),
    )


def resolve_ids(raw: list[tuple], base: int, stride: int) -> list[tuple]:
    """Turn each row's (id mode, id pick) into an order id.

    new: mostly a fresh id, sometimes one already named (duplicate) or <= 0.
    cancel/modify: mostly a recent GTC limit order (resting, or since filled or
    cancelled), else any id named so far (whatever became of it), one never
    named, or <= 0.
    """
    named: list[int] = []
    gtc: list[int] = []  # ids of valid-looking GTC limit orders
    fresh = 0
    rows = []
    for action, mode, pick, *rest in raw:
        bad = 0 if pick % 3 else -(pick % 1000) - 1
        if action == NEW and (mode < 8 or not named):
            oid = base + stride * fresh
            fresh += 1
        elif action == NEW:
            oid = named[pick % len(named)] if mode == 8 else bad
        elif mode < 6 and gtc:
            oid = gtc[-1 - pick % min(len(gtc), 4)]
        elif mode < 8 and named:
            oid = named[pick % len(named)]
        elif mode < 9:
            oid = base + stride * (10_000 + pick)  # never named by a new
        else:
            oid = bad
        if action == NEW and oid > 0 and oid not in named:
            named.append(oid)
            if rest[3:5] == [LIMIT, GTC]:
                gtc.append(oid)
        rows.append((action, oid, *rest))
    return rows


@st.composite
def scenarios(draw, max_len: int = 200) -> Scenario:
    config = draw(engine_configs())
    n = config.max_instruments
    length = draw(st.integers(0, max_len))
    drawn = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ACTIONS),
                st.integers(0, 9),  # id mode
                st.integers(0, 1 << 16),  # id pick, also picks the bad values
                st.sampled_from(ACCOUNTS),
                st.sampled_from(range(1, n + 1)),  # instrument
                st.sampled_from(SIDES),
                st.sampled_from(TYPES),
                st.sampled_from(TIFS),
                st.sampled_from(PRICES),
                st.sampled_from(QTYS),
                st.sampled_from(FLAGS),
                st.sampled_from(FAULTS),
            ),
            min_size=length,
            max_size=length,
        )
    )
    raw = []
    for action, mode, pick, acc, inst, side, otype, tif, price, qty, flags, fault in drawn:
        price += 95 if (side == BUY if action == NEW else pick % 2) else 99
        row = dict(action=action, account=acc, side=side, type=otype, tif=tif, price=price, qty=qty, flags=flags)
        for name in BAD if fault == "many" else [fault] if fault in BAD else []:
            if fault != "many" or (pick >> len(name)) % 3 == 0:
                row[name] = BAD[name][pick % len(BAD[name])]
        if fault == "instrument":
            inst = (0, n + 1, -1)[pick % 3]
        raw.append((row["action"], mode, pick, row["account"], inst, row["side"], row["type"], row["tif"],
                    row["price"], row["qty"], row["flags"], pick % 4))
    base = draw(st.sampled_from([1, 1 << 40, (1 << 62) + 5]))
    stride = draw(st.sampled_from([1, 7, (1 << 20) + 1]))
    rows = resolve_ids(raw, base, stride)
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=6)))
    batch = draw(st.sampled_from([1 << 16, 1, 2, 3, 7]))
    return Scenario(config, rows, cuts, batch)


def assert_same_events(got: list, want: list, cmds: np.ndarray, config: EngineConfig) -> None:
    if got == want:
        return
    i = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    ev = got[i] if i < len(got) else want[i]
    seq = ev[EVENT.names.index("seq")]
    cmd = cmds[cmds["seq"] == seq]
    raise AssertionError(
        f"events differ at index {i} of {len(want)} (engine has {len(got)}), {config}\n"
        f"  engine:    {event_dict(got[i]) if i < len(got) else '<none>'}\n"
        f"  reference: {event_dict(want[i]) if i < len(want) else '<none>'}\n"
        f"  command:   {command_dict(cmd[0]) if len(cmd) else f'seq {seq}'}"
    )


def run_differential(sc: Scenario) -> tuple[MatchingEngine, list]:
    cmds = commands(sc.rows)
    engine = MatchingEngine(sc.config)
    ref = ReferenceMatcher(sc.config)
    kernel_call = engine.call

    def call(cmds, start, count):  # the kernel's own contract: it never overfills its buffer
        processed, n_events = kernel_call(cmds, start, count)
        assert n_events <= len(engine.events), f"kernel wrote {n_events} events into a buffer of {len(engine.events)}"
        assert processed == count or n_events + 2 * engine.live_orders + 8 > len(engine.events) or (
            id_map_full(engine.ids)
        ), "the kernel stopped early without a full buffer or id map"
        return processed, n_events

    engine.call = call
    got: list = []
    want: list = []
    for a, b in sc.slices():
        part = cmds[a:b]
        if sc.batch == 1 << 16:
            got.extend(engine.process(part).tolist())
        else:
            engine.run(part, lambda ev: got.extend(ev.tolist()), batch=sc.batch)
        want.extend(ref.process(part).tolist())
        assert_same_events(got, want, cmds, sc.config)
        check_book_invariants(engine)
        book = reference_book(ref)
        assert engine_book(engine) == book, f"books differ after command seq {b}"
        assert engine.live_orders == len(ref.orders)
        for inst in range(1, sc.config.max_instruments + 1):
            bids, asks = book.get((inst, BUY), []), book.get((inst, SELL), [])
            assert engine.best(inst) == (bids[0][0] if bids else 0, asks[0][0] if asks else 0)
            for side, levels in ((BUY, bids), (SELL, asks)):
                assert engine.depth(inst, side, 2) == [(p, q, len(fifo)) for p, q, fifo in levels[:2]]
    return engine, got


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sc=scenarios())
def test_engine_matches_reference(sc: Scenario) -> None:
    run_differential(sc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sc=scenarios(max_len=60), data=st.data())
def test_batching_does_not_change_events(sc: Scenario, data) -> None:
    """The same stream, cut two different ways, gives the same events (and the same as one call)."""
    _, first = run_differential(sc)
    other = Scenario(sc.config, sc.rows, sorted(data.draw(st.lists(st.integers(0, len(sc.rows)), max_size=8))), 1)
    _, second = run_differential(other)
    whole = MatchingEngine(sc.config).process(commands(sc.rows)).tolist()
    assert first == second == whole


def random_stream(seed: int, n: int, n_inst: int) -> np.ndarray:
    """A long, mostly valid stream from numpy's RNG: deep books, many levels, every action."""
    rng = np.random.default_rng(seed)
    action = rng.choice([NEW, NEW, NEW, NEW, CANCEL, MODIFY], n)
    oid = np.arange(1, n + 1) * 13 + 7
    pick = np.maximum(np.arange(n) - rng.integers(0, 40, n), 0)  # cancel/modify a recent id
    oid = np.where(action == NEW, oid, oid[pick])
    tif = rng.choice([GTC] * 8 + [IOC, FOK], n)
    rows = list(
        zip(
            action.tolist(),
            oid.tolist(),
            rng.integers(1, 6, n).tolist(),
            rng.integers(1, n_inst + 1, n).tolist(),
            rng.integers(1, 3, n).tolist(),
            rng.choice([LIMIT] * 9 + [MARKET], n).tolist(),
            tif.tolist(),
            (1000 + rng.integers(-30, 31, n)).tolist(),
            rng.integers(1, 100, n).tolist(),
            rng.choice([0] * 8 + [POST_ONLY, STP], n).tolist(),
        )
    )
    return commands(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_random_stream_matches_reference(seed: int) -> None:
    config = EngineConfig(max_instruments=3, max_orders=1500, max_levels=40, id_capacity=2, event_capacity=64)
    cmds = random_stream(seed, 15_000, 3)
    engine, ref = MatchingEngine(config), ReferenceMatcher(config)
    got, want = [], []
    for part in np.array_split(cmds, 7):
        got.extend(engine.process(part).tolist())
        want.extend(ref.process(part).tolist())
        assert_same_events(got, want, cmds, config)
        check_book_invariants(engine)
    assert engine_book(engine) == reference_book(ref)
    kinds = {ev[EVENT.names.index("kind")] for ev in got}
    assert kinds >= {1, 2, 3, 4, 5, 6}, "the stream should produce every event kind"
    assert len(engine.ids) > ID_HEADER + 2 * 2, "the id map should have grown"


# ------------------------------------------------------------ int64 limits
# A qty above MAX_QTY_LOTS (2**40) is invalid_qty, and max_orders is at most
# 2**22, so level totals, sweep sums and holds never leave int64.

BIG = MAX_QTY_LOTS


def test_qty_above_the_limit_is_invalid_in_both_engines() -> None:
    cmds = commands(
        [
            (NEW, 1, 1, 1, SELL, LIMIT, GTC, 100, BIG + 1, 0),
            (NEW, 2, 1, 1, SELL, LIMIT, GTC, 100, (1 << 62), 0),
            (NEW, 3, 1, 1, SELL, LIMIT, GTC, 100, BIG, 0),
            (3, 3, 0, 0, 0, 0, 0, 100, BIG + 1, 0),  # modify above the limit
        ]
    )
    config = EngineConfig(max_instruments=1)
    got = MatchingEngine(config).process(cmds)
    assert got.tolist() == ReferenceMatcher(config).process(cmds).tolist()
    rejects = got[got["kind"] == 2]
    assert rejects["order_id"].tolist() == [1, 2, 3] and set(rejects["reason"].tolist()) == {4}


def test_largest_orders_sum_without_overflow() -> None:
    """Two asks of 2**40 lots at one price and one above: a FOK for all of it fills."""
    cmds = commands(
        [
            (NEW, 1, 1, 1, SELL, LIMIT, GTC, 100, BIG, 0),
            (NEW, 2, 1, 1, SELL, LIMIT, GTC, 100, BIG, 0),
            (NEW, 3, 1, 1, SELL, LIMIT, GTC, 101, BIG, 0),
            (NEW, 4, 2, 1, BUY, LIMIT, FOK, 101, BIG, 0),
        ]
    )
    config = EngineConfig(max_instruments=1)
    got = MatchingEngine(config).process(cmds)
    assert got.tolist() == ReferenceMatcher(config).process(cmds).tolist()
    levels = got[got["kind"] == 6]
    assert levels["qty_lots"].tolist()[:2] == [BIG, 2 * BIG]
    assert (got["kind"] == 3).sum() == 1 and got[got["kind"] == 3]["qty_lots"].tolist() == [BIG]


def test_process_returns_event_records() -> None:
    """process() must return EVENT records (96 bytes, the journal/wire layout); np.concatenate
    drops the dtype's trailing padding, so the engine's records are 92 bytes."""
    cmds = commands([(NEW, 1, 1, 1, BUY, LIMIT, GTC, 100, 5, 0)])
    config = EngineConfig(max_instruments=1)
    got = MatchingEngine(config).process(cmds)
    want = ReferenceMatcher(config).process(cmds)
    assert got.dtype == EVENT and got.dtype.itemsize == 96
    assert got.tobytes() == want.tobytes()
