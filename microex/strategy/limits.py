"""Client-side limits per strategy, and the reason codes that stop a strategy.

How it works. Each strategy has a `Limits` (all 0 = no limit). The runtime checks
them itself, before anything reaches the venue, and a breach is never an
exception: it stops the strategy with a `StopReason` (the runtime then cancels
the strategy's open orders, drops it from the dispatch table and reports it).

- max_position (lots, per instrument): checked when an order or a modify is
  about to be sent, on the worst case: |position| plus the open qty on that
  side plus the new qty. An order that could take the position past the limit
  is not sent; the strategy stops with MAX_POSITION. Since every open order is
  counted, fills alone can never cross the limit.
- max_order_rate (messages per second: place, cancel and modify alike, as a
  venue counts them) with a burst of `burst` messages: GCRA (a token bucket in
  one integer). `tat` is the theoretical arrival time: each message moves it by
  1e9/rate ns; a message is within the limit while tat - now stays within
  (burst - 1) intervals. Integers only (ns). The runtime's own cancels (on
  stop) are never counted.
- max_loss (quote units): realized - fees + unrealized against the mid; checked
  on every fill and after every MARKET chunk that moved the mid of an
  instrument the strategy holds (the chunk's last mid: pnl.mark_batch); below
  -max_loss the strategy stops with MAX_LOSS.

Reason codes live in 90-99, above the engine's (1-59) and the gateway's (60-79)
ranges, so one reason field can carry any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class StopReason(IntEnum):
    """Why a strategy stopped (0 while it runs)."""

    NONE = 0
    MAX_POSITION = 90
    MAX_ORDER_RATE = 91
    MAX_LOSS = 92
    STRATEGY_ERROR = 93  # a callback raised: the exception text is in the report
    USER = 94  # runtime.stop() by its owner, or the end of a run


@dataclass(frozen=True)
class Limits:
    max_position: int = 0  # lots per instrument; 0: no limit
    max_order_rate: float = 0.0  # messages per second; 0: no limit
    burst: int = 0  # messages allowed at once; 0: as many as one second's rate
    max_loss: int = 0  # quote units; 0: no limit

    def __post_init__(self) -> None:
        for name in ("max_position", "max_order_rate", "burst", "max_loss"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def interval_ns(self) -> int:
        """ns of budget one message uses (0: no rate limit)."""
        return int(round(1e9 / self.max_order_rate)) if self.max_order_rate > 0 else 0

    @property
    def tolerance_ns(self) -> int:
        """How far ahead of now the theoretical arrival time may run: (burst - 1) intervals."""
        burst = self.burst or max(1, int(self.max_order_rate))
        return (burst - 1) * self.interval_ns


def rate_admit(tat: int, now_ns: int, interval_ns: int, tolerance_ns: int) -> int:
    """GCRA: the new theoretical arrival time if a message at now_ns is within the rate, else -1."""
    if interval_ns == 0:
        return tat
    t = tat if tat > now_ns else now_ns
    if t - now_ns > tolerance_ns:
        return -1
    return t + interval_ns


def worst_position(position: int, open_same_side: int, qty: int, side_sign: int) -> int:
    """How far the position could go on one side (+1 buy, -1 sell) if every open order on that
    side and a new one of `qty` filled: the figure max_position bounds."""
    return side_sign * position + open_same_side + qty
