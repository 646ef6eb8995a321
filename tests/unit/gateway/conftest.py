"""The `harness` fixture: colocated-gateway harnesses, closed at the end of the test."""

from __future__ import annotations

import pytest

from tests.unit.gateway._colocated_harness import Harness


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(**kw) -> Harness:
        h = Harness(**kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
