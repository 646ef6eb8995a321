"""The kernel never writes past its event buffer, whatever a command sweeps."""

import numpy as np

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action, Flag, OrdType, Side, Tif
from microex.core.reference import ReferenceMatcher


def _cmd(seq, action, oid, account=0, side=0, price=0, qty=0, flags=0, otype=OrdType.LIMIT, tif=Tif.GTC):
    return (seq, 0, oid, account, price, qty, 1, 0, action, side, otype, tif, flags)


def _stream(n_makers: int) -> np.ndarray:
    rows = [_cmd(1, Action.NEW, 1, 7, Side.BUY, 90, 5, Flag.STP)]
    for i in range(n_makers):  # same account as the stp order, one lot each, many levels
        rows.append(_cmd(2 + i, Action.NEW, 100 + i, 7, Side.SELL, 100 + i % 50, 1))
    rows.append(_cmd(n_makers + 2, Action.MODIFY, 1, price=1000, qty=5))  # command flags empty
    rows.append(_cmd(n_makers + 3, Action.NEW, 5000, 8, Side.SELL, 95, 3))
    rows.append(_cmd(n_makers + 4, Action.NEW, 5001, 7, Side.SELL, 90, 1000, otype=OrdType.MARKET))
    return np.array(rows, dtype=COMMAND)


def test_stp_modify_sweep_larger_than_buffer_matches_reference():
    cmds = _stream(300)
    config = EngineConfig(max_instruments=2, max_orders=1024, max_levels=128, event_capacity=16)
    engine = MatchingEngine(config)
    engine.warm_up()
    got = engine.process(cmds)
    want = ReferenceMatcher(config).process(cmds)
    assert got.tolist() == want.tolist()
    # the modify cancelled all 300 same-account makers (stp) in one command
    assert int((got["reason"] == 23).sum()) == 300
    assert len(engine.events) >= 600  # the buffer grew for that one command, between calls


def test_one_command_calls_keep_working_after_growth():
    cmds = _stream(40)
    config = EngineConfig(max_instruments=2, max_orders=256, max_levels=64, event_capacity=16)
    engine = MatchingEngine(config)
    engine.warm_up()
    chunks = []
    for i in range(len(cmds)):
        chunks.append(engine.process(cmds[i : i + 1]))
    got = np.concatenate(chunks)
    assert got.tolist() == ReferenceMatcher(config).process(cmds).tolist()
