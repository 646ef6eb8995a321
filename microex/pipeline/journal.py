"""The journal: an append-only log of COMMAND records, written before any effect is published.

How it works
- A journal is a directory of segment files `journal-<first_seq:020d>.seg`, each
  named by the seq of its first record. A segment is a run of frames, and one
  `append(records)` call writes one frame, in one writev: a 40-byte header, then
  the records' raw bytes (the 64-byte COMMAND layout: the same bytes as ring
  slots and wire messages). Frame header, little-endian:

      offset  size  field
           0     4  magic       b"MXJF"
           4     2  version     1
           6     2  rec_size    64 (COMMAND.itemsize)
           8     4  count       records in the frame, >= 1
          12     4  reserved    0
          16     8  first_seq   seq of the first record
          24     8  last_seq    first_seq + count - 1
          32     4  body_crc    zlib.crc32 of the count * 64 body bytes
          36     4  header_crc  zlib.crc32 of header bytes 0..35

- Invariants: seqs are contiguous across frames and segments (append raises
  ValueError on a gap or a regression: the caller is the sequencer, and a bug
  there must be loud); a segment's name is its first frame's first_seq; only the
  last segment is ever written; a segment rolls over at a frame boundary, when
  the next frame would take it past `segment_bytes` (a frame larger than that
  gets a segment of its own). One writer per directory (an flock on it).
- Durability (FsyncPolicy): `none` leaves it to the OS; `batch` fdatasyncs after
  every append (group commit: append a whole batch, then publish its events);
  `interval:N` fdatasyncs at an append when N ms have passed since the last sync,
  and on `sync()` (call it when idle). `durable_seq` is the last seq known to be
  on disk. With any policy but `none`, new segments and the directory are
  fsynced when created, and a segment is synced before it is left for the next.
- Recovery: `Journal.open` validates every frame of every segment. What a crash
  mid-append leaves is a damaged tail of the last segment (a short header, a
  short body, or a bad CRC with no valid frame after it): it is cut back to the
  end of the last good frame (truncate + fsync), never misread. Any other damage
  (in an earlier segment, or a bad frame followed by a valid one) means records
  the journal once acknowledged are gone: JournalCorrupt, with file and offset.
- Reading: `replay_batches` reads a whole segment at a time into one buffer and
  yields an np.frombuffer view of each frame's body once its CRCs check out: no
  copy per frame, no Python object per record.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from microex.core.records import COMMAND

MAGIC = b"MXJF"
VERSION = 1
RECORD_SIZE = COMMAND.itemsize
# Everything up to body_crc; header_crc (u32) follows and covers these 36 bytes.
_HEADER_BODY = struct.Struct("<4sHHIIqqI")
_HEADER = struct.Struct("<4sHHIIqqII")
_HEADER_CRC_SPAN = _HEADER_BODY.size
HEADER_SIZE = _HEADER.size
assert HEADER_SIZE == 40 and HEADER_SIZE % 8 == 0  # keeps every body 8-byte aligned in the file

DEFAULT_SEGMENT_BYTES = 64 << 20
_SEGMENT_NAME = re.compile(r"journal-(\d{20})\.seg")

log = logging.getLogger(__name__)


def segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:020d}.seg"


class JournalError(Exception):
    """A journal cannot be used as asked (closed, or another writer holds it)."""


class JournalCorrupt(JournalError):
    """Damage that is not a torn tail: records once acknowledged are unreadable."""

    def __init__(self, path: str | Path, offset: int, reason: str) -> None:
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path = Path(path)
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class FsyncPolicy:
    """When appended data is forced to disk: `none`, `batch` or `interval:N` (N ms)."""

    mode: str  # "none" | "batch" | "interval"
    interval_ms: float = 0.0

    @classmethod
    def parse(cls, text: str | FsyncPolicy) -> FsyncPolicy:
        if isinstance(text, FsyncPolicy):
            return text
        word, colon, arg = text.strip().partition(":")
        if word in ("none", "batch") and not colon:
            return cls(word)
        if word == "interval":
            try:
                ms = float(arg)
            except ValueError:
                ms = -1.0
            if ms > 0 and np.isfinite(ms):
                return cls("interval", ms)
        raise ValueError(f"fsync policy {text!r}: expected none, batch or interval:N (N ms > 0)")

    @property
    def syncs(self) -> bool:
        return self.mode != "none"

    def __str__(self) -> str:
        if self.mode == "interval":
            return f"interval:{self.interval_ms:g}"
        return self.mode


@njit(cache=True)
def _seq_span(records):
    """(first seq, last seq, whether any two neighbours are not consecutive): one compiled pass,
    not numpy's field views (a few µs on the one-command batches of a quiet venue)."""
    first = records[0].seq
    gap = False
    for i in range(1, records.shape[0]):
        if records[i].seq != first + i:
            gap = True
            break
    return first, records[records.shape[0] - 1].seq, gap


