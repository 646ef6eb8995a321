"""Engine capacities: everything the compiled core preallocates is sized here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    """Capacities of one matching engine.

    max_instruments: instrument ids 1..max_instruments are valid.
    max_orders: resting orders across all books (a GTC order that would rest
        when the pool is full is rejected with capacity_orders).
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

    def __post_init__(self) -> None:
        for name in ("max_instruments", "max_orders", "max_levels", "id_capacity", "event_capacity",
                     "max_accounts", "max_assets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.id_capacity & (self.id_capacity - 1):
            raise ValueError("id_capacity must be a power of two")
