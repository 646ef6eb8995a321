"""Plain-Python twin of risk.py and accounts.py: the oracle for risk mode.

Same rules, written for reading (see risk.py's module doc): per-lot holds,
fees in the quote asset rounded up on both sides, account 0 collects them,
average-cost positions; account commands apply or return a reason.
"""

from __future__ import annotations

from collections import defaultdict

from microex.core.records import Action, Reason, Side
from microex.core.venue import VenueConfig

CAP = 1 << 61
BPS = 10_000


def fee(notional: int, bps: int) -> int:
    return -(-notional * bps // BPS)  # ceil


def mul_capped(a: int, b: int) -> int:
    return a * b if a * b <= CAP else -1


class ReferenceRisk:
    def __init__(self, venue: VenueConfig) -> None:
        self.venue = venue
        assets = venue.asset_ids()
        self.instr = {iid: spec for iid, spec in enumerate(venue.instruments, start=1)}
        self.base = {iid: assets[s.base] for iid, s in self.instr.items()}
        self.quote = {iid: assets[s.quote] for iid, s in self.instr.items()}
        self.n_assets = len(assets)
        self.max_open = defaultdict(lambda: venue.default_max_open_orders,
                                    {a.id: a.max_open_orders for a in venue.accounts})
        self.balances: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])  # available, held
        self.positions: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])  # lots, cost, realized
        self.open_orders: dict[int, int] = defaultdict(int)
        self.suspended: set[int] = set()
        self.halted: set[int] = set()
        self.ref_price: dict[int, int] = {}

    # ------------------------------------------------------------ order checks
    def band_edge(self, inst: int, side: int) -> int:
        ref, band = self.ref_price.get(inst, 0), self.instr[inst].band_bps
        if ref == 0 or band == 0:
            return 0
        if side == Side.BUY:
            return ref * (BPS + band) // BPS
        return max(1, -(-ref * (BPS - band) // BPS))

    def check_order(self, acc: int, inst: int, side: int, price: int, qty: int) -> Reason:
        if acc > self.venue.max_accounts:
            return Reason.UNKNOWN_ACCOUNT
        if inst not in self.instr:
            return Reason.UNKNOWN_INSTRUMENT
        spec = self.instr[inst]
        if inst in self.halted:
            return Reason.RISK_HALTED
        if acc in self.suspended:
            return Reason.RISK_SUSPENDED
        if qty < spec.min_qty:
            return Reason.RISK_MIN_QTY
        if spec.max_qty and qty > spec.max_qty:
            return Reason.RISK_MAX_QTY
        lo, hi = self.band_edge(inst, Side.SELL), self.band_edge(inst, Side.BUY)
        if price and hi and not lo <= price <= hi:
            return Reason.RISK_PRICE_BAND
        notional = mul_capped(price, mul_capped(qty, spec.tick)) if qty * spec.tick <= CAP else -1
        if notional < 0 or (spec.max_notional and notional > spec.max_notional):
            return Reason.RISK_MAX_NOTIONAL
        if qty * spec.lot > CAP:
            return Reason.RISK_MAX_QTY
        return Reason.NONE

    def open_orders_full(self, acc: int) -> bool:
        limit = self.max_open[acc]
        return limit != 0 and self.open_orders[acc] >= limit

    def unit_hold(self, inst: int, side: int, price: int) -> int:
        spec = self.instr[inst]
        if side != Side.BUY:
            return spec.lot
        pt = price * spec.tick
        return pt + fee(pt, max(spec.maker_fee_bps, spec.taker_fee_bps))

    def hold_asset(self, inst: int, side: int) -> int:
        return self.quote[inst] if side == Side.BUY else self.base[inst]

    def has_funds(self, acc: int, inst: int, side: int, amount: int) -> bool:
        return self.balances[acc, self.hold_asset(inst, side)][0] >= amount

    def move_hold(self, acc: int, inst: int, side: int, amount: int) -> None:
        bal = self.balances[acc, self.hold_asset(inst, side)]
        bal[0] -= amount
        bal[1] += amount

    def release(self, acc: int, inst: int, side: int, unit: int, lots: int) -> None:
        self.move_hold(acc, inst, side, -unit * lots)

    # -------------------------------------------------------------- settlement
    def settle(self, inst: int, side: int, taker: int, tunit: int, maker: int, munit: int, price: int,
               qty: int) -> None:
        spec = self.instr[inst]
        if side == Side.BUY:
            buyer, bunit, bbps, seller, sbps = taker, tunit, spec.taker_fee_bps, maker, spec.maker_fee_bps
        else:
            buyer, bunit, bbps, seller, sbps = maker, munit, spec.maker_fee_bps, taker, spec.taker_fee_bps
        notional = price * qty * spec.tick
        fee_b, fee_s = fee(notional, bbps), fee(notional, sbps)
        quote, base = self.quote[inst], self.base[inst]
        released = qty * bunit
        self.balances[buyer, quote][1] -= released
        self.balances[buyer, quote][0] += released - notional - fee_b
        self.balances[buyer, base][0] += qty * spec.lot
        self.balances[seller, base][1] -= qty * spec.lot
        self.balances[seller, quote][0] += notional - fee_s
        self.balances[0, quote][0] += fee_b + fee_s
        self.ref_price[inst] = price
        self._position_fill(buyer, inst, qty, price)
        self._position_fill(seller, inst, -qty, price)

    def _position_fill(self, acc: int, inst: int, lots: int, price: int) -> None:
        pos = self.positions[acc, inst]
        if pos[0] == 0 or (pos[0] > 0) == (lots > 0):
            pos[0] += lots
            pos[1] += lots * price
            return
        sgn = 1 if pos[0] > 0 else -1
        size, amount = abs(pos[0]), abs(lots)
        close = min(amount, size)
        removed = abs(pos[1]) * close // size
        pos[2] += sgn * (price * close - removed)
        pos[1] -= sgn * removed
        pos[0] -= sgn * close
        if amount > close:
            pos[0] = -sgn * (amount - close)
            pos[1] = -sgn * (amount - close) * price

    # ---------------------------------------------------------- account commands
    def command(self, cmd) -> Reason:
        """deposit, withdraw, halt, resume, suspend, unsuspend, set_price."""
        action, acc = cmd.action, cmd.account
        if action in (Action.DEPOSIT, Action.WITHDRAW, Action.SUSPEND, Action.UNSUSPEND):
            if not 1 <= acc <= self.venue.max_accounts:
                return Reason.INVALID_COMMAND
            if action == Action.SUSPEND:
                self.suspended.add(acc)
                return Reason.NONE
            if action == Action.UNSUSPEND:
                self.suspended.discard(acc)
                return Reason.NONE
            asset, amount = cmd.instrument, cmd.qty_lots
            if not 1 <= asset <= self.n_assets:
                return Reason.INVALID_COMMAND
            if amount <= 0:
                return Reason.INVALID_QTY
            bal = self.balances[acc, asset]
            if action == Action.DEPOSIT:
                if sum(bal) + amount > CAP:
                    return Reason.INVALID_QTY
                bal[0] += amount
                return Reason.NONE
            if amount > bal[0]:
                return Reason.RISK_FUNDS
            bal[0] -= amount
            return Reason.NONE
        inst = cmd.instrument
        if inst <= 0:
            return Reason.INVALID_COMMAND
        if inst not in self.instr:
            return Reason.UNKNOWN_INSTRUMENT
        if action == Action.HALT:
            self.halted.add(inst)
        elif action == Action.RESUME:
            self.halted.discard(inst)
        else:  # set_price
            if cmd.price_ticks <= 0:
                return Reason.INVALID_PRICE
            self.ref_price[inst] = cmd.price_ticks
        return Reason.NONE
