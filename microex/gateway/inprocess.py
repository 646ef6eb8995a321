"""A venue in one process: the gateway server over an in-process MatchingEngine.

For tests, examples and simulation: no engine process, no rings, no journal.
`InProcessEngineLink.submit` stamps seq numbers and runs the compiled kernel at
once, handing the events straight back, so a client's order is acknowledged
within the same event-loop turn that read it. The engine here is the same
compiled core as in `microex serve`; only the pipeline around it is missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from microex.core import raw
from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action
from microex.core.venue import VenueConfig
from microex.gateway.server import GatewayServer
from microex.gateway.session import GatewaySessions


class InProcessEngineLink:
    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.seq = 0
        self._on_events: Callable[[np.ndarray], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, on_events: Callable[[np.ndarray], None]) -> None:
        self._on_events = on_events

    def submit(self, cmds: np.ndarray) -> None:
        cmds = raw.copy(cmds)  # the caller's array stays as it was
        cmds["seq"] = np.arange(self.seq + 1, self.seq + len(cmds) + 1)
        self.seq += len(cmds)
        events = self.engine.process(cmds)
        if self._on_events is not None and len(events):
            self._on_events(events)

    def close(self) -> None:
        self._on_events = None


def deposit_commands(deposits: Iterable[tuple[int, int, int]], ts_ns: int | None = None) -> np.ndarray:
    """DEPOSIT commands from (account, asset id, amount) triples."""
    rows = list(deposits)
    cmds = np.zeros(len(rows), dtype=COMMAND)
    cmds["ts_ns"] = time.time_ns() if ts_ns is None else ts_ns
    cmds["action"] = Action.DEPOSIT
    for i, (account, asset, amount) in enumerate(rows):
        cmds[i]["account"], cmds[i]["instrument"], cmds[i]["qty_lots"] = account, asset, amount
    return cmds


class InProcessVenue:
    """`async with InProcessVenue(api_keys={b"key": 1}) as venue:` -> a binary port on 127.0.0.1."""

    def __init__(self, api_keys: Mapping[bytes, int], venue: VenueConfig | None = None,
                 deposits: Iterable[tuple[int, int, int]] = (), *, config: EngineConfig | None = None,
                 heartbeat_ms: int = 1000, rate_per_s: float = 10_000.0, burst: float | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.engine = MatchingEngine(config, venue)
        self.engine.warm_up()
        self.link = InProcessEngineLink(self.engine)
        deposits = list(deposits)
        if deposits:
            self.link.submit(deposit_commands(deposits))
        self.sessions = GatewaySessions(api_keys, heartbeat_ms=heartbeat_ms, rate_per_s=rate_per_s, burst=burst)
        self.server = GatewayServer(self.sessions, self.link)
        self.host, self.port = host, port

    async def __aenter__(self) -> InProcessVenue:
        self.port = await self.server.start(self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.close()

    def drop_all(self) -> None:
        """Abort every connection, as a network failure would (tests of reconnects)."""
        for conn in list(self.server.connections.values()):
            conn.transport.abort()
