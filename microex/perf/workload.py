"""Seeded order streams for benchmarks and the demo run.

`match_mix` builds the `core.match_mix` workload of issue #2: one instrument,
a book of about `book_target` resting orders around a moving mid, then a mix of
50% new limit orders (about 15% of them priced to cross), 35% cancels of live
orders, 10% IOC limit or market orders that trade, 5% limits far from the mid.

How it works: commands are made in chunks of `chunk`; each chunk is run
through a scratch engine so the generator knows which orders are still live
(cancels target them) and where the best prices are (new orders are priced
from them). A cancel may still meet an order filled earlier in its own chunk;
`describe()` reports the mix as it came out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action, EventKind, Flag, OrdType, Side, Tif

if TYPE_CHECKING:
    from microex.core.venue import VenueConfig

MID = 100_000


@dataclass
class Workload:
    name: str
    setup: np.ndarray  # commands that build the starting book (not timed)
    cmds: np.ndarray  # the timed stream
    description: str

    def config(self) -> EngineConfig:
        """Capacities that fit this stream with room (the id map is never regrown while timed)."""
        n_ids = len(self.setup) + len(self.cmds)
        return EngineConfig(
            max_instruments=4,
            max_orders=1 << 18,
            max_levels=1 << 14,
            id_capacity=1 << max(16, (4 * n_ids).bit_length()),
            event_capacity=1 << 12,
        )


def risk_venue() -> VenueConfig:
    """The venue `core.risk_check` runs match_mix in: every check on, none binding."""
    from microex.core.venue import InstrumentSpec, VenueConfig

    return VenueConfig(
        instruments=(InstrumentSpec("XYZ", "X", "Y", tick=1, lot=1, min_qty=1, max_qty=1_000_000,
                                    max_notional=1 << 50, price_band_pct=20, maker_fee_bps=2, taker_fee_bps=5),),
        max_accounts=128,
        default_max_open_orders=100_000,
    )


def funding(accounts: int = 100, amount: int = 1 << 52) -> np.ndarray:
    """Deposits of both of risk_venue's assets for accounts 1..accounts."""
    c = np.zeros(2 * accounts, dtype=COMMAND)
    c["action"] = Action.DEPOSIT
    c["account"] = np.repeat(np.arange(1, accounts + 1), 2)
    c["instrument"] = np.tile([1, 2], accounts)
    c["qty_lots"] = amount
    return c


def _new_orders(n, rng, first_id, side, price, qty, tif, otype=OrdType.LIMIT, account=None):
    c = np.zeros(n, dtype=COMMAND)
    c["order_id"] = np.arange(first_id, first_id + n)
    c["account"] = account if account is not None else rng.integers(1, 101, n)
    c["instrument"] = 1
    c["action"] = Action.NEW
    c["side"] = side
    c["ord_type"] = otype
    c["tif"] = tif
    c["price_ticks"] = price
    c["qty_lots"] = qty
    c["flags"] = Flag.NONE
    return c


