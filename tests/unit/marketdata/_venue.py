"""A venue for the market-data tests: an engine and the stage's MarketState, fed batch by batch."""

from __future__ import annotations

import numpy as np

from microex.marketdata.state import MarketState

from tests.unit.marketdata._streams import engine, random_commands


class FakeTransport:
    """A subscriber's transport: keeps what was written; `pending` bytes count as unsent until read."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pending = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.aborted, "written after abort"
        self.chunks.append(bytes(data))
        self.pending += len(data)

    def buffered(self) -> int:
        return self.pending

    def abort(self) -> None:
        self.aborted = True

    def read(self) -> bytes:
        """Everything written so far (the peer read it: the buffer is empty again)."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.pending = 0
        return data


class Venue:
    """Random commands in batches through an engine; MarketState publishes their updates."""

    def __init__(self, seed: int = 1, instruments: int = 3, spread: int = 10) -> None:
        self.instruments = instruments
        self.engine = engine(instruments)
        self.state = MarketState(instruments)
        self.seed, self.spread = seed, spread
        self.next_seq = 1

    def batch(self, n: int):
        """Run n more commands: the MdOutput of the stage (views)."""
        cmds = random_commands(self.seed * 7919 + self.next_seq, n, self.instruments, self.spread,
                               first_seq=self.next_seq, first_id=self.next_seq)
        self.next_seq += n
        return self.state.apply(self.engine.process(cmds))

    def depth(self, i: int, side: int) -> list[tuple[int, int, int]]:
        return self.engine.depth(i, side, 10**6)

    def assert_equal(self, replica, i: int) -> None:
        assert replica.depth(1, 10**6) == self.depth(i, 1), f"bids of {i}"
        assert replica.depth(2, 10**6) == self.depth(i, 2), f"asks of {i}"
        assert replica.md_seq == self.state.md_seq(i)


def frames(data: bytes, size: int = 64) -> list[bytes]:
    return [data[k:k + size] for k in range(0, len(data), size)]


__all__ = ["FakeTransport", "Venue", "frames", "np"]
