"""Edge: the HTTP edge's state in one object: replica, history, market view, and order entry.

How it works
- `poll()` runs the journal's new frames through the replica (replica.py) and
  hands each frame's events to the history (history.py) and the market view
  (market.py), then to the `hooks` (user streams, market streams), in that order,
  so a hook always sees the tables as they stand after the frame.
- Order entry: `submit_new` / `submit_cancel` write one COMMAND into the edge's own
  inbound ring (engine order ids from `first_order_id(run, HTTP_GATEWAY_NO)`, session
  id `first_session_id(HTTP_GATEWAY_NO)`) and return a future. When the replica runs
  that command (found by the session id: a NEW by its engine order id, a CANCEL by
  its target in FIFO order per target), the future gets an `Outcome`: the
  command's events and the order's row and reports as they stood right after it.
  The caller (rest_orders.py) awaits it with a timeout.
- The poll loop (`run`) polls every `poll_s` (1 ms) while anything happened in the
  last second, then every `idle_poll_s` (10 ms): an idle edge costs next to no CPU.
  A command sent starts a fast poll (`_kick`): it spins, yielding to the event loop,
  for 2 ms, then polls every poll_s until every awaited command is answered.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from microex.binance import history_kernels as K
from microex.binance.history import History
from microex.binance.market import MarketView
from microex.binance.replica import Replica
from microex.binance.units import Assets, Market, build_markets
from microex.core.records import COMMAND, Action, EventKind
from microex.gateway.process import MAX_GATEWAYS, first_order_id, first_session_id

HTTP_GATEWAY_NO = MAX_GATEWAYS - 1
SPIN_S = 0.002
log = logging.getLogger(__name__)


@dataclass
class Outcome:
    seq: int
    events: np.ndarray  # the command's events (a copy)
    row: list[int] | None  # the order's history row right after the command (None: rejected, or unknown)
    reports: np.ndarray  # the report rows of the command for this order (taker side), a copy

    @property
    def rejected(self) -> int:
        """The reject reason (0: not rejected)."""
        rej = self.events[self.events["kind"] == EventKind.REJECTED]
        return int(rej["reason"][0]) if len(rej) else 0


class Edge:
    def __init__(self, data: str, decimals: dict[str, int], inbound: str | None = None, run: int = 1,
                 history_commands: int = 1_000_000, poll_s: float = 0.001, idle_poll_s: float = 0.01) -> None:
        self.replica = Replica(data, history_commands=history_commands)
        engine = self.replica.engine
        venue = engine.venue
        if venue is None:
            raise ValueError(f"{data}: the engine has no venue (risk mode): nothing for the Binance API to serve")
        self.markets: dict[str, Market] = build_markets(venue, decimals)
        self.by_id: dict[int, Market] = {m.id: m for m in self.markets.values()}
        self.assets = Assets(venue, decimals)
        cfg = engine.config
        minfo = np.zeros((cfg.max_instruments + 1, K.M_FIELDS), np.int64)
        for m in self.markets.values():
            minfo[m.id] = (m.tick, m.maker_bps, m.taker_bps)
        self.history = History(minfo, cfg.max_orders)
        self.market = MarketView(len(venue.instruments), cfg.max_levels)
        if self.replica.start_seq:
            now = time.time_ns()
            self.history.seed(self.replica.open_orders(), now)
            self.market.seed_books(engine)
        self.ring = None
        if inbound:
            from microex.pipeline.ring import RingBuffer

            self.ring = RingBuffer.attach(inbound, COMMAND)
        self.next_eid = first_order_id(run, HTTP_GATEWAY_NO)
        self.session_id = first_session_id(HTTP_GATEWAY_NO)
        self.new_waiters: dict[int, asyncio.Future] = {}
        self.cancel_waiters: dict[int, collections.deque] = {}
        self.hooks: list[Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]] = []
        self.poll_s, self.idle_poll_s = poll_s, idle_poll_s
        self.last_activity = 0.0
        self.commands = 0
        self._fast: asyncio.Task | None = None

    # -- following the engine ----------------------------------------------------------------------

    def poll(self) -> int:
        n = self.replica.poll(self._on_frame)
        if n:
            self.commands += n
            self.last_activity = time.monotonic()
        return n

    def catch_up(self) -> int:
        total = 0
        while True:
            n = self.poll()
            total += n
            if not n:
                return total

    def _on_frame(self, cmds: np.ndarray, events: np.ndarray) -> None:
        t0 = self.history.thead[0]
        reports = self.history.apply(cmds, events)
        self.market.apply(events)
        new_trades = self._trades_since(int(t0))
        mine = cmds["session"] == self.session_id
        if mine.any() and (self.new_waiters or self.cancel_waiters):
            self._resolve(cmds[mine], events, reports)
        for hook in self.hooks:
            try:
                hook(cmds, events, reports, new_trades)
            except Exception:  # a hook's bug must not stop the replica
                log.exception("edge hook failed")

    def _trades_since(self, t0: int) -> np.ndarray:
        h = self.history
        n = int(h.thead[0]) - t0
        if n <= 0:
            return h.tt[:0]
        n = min(n, len(h.tt))
        return h.tt[np.arange(h.thead[0] - n, h.thead[0]) % len(h.tt)]

    def _resolve(self, cmds: np.ndarray, events: np.ndarray, reports: np.ndarray) -> None:
        for seq, action, eid in zip(cmds["seq"].tolist(), cmds["action"].tolist(), cmds["order_id"].tolist()):
            if action == Action.NEW:
                fut = self.new_waiters.pop(eid, None)
            elif action == Action.CANCEL:
                q = self.cancel_waiters.get(eid)
                fut = q.popleft() if q else None
                if q is not None and not q:
                    del self.cancel_waiters[eid]
            else:
                fut = None
            if fut is None or fut.done():
                continue
            ev = events[events["seq"] == seq].copy()
            rep = reports[(reports[:, K.RP_SEQ] == seq) & (reports[:, K.RP_ORDER] == eid)
                          & (reports[:, K.RP_MAKER] == 0)].copy()
            r = self.history.row(eid)
            fut.set_result(Outcome(seq, ev, [int(x) for x in self.history.ot[r]] if r is not None else None, rep))

    async def run(self) -> None:
        """Poll the journal for as long as the edge lives."""
        while True:
            try:
                self.poll()
            except Exception:
                log.exception("replica poll failed")
                raise
            busy = self.new_waiters or self.cancel_waiters or time.monotonic() - self.last_activity < 1.0
            await asyncio.sleep(self.poll_s if busy else self.idle_poll_s)

    def _kick(self) -> None:
        """A command is awaited: poll at once and keep polling until it is answered."""
        if self._fast is None:
            self._fast = asyncio.get_running_loop().create_task(self._fast_poll())

    async def _fast_poll(self) -> None:
        # Spin (yielding to the loop) for SPIN_S, the engine's usual turnaround, then every poll_s:
        # an order's answer is not held up by the idle poll interval.
        t0 = time.monotonic()
        try:
            while self.new_waiters or self.cancel_waiters:
                await asyncio.sleep(0 if time.monotonic() - t0 < SPIN_S else self.poll_s)
                self.poll()
        finally:
            self._fast = None

    # -- order entry -----------------------------------------------------------------------------

    def _send(self, cmd: np.ndarray) -> None:
        if self.ring is None:
            raise RuntimeError("this edge is read-only (no inbound ring)")
        cmd["ts_ns"] = time.time_ns()
        cmd["session"] = self.session_id
        self.ring.write(cmd, timeout=5.0)
        self._kick()

    def submit_new(self, account: int, inst: int, side: int, ord_type: int, tif: int, flags: int, price: int,
                   qty: int) -> tuple[int, asyncio.Future]:
        eid = self.next_eid
        self.next_eid += 1
        cmd = np.zeros(1, dtype=COMMAND)
        cmd["order_id"], cmd["account"], cmd["instrument"] = eid, account, inst
        cmd["action"], cmd["side"], cmd["ord_type"], cmd["tif"], cmd["flags"] = Action.NEW, side, ord_type, tif, flags
        cmd["price_ticks"], cmd["qty_lots"] = price, qty
        fut = asyncio.get_running_loop().create_future()
        self.new_waiters[eid] = fut
        try:
            self._send(cmd)
        except BaseException:
            self.new_waiters.pop(eid, None)
            raise
        return eid, fut

    def submit_cancel(self, account: int, eid: int) -> asyncio.Future:
        cmd = np.zeros(1, dtype=COMMAND)
        cmd["order_id"], cmd["account"], cmd["action"] = eid, account, Action.CANCEL
        fut = asyncio.get_running_loop().create_future()
        q = self.cancel_waiters.setdefault(eid, collections.deque())
        q.append(fut)
        try:
            self._send(cmd)
        except BaseException:
            q.remove(fut)
            raise
        return fut

    # -- balances ----------------------------------------------------------------------------------

    def balances(self, account: int) -> list[tuple[int, int, int]]:
        """(asset id, available, held) of every asset of the venue, for one account."""
        b = self.replica.engine.balances()
        if not 0 <= account < len(b):
            return []
        return [(a, int(b[account, a, 0]), int(b[account, a, 1])) for a in sorted(self.assets.names)]

    def close(self) -> None:
        self.replica.close()
        if self.ring is not None:
            self.ring.close()
