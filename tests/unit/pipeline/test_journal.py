"""The journal: round trips, roll-over, torn tails cut, real damage refused, fsync policies, prune, kill -9."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.core.records import COMMAND
from microex.pipeline.journal import (
    HEADER_SIZE,
    FsyncPolicy,
    Journal,
    JournalCorrupt,
    JournalError,
    replay_batches,
    segment_name,
)

# The documented frame header, parsed independently of the module under test.
HEADER = struct.Struct("<4sHHIIqqII")
REC = COMMAND.itemsize


def records(first: int, n: int) -> np.ndarray:
    """n COMMAND records with seqs first.. and every other field derived from the seq."""
    r = np.zeros(n, dtype=COMMAND)
    seq = np.arange(first, first + n, dtype=np.int64)
    r["seq"] = seq
    r["ts_ns"] = 1_700_000_000_000_000_000 + seq * 1000
    r["order_id"] = seq * 7919
    r["account"] = seq % 100 + 1
    r["price_ticks"] = 100_000 + seq % 50
    r["qty_lots"] = seq % 9 + 1
    r["instrument"] = seq % 3 + 1
    r["action"] = seq % 3 + 1
    r["side"] = seq % 2 + 1
    return r


def read_all(directory, from_seq=1) -> np.ndarray:
    batches = list(replay_batches(directory, from_seq))
    # dtype=COMMAND: numpy's concatenate would otherwise drop the 3 padding bytes (itemsize 61)
    return np.concatenate(batches, dtype=COMMAND) if batches else np.zeros(0, dtype=COMMAND)


def frame_offsets(path: Path) -> list[tuple[int, int, int]]:
    """(offset, first_seq, count) of every frame of a well-formed segment."""
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        _, _, _, count, _, first, _, _, _ = HEADER.unpack_from(data, off)
        out.append((off, first, count))
        off += HEADER_SIZE + count * REC
    return out


def build(directory: Path, sizes: list[int], segment_bytes: int = 64 << 20, fsync: str = "none") -> list[np.ndarray]:
    """A journal of one frame per size; returns the batches written."""
    batches, seq = [], 1
    with Journal.open(directory, fsync, segment_bytes=segment_bytes) as j:
        for n in sizes:
            batches.append(records(seq, n))
            j.append(batches[-1])
            seq += n
    return batches


# -- format and policy ---------------------------------------------------------------------


def test_frame_layout_is_the_documented_one(tmp_path):
    batch = records(5, 3)
    with Journal.open(tmp_path, "none", start_seq=5) as j:
        assert j.append(batch) == 7
    (seg,) = tmp_path.glob("*.seg")
    assert seg.name == "journal-00000000000000000005.seg" == segment_name(5)
    data = seg.read_bytes()
    assert len(data) == HEADER_SIZE + 3 * REC == 40 + 192
    magic, version, rec_size, count, reserved, first, last, body_crc, header_crc = HEADER.unpack_from(data)
    assert (magic, version, rec_size, count, reserved, first, last) == (b"MXJF", 1, 64, 3, 0, 5, 7)
    assert data[HEADER_SIZE:] == batch.tobytes()  # the ring/wire bytes, unchanged
    assert body_crc == zlib.crc32(batch.tobytes())
    assert header_crc == zlib.crc32(data[:36])


@pytest.mark.parametrize("text,mode,ms", [("none", "none", 0), ("batch", "batch", 0), ("interval:5", "interval", 5),
                                          (" interval:0.5 ", "interval", 0.5)])
def test_fsync_policy_parses(text, mode, ms):
    p = FsyncPolicy.parse(text)
    assert (p.mode, p.interval_ms) == (mode, ms)
    assert FsyncPolicy.parse(str(p)) == p
    assert FsyncPolicy.parse(p) is p


@pytest.mark.parametrize("text", ["", "always", "batch:1", "none:", "interval", "interval:", "interval:0",
                                  "interval:-3", "interval:x", "interval:nan", "interval:inf"])
def test_fsync_policy_rejects(text):
    with pytest.raises(ValueError):
        FsyncPolicy.parse(text)


# -- round trips ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sessions=st.lists(st.lists(st.integers(1, 40), max_size=12), min_size=1, max_size=4),
    segment_bytes=st.sampled_from([HEADER_SIZE + REC, 300, 1024, 4096, 64 << 20]),
    data=st.data(),
)
def test_round_trip_across_reopens_and_rollovers(sessions, segment_bytes, data):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "j"
        written, seq = [], 1
        for sizes in sessions:  # each session reopens the journal and continues it
            with Journal.open(d, "none", segment_bytes=segment_bytes) as j:
                assert j.last_seq == seq - 1 and j.torn_tail is None
                for n in sizes:
                    written.append(records(seq, n))
                    assert j.append(written[-1]) == seq + n - 1
                    seq += n
                assert j.first_seq == (1 if written else 0)
        expected = np.concatenate(written, dtype=COMMAND) if written else np.zeros(0, COMMAND)
        got = read_all(d)
        assert got.dtype == COMMAND and (got == expected).all() and len(got) == seq - 1
        # frames come back as written: one array per append
        assert [len(b) for b in replay_batches(d)] == [len(b) for b in written]
        # segments: named by their first seq, rolled at a frame boundary before passing the size
        segs = sorted(d.glob("*.seg"))
        for path in segs:
            frames = frame_offsets(path)
            assert path.name == segment_name(frames[0][1])
            assert path.stat().st_size <= segment_bytes or len(frames) == 1
        if written:
            from_seq = data.draw(st.integers(1, seq), label="from_seq")
            assert (read_all(d, from_seq) == expected[from_seq - 1:]).all()


def test_a_frame_larger_than_a_segment_gets_its_own(tmp_path):
    build(tmp_path, [2, 50, 2], segment_bytes=1024)
    sizes = [len(frame_offsets(p)) for p in sorted(tmp_path.glob("*.seg"))]
    assert sizes == [1, 1, 1]
    assert len(read_all(tmp_path)) == 54


def test_empty_append_is_a_no_op_and_reads_are_writable_arrays(tmp_path):
    with Journal.open(tmp_path, "none") as j:
        assert j.append(np.zeros(0, COMMAND)) == 0 and j.last_seq == 0 and j.first_seq == 0
        j.append(records(1, 4))
    (batch,) = list(Journal.read(tmp_path))
    assert batch.flags.writeable and batch.dtype == COMMAND


def test_read_from_missing_or_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(replay_batches(tmp_path / "nope"))
    assert list(replay_batches(tmp_path)) == []


# -- append validation ---------------------------------------------------------------------


def test_gap_or_regression_on_append_is_loud_and_changes_nothing(tmp_path):
    with Journal.open(tmp_path, "none") as j:
        with pytest.raises(ValueError):
            j.append(records(2, 3))  # an empty journal expects seq 1
        with pytest.raises(ValueError):
            j.append(records(0, 3))
        j.append(records(1, 5))
        for bad in (records(7, 2), records(5, 2), records(1, 2), records(6, 3)[::-1]):
            with pytest.raises(ValueError):
                j.append(bad)
        inner = records(6, 4)
        inner["seq"] = [6, 8, 7, 9]  # right ends, wrong middle
        with pytest.raises(ValueError):
            j.append(inner)
        inner["seq"] = [6, 7, 7, 9]
        with pytest.raises(ValueError):
            j.append(inner)
        with pytest.raises(TypeError):
            j.append(np.zeros(3, dtype=np.int64))
        assert j.last_seq == 5
        assert j.append(records(6, 2)) == 7
    assert (read_all(tmp_path) == records(1, 7)).all()


def test_start_seq_for_an_empty_journal(tmp_path):
    with Journal.open(tmp_path, "none", start_seq=1001) as j:
        with pytest.raises(ValueError):
            j.append(records(1, 1))
        j.append(records(1001, 3))
    with Journal.open(tmp_path, "none") as j:  # start_seq no longer matters: the journal says
        assert (j.first_seq, j.last_seq) == (1001, 1003)
    with pytest.raises(ValueError):
        list(replay_batches(tmp_path, 1))  # seqs 1..1000 are not in this journal
    assert len(read_all(tmp_path, None)) == 3


def test_one_writer_per_directory(tmp_path):
    j = Journal.open(tmp_path, "none")
    with pytest.raises(JournalError):
        Journal.open(tmp_path, "none")
    j.close()
    j.close()  # idempotent
    with pytest.raises(JournalError):
        j.append(records(1, 1))
    Journal.open(tmp_path, "none").close()


def test_a_failed_write_leaves_no_half_frame(tmp_path, monkeypatch):
    with Journal.open(tmp_path, "none") as j:
        j.append(records(1, 3))
        real_writev = os.writev

        def half_then_enospc(fd, buffers):
            data = b"".join(bytes(b) for b in buffers)
            os.write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "writev", half_then_enospc)
        with pytest.raises(OSError):
            j.append(records(4, 3))
        monkeypatch.setattr(os, "writev", real_writev)
        assert j.last_seq == 3
        j.append(records(4, 3))
    assert (read_all(tmp_path) == records(1, 6)).all()


# -- torn tails and damage -----------------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_torn_last_frame_is_cut_at_every_byte(tmp_path):
    pristine = tmp_path / "pristine"
    build(pristine, [3, 2, 4, 3], segment_bytes=600)  # segments [3, 2] and [4, 3]
    last_seg = sorted(pristine.glob("*.seg"))[-1]
    (off, first, count) = frame_offsets(last_seg)[-1]
    assert first == 10 and off > 0
    size = last_seg.stat().st_size
    for cut in range(off, size):
        d = _copy(pristine, tmp_path / f"cut{cut}")
        seg = d / last_seg.name
        os.truncate(seg, cut)
        assert (read_all(d) == records(1, 9)).all()  # a reader stops at the torn tail
        with Journal.open(d, "none") as j:
            assert j.last_seq == 9
            assert seg.stat().st_size == off
            assert j.torn_tail == ((seg, off, cut - off) if cut > off else None)
            j.append(records(10, 5))  # and the journal continues right after the prefix
        assert (read_all(d) == records(1, 14)).all()
        shutil.rmtree(d)


def test_a_torn_first_frame_of_the_last_segment_removes_it(tmp_path):
    build(tmp_path, [3, 4], segment_bytes=300)
    segs = sorted(tmp_path.glob("*.seg"))
    assert len(segs) == 2
    os.truncate(segs[1], 17)
    with Journal.open(tmp_path, "batch", segment_bytes=300) as j:
        assert j.last_seq == 3 and not segs[1].exists() and j.torn_tail == (segs[1], 0, 17)
        j.append(records(4, 4))
    assert (read_all(tmp_path) == records(1, 7)).all() and segs[1].exists()
    # a journal whose only segment is torn to nothing is empty again
    d = tmp_path / "one"
    build(d, [5])
    (seg,) = d.glob("*.seg")
    os.truncate(seg, 39)
    with Journal.open(d, "none") as j:
        assert (j.first_seq, j.last_seq) == (0, 0) and list(d.glob("*.seg")) == []


def _flip(path: Path, pos: int) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x5A]))


def test_damage_in_the_last_frame_is_cut(tmp_path):
    pristine = tmp_path / "pristine"
    build(pristine, [3, 2, 2])
    (seg_name,) = [p.name for p in pristine.glob("*.seg")]
    off, _, _ = frame_offsets(pristine / seg_name)[-1]
    size = (pristine / seg_name).stat().st_size
    for pos in range(off, size):  # every header byte and every body byte
        d = _copy(pristine, tmp_path / f"flip{pos}")
        _flip(d / seg_name, pos)
        assert (read_all(d) == records(1, 5)).all()
        with Journal.open(d, "none") as j:
            assert j.last_seq == 5 and (d / seg_name).stat().st_size == off
        shutil.rmtree(d)


def test_damage_before_the_tail_is_corruption(tmp_path):
    pristine = tmp_path / "pristine"
    build(pristine, [3, 2, 3, 2, 2, 2], segment_bytes=500)  # segments [3, 2] [3, 2] [2, 2]
    segs = sorted(pristine.glob("*.seg"))
    assert len(segs) == 3
    rng = random.Random(4)
    cases = []
    # any frame of an earlier segment, including its last one
    for seg in segs[:-1]:
        for off, _, count in frame_offsets(seg):
            cases += [(seg, off, p) for p in rng.sample(range(off, off + HEADER_SIZE + count * REC), 12)]
    # a frame of the last segment that has a good frame after it
    last = segs[-1]
    off, _, count = frame_offsets(last)[0]
    assert len(frame_offsets(last)) == 2
    cases += [(last, off, p) for p in range(off, off + HEADER_SIZE + count * REC)]
    for i, (seg, frame_off, pos) in enumerate(cases):
        d = _copy(pristine, tmp_path / f"c{i}")
        _flip(d / seg.name, pos)
        with pytest.raises(JournalCorrupt) as err:
            Journal.open(d, "none")
        assert err.value.path == d / seg.name and err.value.offset == frame_off
        with pytest.raises(JournalCorrupt):
            read_all(d)
        assert (d / seg.name).read_bytes() != (pristine / seg.name).read_bytes()  # nothing was cut
        shutil.rmtree(d)
    Journal.open(pristine, "none").close()  # no lock left behind by the failed opens


def test_a_missing_or_misnamed_segment_is_corruption(tmp_path):
    build(tmp_path, [3, 3, 3], segment_bytes=300)
    segs = sorted(tmp_path.glob("*.seg"))
    segs[1].rename(tmp_path / segment_name(5))  # its frames start at 4
    with pytest.raises(JournalCorrupt):
        Journal.open(tmp_path, "none")
    (tmp_path / segment_name(5)).unlink()  # a hole: 4..6 gone
    with pytest.raises(JournalCorrupt):
        Journal.open(tmp_path, "none")
    with pytest.raises(JournalCorrupt):
        read_all(tmp_path)


# -- fsync policies ------------------------------------------------------------------------


class SyncCounter:
    def __init__(self, monkeypatch):
        self.datasyncs = self.fsyncs = 0
        real_datasync, real_fsync = os.fdatasync, os.fsync

        def fdatasync(fd):
            self.datasyncs += 1
            real_datasync(fd)

        def fsync(fd):
            self.fsyncs += 1
            real_fsync(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "fsync", fsync)


def test_fsync_none_never_syncs(tmp_path, monkeypatch):
    calls = SyncCounter(monkeypatch)
    with Journal.open(tmp_path / "j", "none", segment_bytes=300) as j:
        for i in range(10):
            j.append(records(1 + 3 * i, 3))  # rolls over several times
        assert j.durable_seq == 0
    assert (calls.datasyncs, calls.fsyncs) == (0, 0)
    assert len(list((tmp_path / "j").glob("*.seg"))) > 3


def test_fsync_batch_syncs_every_append_and_new_segments(tmp_path, monkeypatch):
    d = tmp_path / "j"
    calls = SyncCounter(monkeypatch)
    with Journal.open(d, "batch", segment_bytes=400) as j:
        assert calls.fsyncs == 1  # the parent directory of the new journal directory
        j.append(records(1, 3))  # creates segment 1: file + directory fsync
        assert (calls.datasyncs, calls.fsyncs, j.durable_seq) == (1, 3, 3)
        j.append(records(4, 1))
        assert (calls.datasyncs, calls.fsyncs, j.durable_seq) == (2, 3, 4)
        j.append(records(5, 3))  # 40+192 more would pass 400: a new segment
        assert (calls.datasyncs, calls.fsyncs, j.durable_seq) == (3, 5, 7)
        j.prune(7)
        assert calls.fsyncs == 6  # the directory, after the delete
    assert calls.datasyncs == 3  # close had nothing left to sync


def test_fsync_interval_syncs_when_due_and_on_sync(tmp_path, monkeypatch):
    now = [1_000_000_000]
    monkeypatch.setattr(time, "monotonic_ns", lambda: now[0])
    calls = SyncCounter(monkeypatch)
    j = Journal.open(tmp_path, "interval:5")
    for i, t_ms in enumerate([0, 1, 4.9]):
        now[0] = 1_000_000_000 + int(t_ms * 1e6)
        j.append(records(1 + i, 1))
    assert calls.datasyncs == 0 and j.durable_seq == 0
    now[0] = 1_000_000_000 + 5_000_000  # 5 ms since the open
    j.append(records(4, 1))
    assert calls.datasyncs == 1 and j.durable_seq == 4
    now[0] += 4_000_000
    j.append(records(5, 1))
    assert calls.datasyncs == 1 and j.durable_seq == 4
    j.sync()  # the caller's idle-time sync
    assert calls.datasyncs == 2 and j.durable_seq == 5
    j.sync()  # nothing new: no syscall
    assert calls.datasyncs == 2
    now[0] += 10_000_000
    j.append(records(6, 1))
    assert calls.datasyncs == 3
    j.append(records(7, 1))
    j.close()  # close syncs what is left
    assert calls.datasyncs == 4


def test_interval_policy_syncs_a_segment_before_leaving_it(tmp_path, monkeypatch):
    now = [0]
    monkeypatch.setattr(time, "monotonic_ns", lambda: now[0])
    calls = SyncCounter(monkeypatch)
    with Journal.open(tmp_path, "interval:1000", segment_bytes=300) as j:
        j.append(records(1, 3))
        assert calls.datasyncs == 0
        j.append(records(4, 3))  # rolls: segment 1 is synced before segment 4 starts
        assert calls.datasyncs == 1 and j.durable_seq == 3


# -- prune ---------------------------------------------------------------------------------


def test_prune_keeps_the_segment_holding_before_seq(tmp_path):
    build(tmp_path, [3, 3, 3, 3], segment_bytes=300)  # segments start at 1, 4, 7, 10
    names = lambda: sorted(p.name for p in tmp_path.glob("*.seg"))  # noqa: E731
    assert names() == [segment_name(s) for s in (1, 4, 7, 10)]
    with Journal.open(tmp_path, "none", segment_bytes=300) as j:
        assert j.prune(3) == [] and j.prune(4) == [tmp_path / segment_name(1)]
        assert j.first_seq == 4
        j.prune(8)  # 8 is in segment 7: kept
        assert names() == [segment_name(s) for s in (7, 10)] and j.first_seq == 7
        j.prune(10_000)  # the last segment always stays: it holds last_seq
        assert names() == [segment_name(10)] and (j.first_seq, j.last_seq) == (10, 12)
        j.append(records(13, 2))
    with Journal.open(tmp_path, "none") as j:
        assert (j.first_seq, j.last_seq) == (10, 14)
    with pytest.raises(ValueError):
        list(replay_batches(tmp_path, 9))
    assert (read_all(tmp_path, 11) == records(11, 4)).all()
    assert (read_all(tmp_path, None) == records(10, 5)).all()


# -- kill -9 -------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import random, sys
    import numpy as np
    from microex.core.records import COMMAND
    from microex.pipeline.journal import Journal

    j = Journal.open(sys.argv[1], "batch", segment_bytes=int(sys.argv[2]))
    rng = random.Random(int(sys.argv[3]))
    print("open", j.last_seq, flush=True)
    while True:
        n = rng.randint(1, 300)
        r = np.zeros(n, dtype=COMMAND)
        r["seq"] = np.arange(j.last_seq + 1, j.last_seq + 1 + n)
        r["order_id"] = r["seq"] * 7919
        print(j.append(r), flush=True)
    """
)


