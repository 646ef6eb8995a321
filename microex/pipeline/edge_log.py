"""What the CSV edge must remember to print events as it received them.

The journal holds COMMAND records only: instrument ids, and order id 0 where
the text was not a positive integer. To write the conformance events of a
replay, the edge keeps two append-only files in DATA/edge/:
    symbols.csv    id,symbol    (match mode: instruments created on first use)
    raw_ids.csv    seq,text     (order ids echoed as written)
A line is appended (and flushed to the OS) before the command that needs it is
handed to the engine, so anything journaled has its annotation on disk unless
the whole machine fails; replay treats a missing annotation as empty text.
"""

from __future__ import annotations

import csv
from pathlib import Path

from microex.core.venue import VenueConfig
from microex.protocol.conformance_csv import CommandCsvDecoder


class EdgeLog:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.symbols_path = directory / "symbols.csv"
        self.raw_path = directory / "raw_ids.csv"

    def record(self, decoder: CommandCsvDecoder, known_symbols: int, known_raw: int) -> tuple[int, int]:
        """Append what the decoder learned since (known_symbols, known_raw); new counts."""
        symbols = list(decoder.symbols.items())[known_symbols:]
        raws = list(decoder.raw_order_ids.items())[known_raw:]
        if symbols:
            with open(self.symbols_path, "a", newline="") as f:
                csv.writer(f).writerows(symbols)
        if raws:
            with open(self.raw_path, "a", newline="") as f:
                csv.writer(f).writerows(raws)
        return known_symbols + len(symbols), known_raw + len(raws)

    def decoder(self, max_instruments: int, venue: VenueConfig | None) -> CommandCsvDecoder:
        """A decoder primed with what was recorded (for encoding replayed events)."""
        d = CommandCsvDecoder(max_instruments, venue)
        if self.symbols_path.exists() and venue is None:
            with open(self.symbols_path, newline="") as f:
                for iid, symbol in csv.reader(f):
                    d.symbols[int(iid)] = symbol
                    d.instrument_ids[symbol] = int(iid)
        if self.raw_path.exists():
            with open(self.raw_path, newline="") as f:
                for seq, text in csv.reader(f):
                    d.raw_order_ids[int(seq)] = text
        return d
