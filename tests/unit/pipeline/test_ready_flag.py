"""ReadyFlag: a child's readiness, set without ever blocking (multiprocessing.Event.set can hang)."""

import multiprocessing as mp

from microex.pipeline.local import ReadyFlag


def _child(flag: ReadyFlag) -> None:
    flag.set()


def test_a_child_sets_it_and_the_parent_sees_it():
    ctx = mp.get_context("spawn")
    flag = ReadyFlag(ctx)
    assert not flag.is_set() and flag.wait(0.01) is False
    p = ctx.Process(target=_child, args=(flag,))
    p.start()
    assert flag.wait(60)
    p.join(30)
    assert p.exitcode == 0 and flag.is_set()


def test_set_returns_with_nobody_waiting():
    flag = ReadyFlag(mp.get_context("spawn"))
    flag.set()  # an Event's set() would wait for sleepers to acknowledge; this cannot block
    assert flag.wait(0)
