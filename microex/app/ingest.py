"""`microex ingest`: a conformance CSV through the real pipeline.

Wiring, stage by stage (the processes of one machine):
    producer process   CSV rows -> COMMAND records (edge log first) -> inbound ring
    engine process     inbound ring -> sequencer -> journal -> core -> outbound ring
    this process       outbound ring -> progress; done at the BATCH event of the last row
Then the engine is stopped cleanly (it takes a snapshot) and the command prints
`commands N` (N = rows processed, = the last seq).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.core.config import EngineConfig
from microex.core.records import COMMAND
from microex.core.venue import VenueConfig
from microex.pipeline.datadir import DataDir
from microex.pipeline.edge_log import EdgeLog
from microex.pipeline.local import LocalPipeline
from microex.pipeline.ring import RingBuffer

CHUNK_ROWS = 4096


def produce(csv_path: str, ring_name: str, data: str, max_instruments: int, venue_data: dict | None,
            first_seq: int, total) -> None:
    """Producer process: decode the CSV in chunks and feed the inbound ring. Its rows
    get seqs from first_seq on (the engine's own, with one producer), so the edge log
    (symbols and raw order ids, shared with earlier runs) stays keyed right."""
    venue = VenueConfig.from_dict(venue_data) if venue_data else None
    ring = RingBuffer.attach(ring_name, COMMAND)  # the engine is attached already (see ingest)
    edge = EdgeLog(DataDir(data).edge)
    decoder = edge.decoder(max_instruments, venue)
    decoder.rows = first_seq - 1
    known = (len(decoder.symbols), len(decoder.raw_order_ids))
    with open(csv_path, encoding="utf-8", newline="\n") as f:
        next(f, None)  # header
        chunk: list[str] = []
        for line in f:
            chunk.append(line.rstrip("\n"))
            if len(chunk) == CHUNK_ROWS:
                known = _send(decoder, edge, known, chunk, ring)
                chunk = []
        if chunk:
            _send(decoder, edge, known, chunk, ring)
    total.value = decoder.rows
    ring.close()


def _send(decoder, edge, known, chunk, ring):
    cmds = decoder.decode(chunk)
    known = edge.record(decoder, *known)  # annotations reach the OS before their commands
    if len(cmds):
        ring.write(cmds)
    return known


def ingest(data: str, csv_path: str, fsync: str, config: EngineConfig, venue_data: dict | None,
           show_progress: bool = True, batch: int = 16384) -> int:
    d = DataDir(data)
    d.create(config, venue_data)
    config, venue, venue_data = d.load()
    rows = _count_rows(csv_path)
    total = mp.get_context("spawn").Value("q", -1)
    with LocalPipeline(str(d.root), fsync=fsync, batch=batch) as pipe:
        start = pipe.start_seq
        producer = mp.get_context("spawn").Process(
            target=produce, args=(csv_path, pipe.inbound_name, str(d.root), config.max_instruments, venue_data,
                                  start + 1, total), name="microex-producer")
        producer.start()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=Console(stderr=True), disable=not show_progress, transient=True) as progress:
                task = progress.add_task("ingesting", total=start + rows, completed=start)
                while total.value < 0 or pipe.published < total.value:
                    pipe.drain(wait=0.1)
                    progress.update(task, completed=pipe.published)
                    if not producer.is_alive() and producer.exitcode not in (0, None):
                        raise RuntimeError(f"the producer process failed (exit code {producer.exitcode})")
                    pipe.check_alive()
        finally:
            producer.join(timeout=10)
        return pipe.published


def _count_rows(path: str) -> int:
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")[1:]
    return sum(1 for line in lines if line.rstrip(b"\r"))


def main(args) -> int:
    config = EngineConfig(max_instruments=args.max_instruments, max_orders=args.max_orders,
                          max_levels=args.max_levels)
    venue_data = None
    if args.config:
        import tomllib

        try:
            with open(args.config, "rb") as f:
                venue_data = tomllib.load(f)
            VenueConfig.from_dict(venue_data)
        except (OSError, ValueError) as e:
            print(f"microex ingest: bad --config: {e}", file=sys.stderr)
            return 2
    if not Path(args.input).exists():
        print(f"microex ingest: no such file {args.input}", file=sys.stderr)
        return 2
    n = ingest(args.data, args.input, args.fsync, config, venue_data, show_progress=not args.quiet)
    print(f"commands {n}")
    return 0
