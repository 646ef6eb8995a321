"""Engine order-id and session-id ranges of gateway processes never overlap."""

from __future__ import annotations

import pytest

from microex.gateway.process import MAX_GATEWAYS, ORDER_ID_BITS, first_order_id, first_session_id


def test_order_id_ranges_are_disjoint_per_gateway_and_per_run():
    starts = sorted(first_order_id(run, g) for run in (1, 2, 3, 1000) for g in range(MAX_GATEWAYS))
    assert len(set(starts)) == len(starts)
    assert all(b - a >= 1 << ORDER_ID_BITS for a, b in zip(starts, starts[1:]))
    assert first_order_id(1 << 20, MAX_GATEWAYS - 1) < 1 << 63  # engine ids are int64
    with pytest.raises(ValueError):
        first_order_id(1, MAX_GATEWAYS)


def test_session_ids_are_disjoint_per_gateway():
    assert first_session_id(1) - first_session_id(0) == 1 << 24
    assert first_session_id(MAX_GATEWAYS - 1) + (1 << 24) < 1 << 31  # LOGIN_ACK.session is i32
