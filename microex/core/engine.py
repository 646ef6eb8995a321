"""MatchingEngine: the Python owner of one compiled engine's state.

It is the single writer: only its calls mutate the state. Between kernel calls
it does the rare work the kernel leaves to it (doubling the id map, growing
the event buffer for a command that sweeps a huge book, handing events on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from microex.core import raw
from microex.core.config import EngineConfig
from microex.core.idmap import ID_HEADER, id_map_capacity, id_map_full, id_map_grown, id_map_new
from microex.core.matching import EVENTS_SLACK, process_batch
from microex.core.records import COMMAND, EVENT
from microex.core.state import H_LIVE_ORDERS, L_COUNT, L_PRICE, L_QTY, allocate_state, views
from microex.core.venue import VenueConfig

_LOW32 = (1 << 32) - 1


class MatchingEngine:
    """One engine; with a `venue`, risk mode is on (accounts, holds, fees, checks)."""

    def __init__(self, config: EngineConfig | None = None, venue: VenueConfig | None = None) -> None:
        if venue is not None:
            config = venue.engine_config(config)
        self.config = config or EngineConfig()
        self.venue = venue
        self.state = allocate_state(self.config)
        if venue is not None:
            venue.write_into(self.state)
        m = self.config.id_hash_multiplier
        self.ids = id_map_new(self.config.id_capacity, (m | 1) if m else None)
        self.events = np.zeros(self.config.event_capacity, dtype=EVENT)
        self._kernel = process_batch

    def warm_up(self) -> None:
        """Compile (or load from cache) and bind the typed entry point.

        Calling the compiled entry point skips numba's dispatcher (argument
        type resolution), which is most of the cost of a one-command call.
        """
        probe = np.zeros(1, dtype=COMMAND)
        process_batch(self.state, self.ids, probe, 0, 0, self.events)
        sigs = getattr(process_batch, "signatures", None)
        if sigs:  # a plain function under NUMBA_DISABLE_JIT
            self._kernel = process_batch.overloads[sigs[0]].entry_point

    def reserve_ids(self, orders: int) -> None:
        """Size the order-id map for `orders` more ids now, so no batch stops to double it
        (a doubling rehashes every id of the run: milliseconds with the engine stopped)."""
        while int(self.ids[0]) + orders > id_map_capacity(self.ids) >> 1:
            self.ids = id_map_grown(self.ids)

    @property
    def live_orders(self) -> int:
        return int(self.state[H_LIVE_ORDERS])

    def call(self, cmds: np.ndarray, start: int, count: int) -> tuple[int, int]:
        """One kernel call: (commands processed, events in self.events[:n]).

        `cmds` must be a C-contiguous COMMAND array: after warm_up() the
        compiled entry point does not check argument types (run() does).
        """
        r = self._kernel(self.state, self.ids, cmds, start, count, self.events)
        return r & _LOW32, r >> 32

    def run(self, cmds: np.ndarray, sink: Callable[[np.ndarray], None], batch: int = 1 << 16) -> int:
        """Run every command, in batches of `batch`; `sink` gets each event chunk (a view)."""
        if cmds.dtype != COMMAND or not cmds.flags.c_contiguous:
            cmds = np.ascontiguousarray(cmds, dtype=COMMAND)
        done = 0
        total_events = 0
        n = len(cmds)
        while done < n:
            count = min(batch, n - done)
            processed, n_events = self.call(cmds, done, count)
            if n_events:
                sink(self.events[:n_events])
                total_events += n_events
            done += processed
            if processed < count:
                self._make_room(stalled=processed == 0 and n_events == 0)
        return total_events

    def process(self, cmds: np.ndarray) -> np.ndarray:
        """Run every command; return all their events (a copy)."""
        chunks: list[np.ndarray] = []
        self.run(cmds, lambda ev: chunks.append(raw.copy(ev)))  # byte copies: padding stays as written (zero)
        if len(chunks) == 1:
            return chunks[0]
        return raw.concat(chunks, EVENT)

    def _make_room(self, stalled: bool) -> None:
        """The kernel stopped early: grow the id map, or the event buffer if even
        an empty one could not take the next command's events."""
        if id_map_full(self.ids):
            self.ids = id_map_grown(self.ids)
        need = 2 * self.live_orders + EVENTS_SLACK
        if stalled and need > len(self.events):
            self.events = np.zeros(2 * need, dtype=EVENT)

    def best(self, instrument: int) -> tuple[int, int]:
        """(best bid, best ask) in ticks; 0 for an empty side."""
        bid = ask = 0
        v = views(self.state)
        max_levels = self.config.max_levels
        for side in (1, 2):
            book = instrument * 2 + side - 1
            n = int(v["counts"][book])
            if n:
                key = int(v["keys"].reshape(-1)[book * max_levels + n - 1])
                if side == 1:
                    bid = key
                else:
                    ask = -key
        return bid, ask

    def depth(self, instrument: int, side: int, levels: int = 10) -> list[tuple[int, int, int]]:
        """Top `levels` price levels of one side, best first: (price, qty, orders)."""
        v = views(self.state)
        book = instrument * 2 + side - 1
        n = int(v["counts"][book])
        out = []
        for j in range(n - 1, max(n - 1 - levels, -1), -1):
            lv = int(v["lidx"][book, j])
            price, qty, count = (int(x) for x in v["levels"][lv, [L_PRICE, L_QTY, L_COUNT]])
            out.append((price, qty, count))
        return out

    def digest(self) -> str:
        """Hash of the whole engine state (book, balances, every id taken and its value): equal
        digests, equal state. Deterministic for a config, id-hash multiplier and command
        sequence, whatever the batching, and whatever size the id map was grown to (a venue
        sizes it ahead, reserve_ids; a replay grows it as it goes): the map's entries are
        hashed in id order, not where they sit."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.state.tobytes())
        ids = self.ids
        h.update(ids[[0, 2]].tobytes())  # entries used, hash multiplier
        pairs = ids[ID_HEADER:].reshape(-1, 2)
        used = pairs[pairs[:, 0] != 0]
        h.update(used[np.argsort(used[:, 0])].tobytes())
        return h.hexdigest()

    def layout_digest(self) -> str:
        """The digest of snapshot format 1: the arrays' raw bytes, id map slots included."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.state.tobytes())
        h.update(self.ids.tobytes())
        return h.hexdigest()

    def restore(self, state: np.ndarray, ids: np.ndarray) -> None:
        """Adopt saved arrays (a snapshot) as this engine's state."""
        if state.shape != self.state.shape or state.dtype != self.state.dtype:
            raise ValueError("snapshot state does not match this engine's configuration")
        self.state = np.ascontiguousarray(state, dtype=np.int64).copy()
        self.ids = np.ascontiguousarray(ids, dtype=np.int64).copy()

    def balances(self) -> np.ndarray:
        """(account, asset, [available, held]) in each asset's smallest unit (a view)."""
        return views(self.state)["balances"]

    def balance_rows(self) -> list[tuple[int, int, int, int]]:
        """(account, asset, available, held) for every non-zero balance, in order."""
        b = self.balances()
        accs, assets = np.nonzero((b[:, :, 0] != 0) | (b[:, :, 1] != 0))
        return [(int(a), int(s), int(b[a, s, 0]), int(b[a, s, 1])) for a, s in zip(accs, assets)]
