"""Who the Fanout sends to: transports, subscribers, their subscriptions, and send groups.

- `Transport`: anything that takes bytes and says how many it still holds (an asyncio
  or raw-socket connection, a gRPC stream, a test double); `DirectTransport` is a
  socket the Fanout may send to itself, in one compiled call per group, while nothing
  is queued on it (server.py's connections).
- `Subscriber`: one transport and its subscriptions; `Sub`: one subscription, whose
  last sent md_seq lives in the Fanout's `last_seqs` array at its `slot` (set per group
  with one numpy store, not per subscriber).
- `Group`: the live subscriptions of one instrument that take the same streams, split
  into direct sockets (an fd array for socket_send.send_each) and the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from microex.core.records import BookCause

if TYPE_CHECKING:
    from microex.marketdata.fanout import Fanout


class Transport(Protocol):
    """Where a subscriber's bytes go (another transport attaches by implementing this)."""

    def write(self, data: bytes) -> None: ...

    def buffered(self) -> int: ...  # bytes written but not yet sent

    def abort(self) -> None: ...


class DirectTransport(Transport, Protocol):
    """A socket the Fanout may send to itself while `direct` (nothing queued, so order is kept)."""

    fd: int
    direct: bool
    on_direct_change: Callable[[], None] | None  # set by the Fanout; called when `direct` flips

    def sent_directly(self, data: bytes, n: int) -> None: ...  # a send took n bytes of data (-1: none)


class BookSource(Protocol):
    """The books the fanout serves snapshots from (MarketState, or a replay's books)."""

    n_instruments: int

    def md_seq(self, instrument: int) -> int: ...

    def snapshot(self, instrument: int, depth: int = 0, cause: int = BookCause.REQUEST) -> tuple[int, bytes]: ...

    def bbo_record(self, instrument: int) -> np.ndarray: ...


class Sub:
    """One subscription of one subscriber; its last sent md_seq is slot `slot` of the Fanout's array."""

    __slots__ = ("owner", "instrument", "flags", "depth", "fan", "slot", "need_snapshot", "dropped")

    def __init__(self, owner: Subscriber, instrument: int, flags: int, depth: int, fan: Fanout, slot: int) -> None:
        self.owner, self.instrument, self.flags, self.depth = owner, instrument, flags, depth
        self.fan, self.slot, self.need_snapshot, self.dropped = fan, slot, False, 0

    @property
    def last_seq(self) -> int:
        return int(self.fan.last_seqs[self.slot])

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self.fan.last_seqs[self.slot] = seq


class Group:
    """The live subscriptions of one instrument that take one kind of bytes, ready for a send."""

    __slots__ = ("fds", "direct", "sent", "slow", "slots")

    def __init__(self, subs: list[Sub]) -> None:
        direct = [s for s in subs if getattr(s.owner.transport, "direct", False)]
        self.direct = [s.owner for s in direct]
        self.fds = np.array([s.owner.transport.fd for s in direct], dtype=np.int32)
        self.sent = np.zeros(len(direct), dtype=np.int64)
        self.slow = [s.owner for s in subs if not getattr(s.owner.transport, "direct", False)]
        self.slots = np.array([s.slot for s in subs], dtype=np.int64)

    def __bool__(self) -> bool:
        return bool(len(self.slots))


class Subscriber:
    __slots__ = ("sub_id", "transport", "write", "buffered", "subs", "conflated_since", "dropped_trades")

    def __init__(self, sub_id: int, transport: Transport) -> None:
        self.sub_id, self.transport = sub_id, transport
        self.write, self.buffered = transport.write, transport.buffered  # bound once: called per batch
        self.subs: dict[int, Sub] = {}
        self.conflated_since: float | None = None
        self.dropped_trades = 0
