"""Replay and recovery: rebuild the engine from its journal (and snapshots).

- replay: an empty engine with the data directory's identity, then every
  journaled batch in order. The state after N commands is a pure function of
  the identity and those N commands, so `commands N digest HEX` names it.
- recover: the newest valid snapshot, then the journal after its last seq;
  its digest equals replay's (the tests and `microex recover` show it).
Both show progress (rich) when asked to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.core.engine import MatchingEngine
from microex.pipeline.datadir import DataDir
from microex.pipeline.edge_log import EdgeLog
from microex.pipeline.journal import RECORD_SIZE, Journal, list_segments
from microex.pipeline.snapshot import load_newest
from microex.protocol.conformance_csv import EVENT_HEADER, EventCsvEncoder


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not show, transient=True)


def _run_journal(data: DataDir, engine: MatchingEngine, from_seq: int, on_events: Callable | None,
                 show_progress: bool, label: str) -> int:
    """Feed journaled commands from from_seq into engine; the last seq fed (from_seq - 1 if none)."""
    last = from_seq - 1
    segments = list_segments(data.journal)
    # progress total without opening the journal for writing (a live engine may hold it)
    total = sum(p.stat().st_size for _, p in segments) // RECORD_SIZE
    with _progress(show_progress) as progress:
        task = progress.add_task(label, total=total or None)
        for batch in Journal.read(data.journal, from_seq):
            if on_events is None:
                engine.run(batch, _ignore)
            else:
                engine.run(batch, on_events)
            progress.advance(task, len(batch))
            last = int(batch["seq"][-1])
    return last


def _ignore(events) -> None:
    pass


def _csv_writer(data: DataDir, engine: MatchingEngine, out: TextIO) -> Callable:
    """An event sink writing conformance event rows, as the edge received the commands."""
    _, venue, _ = data.load()
    encoder = EventCsvEncoder(EdgeLog(data.edge).decoder(engine.config.max_instruments, venue))
    out.write(EVENT_HEADER + "\n")

    def write(events) -> None:
        rows = encoder.encode(events)
        if rows:
            out.write("\n".join(rows) + "\n")

    return write


def replay(data: DataDir, events_out: TextIO | None = None, show_progress: bool = False) -> tuple[int, str]:
    engine = data.new_engine()
    write_events = _csv_writer(data, engine, events_out) if events_out is not None else None
    n = _run_journal(data, engine, 1, write_events, show_progress, "replaying the journal")
    return n, engine.digest()


def recover(data: DataDir, show_progress: bool = False) -> tuple[int, str, MatchingEngine]:
    engine = data.new_engine()
    start = load_newest(data.snapshots, engine)
    n = _run_journal(data, engine, start + 1, None, show_progress, "recovering: journal after snapshot")
    return n, engine.digest(), engine
