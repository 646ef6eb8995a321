"""JournalTailer: read a live journal's new frames as the engine appends them (read-only).

How it works
- The engine appends one frame per command batch to the last segment of
  DATA/journal (pipeline/journal.py: 40-byte CRC'd header, then the COMMAND
  records) before it publishes the batch's events. With any fsync policy the bytes
  are in the page cache as soon as write() returns, so a reader sees them at once.
- The tailer keeps an open descriptor on the segment holding `next_seq` and the
  file offset of the first frame it has not yet returned. `poll()` reads what lies
  past that offset (pread, at most `max_bytes`), returns every whole frame whose
  CRCs check out (as COMMAND arrays, contiguous from next_seq) and moves the offset
  past them. A frame that is short or fails its CRC may be a write in progress (a
  reader can see part of a concurrent write): it is read again at the next poll,
  never trusted and never skipped.
- Segment roll: the writer starts `journal-<next_seq>.seg` only after the current
  segment is complete, so when the current one has nothing new and a file of that
  exact name exists, the tailer moves to it (one stat per idle poll).
- The frames' bytes are read into fresh bytearrays: the arrays returned are
  writable and C-contiguous (what MatchingEngine.run's compiled entry expects) and
  stay valid after later polls.
Invariant: the records returned over all polls are exactly the journal's records
from the starting seq on, in order, each once.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from microex.core.records import COMMAND
from microex.pipeline.journal import HEADER_SIZE, MAGIC, RECORD_SIZE, VERSION, list_segments, segment_name

_HEADER = struct.Struct("<4sHHIIqqII")
_CRC_SPAN = 36


class JournalTailer:
    def __init__(self, directory: str | Path, next_seq: int, max_bytes: int = 16 << 20) -> None:
        self.directory = Path(directory)
        self.next_seq = next_seq
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._seg_first = 0
        self._off = 0

    def _open_segment_for(self, seq: int) -> bool:
        segments = list_segments(self.directory) if self.directory.is_dir() else []
        chosen = [(first, path) for first, path in segments if first <= seq]
        if not chosen:
            if segments and segments[0][0] > seq:
                raise ValueError(f"{self.directory}: the journal starts at seq {segments[0][0]}, after {seq}")
            return False
        first, path = chosen[-1]
        self._switch(first, path)
        return True

    def _switch(self, first: int, path: Path) -> None:
        self.close()
        self._fd = os.open(path, os.O_RDONLY)
        self._seg_first = first
        self._off = 0

    def poll(self) -> list[np.ndarray]:
        """The new whole frames (COMMAND arrays from next_seq on); [] if nothing new."""
        out: list[np.ndarray] = []
        if self._fd is None and not self._open_segment_for(self.next_seq):
            return out
        while True:
            got = self._read_frames(out)
            if got:
                if sum(len(a) for a in out) * RECORD_SIZE >= self.max_bytes:
                    return out
                continue
            nxt = self.directory / segment_name(self.next_seq)
            if self._seg_first != self.next_seq and nxt.exists():
                # the writer has moved on: whatever is left of this segment was complete before it did
                if self._read_frames(out):
                    continue
                self._switch(self.next_seq, nxt)
                continue
            return out

    def _read_frames(self, out: list[np.ndarray]) -> int:
        size = os.fstat(self._fd).st_size
        avail = min(size - self._off, self.max_bytes)
        if avail < HEADER_SIZE:
            return 0
        buf = bytearray(avail)
        n = os.preadv(self._fd, [buf], self._off)
        view = memoryview(buf)[:n]
        pos, frames = 0, 0
        while n - pos >= HEADER_SIZE:
            magic, version, rec_size, count, _, first, last, body_crc, header_crc = _HEADER.unpack_from(view, pos)
            if (magic != MAGIC or zlib.crc32(view[pos:pos + _CRC_SPAN]) != header_crc or version != VERSION
                    or rec_size != RECORD_SIZE or count < 1):
                break  # a header being written (or damage: the engine stops on that, and so do we)
            body = pos + HEADER_SIZE
            end = body + count * RECORD_SIZE
            if end > n:
                if end - pos > self.max_bytes:  # a frame larger than one read: read it whole
                    self.max_bytes = end - pos
                break
            if zlib.crc32(view[body:end]) != body_crc:
                break
            if last >= self.next_seq:
                records = np.frombuffer(buf, COMMAND, count, body)
                if first < self.next_seq:
                    records = records[self.next_seq - first:]
                elif first > self.next_seq:
                    raise ValueError(f"journal gap: frame starts at {first}, expected {self.next_seq}")
                out.append(records)
                self.next_seq = last + 1
                frames += 1
            pos = end
        self._off += pos
        return frames or (1 if pos else 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
