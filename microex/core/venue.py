"""Venue configuration: instruments with their risk parameters, accounts, assets.

Loaded from TOML (`microex match --config venue.toml`; schema in docs/risk.md and
examples/venue.toml) and written into the engine state once, before the first
command. Integers only from here on: a band in percent becomes basis points.
A config error is a ValueError naming the field (start-up, not the hot path).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from microex.core.config import EngineConfig
from microex.core.state import (
    A_MAX_OPEN,
    H_RISK_ON,
    I_ACTIVE,
    I_BAND_BPS,
    I_BASE,
    I_HOLD_BPS,
    I_LOT,
    I_MAKER_BPS,
    I_MAX_NOTIONAL,
    I_MAX_QTY,
    I_MIN_QTY,
    I_QUOTE,
    I_TAKER_BPS,
    I_TICK,
    views,
)


@dataclass(frozen=True)
class InstrumentSpec:
    symbol: str
    base: str
    quote: str
    tick: int = 1  # quote units per tick per lot
    lot: int = 1  # base units per lot
    min_qty: int = 1  # lots
    max_qty: int = 0  # lots; 0: no limit
    max_notional: int = 0  # quote units; 0: no limit
    price_band_pct: float = 0.0  # around the reference price; 0: no band
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0

    @property
    def band_bps(self) -> int:
        return round(self.price_band_pct * 100)


@dataclass(frozen=True)
class AccountSpec:
    id: int
    max_open_orders: int = 0  # 0: no limit


@dataclass(frozen=True)
class VenueConfig:
    instruments: tuple[InstrumentSpec, ...]
    accounts: tuple[AccountSpec, ...] = ()
    max_accounts: int = 1024
    default_max_open_orders: int = 0
    assets: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        assets: list[str] = []
        seen: set[str] = set()
        for inst in self.instruments:
            _check_instrument(inst)
            if inst.symbol in seen:
                raise ValueError(f"instrument {inst.symbol!r} is defined twice")
            seen.add(inst.symbol)
            for a in (inst.base, inst.quote):
                if a not in assets:
                    assets.append(a)
        object.__setattr__(self, "assets", tuple(assets))
        if self.max_accounts < 1:
            raise ValueError("venue.max_accounts must be positive")
        for acc in self.accounts:
            if not 1 <= acc.id <= self.max_accounts:
                raise ValueError(f"account id {acc.id} is outside 1..{self.max_accounts}")
            if acc.max_open_orders < 0:
                raise ValueError(f"account {acc.id}: max_open_orders must be >= 0")

    # ids: instruments and assets are numbered from 1 in the order of the config
    def instrument_ids(self) -> dict[str, int]:
        return {inst.symbol: i + 1 for i, inst in enumerate(self.instruments)}

    def asset_ids(self) -> dict[str, int]:
        return {name: i + 1 for i, name in enumerate(self.assets)}

    def engine_config(self, base: EngineConfig | None = None) -> EngineConfig:
        base = base or EngineConfig()
        return replace(base, max_instruments=max(1, len(self.instruments)), max_accounts=self.max_accounts,
                       max_assets=len(self.assets) + 1)

    def write_into(self, state: np.ndarray) -> None:
        """Turn risk on and load the parameters (before the first command)."""
        v = views(state)
        assets = self.asset_ids()
        for iid, inst in enumerate(self.instruments, start=1):
            row = v["instr"][iid]
            row[I_ACTIVE] = 1
            row[I_BASE], row[I_QUOTE] = assets[inst.base], assets[inst.quote]
            row[I_TICK], row[I_LOT] = inst.tick, inst.lot
            row[I_MIN_QTY], row[I_MAX_QTY], row[I_MAX_NOTIONAL] = inst.min_qty, inst.max_qty, inst.max_notional
            row[I_BAND_BPS] = inst.band_bps
            row[I_MAKER_BPS], row[I_TAKER_BPS] = inst.maker_fee_bps, inst.taker_fee_bps
            row[I_HOLD_BPS] = max(inst.maker_fee_bps, inst.taker_fee_bps)
        v["accounts"][:, A_MAX_OPEN] = self.default_max_open_orders
        for acc in self.accounts:
            v["accounts"][acc.id, A_MAX_OPEN] = acc.max_open_orders
        state[H_RISK_ON] = 1

    @classmethod
    def load(cls, path: str | Path) -> VenueConfig:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> VenueConfig:
        venue = data.get("venue", {})
        try:
            instruments = tuple(InstrumentSpec(**d) for d in data.get("instrument", []))
            accounts = tuple(AccountSpec(**d) for d in data.get("account", []))
        except TypeError as e:  # an unknown or missing key
            raise ValueError(f"bad [[instrument]] or [[account]] entry: {e}") from None
        if not instruments:
            raise ValueError("the config defines no [[instrument]]")
        return cls(instruments=instruments, accounts=accounts,
                   max_accounts=int(venue.get("max_accounts", 1024)),
                   default_max_open_orders=int(venue.get("default_max_open_orders", 0)))


def _check_instrument(inst: InstrumentSpec) -> None:
    name = inst.symbol
    if not name or not inst.base or not inst.quote or inst.base == inst.quote:
        raise ValueError(f"instrument {name!r}: needs a symbol and two different assets")
    for f, lo in (("tick", 1), ("lot", 1), ("min_qty", 1), ("max_qty", 0), ("max_notional", 0),
                  ("maker_fee_bps", 0), ("taker_fee_bps", 0)):
        value = getattr(inst, f)
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ValueError(f"instrument {name!r}: {f} must be an integer >= {lo}")
    if inst.maker_fee_bps > 10_000 or inst.taker_fee_bps > 10_000:
        raise ValueError(f"instrument {name!r}: fees are at most 10000 bps")
    if inst.max_qty and inst.max_qty < inst.min_qty:
        raise ValueError(f"instrument {name!r}: max_qty < min_qty")
    if not 0 <= inst.price_band_pct <= 100 or abs(inst.price_band_pct * 100 - inst.band_bps) > 1e-9:
        raise ValueError(f"instrument {name!r}: price_band_pct must be 0..100 in steps of 0.01")
