"""`microex serve` passes the [serve] http_* limits to its HTTP edge: exchangeInfo lists them and the
edge answers 429 -1003 past the request-weight limit (limits.py's arithmetic is tested in the unit tests)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.integration.test_serve import Serve, _free_port

CONFIG = """
[serve]
http_weight_per_minute = 100
http_orders_per_10s = 7
[[instrument]]
symbol = "BTCUSDT"
base = "BTC"
quote = "USDT"
[[account]]
id = 1
api_key = "limits-test-key-1"
"""


def _get(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_serve_config_limits_reach_the_http_edge(tmp_path):
    cfg = tmp_path / "serve.toml"
    cfg.write_text(CONFIG)
    http = _free_port()
    venue = Serve(tmp_path / "data", _free_port(), "--config", str(cfg), "--http-port", str(http), "--md-port", "0")
    try:
        base = f"http://127.0.0.1:{http}/api/v3"
        status, headers, info = _get(f"{base}/exchangeInfo")  # weight 20
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "20"
        limits = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in info["rateLimits"]}
        assert limits == {("REQUEST_WEIGHT", "MINUTE", 1): 100, ("ORDERS", "SECOND", 10): 7,
                          ("ORDERS", "DAY", 1): 200_000}
        answers = [_get(f"{base}/depth?symbol=BTCUSDT&limit=1000") for _ in range(2)]  # weight 50 each
        assert answers[0][0] == 200 and answers[0][1]["X-MBX-USED-WEIGHT-1M"] == "70"
        status, headers, body = answers[1]  # 120 > 100, unless the minute turned in between
        if headers["X-MBX-USED-WEIGHT-1M"] != "50":
            assert status == 429 and body["code"] == -1003 and "100 request weight per 1 MINUTE" in body["msg"]
            assert int(headers["Retry-After"]) >= 1
    finally:
        assert venue.stop() == 0
