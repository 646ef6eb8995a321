"""The dashboard's routes on the venue's HTTP port: the static page and the health JSON.

    GET /                      -> redirect to /dashboard/
    GET /dashboard/            -> microex/app/dashboard/index.html (static files, no build step)
    GET /api/microex/health    -> metrics.health(): the venue's counters, for the page to diff

The page itself reads the Binance-compatible REST and WebSocket API of the same
origin for books, trades and candles (microex/app/dashboard/dashboard.js).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from microex.pipeline.metrics import MetricsBlock, health

STATIC = Path(__file__).with_name("dashboard")


def add_dashboard_routes(app: web.Application, metrics: str | None, rings: list[tuple[str, str]] = (),
                         gateways: int = 1) -> None:
    """Mount the dashboard. `metrics`: the MetricsBlock's shared-memory name (None: health is 503);
    `rings`: (label, shared-memory name) of rings whose fill to report."""
    state: dict = {"block": None, "rings": None}

    def _attach():
        if state["block"] is None and metrics:
            from microex.core.records import COMMAND, EVENT
            from microex.pipeline.ring import RingBuffer

            state["block"] = MetricsBlock.attach(metrics)
            state["rings"] = [(label, RingBuffer.attach(name, EVENT if label == "outbound" else COMMAND))
                              for label, name in rings]
        return state["block"]

    async def health_json(_request: web.Request) -> web.Response:
        block = _attach()
        if block is None:
            return web.json_response({"error": "no metrics block"}, status=503)
        return web.json_response(health(block, state["rings"], gateways))

    async def to_dashboard(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard/")

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_get("/", to_dashboard)
    app.router.add_get("/dashboard/", index)
    app.router.add_static("/dashboard/", STATIC)
    app.router.add_get("/api/microex/health", health_json)
