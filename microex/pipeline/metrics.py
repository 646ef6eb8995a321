"""Venue metrics in shared memory, exported in Prometheus' text format.

How it works
- One shared-memory segment holds a flat int64 array: an engine region and one
  region per gateway (`ENGINE_*`, `GW_*` offsets below). The process that owns a
  region is its only writer (single writer, no locks); the hot paths bump it with
  plain array adds, a few compiled calls per batch, never per event in Python.
- Latencies are histograms of power-of-two buckets: bucket i counts observations
  of at most 2^i µs (i = 0..22), the last one everything above; plus a sum in ns.
- `MetricsCollector` (a prometheus-client custom collector) reads the array when
  scraped, together with the rings' fill levels (cursor minus the slowest
  consumer), and yields counters, gauges and histograms. Readers may see a batch
  half-counted; counters only grow, so a scrape is at worst a batch behind.
- `serve_metrics` runs prometheus-client's HTTP server (a thread) on `/metrics`.
"""

from __future__ import annotations

from multiprocessing.shared_memory import SharedMemory

import numpy as np
from numba import njit

from microex.core.records import Action, EventKind, Reason
from microex.pipeline.shm import attach_untracked, close_shm

MAGIC = int.from_bytes(b"MEXMETR1", "little")
BUCKETS = 24  # <= 1 µs, <= 2 µs, ... <= 2^22 µs (~4.2 s), +Inf
N_ACTIONS, N_KINDS, N_REASONS = 16, 8, 128
MAX_GATEWAYS = 16

# engine region (word offsets)
E_COMMANDS = 1  # per Action
E_EVENTS = E_COMMANDS + N_ACTIONS  # per EventKind
E_REJECTS = E_EVENTS + N_KINDS  # per Reason
E_BATCHES = E_REJECTS + N_REASONS
E_LAST_SEQ = E_BATCHES + 1
E_JOURNAL_BYTES = E_LAST_SEQ + 1
E_DURABLE_SEQ = E_JOURNAL_BYTES + 1  # last seq known to be on disk (0 with fsync=none)
E_BATCH_HIST = E_DURABLE_SEQ + 1  # BUCKETS counts, then the sum
E_JOURNAL_HIST = E_BATCH_HIST + BUCKETS + 1
ENGINE_WORDS = E_JOURNAL_HIST + BUCKETS + 1
# one gateway's region
G_CONNECTIONS, G_SESSIONS, G_BYTES_IN, G_COMMANDS, G_REPORT_BYTES, G_SLOW, G_READS = range(7)
G_READ_HIST = 7
G_ACK_HIST = G_READ_HIST + BUCKETS + 1  # order received -> its accept/reject event back at the gateway
GATEWAY_WORDS = G_ACK_HIST + BUCKETS + 1
WORDS = ENGINE_WORDS + MAX_GATEWAYS * GATEWAY_WORDS


@njit(cache=True)
def observe(words, at, ns):
    """One latency observation into the histogram at words[at:at + BUCKETS + 1]."""
    us = (ns + 999) // 1000
    i = 0
    while i < BUCKETS - 1 and (1 << i) < us:
        i += 1
    words[at + i] += 1
    words[at + BUCKETS] += ns


@njit(cache=True)
def count_events(words, events):
    """Events per kind, and rejects per reason, of one published chunk."""
    for j in range(events.shape[0]):
        kind = events[j].kind
        if kind < N_KINDS:
            words[E_EVENTS + kind] += 1
        if kind == 2:  # REJECTED
            r = events[j].reason
            words[E_REJECTS + (r if r < N_REASONS else 0)] += 1


@njit(cache=True)
def count_commands(words, cmds, batch_ns, journal_ns, journal_bytes, last_seq, durable_seq):
    for j in range(cmds.shape[0]):
        a = cmds[j].action
        words[E_COMMANDS + (a if a < N_ACTIONS else 0)] += 1
    words[E_BATCHES] += 1
    words[E_LAST_SEQ] = last_seq
    words[E_DURABLE_SEQ] = durable_seq
    words[E_JOURNAL_BYTES] += journal_bytes
    observe(words, E_BATCH_HIST, batch_ns)
    observe(words, E_JOURNAL_HIST, journal_ns)


