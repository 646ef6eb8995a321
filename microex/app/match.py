"""`microex match`: conformance CSV in, events CSV out, through one engine."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from microex.core.config import EngineConfig
from microex.protocol.conformance_csv import EVENT_HEADER, CommandCsvDecoder, EventCsvEncoder

CHUNK_ROWS = 1 << 14


def make_engine(kind: str, config: EngineConfig):
    if kind == "reference":
        from microex.core.reference import ReferenceMatcher

        return ReferenceMatcher(config)
    from microex.core.engine import MatchingEngine

    engine = MatchingEngine(config)
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


def run_match(source: TextIO, sink: TextIO, engine_kind: str = "numba", config: EngineConfig | None = None) -> int:
    """Stream `source` through an engine into `sink`; returns the number of rows read."""
    config = config or EngineConfig()
    engine = make_engine(engine_kind, config)
    decoder = CommandCsvDecoder(config.max_instruments)
    encoder = EventCsvEncoder(decoder)
    sink.write(EVENT_HEADER + "\n")
    lines = iter(source)
    next(lines, None)  # the header row
    for chunk in _chunks(lines):
        rows = encoder.encode(engine.process(decoder.decode(chunk)))
        if rows:
            sink.write("\n".join(rows) + "\n")
    return decoder.rows


def main(args) -> int:
    config = EngineConfig(
        max_instruments=args.max_instruments, max_orders=args.max_orders, max_levels=args.max_levels
    )
    source = open(args.input, encoding="utf-8", newline="\n") if args.input else sys.stdin
    try:
        run_match(source, sys.stdout, args.engine, config)
    finally:
        if args.input:
            source.close()
    return 0
