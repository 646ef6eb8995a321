"""`microex demo` (make run): the venue with simulated traders runs, trades, serves the dashboard, and stops cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from tests.integration.test_serve import _free_port


def test_demo_trades_and_serves_the_dashboard(tmp_path):
    http, bin_port, md, metrics = (_free_port() for _ in range(4))
    log = tmp_path / "demo.log"
    proc = subprocess.Popen([sys.executable, "-m", "microex.app.cli", "demo", "--data", str(tmp_path / "data"),
                             "--http-port", str(http), "--bin-port", str(bin_port), "--md-port", str(md),
                             "--metrics-port", str(metrics), "--duration", "20"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "simulated traders running" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert f"http://127.0.0.1:{http}/dashboard/" in log.read_text()
        page = urllib.request.urlopen(f"http://127.0.0.1:{http}/dashboard/", timeout=10).read().decode()
        assert "<canvas id=\"candles\"" in page
        trades = 0
        for _ in range(40):  # the makers quote, the takers trade with them
            time.sleep(0.5)
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/api/microex/health",
                                                       timeout=10).read())
            trades = health["trades"]
            if trades >= 5:
                break
        assert trades >= 5, health
        depth = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/api/v3/depth?symbol=BTCUSDT&limit=5",
                                                  timeout=10).read())
        assert depth["bids"] and depth["asks"]  # the market makers' ladders
        assert float(depth["bids"][0][0]) < float(depth["asks"][0][0])
        assert proc.wait(120) == 0, log.read_text()
        assert "stopped:" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
