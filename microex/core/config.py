"""Engine capacities: everything the compiled core preallocates is sized here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    """Capacities of one matching engine.

    max_instruments: instrument ids 1..max_instruments are valid.
    max_orders: resting orders across all books, at most 2**22 (a GTC order
        arriving when the pool is full is rejected with capacity_orders, even
        one that would fill at once: capacity is checked before matching).
    max_levels: price levels per book side (a new level beyond it is rejected
        with capacity_levels).
    id_capacity: initial order-id table size (a power of two; it doubles
        between batches when half full, so it never rejects).
    event_capacity: event buffer size; a batch is cut into chunks that fit.
    max_accounts: account ids 1..max_accounts (risk mode; 0 is the fee account).
    max_assets: asset ids 1..max_assets (risk mode).
    """

    max_instruments: int = 256
    max_orders: int = 1 << 18
    max_levels: int = 4096
    id_capacity: int = 1 << 16
    event_capacity: int = 1 << 12
    max_accounts: int = 1024
    max_assets: int = 16
    id_hash_multiplier: int = 0  # 0: random per engine (see idmap.py); set it to fix the id map's layout

    def __post_init__(self) -> None:
        for name in ("max_instruments", "max_orders", "max_levels", "id_capacity", "event_capacity",
                     "max_accounts", "max_assets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.id_hash_multiplier < 0 or self.id_hash_multiplier >= 1 << 63:
            raise ValueError("id_hash_multiplier is a non-negative int64")
        if self.id_capacity < 2 or self.id_capacity & (self.id_capacity - 1):
            raise ValueError("id_capacity must be a power of two, at least 2")
        if self.max_orders > 1 << 22:
            raise ValueError("max_orders is at most 2**22 (level totals stay inside int64)")
