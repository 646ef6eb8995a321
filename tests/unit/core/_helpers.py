"""Helpers shared by the matching-core tests: command records, CSV sessions, book snapshots."""

from __future__ import annotations

import numpy as np

from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, EVENT
from microex.core.reference import ReferenceMatcher
from microex.core.state import L_HEAD, L_PRICE, L_QTY, NIL, O_ACCOUNT, O_ID, O_LEAVES, O_META, O_NEXT, views
from microex.protocol.conformance_csv import CommandCsvDecoder, EventCsvEncoder

# COMMAND fields a test sets, in this order (seq and ts_ns are filled in)
CMD_FIELDS = ("action", "order_id", "account", "instrument", "side", "ord_type", "tif", "price_ticks", "qty_lots",
              "flags", "session")


def commands(rows, first_seq: int = 1) -> np.ndarray:
    """COMMAND records from tuples in CMD_FIELDS order (session optional); seq counts from first_seq."""
    out = np.zeros(len(rows), dtype=COMMAND)
    for i, row in enumerate(rows):
        out[i]["seq"] = first_seq + i
        out[i]["ts_ns"] = 1_000_000 + 1000 * (first_seq + i)
        for name, value in zip(CMD_FIELDS, row):
            out[i][name] = value
    return out


def event_dict(ev) -> dict:
    """One event (a tuple from .tolist()) as {field: value}, without zero fields."""
    return {name: v for name, v in zip(EVENT.names, ev) if v}


def command_dict(cmd) -> dict:
    return {name: int(cmd[name]) for name in COMMAND.names if cmd[name]}


class CsvSession:
    """A matcher (engine or reference) driven by conformance CSV rows, one decoder for the whole run."""

    def __init__(self, matcher: MatchingEngine | ReferenceMatcher) -> None:
        self.matcher = matcher
        self.decoder = CommandCsvDecoder(matcher.config.max_instruments)
        self.encoder = EventCsvEncoder(self.decoder)

    def send(self, text: str) -> list[str]:
        """Run command rows (one per line, no header); return the event rows."""
        lines = [line for line in text.strip("\n").split("\n")]
        return self.encoder.encode(self.matcher.process(self.decoder.decode(lines)))


def engine_book(engine: MatchingEngine) -> dict:
    """{(instrument, side): [(price, level qty, [(order_id, account, leaves, flags), ...FIFO]), ...best first]}."""
    v = views(engine.state)
    orders, levels, lidx, counts = v["orders"], v["levels"], v["lidx"], v["counts"]
    out = {}
    for book in np.flatnonzero(counts).tolist():
        side_levels = []
        for j in range(int(counts[book]) - 1, -1, -1):
            lv = int(lidx[book, j])
            fifo = []
            o = int(levels[lv, L_HEAD])
            while o != NIL:
                fifo.append((int(orders[o, O_ID]), int(orders[o, O_ACCOUNT]), int(orders[o, O_LEAVES]),
                             (int(orders[o, O_META]) >> 2) & 63))
                o = int(orders[o, O_NEXT])
            side_levels.append((int(levels[lv, L_PRICE]), int(levels[lv, L_QTY]), fifo))
        out[(book // 2, book % 2 + 1)] = side_levels
    return out


def reference_book(ref: ReferenceMatcher) -> dict:
    """The same snapshot as engine_book, from the reference matcher."""
    out = {}
    for (inst, side), book in sorted(ref.books.items()):
        if not book.prices:
            continue
        prices = reversed(book.prices) if side == 1 else book.prices
        out[(inst, side)] = [
            (p, book.levels[p].qty, [(o.order_id, o.account, o.leaves, o.flags) for o in book.levels[p].orders.values()])
            for p in prices
        ]
    return out
