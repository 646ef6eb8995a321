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


# ---------------------------------------------------------------------------------------------
# Market data records (issue #7; docs/marketdata.md has the byte tables)
#
# The market-data stage's output, the binary feed's frames and a recording file's body are the
# same bytes. So every market-data record starts with the feed's 8-byte frame header (length
# u16, msg_type u16, seq u32): a run of records IS a run of frames (encoding is `.tobytes()`,
# decoding `np.frombuffer`). For these records the header seq is the low 32 bits of the
# record's md_seq, the same for every subscriber, so one encoded buffer is shared by all of
# them (per-connection numbering would need a copy per subscriber).
# md_seq: per instrument, +1 for every published update (a level change or a trade).


class MdMsg(IntEnum):
    """msg_type of a market-data feed frame (client messages 1-15, server messages 16+)."""

    NONE = 0
    HEARTBEAT = 1  # both directions
    SUBSCRIBE = 2
    UNSUBSCRIBE = 3
    SNAPSHOT_REQUEST = 4
    STATUS = 16
    ERROR = 17
    RESYNC = 18
    SNAPSHOT_BEGIN = 32  # MD_BOOK
    SNAPSHOT_LEVEL = 33  # MD_UPDATE (kind LEVEL)
    SNAPSHOT_END = 34  # MD_BOOK
    INCREMENT = 35  # MD_UPDATE (kind LEVEL or TRADE)
    BBO = 36  # MD_BBO
    CANDLE = 37  # MD_CANDLE
    TICKER = 38  # MD_TICKER


class MdKind(IntEnum):
    NONE = 0
    LEVEL = 1  # a price level's new state: qty = level total (0: gone), count = orders at it
    TRADE = 2  # qty = traded lots, count = trade id (per instrument, 1, 2, 3...), side = aggressor's


class BookFlag(IntEnum):
    """MD_BOOK flags: what the SNAPSHOT_LEVEL frames between BEGIN and END mean."""

    NONE = 0
    FULL = 1  # the whole book (down to `depth`): replace the replica with these levels
    PARTIAL = 2  # conflation: only levels changed in first_seq..md_seq, each in its state at md_seq
    TRUNCATED = 4  # with FULL: depth-limited, the book has more levels than were sent


class BookCause(IntEnum):
    """Why a book (MD_BOOK) was sent."""

    NONE = 0
    SUBSCRIBE = 1
    REQUEST = 2
    SCHEDULE = 3
    RESYNC = 4
    CONFLATION = 5


class CandleInterval(IntEnum):
    NONE = 0
    S1 = 1
    M1 = 2
    H1 = 3


CANDLE_WIDTH_NS = {CandleInterval.S1: 1_000_000_000, CandleInterval.M1: 60_000_000_000,
                   CandleInterval.H1: 3_600_000_000_000}


class CandleFlag(IntEnum):
    NONE = 0
    CLOSED = 1  # final; without it the candle is still running (a periodic update)


class MdReason(IntEnum):
    """Market-data reason codes: the 80-89 range of the Reason numbering (framing errors on the
    feed reuse the gateway's 60-64, ProtocolReason)."""

    NONE = 0
    UNKNOWN_INSTRUMENT = 80  # subscribe/snapshot for an id the venue lacks; or an event for one
    NOT_SUBSCRIBED = 81  # unsubscribe/snapshot request for an instrument not subscribed
    BAD_REQUEST = 82  # a subscribe's flags/depth make no sense
    TOO_MANY_SUBSCRIPTIONS = 83
    CONFLATED = 84  # slow consumer: deliveries are conflated, trades and candles dropped
    RESYNC = 85  # slow consumer past the conflation bound: a full snapshot follows
    SLOW_CONSUMER = 86  # not reading at all: disconnected
    BOOK_CAPACITY = 87  # the stage's replica of a book side is full (never with the engine's max_levels)
    SHUTDOWN = 88
    REPLAY_END = 89  # a replayed recording has ended


_MD_HEADER = [("length", "<u2", 0), ("msg_type", "<u2", 2), ("seq", "<u4", 4)]

