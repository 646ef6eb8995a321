"""A gateway process: one asyncio (uvloop) event loop serving the binary port.

    TCP clients  <->  GatewayServer  <->  GatewaySessions  <->  RingEngineLink  <->  engine process

Several gateway processes may listen on the same port (SO_REUSEPORT: the kernel
spreads new connections over them); each has its own inbound ring, its own
consumer index on the outbound ring, and disjoint engine order-id and session-id
ranges, so they never coordinate. SIGTERM/SIGINT: stop listening, LOGOUT SHUTDOWN
to every session (cancel-on-disconnect applies), detach from the rings, exit.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from dataclasses import dataclass, field

ORDER_ID_BITS = 36  # engine order ids a gateway may give in one run: 2^36
MAX_GATEWAYS = 16


def first_order_id(run: int, gateway_no: int) -> int:
    """Disjoint engine order-id ranges: per gateway, and per run of the venue (restarts)."""
    if not 0 <= gateway_no < MAX_GATEWAYS:
        raise ValueError(f"gateway number {gateway_no} outside 0..{MAX_GATEWAYS - 1}")
    return (((run << 4) | gateway_no) << ORDER_ID_BITS) + 1


def first_session_id(gateway_no: int) -> int:
    return (gateway_no << 24) + 1


@dataclass
class GatewaySettings:
    gateway_no: int
    inbound: str  # this gateway's inbound COMMAND ring
    outbound: str  # the engine's outbound EVENT ring
    consumer_index: int  # our consumer index on it
    api_keys: dict[bytes, int] = field(default_factory=dict)
    host: str = "127.0.0.1"
    bin_port: int = 9001
    heartbeat_ms: int = 1000
    rate_per_s: float = 10_000.0
    burst: float | None = None
    ack_spin_us: int = 0  # see RingEngineLink
    busy_poll: bool = False  # see GatewayServer
    metrics: str | None = None  # shared-memory name of the venue's MetricsBlock
    data: str | None = None  # the venue's data directory (logs go to <data>/logs/gateway-<n>.jsonl)
    run: int = 1  # how many times the venue has started on this data dir
    cpu: int | None = None
    expected_orders: int = 1 << 12  # orders this gateway sends in a run: its id tables are sized for them


async def serve_gateway(settings: GatewaySettings, ready=None) -> None:
    from microex.gateway.ring_link import RingEngineLink
    from microex.gateway.server import GatewayServer
    from microex.gateway.session import GatewaySessions
    from microex.pipeline.metrics import GATEWAY_WORDS, MetricsBlock, gateway_base

    s = settings
    sessions = GatewaySessions(s.api_keys, heartbeat_ms=s.heartbeat_ms, rate_per_s=s.rate_per_s, burst=s.burst,
                               first_order_id=first_order_id(s.run, s.gateway_no),
                               first_session_id=first_session_id(s.gateway_no), expected_orders=s.expected_orders)
    link = RingEngineLink(s.inbound, s.outbound, s.consumer_index, ack_spin_us=s.ack_spin_us)
    metrics = MetricsBlock.attach(s.metrics) if s.metrics else None
    counters = None
    if metrics is not None:
        base = gateway_base(s.gateway_no)
        counters = metrics.words[base : base + GATEWAY_WORDS]
    server = GatewayServer(sessions, link, busy_poll=s.busy_poll, counters=counters)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start(s.host, s.bin_port, reuse_port=True)
    gc.collect()
    gc.freeze()  # start-up objects leave the GC's generations: shorter pauses on the order path
    if ready is not None:
        ready.set()
    await stop.wait()
    await server.close()


def gateway_main(settings: GatewaySettings, ready=None) -> None:
    """Process entry point (multiprocessing target)."""
    if settings.cpu is not None:
        os.sched_setaffinity(0, {settings.cpu})
    if settings.data:
        from microex.pipeline.logs import setup_logging

        setup_logging(settings.data, f"gateway-{settings.gateway_no}")
    try:
        import uvloop
    except ImportError:  # uvloop is a dependency; plain asyncio still works without it
        asyncio.run(serve_gateway(settings, ready))
    else:
        uvloop.run(serve_gateway(settings, ready))