def test_kill_9_leaves_a_contiguous_prefix_with_every_acknowledged_seq(tmp_path):
    d = tmp_path / "j"
    rng = random.Random(9)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    acknowledged = 0
    for round_ in range(4):  # each round reopens what the last kill left and continues it
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(d), str(40_000), str(round_)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        opened = child.stdout.readline().split()
        assert opened[0] == "open" and int(opened[1]) >= acknowledged
        for _ in range(rng.randint(5, 150)):  # let it run a random number of appends
            line = child.stdout.readline()
            assert line, "the child died on its own"
        time.sleep(rng.random() * 0.01)  # and a random moment inside the next ones
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()  # lines it printed before dying are acknowledgements too
        child.wait()
        assert child.returncode == -signal.SIGKILL
        acknowledged = max([acknowledged, int(line)] + [int(x) for x in rest.split()])
        with Journal.open(d, "batch", segment_bytes=40_000) as j:
            assert j.first_seq == 1 and j.last_seq >= acknowledged
        got = read_all(d)
        assert (got["seq"] == np.arange(1, len(got) + 1)).all()  # contiguous from seq 1
        assert (got["order_id"] == got["seq"] * 7919).all()
        assert len(got) == j.last_seq
    assert len(list(d.glob("*.seg"))) > 1  # it rolled over segments along the way


# -- the benchmark (a smoke run: shape only, no timing asserted) ---------------------------


def test_bench_journal_smoke(tmp_path):
    from microex.perf import journal_bench

    parser = argparse.ArgumentParser()
    journal_bench.add_arguments(parser)
    out = tmp_path / "journal.json"
    args = parser.parse_args(["--commands", "20000", "--runs", "1", "--dir", str(tmp_path), "--json", str(out)])
    assert journal_bench.main(args) == 0
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for policy in ("none", "batch", "interval_5"):
        for batch in (4096, 256):
            assert rows[f"journal.append.{policy}.batch_{batch}"]["ops_per_s"] > 0
    assert rows["journal.replay"]["ops_per_s"] > 0 and rows["journal.commit.batch_256"]["p99_ns"] > 0
    assert all(r["workload"] for r in rows.values())
    assert journal_bench.filesystem_of("/proc")[0] == "proc"
    assert list(tmp_path.glob("microex-journal-bench-*")) == []  # its temp journals are gone