def gateway_base(gateway_no: int) -> int:
    return ENGINE_WORDS + gateway_no * GATEWAY_WORDS


class MetricsBlock:
    """The shared array; `create` in the supervisor, `attach` by name in the other processes."""

    def __init__(self, shm: SharedMemory, owner: bool) -> None:
        self.shm, self.owner = shm, owner
        self.words = np.ndarray((WORDS,), dtype=np.int64, buffer=shm.buf)

    @classmethod
    def create(cls, name: str) -> MetricsBlock:
        shm = SharedMemory(name=name, create=True, size=WORDS * 8)
        block = cls(shm, owner=True)
        block.words[:] = 0
        block.words[0] = MAGIC
        return block

    @classmethod
    def attach(cls, name: str) -> MetricsBlock:
        shm = attach_untracked(name)  # the creator removes it; an attacher's exit must not
        block = cls(shm, owner=False)
        if block.words[0] != MAGIC:
            raise ValueError(f"shared memory {name!r} is not a microex metrics block")
        return block

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        self.words = None
        close_shm(self.shm)
        if self.owner:
            self.shm.unlink()


def _hist(words: np.ndarray, at: int) -> tuple[list[tuple[str, float]], float]:
    counts = words[at : at + BUCKETS]
    cum = np.cumsum(counts)
    buckets = [(str((1 << i) * 1e-6), float(cum[i])) for i in range(BUCKETS - 1)]
    buckets.append(("+Inf", float(cum[-1])))
    return buckets, float(words[at + BUCKETS]) * 1e-9


class MetricsCollector:
    """prometheus-client collector over a MetricsBlock and (name, RingBuffer) pairs."""

    def __init__(self, block: MetricsBlock, rings: list[tuple[str, object]] = (), gateways: int = 1) -> None:
        self.block, self.rings, self.gateways = block, list(rings), gateways

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        w = self.block.words.copy()
        c = CounterMetricFamily("microex_engine_commands", "Commands sequenced by the engine", labels=["action"])
        for a in Action:
            c.add_metric([a.name.lower()], float(w[E_COMMANDS + a]))
        yield c
        e = CounterMetricFamily("microex_engine_events", "Events published by the engine", labels=["kind"])
        for k in EventKind:
            e.add_metric([k.name.lower()], float(w[E_EVENTS + k]))
        yield e
        r = CounterMetricFamily("microex_engine_rejects", "Rejected commands by reason", labels=["reason"])
        for reason in Reason:
            if reason < N_REASONS and w[E_REJECTS + reason]:
                r.add_metric([reason.name.lower()], float(w[E_REJECTS + reason]))
        yield r
        yield CounterMetricFamily("microex_engine_batches", "Batches run by the engine", value=float(w[E_BATCHES]))
        yield GaugeMetricFamily("microex_engine_last_seq", "Last sequenced command", value=float(w[E_LAST_SEQ]))
        yield GaugeMetricFamily("microex_journal_durable_seq", "Last command known to be on disk (fsync)",
                                value=float(w[E_DURABLE_SEQ]))
        yield CounterMetricFamily("microex_journal_bytes", "Bytes appended to the journal",
                                  value=float(w[E_JOURNAL_BYTES]))
        for at, name, doc in ((E_BATCH_HIST, "microex_engine_batch_seconds",
                               "Engine time per batch: sequencing, journal, matching, publishing"),
                              (E_JOURNAL_HIST, "microex_journal_append_seconds",
                               "Journal append per batch, fsync included when the policy syncs")):
            buckets, total = _hist(w, at)
            yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)
        g = {name: CounterMetricFamily(f"microex_gateway_{name}", doc, labels=["gateway"]) for name, doc in (
            ("bytes_in", "Bytes received from clients"),
            ("commands", "Commands sent to the engine"), ("report_bytes", "Execution-report bytes sent"),
            ("slow_consumers", "Connections closed for not reading"), ("reads", "Socket reads handled"))}
        conns = GaugeMetricFamily("microex_gateway_connections", "Open connections", labels=["gateway"])
        sessions = GaugeMetricFamily("microex_gateway_sessions", "Logged-in sessions", labels=["gateway"])
        reads, acks = [], []
        for k in range(self.gateways):
            base = gateway_base(k)
            for name, off in (("bytes_in", G_BYTES_IN), ("commands", G_COMMANDS),
                              ("report_bytes", G_REPORT_BYTES), ("slow_consumers", G_SLOW), ("reads", G_READS)):
                g[name].add_metric([str(k)], float(w[base + off]))
            conns.add_metric([str(k)], float(w[base + G_CONNECTIONS]))
            sessions.add_metric([str(k)], float(w[base + G_SESSIONS]))
            reads.append((str(k), *_hist(w, base + G_READ_HIST)))
            acks.append((str(k), *_hist(w, base + G_ACK_HIST)))
        yield from g.values()
        yield conns
        yield sessions
        h = HistogramMetricFamily("microex_gateway_read_seconds",
                                  "Gateway time per socket read: decode, sessions, hand-off to the engine",
                                  labels=["gateway"])
        for label, buckets, total in reads:
            h.add_metric([label], buckets, total)
        yield h
        a = HistogramMetricFamily("microex_gateway_order_to_ack_seconds",
                                  "Venue-side order -> ack: a NEW read by the gateway -> its accepted/rejected "
                                  "event back at the gateway (rings, sequencer, journal, matching)",
                                  labels=["gateway"])
        for label, buckets, total in acks:
            a.add_metric([label], buckets, total)
        yield a
        fill = GaugeMetricFamily("microex_ring_fill", "Records published but not yet consumed by the slowest "
                                 "consumer", labels=["ring"])
        cap = GaugeMetricFamily("microex_ring_capacity", "Ring slots", labels=["ring"])
        for name, ring in self.rings:
            fill.add_metric([name], float(ring.cursor - ring.consumed()))
            cap.add_metric([name], float(ring.capacity))
        yield fill
        yield cap


