"""The dashboard in headless Chromium (Debian's package, driven by Playwright; never a browser download):
it shows the venue's book and trades, and they change as orders trade."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from microex.client import Client, MsgType, Side
from tests.integration.test_serve import Serve, _free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BTCUSDT, MID = 1, 6_000_000


def _orders(port: int, keys: list[bytes], crossing: int) -> None:
    """Run the orders on their own thread's loop (Playwright's sync API owns this thread's)."""
    errors = []

    def run():
        try:
            asyncio.run(_orders_async(port, keys, crossing))
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if errors:
        raise errors[0]


async def _orders_async(port: int, keys: list[bytes], crossing: int) -> None:
    """Resting bids and asks around the mid; then `crossing` sells that trade with the best bid."""
    alice = await Client.connect("127.0.0.1", port, keys[0])
    bob = await Client.connect("127.0.0.1", port, keys[1])
    if not crossing:
        for k in range(1, 6):
            assert (await alice.place(BTCUSDT, Side.BUY, MID - 1000 * k, 5 * k)).kind == MsgType.EXEC_ACCEPTED
            assert (await bob.place(BTCUSDT, Side.SELL, MID + 1000 * k, 5 * k)).kind == MsgType.EXEC_ACCEPTED
    for _ in range(crossing):
        assert (await bob.place(BTCUSDT, Side.SELL, MID - 1000, 1)).kind == MsgType.EXEC_ACCEPTED
        await asyncio.sleep(0.05)
    await alice.close()
    await bob.close()


def test_dashboard_shows_the_book_and_the_tape_changing(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's chromium package (apt-get install chromium); "
                    ".ci/run does")
    from playwright.sync_api import sync_playwright

    data = tmp_path / "data"
    port, http = _free_port(), _free_port()
    venue = Serve(data, port, "--http-port", str(http))
    try:
        keys = [k["api_key"].encode() for k in json.loads((data / "demo-keys.json").read_text())]
        _orders(port, keys, 0)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{http}/dashboard/")
            # the ladder shows the ten resting levels (five bids, five asks) from snapshot + stream
            page.wait_for_function("document.querySelectorAll('#ladder tbody tr').length >= 10", timeout=20_000)
            ladder_before = page.inner_text("#ladder")
            assert "59,990.00" in ladder_before or "59990.00" in ladder_before
            trades_before = page.evaluate("window.__microex.trades")
            _orders(port, keys, 3)
            page.wait_for_function(f"window.__microex.trades >= {trades_before + 3}", timeout=20_000)
            page.wait_for_function("document.querySelectorAll('#tape tbody tr').length >= 3", timeout=10_000)
            page.wait_for_function("window.__microex.healthPolls >= 3", timeout=10_000)
            assert page.inner_text("#ladder") != ladder_before  # the best bid lost 3 lots
            tape = page.inner_text("#tape")
            assert "59990" in tape.replace(",", "")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            browser.close()
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        assert venue.stop() == 0
