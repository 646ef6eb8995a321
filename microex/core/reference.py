"""The reference matcher: plain Python, readable, the oracle for the compiled engine.

It has the compiled engine's contract exactly: the same command records in, the
same event records out (L2 level events included), the same capacity rules. It
is written for clarity: dicts keep each level's FIFO (insertion order), sorted
price lists give the best price, and level totals are kept beside the orders.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from microex.core.config import EngineConfig
from microex.core.reference_risk import ReferenceRisk
from microex.core.records import (
    MAX_QTY_LOTS,
    EVENT,
    Action,
    EventKind,
    Flag,
    OrdType,
    Reason,
    Side,
    Tif,
)
from microex.core.venue import VenueConfig

_EVENT_FIELDS = EVENT.names
_FIELD_INDEX = {name: i for i, name in enumerate(_EVENT_FIELDS)}


@dataclass
class _Command:
    seq: int
    ts_ns: int
    order_id: int
    account: int
    price_ticks: int
    qty_lots: int
    instrument: int
    session: int
    action: int
    side: int
    ord_type: int
    tif: int
    flags: int


@dataclass
class _Order:
    order_id: int
    account: int
    instrument: int
    side: int
    price: int
    leaves: int
    flags: int


@dataclass
class _Level:
    price: int
    orders: dict[int, _Order] = field(default_factory=dict)  # FIFO by insertion
    qty: int = 0


class _BookSide:
    def __init__(self, instrument: int, side: int) -> None:
        self.instrument = instrument
        self.side = side
        self.levels: dict[int, _Level] = {}
        self.prices: list[int] = []  # ascending

    def best(self) -> _Level | None:
        if not self.prices:
            return None
        return self.levels[self.prices[-1] if self.side == Side.BUY else self.prices[0]]

    def level(self, price: int) -> _Level:
        lvl = self.levels.get(price)
        if lvl is None:
            lvl = self.levels[price] = _Level(price)
            bisect.insort(self.prices, price)
        return lvl

    def drop_if_empty(self, lvl: _Level) -> None:
        if not lvl.orders:
            del self.levels[lvl.price]
            self.prices.pop(bisect.bisect_left(self.prices, lvl.price))


class ReferenceMatcher:
    """Price-time priority matcher for many instruments; see SPEC.md for the rules."""

    def __init__(self, config: EngineConfig | None = None, venue: VenueConfig | None = None) -> None:
        if venue is not None:
            config = venue.engine_config(config)
        self.config = config or EngineConfig()
        self.risk = ReferenceRisk(venue) if venue is not None else None
        self.books: dict[tuple[int, int], _BookSide] = {}
        self.orders: dict[int, _Order] = {}  # resting orders by id
        self.taken: set[int] = set()  # every order id ever named by a `new`
        self._out: list[tuple] = []
        self._cmd = None

    def balance_rows(self) -> list[tuple[int, int, int, int]]:
        """(account, asset, available, held) for every non-zero balance, in order."""
        if not self.risk:
            return []
        return sorted((a, s, v[0], v[1]) for (a, s), v in self.risk.balances.items() if v[0] or v[1])

    def position_rows(self) -> list[tuple[int, int, int, int, int]]:
        """(account, instrument, lots, cost tick-lots, realized tick-lots), non-zero ones, in order."""
        if not self.risk:
            return []
        return sorted((a, i, *v) for (a, i), v in self.risk.positions.items() if v[0] or v[2])

    # ----------------------------------------------------------------- helpers
    def _side(self, instrument: int, side: int) -> _BookSide:
        key = (instrument, side)
        if key not in self.books:
            self.books[key] = _BookSide(instrument, side)
        return self.books[key]

    def _emit(self, kind: EventKind, **fields) -> None:
        event = [0] * len(_EVENT_FIELDS)
        for name, value in fields.items():
            event[_FIELD_INDEX[name]] = value
        event[_FIELD_INDEX["kind"]] = kind
        event[_FIELD_INDEX["seq"]] = self._cmd.seq
        event[_FIELD_INDEX["ts_ns"]] = self._cmd.ts_ns
        self._out.append(tuple(event))

    def _reject(self, order_id: int, reason: Reason) -> None:
        self._emit(EventKind.REJECTED, order_id=order_id, reason=int(reason))

    def _emit_level(self, book: _BookSide, lvl: _Level) -> None:
        self._emit(
            EventKind.LEVEL,
            instrument=book.instrument,
            side=book.side,
            price_ticks=lvl.price,
            qty_lots=lvl.qty,
            level_orders=len(lvl.orders),
        )

    @staticmethod
    def _crosses(side: int, limit: int, level_price: int) -> bool:
        return level_price <= limit if side == Side.BUY else level_price >= limit

    # -------------------------------------------------------------- entry point
    def process(self, cmds: np.ndarray) -> np.ndarray:
        """Run a batch of COMMAND records; return their EVENT records in order."""
        self._out = []
        for record in cmds.tolist():
            cmd = self._cmd = _Command(*record)
            action = cmd.action
            if action == Action.NEW:
                self._new(cmd)
            elif action == Action.CANCEL:
                self._cancel(cmd)
            elif action == Action.MODIFY:
                self._modify(cmd)
            elif Action.DEPOSIT <= action <= Action.SET_PRICE:
                reason = self.risk.command(cmd) if self.risk else Reason.INVALID_COMMAND
                if reason != Reason.NONE:
                    self._reject(0, reason)
            else:
                self._reject(cmd.order_id, Reason.INVALID_COMMAND)
        out = np.zeros(len(self._out), dtype=EVENT)  # zeroed: the record's padding bytes too
        out[:] = self._out
        return out

    # --------------------------------------------------------------------- new
    def _validate_new(self, cmd: _Command) -> Reason:
        """Checks after order id and duplicate, in the order SPEC.md gives."""
        side, otype, tif = cmd.side, cmd.ord_type, cmd.tif
        inst, flags = cmd.instrument, cmd.flags
        if side not in (Side.BUY, Side.SELL) or otype not in (OrdType.LIMIT, OrdType.MARKET):
            return Reason.INVALID_COMMAND
        if otype == OrdType.LIMIT and tif not in (Tif.GTC, Tif.IOC, Tif.FOK):
            return Reason.INVALID_COMMAND
        if cmd.account <= 0 or inst <= 0:
            return Reason.INVALID_COMMAND
        if inst > self.config.max_instruments:
            return Reason.UNKNOWN_INSTRUMENT
        if not 0 < cmd.qty_lots <= MAX_QTY_LOTS:
            return Reason.INVALID_QTY
        price = cmd.price_ticks
        if otype == OrdType.LIMIT and price <= 0:
            return Reason.INVALID_PRICE
        if flags not in (Flag.NONE, Flag.POST_ONLY, Flag.STP):
            return Reason.INVALID_COMMAND
        if flags == Flag.POST_ONLY and (otype != OrdType.LIMIT or tif != Tif.GTC):
            return Reason.INVALID_COMMAND
        opposite = self._side(inst, Side.SELL if side == Side.BUY else Side.BUY).best()
        if flags == Flag.POST_ONLY and opposite is not None and self._crosses(side, price, opposite.price):
            return Reason.WOULD_CROSS
        return Reason.NONE

    def _capacity(self, inst: int, side: int, price: int) -> Reason:
        """A GTC order may rest: it needs a free order slot and a level (or room for one)."""
        if len(self.orders) >= self.config.max_orders:
            return Reason.CAPACITY_ORDERS
        own = self._side(inst, side)
        if price not in own.levels and len(own.prices) >= self.config.max_levels:
            return Reason.CAPACITY_LEVELS
        return Reason.NONE

    def _risk_new(self, order: _Order, market: bool, tif: int) -> tuple[Reason, int, int]:
        """Pre-trade checks of risk mode: (reason, how far it may sweep, hold per lot)."""
        risk = self.risk
        limit = order.price
        if market:  # protection price: where the book fills it, capped by the band
            limit = self._sweep(order, 0, True)[1]
            edge = risk.band_edge(order.instrument, order.side)
            if edge and (limit == 0 or not self._crosses(order.side, edge, limit)):
                limit = edge
        reason = risk.check_order(order.account, order.instrument, order.side, limit, order.leaves)
        if reason == Reason.NONE and tif == Tif.GTC and risk.open_orders_full(order.account):
            reason = Reason.RISK_OPEN_ORDERS
        if reason != Reason.NONE:
            return reason, 0, 0
        unit = risk.unit_hold(order.instrument, order.side, limit)
        if not risk.has_funds(order.account, order.instrument, order.side, unit * order.leaves):
            return Reason.RISK_FUNDS, 0, 0
        return Reason.NONE, limit, unit

    def _new(self, cmd: _Command) -> None:
        oid = cmd.order_id
        if oid <= 0:
            self._reject(oid, Reason.INVALID_COMMAND)
            return
        if oid in self.taken:
            self._reject(oid, Reason.DUPLICATE_ORDER_ID)
            return
        self.taken.add(oid)
        reason = self._validate_new(cmd)
        if reason != Reason.NONE:
            self._reject(oid, reason)
            return
        market = cmd.ord_type == OrdType.MARKET
        order = _Order(
            order_id=oid,
            account=cmd.account,
            instrument=cmd.instrument,
            side=cmd.side,
            price=0 if market else cmd.price_ticks,
            leaves=cmd.qty_lots,
            flags=cmd.flags,
        )
        tif = Tif.IOC if market else cmd.tif
        limit, unit = order.price, 0
        if self.risk:
            reason, limit, unit = self._risk_new(order, market, tif)
            if reason != Reason.NONE:
                self._reject(oid, reason)
                return
        if tif == Tif.GTC:
            reason = self._capacity(order.instrument, order.side, order.price)
            if reason != Reason.NONE:
                self._reject(oid, reason)
                return
        if self.risk:
            self.risk.move_hold(order.account, order.instrument, order.side, unit * order.leaves)
        self._emit(
            EventKind.ACCEPTED,
            order_id=oid,
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            price_ticks=order.price,
            qty_lots=order.leaves,
            leaves_lots=order.leaves,
        )
        if tif == Tif.FOK and self._sweep(order, order.price, market)[0] < order.leaves:
            if self.risk:
                self.risk.release(order.account, order.instrument, order.side, unit, order.leaves)
            self._cancelled(order, order.leaves, Reason.FOK)
            return
        self._match(order, limit, limit == 0, unit)
        if order.leaves == 0:
            return
        if tif == Tif.GTC:
            self._rest(order)
            if self.risk:
                self.risk.open_orders[order.account] += 1
        else:
            if self.risk:
                self.risk.release(order.account, order.instrument, order.side, unit, order.leaves)
            self._cancelled(order, order.leaves, Reason.IOC)

    def _sweep(self, order: _Order, limit: int, market: bool) -> tuple[int, int]:
        """What the order could take now without changing the book (others' orders
        only, with stp): (lots, up to at least its leaves; price of the last level reached)."""
        opposite = self._side(order.instrument, Side.SELL if order.side == Side.BUY else Side.BUY)
        prices = opposite.prices if opposite.side == Side.SELL else reversed(opposite.prices)
        total = last = 0
        for price in prices:
            if not market and not self._crosses(order.side, limit, price):
                break
            last = price
            for maker in opposite.levels[price].orders.values():
                if order.flags == Flag.STP and maker.account == order.account:
                    continue
                total += maker.leaves
            if total >= order.leaves:
                break
        return total, last

    def _match(self, order: _Order, limit: int, market: bool, unit: int) -> None:
        """Trade `order` against the opposite side while it crosses `limit`;
        with risk, settle each fill (`unit`: the order's hold per lot)."""
        opposite = self._side(order.instrument, Side.SELL if order.side == Side.BUY else Side.BUY)
        risk = self.risk
        while order.leaves > 0:
            lvl = opposite.best()
            if lvl is None or (not market and not self._crosses(order.side, limit, lvl.price)):
                return
            munit = risk.unit_hold(order.instrument, opposite.side, lvl.price) if risk else 0
            while order.leaves > 0 and lvl.orders:
                maker = next(iter(lvl.orders.values()))
                if order.flags == Flag.STP and maker.account == order.account:
                    self._remove(opposite, lvl, maker)
                    if risk:
                        risk.release(maker.account, maker.instrument, maker.side, munit, maker.leaves)
                        risk.open_orders[maker.account] -= 1
                    self._cancelled(maker, maker.leaves, Reason.STP)
                    continue
                fill = min(order.leaves, maker.leaves)
                order.leaves -= fill
                maker.leaves -= fill
                lvl.qty -= fill
                if risk:
                    risk.settle(order.instrument, order.side, order.account, unit, maker.account, munit,
                                lvl.price, fill)
                self._emit(
                    EventKind.TRADE,
                    order_id=order.order_id,
                    maker_order_id=maker.order_id,
                    account=order.account,
                    maker_account=maker.account,
                    instrument=order.instrument,
                    side=order.side,
                    price_ticks=lvl.price,
                    qty_lots=fill,
                    leaves_lots=order.leaves,
                    maker_leaves_lots=maker.leaves,
                )
                if maker.leaves == 0:
                    self._remove(opposite, lvl, maker)
                    if risk:
                        risk.open_orders[maker.account] -= 1
            self._emit_level(opposite, lvl)
            opposite.drop_if_empty(lvl)

    def _remove(self, book: _BookSide, lvl: _Level, order: _Order) -> None:
        """Take an order out of its level (the caller drops an emptied level)."""
        del lvl.orders[order.order_id]
        lvl.qty -= order.leaves
        del self.orders[order.order_id]

    def _rest(self, order: _Order) -> None:
        book = self._side(order.instrument, order.side)
        lvl = book.level(order.price)
        lvl.orders[order.order_id] = order
        lvl.qty += order.leaves
        self.orders[order.order_id] = order
        self._emit_level(book, lvl)

    def _cancelled(self, order: _Order, qty: int, reason: Reason) -> None:
        self._emit(
            EventKind.CANCELLED,
            order_id=order.order_id,
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            price_ticks=order.price,
            qty_lots=qty,
            reason=int(reason),
        )

    # ------------------------------------------------------------ cancel/modify
    def _resting(self, cmd: _Command) -> _Order | None:
        oid = cmd.order_id
        if oid <= 0:
            self._reject(oid, Reason.INVALID_COMMAND)
            return None
        order = self.orders.get(oid)
        if order is None:
            self._reject(oid, Reason.UNKNOWN_ORDER)
        return order

    def _cancel(self, cmd: _Command) -> None:
        order = self._resting(cmd)
        if order is None:
            return
        book = self._side(order.instrument, order.side)
        lvl = book.levels[order.price]
        leaves = order.leaves
        self._remove(book, lvl, order)
        if self.risk:
            unit = self.risk.unit_hold(order.instrument, order.side, order.price)
            self.risk.release(order.account, order.instrument, order.side, unit, leaves)
            self.risk.open_orders[order.account] -= 1
        self._cancelled(order, leaves, Reason.USER)
        self._emit_level(book, lvl)
        book.drop_if_empty(lvl)

    def _modify(self, cmd: _Command) -> None:
        order = self._resting(cmd)
        if order is None:
            return
        price, qty = cmd.price_ticks, cmd.qty_lots
        if price <= 0:
            self._reject(order.order_id, Reason.INVALID_PRICE)
            return
        if not 0 < qty <= MAX_QTY_LOTS:
            self._reject(order.order_id, Reason.INVALID_QTY)
            return
        book = self._side(order.instrument, order.side)
        opposite = self._side(order.instrument, Side.SELL if order.side == Side.BUY else Side.BUY)
        best = opposite.best()
        crosses = best is not None and self._crosses(order.side, price, best.price)
        if order.flags == Flag.POST_ONLY and crosses:
            self._reject(order.order_id, Reason.WOULD_CROSS)
            return
        lvl = book.levels[order.price]
        risk = self.risk
        old_unit = new_unit = 0
        if risk:
            reason = risk.check_order(order.account, order.instrument, order.side, price, qty)
            old_unit = risk.unit_hold(order.instrument, order.side, order.price)
            new_unit = risk.unit_hold(order.instrument, order.side, price)
            extra = qty * new_unit - order.leaves * old_unit
            if reason == Reason.NONE and extra > 0 and not risk.has_funds(
                order.account, order.instrument, order.side, extra
            ):
                reason = Reason.RISK_FUNDS
            if reason != Reason.NONE:
                self._reject(order.order_id, reason)
                return
        if price == order.price and qty <= order.leaves:  # keeps time priority
            if risk:
                risk.release(order.account, order.instrument, order.side, old_unit, order.leaves - qty)
            lvl.qty -= order.leaves - qty
            order.leaves = qty
            self._modified(order)
            self._emit_level(book, lvl)
            return
        frees_level = price != order.price and len(lvl.orders) == 1
        if (
            price not in book.levels
            and len(book.prices) - frees_level >= self.config.max_levels
        ):
            self._reject(order.order_id, Reason.CAPACITY_LEVELS)
            return
        if risk:
            risk.move_hold(order.account, order.instrument, order.side, qty * new_unit - order.leaves * old_unit)
        self._remove(book, lvl, order)
        order.price, order.leaves = price, qty
        self._modified(order)
        self._emit_level(book, lvl)
        book.drop_if_empty(lvl)
        self._match(order, price, False, new_unit)
        if order.leaves > 0:
            self._rest(order)
        elif risk:
            risk.open_orders[order.account] -= 1

    def _modified(self, order: _Order) -> None:
        self._emit(
            EventKind.MODIFIED,
            order_id=order.order_id,
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            price_ticks=order.price,
            leaves_lots=order.leaves,
        )
