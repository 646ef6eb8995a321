"""Recordings of the market-data feed: a small header, then the published frames as they were sent.

File layout (little-endian):

    offset  size  field
         0     8  magic          b"MXMDREC1"
         8     4  version        1
        12     4  header_size    64 (the frames start here)
        16     8  created_ns     wall clock when the recording started
        24     4  n_instruments  instrument ids 1..n
        28     4  reserved       0
        32     8  start_seq      engine seq the stage had reached when it started recording
        40    24  reserved       0

then frames exactly as the feed sends them (core/records.py MD_* records, each with its
8-byte frame header): first a FULL snapshot (SNAPSHOT_BEGIN, levels, END) of every
instrument, then every increment, BBO, candle and ticker the stage published, in
order. Reading it back is the feed's own decoder; a torn last frame (the stage was
killed mid-write) is ignored.
How it works: `Recorder` appends through a 1 MiB userspace buffer (no syscall per
batch) flushed by the stage once a second and on close; `read_recording` yields
decoded runs. Invariant: the body decodes to the same frames a subscriber of every
instrument with SubFlag.DEFAULT received, snapshots excepted.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from microex.core.records import BookCause
from microex.protocol.md_binary import SERVER_MESSAGES, DecodeError, Messages, MdDecoder

MAGIC = b"MXMDREC1"
VERSION = 1
HEADER = struct.Struct("<8sIIqiiq24x")
assert HEADER.size == 64
SUFFIX = ".mdrec"


class Recorder:
    def __init__(self, path: str | Path, state, start_seq: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb", buffering=1 << 20)
        self._f.write(HEADER.pack(MAGIC, VERSION, HEADER.size, time.time_ns(), state.n_instruments, 0, start_seq))
        for i in range(1, state.n_instruments + 1):
            self._f.write(state.snapshot(i, 0, BookCause.SCHEDULE)[1])
        self.bytes = 0

    @classmethod
    def in_directory(cls, directory: str | Path, state, start_seq: int = 0) -> Recorder:
        """A new recording named after the time it starts, in `directory`."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(Path(directory) / f"md-{stamp}-{time.time_ns() % 10**9:09d}{SUFFIX}", state, start_seq)

    def write(self, *arrays: np.ndarray) -> None:
        for a in arrays:
            if len(a):
                self._f.write(a.data if a.flags.c_contiguous else a.tobytes())
                self.bytes += a.nbytes

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_header(path: str | Path) -> dict:
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise ValueError(f"{path}: too short for a market-data recording")
    magic, version, size, created, n, _, start_seq = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ValueError(f"{path}: not a market-data recording (magic {magic!r})")
    if version != VERSION:
        raise ValueError(f"{path}: recording version {version}, this code reads {VERSION}")
    return {"header_size": size, "created_ns": created, "n_instruments": n, "start_seq": start_seq}


def read_recording(path: str | Path, chunk: int = 1 << 20) -> Iterator[Messages]:
    """The recorded frames as decoded runs, in order. Raises ValueError on a bad frame."""
    head = read_header(path)
    dec = MdDecoder(SERVER_MESSAGES)
    with open(path, "rb") as f:
        f.seek(head["header_size"])
        while data := f.read(chunk):
            for item in dec.feed(data):
                if isinstance(item, DecodeError):
                    raise ValueError(f"{path}: bad frame in the recording ({item.reason.name})")
                yield item
