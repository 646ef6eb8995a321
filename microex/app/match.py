"""`microex match`: conformance CSV in, events CSV out, through one engine.

With `--config venue.toml` risk mode is on (accounts, holds, fees, pre-trade
checks); `--balances-out` and `--positions-out` write the final state as CSV.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import TextIO

from microex.core.config import EngineConfig
from microex.core.positions import PositionBook
from microex.core.venue import VenueConfig
from microex.protocol.conformance_csv import EVENT_HEADER, CommandCsvDecoder, EventCsvEncoder

CHUNK_ROWS = 1 << 14


def make_engine(kind: str, config: EngineConfig, venue: VenueConfig | None = None):
    if kind == "reference":
        from microex.core.reference import ReferenceMatcher

        return ReferenceMatcher(config, venue)
    from microex.core.engine import MatchingEngine

    engine = MatchingEngine(config, venue)
    engine.warm_up()
    return engine


def _chunks(lines: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\n"))
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_match(source: TextIO, sink: TextIO, engine_kind: str = "numba", config: EngineConfig | None = None,
              venue: VenueConfig | None = None):
    """Stream `source` through an engine into `sink`; returns (engine, position rows)."""
    config = config or EngineConfig()
    engine = make_engine(engine_kind, config, venue)
    positions = PositionBook(engine.config.max_accounts, engine.config.max_instruments)
    decoder = CommandCsvDecoder(engine.config.max_instruments, venue)
    encoder = EventCsvEncoder(decoder)
    sink.write(EVENT_HEADER + "\n")
    lines = iter(source)
    next(lines, None)  # the header row
    for chunk in _chunks(lines):
        events = engine.process(decoder.decode(chunk))
        if venue is not None:
            positions.apply(events)
        rows = encoder.encode(events)
        if rows:
            sink.write("\n".join(rows) + "\n")
    return engine, positions.rows()


def write_balances(engine, venue: VenueConfig, path: str) -> None:
    names = {i: name for name, i in venue.asset_ids().items()}
    with open(path, "w", encoding="utf-8") as f:
        f.write("account,asset,available,held\n")
        for acc, asset, available, held in engine.balance_rows():
            f.write(f"{acc},{names[asset]},{available},{held}\n")


def write_positions(rows, venue: VenueConfig, path: str) -> None:
    """Average price in ticks; realized PnL in the quote asset's smallest unit."""
    symbols = {i: s for s, i in venue.instrument_ids().items()}
    ticks = {i: spec.tick for i, spec in enumerate(venue.instruments, start=1)}
    with open(path, "w", encoding="utf-8") as f:
        f.write("account,instrument,position,avg_price,realized_pnl\n")
        for acc, inst, lots, cost, realized in rows:
            avg = f"{Decimal(cost) / Decimal(lots):.6f}" if lots else ""
            f.write(f"{acc},{symbols[inst]},{lots},{avg},{realized * ticks[inst]}\n")


def main(args) -> int:
    config = EngineConfig(
        max_instruments=args.max_instruments, max_orders=args.max_orders, max_levels=args.max_levels
    )
    try:
        venue = VenueConfig.load(args.config) if args.config else None
    except (OSError, ValueError) as e:
        print(f"microex match: bad --config: {e}", file=sys.stderr)
        return 2
    if (args.balances_out or args.positions_out) and venue is None:
        print("microex match: --balances-out and --positions-out need --config", file=sys.stderr)
        return 2
    source = open(args.input, encoding="utf-8", newline="\n") if args.input else sys.stdin
    try:
        engine, position_rows = run_match(source, sys.stdout, args.engine, config, venue)
    finally:
        if args.input:
            source.close()
    if args.balances_out:
        write_balances(engine, venue, args.balances_out)
    if args.positions_out:
        write_positions(position_rows, venue, args.positions_out)
    return 0
