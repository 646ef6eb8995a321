"""The `microex match` conformance CSV, as a sans-I/O codec.

How it works:
- `CommandCsvDecoder.decode(lines)` turns command rows into COMMAND records; it
  never raises on content. A field it cannot read becomes the code the engine
  rejects (0 for an id, account, price or qty that is not a positive ASCII
  decimal integer; 0 for an unknown action/side/type/tif; Flag.INVALID for an
  unknown flag), so every row yields its events in stream order and the reason
  is chosen by the engine in SPEC.md's check order.
- Symbols become instrument ids on first use (1, 2, ...); past the engine's
  capacity they map to an id the engine rejects as unknown_instrument. With a
  venue config (risk mode) the ids are the config's, and any other symbol is
  unknown_instrument.
- Account rows (deposit, withdraw: asset name in `instrument`, amount in `qty`;
  suspend, unsuspend: `account`; halt, resume: `instrument`; set_price:
  `instrument`, `price`) yield no event unless rejected, and a reject of one
  has an empty order_id.
- Rows get `seq` = their 1-based row number; a rejected row whose order id is
  not a positive integer is echoed as written, looked up by that seq.
- `EventCsvEncoder.encode(events)` writes event rows; L2 level events are not
  part of this format and are skipped.
Choices where SPEC.md is silent: a trailing CR is a line ending, not data;
empty lines are not rows; an integer above 2**63-1 is not readable and is
treated like any other unreadable integer.
"""

from __future__ import annotations

import numpy as np

from microex.core.records import COMMAND, Action, EventKind, Flag, OrdType, Reason, Side, Tif
from microex.core.venue import VenueConfig

COMMAND_HEADER = "action,order_id,account,instrument,side,type,tif,price,qty,flags"
EVENT_HEADER = "event,order_id,instrument,side,price,qty,leaves,maker_order_id,reason"

_INT64_MAX = (1 << 63) - 1
_ORDER_ACTIONS = {"new": Action.NEW, "cancel": Action.CANCEL, "modify": Action.MODIFY}
_ACCOUNT_ACTIONS = {"deposit": Action.DEPOSIT, "withdraw": Action.WITHDRAW, "halt": Action.HALT,
                    "resume": Action.RESUME, "suspend": Action.SUSPEND, "unsuspend": Action.UNSUSPEND,
                    "set_price": Action.SET_PRICE}
_ASSET_ACTIONS = (Action.DEPOSIT, Action.WITHDRAW)
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_TYPES = {"limit": OrdType.LIMIT, "market": OrdType.MARKET}
_TIFS = {"gtc": Tif.GTC, "ioc": Tif.IOC, "fok": Tif.FOK}
_FLAGS = {"": Flag.NONE, "post_only": Flag.POST_ONLY, "stp": Flag.STP}
_SIDE_NAMES = {int(Side.BUY): "buy", int(Side.SELL): "sell"}
_REASON_NAMES = {int(r): r.name.lower() for r in Reason}


def parse_positive_int(text: str) -> int:
    """The value of an ASCII decimal integer in 1..2**63-1, else 0."""
    if not text or not text.isascii() or not text.isdigit():
        return 0
    value = int(text)
    return value if value <= _INT64_MAX else 0


class CommandCsvDecoder:
    """Command rows in, COMMAND records out; keeps what the encoder needs to echo."""

    def __init__(self, max_instruments: int, venue: VenueConfig | None = None) -> None:
        self.max_instruments = max_instruments
        self.fixed = venue is not None
        self.instrument_ids: dict[str, int] = venue.instrument_ids() if venue else {}
        self.symbols: dict[int, str] = {i: s for s, i in self.instrument_ids.items()}
        self.asset_ids: dict[str, int] = venue.asset_ids() if venue else {}
        # without a venue, account actions are unknown actions, exactly as in plain `match`
        self.actions = {**_ORDER_ACTIONS, **_ACCOUNT_ACTIONS} if venue else _ORDER_ACTIONS
        self.raw_order_ids: dict[int, str] = {}  # seq -> order_id text, when invalid
        self.rows = 0

    def instrument_id(self, symbol: str) -> int:
        if not symbol:
            return 0
        iid = self.instrument_ids.get(symbol)
        if iid is None:
            if self.fixed or len(self.instrument_ids) >= self.max_instruments:
                return self.max_instruments + 1
            iid = self.instrument_ids[symbol] = len(self.instrument_ids) + 1
            self.symbols[iid] = symbol
        return iid

    def decode(self, lines: list[str]) -> np.ndarray:
        """Decode data rows (no header) into COMMAND records."""
        out = []
        for line in lines:
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                continue
            f = line.split(",")
            if len(f) < 10:
                f += [""] * (10 - len(f))
            self.rows += 1
            seq = self.rows
            action = self.actions.get(f[0], Action.NONE)
            order_id = parse_positive_int(f[1])
            if order_id == 0 and action < Action.DEPOSIT:
                self.raw_order_ids[seq] = f[1]
            if action in _ASSET_ACTIONS:
                instrument = self.asset_ids.get(f[3], 0)
            else:
                instrument = self.instrument_id(f[3])
            out.append(
                (
                    seq,
                    0,
                    order_id,
                    parse_positive_int(f[2]),
                    parse_positive_int(f[7]),
                    parse_positive_int(f[8]),
                    instrument,
                    0,
                    action,
                    _SIDES.get(f[4], Side.NONE),
                    _TYPES.get(f[5], OrdType.NONE),
                    _TIFS.get(f[6], Tif.NONE),
                    _FLAGS.get(f[9], Flag.INVALID),
                )
            )
        return np.array(out, dtype=COMMAND)


class EventCsvEncoder:
    """EVENT records in, event rows out (without line endings)."""

    def __init__(self, decoder: CommandCsvDecoder) -> None:
        self.decoder = decoder

    def encode(self, events: np.ndarray) -> list[str]:
        symbols = self.decoder.symbols
        raw = self.decoder.raw_order_ids
        rows = []
        for ev in events.tolist():
            (seq, _ts, oid, maker, _acc, _macc, price, qty, leaves, _ml, inst, _lo, kind, side, reason) = ev
            if kind == EventKind.LEVEL:
                continue
            if kind == EventKind.REJECTED:
                text = str(oid) if oid > 0 else raw.get(seq, "")
                rows.append(f"rejected,{text},,,,,,,{_REASON_NAMES[reason]}")
                continue
            sym = symbols.get(inst, "")
            sname = _SIDE_NAMES.get(side, "")
            ptext = str(price) if price > 0 else ""
            if kind == EventKind.ACCEPTED:
                rows.append(f"accepted,{oid},{sym},{sname},{ptext},{qty},{leaves},,")
            elif kind == EventKind.TRADE:
                rows.append(f"trade,{oid},{sym},{sname},{price},{qty},{leaves},{maker},")
            elif kind == EventKind.CANCELLED:
                rows.append(f"cancelled,{oid},{sym},{sname},{ptext},{qty},0,,{_REASON_NAMES[reason]}")
            elif kind == EventKind.MODIFIED:
                rows.append(f"modified,{oid},{sym},{sname},{price},,{leaves},,")
        return rows