def match_mix(n_commands: int = 5_000_000, seed: int = 1, book_target: int = 5_000, chunk: int = 256,
              progress=None) -> Workload:
    rng = np.random.default_rng(seed)
    scratch = MatchingEngine(EngineConfig(max_instruments=4, max_orders=1 << 18, max_levels=1 << 14,
                                          id_capacity=1 << 16, event_capacity=1 << 16))
    next_id = 1

    # starting book: book_target passive orders on both sides of MID
    side = rng.integers(1, 3, book_target)
    depth = rng.geometric(0.05, book_target)
    price = np.where(side == Side.BUY, MID - depth, MID + depth)
    setup = _new_orders(book_target, rng, next_id, side, price, rng.integers(1, 101, book_target), Tif.GTC)
    next_id += book_target
    setup["seq"] = np.arange(1, book_target + 1)
    scratch.process(setup)
    live = setup["order_id"].copy()

    out = np.zeros(n_commands, dtype=COMMAND)
    made = 0
    while made < n_commands:
        n = min(chunk, n_commands - made)
        bid, ask = scratch.best(1)
        bid = bid or MID - 1
        ask = ask or MID + 1
        u = rng.random(n)
        c = np.zeros(n, dtype=COMMAND)
        kind = np.select([u < 0.425, u < 0.50, u < 0.85, u < 0.95], [0, 1, 2, 3], 4)
        n_cancel = int((kind == 2).sum())
        if n_cancel > len(live):  # not enough live orders: make passive orders instead
            kind[kind == 2] = 0
            n_cancel = 0
        side = rng.integers(1, 3, n)
        buy = side == Side.BUY
        qty = rng.integers(1, 101, n)
        passive = np.where(buy, bid - rng.geometric(0.08, n) + 1, ask + rng.geometric(0.08, n) - 1)
        cross = np.where(buy, ask + rng.integers(0, 3, n), bid - rng.integers(0, 3, n))
        far = np.where(buy, bid - rng.integers(200, 1000, n), ask + rng.integers(200, 1000, n))
        # aggressive size steers the book towards book_target resting orders
        aggressive_qty = qty * 3 if len(live) > book_target else np.maximum(qty // 8, 1)
        price = np.select([kind == 0, kind == 1, kind == 3, kind == 4], [passive, cross, cross, far])
        c = _new_orders(n, rng, next_id, side, price, np.where((kind == 1) | (kind == 3), aggressive_qty, qty),
                        np.where(kind == 3, Tif.IOC, Tif.GTC))
        c["order_id"] = 0
        is_new = kind != 2
        c["order_id"][is_new] = np.arange(next_id, next_id + int(is_new.sum()))
        next_id += int(is_new.sum())
        market = (kind == 3) & (rng.random(n) < 0.5)
        c["ord_type"][market] = OrdType.MARKET
        c["price_ticks"][market] = 0
        if n_cancel:
            targets = rng.choice(live, n_cancel, replace=False)
            c["order_id"][kind == 2] = targets
            c["action"][kind == 2] = Action.CANCEL
            for f in ("account", "instrument", "side", "ord_type", "tif", "price_ticks", "qty_lots"):
                c[f][kind == 2] = 0
        c["seq"] = np.arange(book_target + made + 1, book_target + made + n + 1)
        ev = scratch.process(c)
        ended = np.concatenate([
            ev["order_id"][ev["kind"] == EventKind.CANCELLED],
            ev["maker_order_id"][(ev["kind"] == EventKind.TRADE) & (ev["maker_leaves_lots"] == 0)],
            ev["order_id"][(ev["kind"] == EventKind.TRADE) & (ev["leaves_lots"] == 0)],
            ev["order_id"][ev["kind"] == EventKind.REJECTED],
        ])
        rested = c["order_id"][is_new & (c["tif"] == Tif.GTC) & (c["ord_type"] == OrdType.LIMIT)]
        live = np.setdiff1d(np.concatenate([live, rested]), ended, assume_unique=False)
        out[made : made + n] = c
        made += n
        if progress is not None:
            progress(n)
    desc = (f"1 instrument, {book_target} resting orders to start, {n_commands} commands (seed {seed}): "
            "50% new limit (15% of them crossing), 35% cancel of a live order, 10% IOC limit or market, "
            "5% limit far from the mid")
    return Workload("core.match_mix", setup, out, desc)


def describe(events: np.ndarray, cmds: np.ndarray) -> dict:
    """What the stream did: event counts and how many cancels found their order."""
    kinds = np.bincount(events["kind"], minlength=8)
    n_cancel = int((cmds["action"] == Action.CANCEL).sum())
    cancelled_user = int(((events["kind"] == EventKind.CANCELLED) & (events["reason"] == 20)).sum())
    return {
        "commands": int(len(cmds)),
        "events": int(len(events)),
        "trades": int(kinds[EventKind.TRADE]),
        "rejected": int(kinds[EventKind.REJECTED]),
        "level_updates": int(kinds[EventKind.LEVEL]),
        "cancels": n_cancel,
        "cancels_hit": cancelled_user,
    }