def health(block: MetricsBlock, rings: list[tuple[str, object]] = (), gateways: int = 1) -> dict:
    """The counters as JSON-able data, for the dashboard (which diffs successive snapshots)."""
    w = block.words.copy()
    gw = []
    for k in range(gateways):
        base = gateway_base(k)
        gw.append({"connections": int(w[base + G_CONNECTIONS]), "sessions": int(w[base + G_SESSIONS]),
                   "commands": int(w[base + G_COMMANDS]), "reads": int(w[base + G_READS]),
                   "order_to_ack_buckets": w[base + G_ACK_HIST : base + G_ACK_HIST + BUCKETS].tolist()})
    return {
        "commands": int(w[E_COMMANDS : E_COMMANDS + N_ACTIONS].sum()),
        "events": int(w[E_EVENTS : E_EVENTS + N_KINDS].sum() - w[E_EVENTS + EventKind.BATCH]),
        "trades": int(w[E_EVENTS + EventKind.TRADE]),
        "rejects": int(w[E_REJECTS : E_REJECTS + N_REASONS].sum()),
        "last_seq": int(w[E_LAST_SEQ]), "durable_seq": int(w[E_DURABLE_SEQ]),
        "journal_bytes": int(w[E_JOURNAL_BYTES]),
        "batch_buckets": w[E_BATCH_HIST : E_BATCH_HIST + BUCKETS].tolist(),
        "bucket_bounds_us": [1 << i for i in range(BUCKETS - 1)],
        "gateways": gw,
        "rings": [{"name": name, "fill": int(ring.cursor - ring.consumed()), "capacity": int(ring.capacity)}
                  for name, ring in rings],
    }


def serve_metrics(collector: MetricsCollector, port: int, host: str = "127.0.0.1"):
    """`/metrics` on host:port from a daemon thread; returns the server (shut it down to stop)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server