def encode_header(first_seq: int, count: int, body_crc: int) -> bytes:
    head = _HEADER_BODY.pack(MAGIC, VERSION, RECORD_SIZE, count, 0, first_seq, first_seq + count - 1, body_crc)
    return head + zlib.crc32(head).to_bytes(4, "little")


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq from the name, path) of every segment file, in seq order."""
    found = []
    for entry in os.scandir(directory):
        m = _SEGMENT_NAME.fullmatch(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    found.sort()
    return found


def _read_segment(path: Path) -> bytearray:
    """The whole file in one read, into a bytearray: the arrays viewing it are then writable, as
    the engine's kernels expect (numba would compile another specialisation for read-only ones)."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(size)
        got = f.readinto(buf)
        while 0 < got < size:  # a file still being appended to may grow; a short read is not an end
            n = f.readinto(memoryview(buf)[got:])
            if not n:
                break
            got += n
    del buf[got:]
    return buf


def _is_valid_frame(buf: bytearray, view: memoryview, off: int, min_seq: int) -> bool:
    if len(buf) - off < HEADER_SIZE:
        return False
    magic, version, rec_size, count, _, first, last, body_crc, header_crc = _HEADER.unpack_from(buf, off)
    if (magic != MAGIC or zlib.crc32(view[off:off + _HEADER_CRC_SPAN]) != header_crc or version != VERSION
            or rec_size != RECORD_SIZE or count < 1 or last != first + count - 1 or first < min_seq):
        return False
    body = off + HEADER_SIZE
    end = body + count * RECORD_SIZE
    return end <= len(buf) and zlib.crc32(view[body:end]) == body_crc


def _valid_frame_after(buf: bytearray, view: memoryview, pos: int, min_seq: int) -> bool:
    """Is there a whole, valid frame (seq >= min_seq) anywhere from pos on? Then damage before it
    is not a torn tail. The magic is searched for (C speed); each hit is checked in full."""
    while True:
        pos = buf.find(MAGIC, pos)
        if pos < 0:
            return False
        if _is_valid_frame(buf, view, pos, min_seq):
            return True
        pos += 1


def scan_frames(buf: bytearray, path: Path, first_seq: int, is_last: bool,
                verify_from: int = 0) -> Iterator[tuple[int, int, int]]:
    """Yield (body offset, first seq, count) of each good frame of one segment's bytes, in order.

    The first frame must start at `first_seq` (the segment's name) and each next one where the
    previous ended. Body CRCs are checked for frames holding any seq >= verify_from. The scan
    stops quietly at a torn tail of the last segment; any other damage raises JournalCorrupt.
    """
    view = memoryview(buf)
    size = len(buf)
    off, expect = 0, first_seq
    while off < size:
        reason, search_from = None, off + 1
        if size - off < HEADER_SIZE:
            reason = "short frame header"
        else:
            magic, version, rec_size, count, _, first, last, body_crc, header_crc = _HEADER.unpack_from(buf, off)
            if magic != MAGIC or zlib.crc32(view[off:off + _HEADER_CRC_SPAN]) != header_crc:
                reason = "bad frame header (magic or header crc)"
            else:
                # A header with a good CRC was written whole by a writer: if it does not fit, no
                # crash explains it, so these are fatal even at the tail.
                if version != VERSION or rec_size != RECORD_SIZE:
                    raise JournalCorrupt(path, off, f"unsupported frame version {version}, record size {rec_size}")
                if count < 1 or last != first + count - 1:
                    raise JournalCorrupt(path, off, f"inconsistent frame header: count {count}, seqs {first}..{last}")
                if first != expect:
                    raise JournalCorrupt(path, off, f"frame starts at seq {first}, expected {expect}")
                body = off + HEADER_SIZE
                end = body + count * RECORD_SIZE
                # The body is the writer's payload: never search it for frames (a client chooses
                # most of its bytes), only what follows it.
                search_from = end
                if end > size:
                    reason = f"short frame body ({size - body} of {end - body} bytes)"
                elif last >= verify_from and zlib.crc32(view[body:end]) != body_crc:
                    reason = "bad body crc"
        if reason is not None:
            if not is_last:
                raise JournalCorrupt(path, off, reason + " (not the last segment)")
            if _valid_frame_after(buf, view, search_from, expect):
                raise JournalCorrupt(path, off, reason + ", followed by valid frames")
            return  # a torn tail: the caller sees where the good frames end
        yield body, first, count
        expect = last + 1
        off = end


