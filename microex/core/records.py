"""Every fixed-size record of microex: one numpy dtype per record, and their codes.

The same bytes are ring slots, journal records and binary wire messages, so the
layouts are explicit (offsets and itemsize fixed here, little-endian, 8-byte
aligned) and never depend on the platform. Codes are small integers; 0 always
means "absent/invalid" so that a zeroed or garbage field is rejected by the
engine rather than misread.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Action(IntEnum):
    """What a command asks of the engine (0: unknown action -> invalid_command)."""

    NONE = 0
    NEW = 1
    CANCEL = 2
    MODIFY = 3
    # accounts and venue control (risk mode only; otherwise invalid_command)
    DEPOSIT = 4  # account, asset id in `instrument`, amount in `qty_lots`
    WITHDRAW = 5
    HALT = 6  # instrument
    RESUME = 7  # instrument
    SUSPEND = 8  # account
    UNSUSPEND = 9  # account
    SET_PRICE = 10  # instrument, reference price in `price_ticks`


class Side(IntEnum):
    NONE = 0
    BUY = 1
    SELL = 2


class OrdType(IntEnum):
    NONE = 0
    LIMIT = 1
    MARKET = 2


class Tif(IntEnum):
    NONE = 0
    GTC = 1
    IOC = 2
    FOK = 3


class Flag(IntEnum):
    """Order flags. Exactly one of them, or none; anything else is invalid_command."""

    NONE = 0
    POST_ONLY = 1
    STP = 2
    INVALID = 0x80  # set by an edge codec for a flag text it does not know


class EventKind(IntEnum):
    NONE = 0
    ACCEPTED = 1
    REJECTED = 2
    TRADE = 3
    CANCELLED = 4
    MODIFIED = 5
    LEVEL = 6  # L2: a price level's new total qty and order count
    BATCH = 7  # end of a batch (engine process): seq = its last command, qty = its size


class Reason(IntEnum):
    """Reason codes, one range per stage.

    1-19 validation and matching rejects, 20-29 why an order was cancelled,
    30-59 reserved for pre-trade risk, 60-79 for the gateway.
    """

    NONE = 0
    DUPLICATE_ORDER_ID = 1
    UNKNOWN_ORDER = 2
    INVALID_PRICE = 3
    INVALID_QTY = 4
    INVALID_COMMAND = 5
    WOULD_CROSS = 6
    UNKNOWN_INSTRUMENT = 7
    CAPACITY_ORDERS = 8
    CAPACITY_LEVELS = 9

    USER = 20
    IOC = 21
    FOK = 22
    STP = 23

    RISK_FUNDS = 30
    RISK_MAX_QTY = 31
    RISK_MAX_NOTIONAL = 32
    RISK_PRICE_BAND = 33
    RISK_OPEN_ORDERS = 34
    RISK_HALTED = 35
    RISK_SUSPENDED = 36
    RISK_MIN_QTY = 37
    UNKNOWN_ACCOUNT = 38


# Largest qty (lots) of one order or modify: with at most 2**22 orders a level
# total, a sweep's running sum and a hold stay far inside int64.
MAX_QTY_LOTS = 1 << 40


def _dtype(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype:
    return np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )


# A command: 64 bytes, one cache line.
COMMAND = _dtype(
    [
        ("seq", "<i8", 0),  # global sequence number (sequencer; row number in `match`)
        ("ts_ns", "<i8", 8),  # receive time, ns since the epoch
        ("order_id", "<i8", 16),  # <= 0: not a valid order id
        ("account", "<i8", 24),
        ("price_ticks", "<i8", 32),  # limit price; ignored for market orders
        ("qty_lots", "<i8", 40),  # new: order qty; modify: new leaves
        ("instrument", "<i4", 48),  # 0: none given
        ("session", "<i4", 52),  # gateway session that sent it (0: none)
        ("action", "u1", 56),
        ("side", "u1", 57),
        ("ord_type", "u1", 58),
        ("tif", "u1", 59),
        ("flags", "u1", 60),
    ],
    64,
)

# An event: 96 bytes. Which fields a kind uses:
#   accepted   order_id account instrument side price(0 = market) qty leaves
#   rejected   order_id (as given) reason
#   trade      order_id/account (aggressor) maker_order_id/maker_account side
#              (aggressor's) price (maker's) qty leaves maker_leaves
#   cancelled  order_id account instrument side price qty (leaves removed) reason
#   modified   order_id account instrument side price leaves
#   level      instrument side price qty (level total) level_orders
EVENT = _dtype(
    [
        ("seq", "<i8", 0),  # seq of the command that caused the event
        ("ts_ns", "<i8", 8),  # the command's ts_ns: engine time is input time
        ("order_id", "<i8", 16),
        ("maker_order_id", "<i8", 24),
        ("account", "<i8", 32),
        ("maker_account", "<i8", 40),
        ("price_ticks", "<i8", 48),
        ("qty_lots", "<i8", 56),
        ("leaves_lots", "<i8", 64),
        ("maker_leaves_lots", "<i8", 72),
        ("instrument", "<i4", 80),
        ("level_orders", "<i4", 84),
        ("kind", "u1", 88),
        ("side", "u1", 89),
        ("reason", "u2", 90),
    ],
    96,
)

assert COMMAND.itemsize == 64 and EVENT.itemsize == 96
