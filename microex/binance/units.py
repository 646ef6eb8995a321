"""Decimals at the edge: Binance's decimal strings <-> the engine's ticks, lots and units.

How it works
- Each asset has `decimals` ([assets] in the serve config): its smallest unit is
  10^-decimals of one coin, and balances are integers of that unit.
- An instrument's `lot` is base units per lot, its `tick` quote units per tick per lot
  (risk.md: price_ticks x qty_lots x tick = notional in quote units). So one lot is
  `lot / 10^base_dec` coins (Binance's stepSize) and one tick is a price step of
  `tick * 10^base_dec / (lot * 10^quote_dec)` quote coins per base coin (tickSize).
- Parsing is exact (Decimal -> Fraction): a price or quantity that is not a whole
  number of ticks or lots is rejected (-1013 "Filter failure: PRICE_FILTER" /
  "LOT_SIZE"), never rounded. Text must match Binance's `^[0-9]{1,20}(\\.[0-9]{1,20})?$`
  (no sign, exponent or spaces): anything else is -1100.
- Formatting: integers scaled by a power of ten, printed with at least 8 decimals as
  Binance does ("0.01000000"); a step that is not a terminating decimal is printed
  rounded to 18 decimals (configs with such steps are unusual: lots of 3 units).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from microex.binance import errors as E
from microex.core.venue import VenueConfig

DECIMAL_RE = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
MIN_DIGITS = 8
MAX_DIGITS = 18
PRICE_MAX_TICKS = 10**12  # PRICE_FILTER maxPrice, in ticks
QTY_MAX_LOTS = 10**12  # LOT_SIZE maxQty when the instrument has no max_qty


def parse_decimal(name: str, text: str) -> Fraction:
    if not isinstance(text, str) or not DECIMAL_RE.fullmatch(text):
        raise E.illegal(name, "not a decimal number")
    return Fraction(Decimal(text))


def _digits(step: Fraction) -> int:
    """Decimals needed to print multiples of `step` exactly (MAX_DIGITS if none suffice)."""
    for d in range(MAX_DIGITS + 1):
        if (step * 10**d).denominator == 1:
            return max(d, MIN_DIGITS)
    return MAX_DIGITS


def fmt_scaled(value: int, digits: int) -> str:
    """value / 10^digits as a decimal string with exactly `digits` decimals."""
    if digits == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    s = str(abs(value)).rjust(digits + 1, "0")
    return f"{sign}{s[:-digits]}.{s[-digits:]}"


class Scale:
    """Multiples of one step (a Fraction) printed with a fixed number of decimals."""

    __slots__ = ("step", "digits", "_num")

    def __init__(self, step: Fraction) -> None:
        self.step = step
        self.digits = _digits(step)
        scaled = step * 10**self.digits
        self._num = scaled.numerator if scaled.denominator == 1 else None

    def fmt(self, n: int) -> str:
        if self._num is not None:
            return fmt_scaled(n * self._num, self.digits)
        return fmt_scaled(round(n * self.step * 10**self.digits), self.digits)

    def to_float(self, n: int) -> float:
        return float(n * self.step)


@dataclass
class Market:
    """One instrument as the edge sees it: ids, steps and limits."""

    id: int
    symbol: str
    base: str
    quote: str
    base_asset: int
    quote_asset: int
    tick: int
    lot: int
    base_dec: int
    quote_dec: int
    min_qty: int
    max_qty: int
    max_notional: int
    maker_bps: int
    taker_bps: int

    def __post_init__(self) -> None:
        self.tick_size = Fraction(self.tick * 10**self.base_dec, self.lot * 10**self.quote_dec)
        self.step_size = Fraction(self.lot, 10**self.base_dec)
        self.prices = Scale(self.tick_size)
        self.qtys = Scale(self.step_size)
        self.quote_units = Scale(Fraction(1, 10**self.quote_dec))
        self.base_units = Scale(Fraction(1, 10**self.base_dec))

    # -- text -> integers ---------------------------------------------------------------------

    def price_ticks(self, text: str, name: str = "price") -> int:
        v = parse_decimal(name, text)
        ticks = v / self.tick_size
        if v <= 0 or ticks.denominator != 1:
            raise E.ApiError(E.INVALID_MESSAGE, "Filter failure: PRICE_FILTER")
        if ticks > PRICE_MAX_TICKS:
            raise E.ApiError(E.INVALID_MESSAGE, "Filter failure: PRICE_FILTER")
        return int(ticks)

    def qty_lots(self, text: str, name: str = "quantity") -> int:
        v = parse_decimal(name, text)
        lots = v / self.step_size
        if v <= 0 or lots.denominator != 1:
            raise E.ApiError(E.INVALID_MESSAGE, "Filter failure: LOT_SIZE")
        if lots > (self.max_qty or QTY_MAX_LOTS):
            raise E.ApiError(E.INVALID_MESSAGE, "Filter failure: LOT_SIZE")
        return int(lots)

    def quote_amount_units(self, text: str, name: str = "quoteOrderQty") -> Fraction:
        v = parse_decimal(name, text)
        if v <= 0:
            raise E.ApiError(E.INVALID_MESSAGE, f"Invalid {name}.")
        return v * 10**self.quote_dec

    # -- integers -> text ---------------------------------------------------------------------

    def price(self, ticks: int) -> str:
        return self.prices.fmt(ticks)

    def qty(self, lots: int) -> str:
        return self.qtys.fmt(lots)

    def quote_amount(self, units: int) -> str:
        return self.quote_units.fmt(units)

    def notional(self, ticks: int, lots: int) -> int:
        """Quote units of `lots` at `ticks`."""
        return ticks * lots * self.tick

    def filters(self) -> list[dict]:
        step, tick = self.qty(1), self.price(1)
        max_lots = self.max_qty or QTY_MAX_LOTS
        lot_size = {"minQty": self.qty(self.min_qty), "maxQty": self.qty(max_lots), "stepSize": step}
        max_notional = self.quote_amount(self.max_notional) if self.max_notional else self.quote_amount(
            PRICE_MAX_TICKS * max_lots * self.tick)
        return [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": self.price(PRICE_MAX_TICKS),
             "tickSize": tick},
            {"filterType": "LOT_SIZE", **lot_size},
            {"filterType": "MARKET_LOT_SIZE", **lot_size},
            {"filterType": "NOTIONAL", "minNotional": self.quote_amount(0), "applyMinToMarket": False,
             "maxNotional": max_notional, "applyMaxToMarket": False, "avgPriceMins": 5},
        ]


class Assets:
    """Asset names <-> engine asset ids, and their decimals."""

    def __init__(self, venue: VenueConfig, decimals: dict[str, int]) -> None:
        self.ids = venue.asset_ids()
        self.names = {i: n for n, i in self.ids.items()}
        self.decimals = {n: int(decimals.get(n, 0)) for n in self.ids}
        self.scales = {self.ids[n]: Scale(Fraction(1, 10**d)) for n, d in self.decimals.items()}

    def amount(self, asset_id: int, units: int) -> str:
        return self.scales[asset_id].fmt(units)


def build_markets(venue: VenueConfig, decimals: dict[str, int]) -> dict[str, Market]:
    assets = venue.asset_ids()
    out = {}
    for iid, inst in enumerate(venue.instruments, start=1):
        out[inst.symbol] = Market(
            id=iid, symbol=inst.symbol, base=inst.base, quote=inst.quote, base_asset=assets[inst.base],
            quote_asset=assets[inst.quote], tick=inst.tick, lot=inst.lot, base_dec=int(decimals.get(inst.base, 0)),
            quote_dec=int(decimals.get(inst.quote, 0)), min_qty=inst.min_qty, max_qty=inst.max_qty,
            max_notional=inst.max_notional, maker_bps=inst.maker_fee_bps, taker_bps=inst.taker_fee_bps)
    return out


def fmt_fraction(v: Fraction, digits: int) -> str:
    """A Fraction rounded (half even) to `digits` decimals."""
    return fmt_scaled(round(v * 10**digits), digits)
