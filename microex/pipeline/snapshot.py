"""Snapshots: the whole engine state at a sequence number, written atomically.

How it works: a snapshot is one file `snapshot-<last_seq:020d>.snap`, an
uncompressed numpy .npz holding the state arrays and a metadata record
(last_seq, digest). It is written to a temp file, fsynced, renamed into place
and the directory fsynced, so a crash leaves either the old set of snapshots or
the new one, never a half file under a snapshot's name. Loading checks the
zip members' CRCs and recomputes the digest; a snapshot that fails either is
skipped and the next older one is tried. Recovery = newest valid snapshot +
the journal after its last_seq.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from microex.core.engine import MatchingEngine
from microex.pipeline.datadir import write_atomic

PREFIX = "snapshot-"
SUFFIX = ".snap"


def snapshot_path(directory: Path, last_seq: int) -> Path:
    return directory / f"{PREFIX}{last_seq:020d}{SUFFIX}"


def write_snapshot(directory: Path, engine: MatchingEngine, last_seq: int) -> Path:
    meta = json.dumps({"format": 2, "last_seq": last_seq, "digest": engine.digest()})
    buf = io.BytesIO()
    np.savez(buf, state=engine.state, ids=engine.ids, meta=np.array(meta))
    path = snapshot_path(directory, last_seq)
    write_atomic(path, buf.getvalue())
    return path


def list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """(last_seq, path), newest first."""
    out = []
    for p in directory.glob(f"{PREFIX}*{SUFFIX}"):
        try:
            out.append((int(p.name[len(PREFIX) : -len(SUFFIX)]), p))
        except ValueError:
            continue
    return sorted(out, reverse=True)


def load_snapshot(path: Path, engine: MatchingEngine) -> int | None:
    """Load into `engine` if valid; its last_seq, or None (engine untouched)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            state, ids = z["state"], z["ids"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    saved = (engine.state, engine.ids)
    try:
        engine.restore(state, ids)
    except ValueError:
        return None
    # format 1 (before 2026-11-22) hashed the id map's raw slots; 2 its entries in id order
    digest = engine.layout_digest() if meta.get("format") == 1 else engine.digest()
    if digest != meta.get("digest"):
        engine.state, engine.ids = saved
        return None
    return int(meta["last_seq"])


def load_newest(directory: Path, engine: MatchingEngine) -> int:
    """Restore the newest valid snapshot; its last_seq (0: none, engine untouched)."""
    for _, path in list_snapshots(directory):
        last = load_snapshot(path, engine)
        if last is not None:
            return last
    return 0


def prune_snapshots(directory: Path, keep: int) -> None:
    for _, path in list_snapshots(directory)[keep:]:
        os.unlink(path)
