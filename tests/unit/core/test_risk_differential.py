"""Risk mode on random streams: the compiled kernel equals its Python twin event for
event and balance for balance, and the money invariants hold after every batch."""

from collections import defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.engine import MatchingEngine
from microex.core.positions import PositionBook
from microex.core.records import COMMAND, Action, EventKind, Flag, OrdType, Side, Tif
from microex.core.reference import ReferenceMatcher
from microex.core.venue import AccountSpec, InstrumentSpec, VenueConfig

ASSETS = ("A", "B", "Q")  # ids 1, 2, 3 (order of first use below)


@st.composite
def venues(draw):
    def instrument(symbol, base, quote):
        max_qty = draw(st.sampled_from([0, 8, 30]))
        return InstrumentSpec(
            symbol=symbol, base=base, quote=quote, tick=draw(st.integers(1, 3)), lot=draw(st.integers(1, 4)),
            min_qty=draw(st.integers(1, 2)), max_qty=max_qty, max_notional=draw(st.sampled_from([0, 0, 3000])),
            price_band_pct=draw(st.sampled_from([0, 2, 10])), maker_fee_bps=draw(st.sampled_from([0, 7, 250])),
            taker_fee_bps=draw(st.sampled_from([0, 13, 500])),
        )

    accounts = tuple(AccountSpec(i, draw(st.integers(0, 4))) for i in (1, 2, 3))
    return VenueConfig(instruments=(instrument("AQ", "A", "Q"), instrument("BA", "B", "A")), accounts=accounts,
                       max_accounts=4, default_max_open_orders=draw(st.integers(0, 3)))


def _row(action, oid=0, acc=0, inst=0, side=0, otype=0, tif=0, price=0, qty=0, flags=0):
    return dict(action=action, order_id=oid, account=acc, instrument=inst, side=side, ord_type=otype, tif=tif,
                price_ticks=price, qty_lots=qty, flags=flags)


@st.composite
def streams(draw):
    rows = []
    for acc in (1, 2, 3):  # start funded, so that orders mostly pass
        for asset in (1, 2, 3):
            rows.append(_row(Action.DEPOSIT, acc=acc, inst=asset, qty=draw(st.integers(0, 20000))))
    next_id = 1
    for _ in range(draw(st.integers(1, 120))):
        kind = draw(st.sampled_from(["new"] * 14 + ["cancel"] * 3 + ["modify"] * 3 + ["money"] * 2 + ["control"]))
        acc = draw(st.sampled_from([1, 1, 1, 2, 2, 2, 3, 3, 0, 5]))
        if kind == "new":
            otype = draw(st.sampled_from([OrdType.LIMIT] * 4 + [OrdType.MARKET]))
            side = draw(st.sampled_from([Side.BUY, Side.SELL]))
            price = draw(st.integers(98, 106) if side == Side.BUY else st.integers(94, 102))
            rows.append(_row(Action.NEW, next_id, acc, draw(st.sampled_from([1, 1, 1, 2, 2, 3])), side, otype,
                             draw(st.sampled_from([Tif.GTC, Tif.GTC, Tif.IOC, Tif.FOK])),
                             price, draw(st.integers(1, 12)),
                             draw(st.sampled_from([Flag.NONE] * 4 + [Flag.STP, Flag.POST_ONLY]))))
            next_id += 1
        elif kind == "cancel":
            rows.append(_row(Action.CANCEL, draw(st.integers(max(1, next_id - 8), next_id))))
        elif kind == "modify":
            rows.append(_row(Action.MODIFY, draw(st.integers(max(1, next_id - 8), next_id)),
                             price=draw(st.integers(94, 107)),
                             qty=draw(st.integers(0, 14))))
        elif kind == "money":
            rows.append(_row(draw(st.sampled_from([Action.DEPOSIT, Action.WITHDRAW])), acc=acc,
                             inst=draw(st.integers(0, 4)), qty=draw(st.integers(-1, 800))))
        else:
            action = draw(st.sampled_from([Action.HALT, Action.RESUME, Action.SUSPEND, Action.UNSUSPEND,
                                           Action.SET_PRICE]))
            rows.append(_row(action, acc=acc, inst=draw(st.integers(0, 3)), price=draw(st.integers(0, 110))))
    cmds = np.zeros(len(rows), dtype=COMMAND)
    for i, r in enumerate(rows):
        cmds[i]["seq"] = i + 1
        for k, v in r.items():
            cmds[i][k] = v
    return cmds


def _ledger(cmds: np.ndarray, events: np.ndarray) -> dict[int, int]:
    """Per asset: accepted deposits minus accepted withdrawals."""
    rejected = set(events["seq"][events["kind"] == EventKind.REJECTED].tolist())
    net = defaultdict(int)
    for c in cmds:
        if int(c["seq"]) in rejected:
            continue
        if c["action"] == Action.DEPOSIT:
            net[int(c["instrument"])] += int(c["qty_lots"])
        elif c["action"] == Action.WITHDRAW:
            net[int(c["instrument"])] -= int(c["qty_lots"])
    return net


def _expected_holds(ref: ReferenceMatcher) -> dict[tuple[int, int], int]:
    holds = defaultdict(int)
    for o in ref.orders.values():
        asset = ref.risk.hold_asset(o.instrument, o.side)
        holds[o.account, asset] += o.leaves * ref.risk.unit_hold(o.instrument, o.side, o.price)
    return holds


def _check_money(engine: MatchingEngine, ref: ReferenceMatcher, net: dict[int, int]) -> None:
    bal = engine.balances()
    assert (bal >= 0).all(), "a balance went negative"
    for asset in (1, 2, 3):
        total = int(bal[:, asset, :].sum())
        assert total == net[asset], f"asset {asset}: {total} in accounts, {net[asset]} deposited net"
    holds = _expected_holds(ref)
    for acc in range(bal.shape[0]):
        for asset in (1, 2, 3):
            assert int(bal[acc, asset, 1]) == holds[acc, asset], f"held {acc},{asset}"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=venues(), cmds=streams(), split=st.integers(1, 40))
def test_engine_equals_reference_and_money_is_conserved(venue, cmds, split):
    engine = MatchingEngine(venue=venue)
    engine.warm_up()
    ref = ReferenceMatcher(venue=venue)
    positions = PositionBook(engine.config.max_accounts, engine.config.max_instruments)
    all_events = []
    for start in range(0, len(cmds), split):
        batch = cmds[start : start + split]
        got, want = engine.process(batch), ref.process(batch)
        if got.tolist() != want.tolist():
            for i, (g, w) in enumerate(zip(got.tolist(), want.tolist())):
                assert g == w, f"event {i} differs: engine {g} reference {w}"
            assert len(got) == len(want)
        all_events.append(got)
        positions.apply(got)
        assert engine.balance_rows() == ref.balance_rows()
        assert positions.rows() == ref.position_rows()
        _check_money(engine, ref, _ledger(cmds[: start + len(batch)], np.concatenate(all_events)))
    # end every order: nothing may stay held
    live = sorted(ref.orders)
    cancels = np.zeros(len(live), dtype=COMMAND)
    cancels["action"] = Action.CANCEL
    cancels["order_id"] = live
    cancels["seq"] = np.arange(len(cmds) + 1, len(cmds) + 1 + len(live))
    engine.process(cancels)
    ref.process(cancels)
    assert (engine.balances()[:, :, 1] == 0).all()
    assert engine.balance_rows() == ref.balance_rows()
