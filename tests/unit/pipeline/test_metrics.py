"""The shared metrics block: histogram buckets, counts from real engine events, Prometheus exposition."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from microex.core.engine import MatchingEngine
from microex.core.records import COMMAND, Action, EventKind, OrdType, Side, Tif
from microex.pipeline.metrics import (
    BUCKETS,
    E_BATCH_HIST,
    E_COMMANDS,
    E_EVENTS,
    E_REJECTS,
    MetricsBlock,
    MetricsCollector,
    count_commands,
    count_events,
    health,
    observe,
)


def test_histogram_buckets_are_powers_of_two_microseconds():
    w = np.zeros(BUCKETS + 1, dtype=np.int64)
    for ns in (1, 1000, 1001, 2000, 3000, 10**12):
        observe(w, 0, ns)
    # <=1us: 1 ns and 1000 ns; <=2us: 1001 and 2000; <=4us: 3000; the last bucket: 1000 s
    assert w[0] == 2 and w[1] == 2 and w[2] == 1 and w[BUCKETS - 1] == 1
    assert w[BUCKETS] == 1 + 1000 + 1001 + 2000 + 3000 + 10**12


def test_counts_from_engine_events_and_the_exposition():
    block = MetricsBlock.create(f"mxtest{np.random.randint(1 << 30)}")
    try:
        cmds = np.zeros(4, dtype=COMMAND)
        cmds["seq"] = np.arange(1, 5)
        cmds["order_id"] = [1, 2, 3, 4]
        cmds["action"] = Action.NEW
        cmds["instrument"] = 1
        cmds["account"] = [1, 2, 1, 1]
        cmds["side"] = [Side.BUY, Side.SELL, Side.BUY, Side.BUY]
        cmds["ord_type"] = OrdType.LIMIT
        cmds["tif"] = Tif.GTC
        cmds["price_ticks"] = 100
        cmds["qty_lots"] = [1, 1, 0, 1]  # the third is rejected (invalid qty)
        events = MatchingEngine().process(cmds)
        count_events(block.words, events)
        count_commands(block.words, cmds, 5_000, 1_000, 320, 4, 3)
        kinds = np.bincount(events["kind"], minlength=8)
        assert (block.words[E_EVENTS : E_EVENTS + 8] == kinds).all()
        assert block.words[E_COMMANDS + Action.NEW] == 4
        assert block.words[E_REJECTS : E_REJECTS + 128].sum() == kinds[EventKind.REJECTED] == 1
        assert block.words[E_BATCH_HIST + 3] == 1  # 5 us -> the <= 8 us bucket
        registry = CollectorRegistry()
        registry.register(MetricsCollector(block, gateways=1))
        text = generate_latest(registry).decode()
        assert 'microex_engine_commands_total{action="new"} 4.0' in text
        assert f'microex_engine_events_total{{kind="trade"}} {float(kinds[EventKind.TRADE])}' in text
        assert 'microex_engine_rejects_total{reason="invalid_qty"} 1.0' in text
        assert 'microex_engine_batch_seconds_bucket{le="8e-06"} 1.0' in text
        assert "microex_engine_last_seq 4.0" in text and "microex_journal_durable_seq 3.0" in text
        h = health(block)
        assert h["commands"] == 4 and h["last_seq"] == 4 and h["durable_seq"] == 3
        assert h["events"] == len(events) and h["rejects"] == 1
        other = MetricsBlock.attach(block.name)
        assert other.words[E_COMMANDS + Action.NEW] == 4
        other.close()
    finally:
        block.close()