class Journal:
    """The writer. Open with Journal.open(directory, fsync); one writer per directory."""

    def __init__(self, directory: str | Path, fsync: str | FsyncPolicy = "batch", *,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, start_seq: int = 1) -> None:
        if segment_bytes < HEADER_SIZE + RECORD_SIZE:
            raise ValueError(f"segment_bytes {segment_bytes} cannot hold one frame of one record")
        if start_seq < 1:
            raise ValueError(f"start_seq {start_seq}: seqs start at 1")
        self.policy = FsyncPolicy.parse(fsync)
        self.segment_bytes = segment_bytes
        self.directory = Path(directory)
        self.torn_tail: tuple[Path, int, int] | None = None  # (file, cut at, bytes dropped) by open
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._segments: list[tuple[int, Path]] = []
        self._size = 0  # bytes in the last segment
        self._first_seq = 0
        self._last_seq = 0
        self._next_seq = start_seq
        self._durable_seq = 0
        self._dirty = False
        self._broken = False
        self._interval_ns = int(self.policy.interval_ms * 1e6)

        created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._dir_fd)
            self._dir_fd = None
            raise JournalError(f"{self.directory}: another writer has this journal open") from None
        try:
            if created and self.policy.syncs:
                _fsync_path(self.directory.resolve().parent)
            self._recover()
        except BaseException:
            self.close()
            raise
        self._last_sync_ns = time.monotonic_ns()

    @classmethod
    def open(cls, directory: str | Path, fsync: str | FsyncPolicy = "batch", *,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, start_seq: int = 1) -> Journal:
        """Open (creating it if need be) the journal in `directory`, validating every frame and
        cutting a torn tail; an empty journal expects `start_seq` as its first seq."""
        return cls(directory, fsync, segment_bytes=segment_bytes, start_seq=start_seq)

    @staticmethod
    def read(directory: str | Path, from_seq: int | None = 1) -> Iterator[np.ndarray]:
        """The records from from_seq on, one COMMAND array per frame: see replay_batches."""
        return replay_batches(directory, from_seq)

    # -- state -----------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Seq of the last record appended (0 if the journal is empty)."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """Seq of the first record still in the journal (0 if empty; moves up with prune)."""
        return self._first_seq

    @property
    def durable_seq(self) -> int:
        """Last seq known to be on disk (fdatasync returned); with `none`, only what sync() forced."""
        return self._durable_seq

    @property
    def segments(self) -> list[Path]:
        return [path for _, path in self._segments]

    # -- recovery --------------------------------------------------------------------------

    def _recover(self) -> None:
        segments = list_segments(self.directory)
        last = None
        for i, (seq, path) in enumerate(segments):
            is_last = i == len(segments) - 1
            if last is not None and seq != last + 1:
                raise JournalCorrupt(path, 0, f"segment starts at seq {seq}, the one before ends at {last}")
            buf = _read_segment(path)
            end = 0
            for body, first, count in scan_frames(buf, path, seq, is_last):
                end = body + count * RECORD_SIZE
                last = first + count - 1
            if end == 0:
                if not is_last:
                    raise JournalCorrupt(path, 0, "segment holds no frame")
                # Created by a roll-over whose first frame never made it whole: nothing was
                # acknowledged from it; the next append creates it again.
                log.warning("journal: removing %s (%d bytes, no whole frame)", path, len(buf))
                self.torn_tail = (path, 0, len(buf))
                path.unlink()
                os.fsync(self._dir_fd)
                continue
            if end < len(buf):
                log.warning("journal: cutting torn tail of %s at %d (%d bytes dropped)", path, end, len(buf) - end)
                self.torn_tail = (path, end, len(buf) - end)
                with open(path, "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            self._segments.append((seq, path))
            self._size = end
        if self._segments:
            self._first_seq = self._segments[0][0]
            self._last_seq = last
            self._next_seq = last + 1
            self._fd = os.open(self._segments[-1][1], os.O_WRONLY | os.O_APPEND)
            if self.policy.syncs:
                os.fdatasync(self._fd)  # what a crashed writer left in the page cache is now durable
                self._durable_seq = last

    # -- writing ---------------------------------------------------------------------------

    def append(self, records: np.ndarray) -> int:
        """Write `records` (COMMAND, seqs contiguous from last_seq + 1) as one frame, then sync as
        the policy says. Returns last_seq. Raises ValueError on a seq gap or regression."""
        if self._dir_fd is None:
            raise JournalError(f"{self.directory}: journal is closed")
        if self._broken:
            raise JournalError(f"{self.directory}: an earlier append failed and could not be undone")
        if records.dtype != COMMAND or records.ndim != 1:
            raise TypeError(f"journal records must be a 1-d COMMAND array, got {records.dtype} ndim {records.ndim}")
        n = len(records)
        if n == 0:
            return self._last_seq
        first, last, gap = _seq_span(records)
        if first != self._next_seq:
            raise ValueError(f"journal append starts at seq {first}, expected {self._next_seq}")
        if gap:
            raise ValueError(f"journal append: seqs {first}..{last} over {n} records are not contiguous")
        body = np.ascontiguousarray(records).view(np.uint8)
        header = encode_header(first, n, zlib.crc32(body))
        frame_len = HEADER_SIZE + body.nbytes
        if self._fd is None or (self._size > 0 and self._size + frame_len > self.segment_bytes):
            self._roll(first)
        self._write_frame(header, body)
        self._size += frame_len
        self._last_seq = last
        self._next_seq = last + 1
        if not self._first_seq:
            self._first_seq = first
        self._dirty = True
        if self.policy.mode == "batch":
            self.sync()
        elif self.policy.mode == "interval" and time.monotonic_ns() - self._last_sync_ns >= self._interval_ns:
            self.sync()
        return last

    def _write_frame(self, header: bytes, body: np.ndarray) -> None:
        start = self._size
        try:
            written = os.writev(self._fd, [header, body])
            if written < len(header) + body.nbytes:  # a short write (signal, disk full): finish it
                rest = memoryview(header + body.tobytes())[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest):]
        except BaseException:
            # Leave no half frame behind for the next append to follow: cut back to the boundary.
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                self._broken = True
            raise

    def _roll(self, first_seq: int) -> None:
        if self._fd is not None:
            if self.policy.syncs and self._dirty:
                self.sync()  # the segment is left for good: nothing of it may stay unsynced
            os.close(self._fd)
            self._fd = None
        path = self.directory / segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        if self.policy.syncs:
            os.fsync(self._fd)
            os.fsync(self._dir_fd)  # the new name itself must survive a crash
        self._segments.append((first_seq, path))
        self._size = 0

    def sync(self) -> None:
        """fdatasync the last segment if anything was appended since the last sync."""
        if self._fd is not None and self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
        self._durable_seq = self._last_seq
        self._last_sync_ns = time.monotonic_ns()

    # -- housekeeping ----------------------------------------------------------------------

    def prune(self, before_seq: int) -> list[Path]:
        """Delete whole segments whose records all have seq < before_seq (never the last
        segment, which holds last_seq). Returns the paths deleted."""
        removed = []
        while len(self._segments) > 1 and self._segments[1][0] <= before_seq:
            _, path = self._segments.pop(0)
            path.unlink()
            removed.append(path)
        if removed:
            self._first_seq = self._segments[0][0]
            if self.policy.syncs:
                os.fsync(self._dir_fd)
        return removed

    def close(self) -> None:
        """Sync (unless the policy is none), release the files and the lock. Idempotent."""
        try:
            if self._fd is not None:
                if self.policy.syncs and not self._broken:
                    self.sync()
                os.close(self._fd)
        finally:
            self._fd = None
            if self._dir_fd is not None:
                os.close(self._dir_fd)  # closing the descriptor drops the flock
                self._dir_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Journal({str(self.directory)!r}, fsync={str(self.policy)!r}, seqs {self._first_seq}.."
                f"{self._last_seq}, {len(self._segments)} segment(s))")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replay_batches(directory: str | Path, from_seq: int | None = 1) -> Iterator[np.ndarray]:
    """Yield the journal's records from `from_seq` on (None: from its first record) as COMMAND
    arrays, one per frame, in seq order; the frame that holds from_seq is sliced to start there.

    Each array is a view into the buffer of its segment (read whole, once): the segment stays in
    memory while any of its arrays does. Every frame yielded has had its CRCs checked. A torn
    tail of the last segment ends the replay (a writer may be mid-append); other damage raises
    JournalCorrupt. Raises ValueError if from_seq is before the journal's first record (pruned).
    Safe alongside a live writer: each segment is read as it stands when the replay reaches it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no journal directory {directory}")
    segments = list_segments(directory)
    if not segments:
        return
    if from_seq is None:
        from_seq = segments[0][0]
    if from_seq < segments[0][0]:
        raise ValueError(f"{directory}: the journal starts at seq {segments[0][0]}, "
                         f"cannot replay from {from_seq}")
    # Skip, unread, every segment that ends before from_seq: the next one starts at or below it.
    start = max(i for i, (seq, _) in enumerate(segments) if seq <= from_seq)
    expect = None
    for i in range(start, len(segments)):
        seq, path = segments[i]
        if expect is not None and seq != expect:
            raise JournalCorrupt(path, 0, f"segment starts at seq {seq}, the one before ends at {expect - 1}")
        is_last = i == len(segments) - 1
        buf = _read_segment(path)
        expect = None
        for body, first, count in scan_frames(buf, path, seq, is_last, verify_from=from_seq):
            expect = first + count
            if expect <= from_seq:
                continue
            records = np.frombuffer(buf, COMMAND, count, body)
            yield records[from_seq - first:] if first < from_seq else records
        if expect is None and not is_last:
            raise JournalCorrupt(path, 0, "segment holds no frame")