# One update (INCREMENT) or one level of a snapshot (SNAPSHOT_LEVEL): 64 bytes.
MD_UPDATE = _dtype(
    _MD_HEADER + [
        ("md_seq", "<i8", 8),  # the instrument's md seq (a snapshot level: the snapshot's)
        ("ts_ns", "<i8", 16),  # the engine time of the event (its command's receive time)
        ("engine_seq", "<i8", 24),  # seq of the command that caused it
        ("price_ticks", "<i8", 32),
        ("qty_lots", "<i8", 40),  # LEVEL: level total after the change (0: removed); TRADE: lots traded
        ("count", "<i8", 48),  # LEVEL: orders at the level; TRADE: trade id
        ("instrument", "<i4", 56),
        ("kind", "u1", 60),  # MdKind
        ("side", "u1", 61),  # LEVEL: the book side; TRADE: the aggressor's side
        ("flags", "u1", 62),  # 0 (reserved)
    ],
    64,
)

# SNAPSHOT_BEGIN / SNAPSHOT_END around `levels` SNAPSHOT_LEVEL frames (bids best first, then asks
# best first): a full book, or a conflated bundle (PARTIAL). 48 bytes.
MD_BOOK = _dtype(
    _MD_HEADER + [
        ("md_seq", "<i8", 8),  # the book, with these levels applied, is the book at md_seq
        ("first_seq", "<i8", 16),  # PARTIAL: the first update the bundle covers; FULL: 0
        ("ts_ns", "<i8", 24),  # engine time of the last update included
        ("instrument", "<i4", 32),
        ("levels", "<i4", 36),  # SNAPSHOT_LEVEL frames between BEGIN and END
        ("depth", "<u2", 40),  # levels per side asked for (0: all)
        ("flags", "u1", 42),  # BookFlag
        ("cause", "u1", 43),  # BookCause
    ],
    48,
)

# L1: best bid and offer after a batch that changed them (or on request). 64 bytes.
MD_BBO = _dtype(
    _MD_HEADER + [
        ("md_seq", "<i8", 8),  # the book state it was taken from
        ("ts_ns", "<i8", 16),
        ("bid_price", "<i8", 24),  # 0: no bid
        ("bid_qty", "<i8", 32),
        ("ask_price", "<i8", 40),  # 0: no ask
        ("ask_qty", "<i8", 48),
        ("instrument", "<i4", 56),
    ],
    64,
)

# An OHLCV candle of one interval, bucketed by engine time. 88 bytes.
MD_CANDLE = _dtype(
    _MD_HEADER + [
        ("md_seq", "<i8", 8),  # md seq of its last trade
        ("open_ts_ns", "<i8", 16),  # bucket start (a multiple of the interval's width)
        ("open", "<i8", 24),
        ("high", "<i8", 32),
        ("low", "<i8", 40),
        ("close", "<i8", 48),
        ("volume", "<i8", 56),  # lots
        ("quote_volume", "<i8", 64),  # sum of price_ticks * qty_lots
        ("trades", "<i8", 72),
        ("instrument", "<i4", 80),
        ("interval", "u1", 84),  # CandleInterval
        ("flags", "u1", 85),  # CandleFlag
    ],
    88,
)

# The 24h rolling ticker (1-minute granularity) with L1. 120 bytes.
MD_TICKER = _dtype(
    _MD_HEADER + [
        ("md_seq", "<i8", 8),
        ("ts_ns", "<i8", 16),  # the time it was computed for
        ("open", "<i8", 24),  # first trade price of the window (no trade in it: last)
        ("high", "<i8", 32),
        ("low", "<i8", 40),
        ("last", "<i8", 48),  # last trade price ever (0: none)
        ("volume", "<i8", 56),
        ("quote_volume", "<i8", 64),
        ("trades", "<i8", 72),
        ("bid_price", "<i8", 80),
        ("bid_qty", "<i8", 88),
        ("ask_price", "<i8", 96),
        ("ask_qty", "<i8", 104),
        ("instrument", "<i4", 112),
    ],
    120,
)

assert (MD_UPDATE.itemsize, MD_BOOK.itemsize, MD_BBO.itemsize, MD_CANDLE.itemsize, MD_TICKER.itemsize) == (
    64, 48, 64, 88, 120)
