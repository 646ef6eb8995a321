"""Helpers for the strategy tests: a link that records what it was asked to send, and report makers."""

from __future__ import annotations

import pytest

from microex.client.protocol import ExecReport
from microex.protocol.binary import Liquidity, MsgType
from microex.strategy import StrategyRuntime


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def new_order(self, cid, instrument, side, price, qty, ord_type, tif, flags):
        self.sent.append(("new", cid, instrument, side, price, qty))

    def cancel(self, cid):
        self.sent.append(("cancel", cid))

    def modify(self, cid, price, qty):
        self.sent.append(("modify", cid, price, qty))

    def kinds(self):
        return [m[0] for m in self.sent]


def accepted(cid, inst, side, price, qty):
    return ExecReport(MsgType.EXEC_ACCEPTED, cid, 0, inst, side, 0, 0, price, qty, qty)


def fill(cid, inst, side, price, qty, leaves, maker=True):
    return ExecReport(MsgType.EXEC_FILL, cid, 0, inst, side, Liquidity.MAKER if maker else Liquidity.TAKER, 0,
                      price, qty, leaves)


def cancelled(cid, inst, side, price, leaves, reason=20):
    return ExecReport(MsgType.EXEC_CANCELLED, cid, 0, inst, side, 0, reason, price, leaves, 0)


@pytest.fixture
def rt():
    """A runtime on a fake link with a settable clock (rt.now)."""
    runtime = StrategyRuntime(max_instruments=8, clock=lambda: runtime.now)
    runtime.now = 0
    runtime.attach(FakeLink())
    return runtime
