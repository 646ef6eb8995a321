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
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from microex.core.config import EngineConfig
from microex.core.records import COMMAND, EVENT, EventKind
from microex.core.venue import VenueConfig
from microex.pipeline.datadir import DataDir
from microex.pipeline.edge_log import EdgeLog
from microex.pipeline.engine_process import EngineSettings, engine_main
from microex.pipeline.ring import RingBuffer
from microex.protocol.conformance_csv import CommandCsvDecoder

INBOUND_SLOTS = 1 << 16
OUTBOUND_SLOTS = 1 << 18
CHUNK_ROWS = 4096


def produce(csv_path: str, ring_name: str, data: str, max_instruments: int, venue_data: dict | None,
            total) -> None:
    """Producer process: decode the CSV in chunks and feed the inbound ring."""
    venue = VenueConfig.from_dict(venue_data) if venue_data else None
    ring = RingBuffer.attach(ring_name, COMMAND)  # the engine is attached already (see ingest)
    decoder = CommandCsvDecoder(max_instruments, venue)
    edge = EdgeLog(DataDir(data).edge)
    known = (0, 0)
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
           show_progress: bool = True, batch: int = 4096) -> int:
    d = DataDir(data)
    d.create(config, venue_data)
    config, venue, venue_data = d.load()
    ctx = mp.get_context("spawn")
    tag = f"mx{os.getpid()}x{time.monotonic_ns() % 1_000_000}"
    inbound = RingBuffer.create(f"{tag}in", COMMAND, INBOUND_SLOTS, 1)
    outbound = RingBuffer.create(f"{tag}out", EVENT, OUTBOUND_SLOTS, 1)
    events = outbound.consumer(0)
    total = ctx.Value("q", -1)
    settings = EngineSettings(data=str(d.root), inbound=[inbound.name], outbound=outbound.name, fsync=fsync,
                              batch=batch)
    engine = ctx.Process(target=engine_main, args=(settings,), name="microex-engine")
    producer = ctx.Process(target=produce, args=(csv_path, inbound.name, str(d.root), config.max_instruments,
                                                 venue_data, total), name="microex-producer")
    engine.start()
    done = 0
    rows = _count_rows(csv_path)
    try:
        # the engine attaches to the inbound ring once it has recovered (and compiled, the
        # first time): only then may the producer publish, or the engine would miss records
        while not inbound.attached_consumers():
            if not engine.is_alive():
                raise RuntimeError(f"the engine process failed to start (exit code {engine.exitcode})")
            time.sleep(0.005)
        producer.start()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), disable=not show_progress, transient=True) as progress:
            task = progress.add_task("ingesting", total=rows)
            while True:
                a, b = events.read(timeout=0.1)
                for part in (a, b):
                    if len(part):
                        marks = part["seq"][part["kind"] == EventKind.BATCH]
                        if len(marks):
                            done = int(marks[-1])
                            progress.update(task, completed=done)
                events.commit()
                if total.value >= 0 and done >= total.value:
                    break
                if not engine.is_alive():
                    raise RuntimeError(f"the engine process died (exit code {engine.exitcode}) at command {done}")
                if not producer.is_alive() and producer.exitcode not in (0, None):
                    raise RuntimeError(f"the producer process failed (exit code {producer.exitcode})")
    finally:
        producer.join(timeout=10)
        if engine.is_alive():
            engine.terminate()  # SIGTERM: the engine finishes its batch and takes a snapshot
        engine.join(timeout=60)
        events.close()
        for ring in (inbound, outbound):
            ring.close()
            ring.unlink()
    return done


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
