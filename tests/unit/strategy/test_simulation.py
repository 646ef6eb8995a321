"""Simulation over the compiled engine: reconciliation with the venue, determinism, replay, latency, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from microex.core.records import Side, Tif
from microex.protocol.binary import MsgType
from microex.strategy import Limits, MarketParams, RecordedMarket, SimConfig, Simulation, StopReason, Strategy
from microex.strategy.simulation import FIRST_STRATEGY_ACCOUNT

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(f"ex_{name}", EXAMPLES / f"strategy_{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Taker(Strategy):
    """Crosses the spread now and then, both ways, and records its fills."""

    def __init__(self):
        super().__init__()
        self.fills = []
        self.n = 0

    def on_book(self, instrument, book):
        self.n += 1
        if book.two_sided and self.n % 7 == 0:
            side = Side.BUY if (self.n // 7) % 3 else Side.SELL
            self.place(instrument, side, book.ask + 1 if side == Side.BUY else book.bid - 1, 2, tif=Tif.IOC)

    def on_order(self, report):
        if report.kind == MsgType.EXEC_FILL:
            self.fills.append(report)


def small(seed=1, duration=5.0, **kw):
    return SimConfig(seed=seed, duration_s=duration, market=MarketParams(instruments=2), **kw)


def run_pair(seed=1, duration=5.0, market=None, record=None, **kw):
    sim = Simulation(small(seed, duration, **kw), market=market, record=record)
    mm = example("market_maker").MarketMaker()
    taker = Taker()
    sim.add(mm, [1, 2], Limits(max_position=60))
    sim.add(taker, [1, 2])
    return sim, sim.run(), mm, taker


def test_positions_and_cash_reconcile_with_the_engine_balances_including_fees():
    sim, report, mm, taker = run_pair(maker_fee_bps=3, taker_fee_bps=7)
    assert report.totals["reconciled"] and report.totals["fills"] > 50
    bal = sim.engine.balances()
    c = sim.config
    # by hand from the taker's own fill reports: base per instrument, and USD net of the taker fees
    for inst in (1, 2):
        net = sum(r.qty_lots * (1 if r.side == Side.BUY else -1) for r in taker.fills if r.instrument == inst)
        acc = FIRST_STRATEGY_ACCOUNT + 1
        assert int(bal[acc, sim.base_asset[inst]].sum()) == c.deposit_base + net == c.deposit_base + \
            taker.position(inst)
    cash = sum(r.qty_lots * r.price_ticks * (-1 if r.side == Side.BUY else 1) for r in taker.fills)
    fees = sum(-(-r.qty_lots * r.price_ticks * 7 // 10_000) for r in taker.fills)  # ceil, taker every time
    assert int(bal[FIRST_STRATEGY_ACCOUNT + 1, sim.usd].sum()) == c.deposit_quote + cash - fees
    assert taker.pnl().fees == fees > 0
    # every strategy ends with nothing open, at the venue too (holds released)
    for k in (0, 1):
        assert not sim.runtime.slots[k].orders
        assert int(bal[FIRST_STRATEGY_ACCOUNT + k, :, 1].sum()) == 0


def test_same_seed_same_report_other_seed_other_report():
    a = run_pair(seed=4)[1]
    b = run_pair(seed=4)[1]
    c = run_pair(seed=5)[1]
    assert a.deterministic() == b.deterministic()
    assert a.engine["digest"] == b.engine["digest"]
    assert c.engine["digest"] != a.engine["digest"]
    assert c.deterministic()["strategies"] != a.deterministic()["strategies"]


def test_a_recorded_market_replays_the_same_run(tmp_path):
    path = tmp_path / "market.npy"
    _, live, _, _ = run_pair(seed=3, record=path)
    replay = RecordedMarket.load(path)
    assert replay.instruments == [1, 2]
    _, again, _, _ = run_pair(seed=3, market=replay)
    assert again.deterministic()["strategies"] == live.deterministic()["strategies"]
    assert again.engine["digest"] == live.engine["digest"]


def test_tick_to_trade_and_order_to_ack_are_recorded_per_strategy():
    _, report, _, _ = run_pair()
    for s in report.strategies:
        t2t, ack = s["tick_to_trade"], s["order_to_ack"]
        # these two send every order message from on_book: one sample each (the end-of-run cancels are not theirs)
        assert t2t["samples"] == s["orders"] + s["modifies"] + s["cancels"] and s["orders"] > 0
        assert 0 < t2t["p50_ns"] <= t2t["p99_ns"] <= t2t["p999_ns"]
        assert ack["samples"] == s["orders"] and ack["p50_ns"] > 0


def test_a_loss_limit_breach_stops_the_strategy_in_simulation_and_its_orders_leave_the_book():
    sim = Simulation(small(seed=2, duration=10.0))
    loser = Taker()
    sim.add(loser, [1, 2], Limits(max_loss=30))
    mm = example("market_maker").MarketMaker()
    sim.add(mm, [1])
    report = sim.run()
    s = report.strategies[0]
    assert s["stop_reason"] == "MAX_LOSS" and s["stop_code"] == StopReason.MAX_LOSS and not s["running"]
    assert report.totals["stopped"][0]["name"] == s["name"]
    assert report.strategies[1]["running"] and report.strategies[1]["fills"] > 0
    # it traded until the breach, not after (its position stays, and is still marked)
    assert "< -30" in s["error"] and loser.fills and report.totals["reconciled"]
    assert max(r.ts_ns for r in loser.fills) <= sim.runtime.slots[0].stopped_ns < 10e9
    assert not sim.runtime.slots[0].orders


def test_drawdown_and_the_plot(tmp_path):
    _, report, _, _ = run_pair()
    for j, s in enumerate(report.strategies):
        path = report.pnl[:, j]
        assert s["max_drawdown"] == int((np.maximum.accumulate(np.maximum(path, 0)) - path).max()) >= 0
    png = report.plot(tmp_path / "x.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "reconciled with the venue: True" in report.text()


def test_cli_runs_an_example_by_name(tmp_path, capsys):
    from microex.app.cli import main

    rc = main(["sim", "momentum", "--seed", "2", "--duration", "20", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "momentum" in out and "reconciled with the venue: True" in out
    data = json.loads((tmp_path / "momentum-seed2.json").read_text())
    assert data["strategies"][0]["name"] == "momentum" and data["config"]["seed"] == 2
    assert (tmp_path / "momentum-seed2.png").stat().st_size > 10_000


def test_bad_strategy_file_is_a_clear_error(tmp_path):
    from microex.app.sim import load_setup

    with pytest.raises(SystemExit, match="no strategy file"):
        load_setup(str(tmp_path / "nope.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(SystemExit, match="defines no setup"):
        load_setup(str(tmp_path / "empty.py"))
