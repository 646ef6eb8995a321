"""`microex serve` as a user runs it: a subprocess, the demo venue, the client SDK over loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microex.client import Client, LoginError, MsgType, Side, Tif
from microex.core.records import Reason

BTCUSDT = 1
PRICE = 5_990_000  # 59,900.00 USDT: inside the demo's 10% band around 60,000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, data: Path, port: int, *extra: str) -> None:
        self.port = port
        if "--metrics-port" not in extra:
            extra = (*extra, "--metrics-port", "0")
        if "--http-port" not in extra:  # the Binance API's edge only where a test asks for it
            extra = (*extra, "--http-port", "0")
        self.log = data.parent / f"serve-{port}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "microex.app.cli", "serve", "--data", str(data),
                                      "--bin-port", str(port), "--fsync", "none", *extra],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if "Ctrl-C stops" in self.log.read_text():  # the banner is out too
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "microex serve did not start"
            time.sleep(0.2)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _keys(data: Path) -> list[bytes]:
    doc = json.loads((data / "demo-keys.json").read_text())
    assert [k["account"] for k in doc] == list(range(1, 11))
    assert all(len(k["secret"]) == 64 for k in doc)
    return [k["api_key"].encode() for k in doc]


def test_serve_demo_venue_trades_survives_a_restart_and_rejects_bad_input(data):
    port, metrics_port = _free_port(), _free_port()
    venue = Serve(data, port, "--gateways", "2", "--metrics-port", str(metrics_port))
    try:
        keys = _keys(data)
        banner = venue.log.read_text()
        assert keys[0].decode() in banner and "BTCUSDT" in banner

        async def first_run():
            fills = {"alice": [], "bob": []}
            alice = await Client.connect("127.0.0.1", port, keys[0], on_report=fills["alice"].append)
            bob = await Client.connect("127.0.0.1", port, keys[1], on_report=fills["bob"].append)
            assert (alice.account, bob.account) == (1, 2)
            bid = await alice.place(BTCUSDT, Side.BUY, PRICE, 10)
            assert bid.kind == MsgType.EXEC_ACCEPTED
            ask = await bob.place(BTCUSDT, Side.SELL, PRICE, 4, tif=Tif.IOC)
            assert ask.kind == MsgType.EXEC_ACCEPTED
            for _ in range(100):
                if any(r.kind == MsgType.EXEC_FILL for r in fills["alice"]):
                    break
                await asyncio.sleep(0.02)
            [maker] = [r for r in fills["alice"] if r.kind == MsgType.EXEC_FILL]
            assert (maker.client_order_id, maker.qty_lots, maker.leaves_lots) == (bid.client_order_id, 4, 6)
            [taker] = [r for r in fills["bob"] if r.kind == MsgType.EXEC_FILL]
            assert taker.client_order_id == ask.client_order_id and taker.price_ticks == PRICE
            # risk: far outside the price band, and more than max_qty: rejected with reasons, session goes on
            band = await bob.place(BTCUSDT, Side.SELL, PRICE * 2, 1)
            assert band.kind == MsgType.EXEC_REJECTED and band.reason == Reason.RISK_PRICE_BAND
            big = await bob.place(BTCUSDT, Side.SELL, PRICE, 10**9)
            assert big.kind == MsgType.EXEC_REJECTED and big.reason == Reason.RISK_MAX_QTY
            unknown = await bob.place(99, Side.SELL, PRICE, 1)
            assert unknown.kind == MsgType.EXEC_REJECTED
            assert (await bob.place(BTCUSDT, Side.SELL, PRICE + 100, 1)).kind == MsgType.EXEC_ACCEPTED
            with pytest.raises(LoginError):
                await Client.connect("127.0.0.1", port, b"not-a-key-of-this-venue", reconnect=False)
            await alice.close()
            await bob.close()

        asyncio.run(asyncio.wait_for(first_run(), 60))
        metrics = _scrape(metrics_port)
        # 3 SET_PRICE + 30 deposits at first start, then 6 NEW from the clients (one to an unknown instrument)
        assert metrics['microex_engine_commands_total{action="new"}'] == 6
        assert metrics['microex_engine_commands_total{action="deposit"}'] == 30
        assert metrics['microex_engine_rejects_total{reason="risk_price_band"}'] == 1
        assert metrics['microex_engine_rejects_total{reason="risk_max_qty"}'] == 1
        assert metrics['microex_engine_events_total{kind="trade"}'] == 1
        reads = sum(v for k, v in metrics.items() if k.startswith("microex_gateway_reads_total"))
        assert reads >= 8 and metrics["microex_engine_batch_seconds_count"] >= 2
        assert 'microex_ring_fill{ring="outbound"}' in metrics
        acks = [v for k, v in metrics.items() if k.startswith("microex_gateway_order_to_ack_seconds_count")]
        assert sum(acks) == 6  # each NEW that reached the engine, once
    finally:
        assert venue.stop() == 0
    assert list((data / "snapshots").glob("snapshot-*.snap")), "a clean stop takes a snapshot"
    # structured logs: one JSON object per line, per process role, with session and account where they apply
    logins = [json.loads(line) for f in (data / "logs").glob("gateway-*.jsonl") for line in f.read_text().splitlines()]
    logins = [d for d in logins if d["msg"] == "login"]
    assert {(d["account"], d["role"][:8]) for d in logins} >= {(1, "gateway-"), (2, "gateway-")}
    assert all(d["session"] > 0 and d["level"] == "info" for d in logins)
    engine_log = [json.loads(line)["msg"] for line in (data / "logs" / "engine.jsonl").read_text().splitlines()]
    assert "recovered" in engine_log and "snapshot written" in engine_log and engine_log[-1] == "stopped"

    port2 = _free_port()
    venue = Serve(data, port2)
    try:
        assert _keys(data) == keys  # the demo keys survive a restart

        async def second_run():
            carol = await Client.connect("127.0.0.1", port2, keys[2])
            fills = []
            carol.on_report(fills.append)
            # alice's 6 remaining lots rest from the first run: carol's sell trades with them
            ack = await carol.place(BTCUSDT, Side.SELL, PRICE, 6, tif=Tif.IOC)
            assert ack.kind == MsgType.EXEC_ACCEPTED
            for _ in range(100):
                if fills and fills[-1].kind != MsgType.EXEC_ACCEPTED:
                    break
                await asyncio.sleep(0.02)
            assert [(r.kind, r.qty_lots) for r in fills if r.kind == MsgType.EXEC_FILL] == [(MsgType.EXEC_FILL, 6)]
            await carol.close()

        asyncio.run(asyncio.wait_for(second_run(), 60))
    finally:
        assert venue.stop() == 0
