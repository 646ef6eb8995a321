"""schemathesis fuzzes the published OpenAPI spec against the HTTP edge (in-process, read-only):
no 500s, every answer's status and body match the spec (4XX answers are Binance's Error shape)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from microex.binance.app import build_app, make_state  # noqa: E402
from microex.binance.limits import Limiter  # noqa: E402
from microex.binance.openapi import spec  # noqa: E402
from tests.unit.binance.venue import JournalVenue, orders, trading_rows  # noqa: E402

schema = schemathesis.openapi.from_dict(spec())


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    from aiohttp import web

    venue = JournalVenue(tmp_path_factory.mktemp("fuzz") / "data")
    venue.append(orders(trading_rows()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box = {}

    async def start():
        edge = venue.edge()
        edge.catch_up()
        # the fuzzer sends far more than Binance's 6000 weight a minute: a limit it never reaches keeps
        # every operation exercised (the 429 answer is tested in test_limits.py)
        unlimited = Limiter(weight_per_minute=1 << 40, orders_per_10s=1 << 40, orders_per_day=1 << 40)
        runner = web.AppRunner(build_app(make_state(edge, venue.keys(), unlimited)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        box["runner"] = runner

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert started.wait(120)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
    venue.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_answers_match_the_spec(case, base_url):
    # positive_data_acceptance is left out: a schema-valid request is not a valid one here (a signed
    # endpoint needs a real signature, a symbol must be listed): the edge answers those with 4XX codes
    case.call_and_validate(base_url=base_url, excluded_checks=[checks.positive_data_acceptance])


def test_a_long_request_line_gets_a_binance_error(base_url):
    """Past aiohttp's default 8 KiB line limit, below MAX_LINE: the API answers, in its JSON error shape."""
    import json
    import urllib.error
    import urllib.request

    url = f"{base_url}/api/v3/aggTrades?symbol=NOPE&endTime={'9' * 20_000}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 400 and err.value.headers.get_content_type() == "application/json"
    assert isinstance(json.loads(err.value.read())["code"], int)
