"""kill -9 the engine process under load; recovery gives exactly a prefix of the input
that includes every command whose events were published; a restarted engine goes on."""

import random
import signal

import numpy as np
import pytest

from microex.core.config import EngineConfig
from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND
from microex.perf.workload import match_mix
from microex.pipeline.datadir import DataDir
from microex.pipeline.local import LocalPipeline
from microex.pipeline.recovery import recover, replay

CONFIG = EngineConfig(max_instruments=2, max_orders=1 << 14, max_levels=1 << 12, id_capacity=1 << 12)


def _stream(n: int) -> np.ndarray:
    w = match_mix(n, seed=11, book_target=800)
    out = np.zeros(len(w.setup) + len(w.cmds), dtype=COMMAND)
    out[: len(w.setup)] = w.setup
    out[len(w.setup):] = w.cmds
    return out


def _expected_digest(data: DataDir, cmds: np.ndarray) -> str:
    config, venue, _ = data.load()
    engine = MatchingEngine(config, venue)
    engine.process(cmds)
    return engine.digest()


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_then_recover_is_a_published_prefix_and_restart_continues(tmp_path, round_):
    rng = random.Random(round_)
    cmds = _stream(12_000)
    data = DataDir(tmp_path / "data")
    data.create(CONFIG, None)
    kill_at = rng.randrange(500, 9000)
    first = LocalPipeline(str(data.root), fsync="batch", batch=512, snapshot_every=rng.choice([0, 1500]),
                          inbound_slots=1 << 12, outbound_slots=1 << 15)
    try:
        for i in range(0, len(cmds), 256):  # kill while commands are still in flight
            first.feed(cmds[i : i + 256])
            if first.published >= kill_at:
                break
        first.wait_for(kill_at)
        first.kill()
        assert first.proc.exitcode == -signal.SIGKILL
        published = first.drain()
    finally:
        first.close()

    n, digest, _ = recover(data)
    assert published <= n <= len(cmds), (published, n)
    assert digest == _expected_digest(data, cmds[:n])
    assert replay(data)[1] == digest  # replay from empty agrees with snapshot + tail

    # a restarted engine recovers by itself and takes the rest of the stream
    with LocalPipeline(str(data.root), fsync="batch", batch=512) as second:
        assert second.start_seq == n
        second.feed(cmds[n:], chunk=256)
        second.wait_for(len(cmds))
    n2, digest2, _ = recover(data)
    assert n2 == len(cmds)
    assert digest2 == _expected_digest(data, cmds)
