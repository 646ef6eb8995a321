"""The HTTP edge process of `microex serve`: one asyncio (uvloop) loop serving the Binance API.

    journal (DATA/journal) --tail--> replica engine --events--> history, market view
                                                               --> REST / WebSocket handlers
    POST/DELETE order --> COMMAND --> the edge's inbound ring --> engine process

The supervisor starts it like a gateway (run_child, a ready Event), after the
engine and the gateways, with its own inbound ring; it uses gateway number 15's
order-id and session-id ranges (edge.py). Start: the replica catches up with the
journal (replica.py), then the server listens and `ready` is set. SIGTERM/SIGINT:
stop listening, close WebSockets, detach from the ring, exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from dataclasses import dataclass, field


@dataclass
class HttpSettings:
    data: str
    inbound: str | None  # the edge's inbound COMMAND ring (None: read-only, no order entry)
    keys: list[tuple[str, str, int]] = field(default_factory=list)  # (api_key, secret, account)
    decimals: dict[str, int] = field(default_factory=dict)
    host: str = "127.0.0.1"
    http_port: int = 8080
    run: int = 1
    history_commands: int = 1_000_000
    cpu: int | None = None
    metrics: str | None = None  # the venue's MetricsBlock, for the dashboard's health JSON
    rings: list[tuple[str, str]] = field(default_factory=list)  # (label, shared-memory name) for ring fill
    gateways: int = 1
    limits: tuple[int, int, int] = (6000, 100, 200_000)  # request weight a minute per IP; orders per 10 s, per day


async def start_http(s: HttpSettings):
    """Build the edge and start listening; returns (runner, edge, background tasks)."""
    from aiohttp import web

    from microex.app.dashboard_routes import add_dashboard_routes
    from microex.binance.app import build_app, make_state
    from microex.binance.limits import Limiter
    from microex.binance.auth import Key
    from microex.binance.edge import Edge

    edge = Edge(s.data, s.decimals, inbound=s.inbound, run=s.run, history_commands=s.history_commands)
    edge.catch_up()
    st = make_state(edge, [Key(k, sec, acc) for k, sec, acc in s.keys], Limiter(*s.limits))
    app = build_app(st)
    add_dashboard_routes(app, s.metrics, s.rings, s.gateways)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, s.host, s.http_port, reuse_address=True)
    await site.start()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(edge.run()), loop.create_task(st.streams.run())]
    return runner, edge, tasks


async def serve_http(s: HttpSettings, ready=None) -> None:
    runner, edge, tasks = await start_http(s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready.set()
    done, _ = await asyncio.wait([loop.create_task(stop.wait()), *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    await runner.cleanup()
    edge.close()
    for t in done:
        if t in tasks and t.exception() is not None:
            raise t.exception()


def http_main(settings: HttpSettings, ready=None) -> None:
    """Process entry point (multiprocessing target)."""
    logging.basicConfig(level=logging.WARNING, format="http-edge %(levelname)s %(name)s: %(message)s")
    from microex.pipeline.logs import setup_logging

    setup_logging(settings.data, "http")
    if settings.cpu is not None:
        os.sched_setaffinity(0, {settings.cpu})
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_http(settings, ready))
    else:
        uvloop.run(serve_http(settings, ready))
