"""Snapshots: atomic files that restore a bit-identical engine; a bad one is skipped."""

import numpy as np

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.perf.workload import match_mix
from microex.pipeline.datadir import DataDir
from microex.pipeline.snapshot import list_snapshots, load_newest, prune_snapshots, write_snapshot

CONFIG = EngineConfig(max_instruments=4, max_orders=1 << 14, max_levels=1 << 12, id_capacity=1 << 10,
                      id_hash_multiplier=12345)


def _engine_after(cmds) -> MatchingEngine:
    e = MatchingEngine(CONFIG)
    e.process(cmds)
    return e


def test_restore_is_bit_identical_and_continues_identically(tmp_path):
    w = match_mix(6_000, seed=5, book_target=500)
    cmds = np.concatenate([w.setup, w.cmds])
    half = len(cmds) // 2
    live = _engine_after(cmds[:half])
    write_snapshot(tmp_path, live, half)
    restored = MatchingEngine(CONFIG)
    assert load_newest(tmp_path, restored) == half
    assert restored.digest() == live.digest()
    # the rest of the stream gives the same events and the same final state
    assert restored.process(cmds[half:]).tobytes() == live.process(cmds[half:]).tobytes()
    assert restored.digest() == live.digest() == _engine_after(cmds).digest()


def test_digest_does_not_depend_on_batching():
    w = match_mix(3_000, seed=2, book_target=300)
    cmds = np.concatenate([w.setup, w.cmds])
    a = MatchingEngine(CONFIG)
    a.process(cmds)
    b = MatchingEngine(CONFIG)
    for i in range(0, len(cmds), 7):
        b.process(cmds[i : i + 7])
    assert a.digest() == b.digest()
    c = MatchingEngine(CONFIG)
    c.process(cmds[:-1])
    assert c.digest() != a.digest()


def test_corrupt_or_torn_newest_snapshot_falls_back_to_older(tmp_path):
    w = match_mix(2_000, seed=3, book_target=200)
    cmds = np.concatenate([w.setup, w.cmds])
    e = MatchingEngine(CONFIG)
    e.process(cmds[:1000])
    write_snapshot(tmp_path, e, 1000)
    good = e.digest()
    e.process(cmds[1000:])
    newest = write_snapshot(tmp_path, e, len(cmds))
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the state
    newest.write_bytes(bytes(data))
    fresh = MatchingEngine(CONFIG)
    assert load_newest(tmp_path, fresh) == 1000 and fresh.digest() == good
    newest.write_bytes(bytes(data[: len(data) // 3]))  # torn
    fresh = MatchingEngine(CONFIG)
    assert load_newest(tmp_path, fresh) == 1000 and fresh.digest() == good
    # no snapshot at all leaves the engine empty
    empty = MatchingEngine(CONFIG)
    before = empty.digest()
    assert load_newest(tmp_path / "none", empty) == 0 and empty.digest() == before


def test_prune_keeps_the_newest(tmp_path):
    e = MatchingEngine(CONFIG)
    for seq in (10, 20, 30):
        write_snapshot(tmp_path, e, seq)
    prune_snapshots(tmp_path, keep=2)
    assert [s for s, _ in list_snapshots(tmp_path)] == [30, 20]
    assert not list(tmp_path.glob("*.tmp"))


def test_datadir_fixes_the_engine_identity(tmp_path):
    d = DataDir(tmp_path / "data")
    d.create(EngineConfig(max_orders=1024), None)
    first = d.load()[0]
    assert first.id_hash_multiplier % 2 == 1
    d.create(EngineConfig(max_orders=2048), None)  # a second create keeps the first identity
    assert d.load()[0] == first


def test_digest_does_not_depend_on_the_id_maps_size_and_format_1_snapshots_still_load(tmp_path):
    import io
    import json

    w = match_mix(3_000, seed=4, book_target=300)
    cmds = np.concatenate([w.setup, w.cmds])
    grown = MatchingEngine(CONFIG)
    grown.reserve_ids(1 << 14)  # sized ahead, as a venue does with expected_orders
    grown.process(cmds)
    plain = _engine_after(cmds)
    assert len(grown.ids) > len(plain.ids) and grown.digest() == plain.digest()
    assert grown.layout_digest() != plain.layout_digest()  # the raw slots differ
    other = _engine_after(cmds[:-1])
    assert other.digest() != plain.digest()
    # a snapshot written before the change (format 1: the layout digest) is still accepted
    meta = json.dumps({"format": 1, "last_seq": 7, "digest": plain.layout_digest()})
    buf = io.BytesIO()
    np.savez(buf, state=plain.state, ids=plain.ids, meta=np.array(meta))
    (tmp_path / "snapshot-00000000000000000007.snap").write_bytes(buf.getvalue())
    restored = MatchingEngine(CONFIG)
    assert load_newest(tmp_path, restored) == 7 and restored.digest() == plain.digest()
