"""`microex serve --colocated`: the engine process serves the binary port itself (no gateway process).

The same venue as test_serve.py's, driven through the client SDK and a raw socket:
trades reach both sides, bad input is answered and the session goes on, pipelined
orders are all acknowledged, cancel-on-disconnect works, the journal holds exactly
what was acknowledged (a restart, colocated again, trades against what rested),
and a clean stop tells the sessions it is shutting down.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import numpy as np

from microex.client import Client, MsgType, OrdType, Side, Tif, order_records
from microex.core.records import Reason
from microex.protocol.binary import (
    GATEWAY_MESSAGES,
    PROTOCOL_VERSION,
    BinaryDecoder,
    DecodeError,
    FrameEncoder,
    ProtocolReason,
)
from tests.integration.test_serve import PRICE, Serve, _free_port, _keys, _scrape

BTCUSDT, ETHUSDT = 1, 2


def _raw_frames(sock: socket.socket, dec: BinaryDecoder, n: int, timeout: float = 10.0) -> list[tuple[int, np.void]]:
    out = []
    sock.settimeout(timeout)
    while len(out) < n:
        data = sock.recv(65536)
        assert data, f"closed after {out}"
        for item in dec.feed(data):
            assert not isinstance(item, DecodeError), item
            out.extend((item.msg_type, r) for r in item.records)
    return out


def test_colocated_venue_trades_answers_bad_input_and_recovers(tmp_path):
    data = tmp_path / "data"
    port, metrics_port = _free_port(), _free_port()
    venue = Serve(data, port, "--colocated", "--metrics-port", str(metrics_port))
    shutdown_seen = []
    try:
        keys = _keys(data)
        assert "served by the engine process (colocated)" in " ".join(venue.log.read_text().split())

        async def first_run():
            fills = {"alice": [], "bob": []}
            alice = await Client.connect("127.0.0.1", port, keys[0], on_report=fills["alice"].append)
            bob = await Client.connect("127.0.0.1", port, keys[1], on_report=fills["bob"].append)
            bid = await alice.place(BTCUSDT, Side.BUY, PRICE, 10)
            assert bid.kind == MsgType.EXEC_ACCEPTED and bid.leaves_lots == 10
            ask = await bob.place(BTCUSDT, Side.SELL, PRICE, 4, tif=Tif.IOC)
            assert ask.kind == MsgType.EXEC_ACCEPTED
            for _ in range(200):
                if any(r.kind == MsgType.EXEC_FILL for r in fills["alice"]):
                    break
                await asyncio.sleep(0.01)
            [maker] = [r for r in fills["alice"] if r.kind == MsgType.EXEC_FILL]
            assert (maker.client_order_id, maker.qty_lots, maker.leaves_lots) == (bid.client_order_id, 4, 6)
            [taker] = [r for r in fills["bob"] if r.kind == MsgType.EXEC_FILL]
            assert taker.client_order_id == ask.client_order_id and taker.price_ticks == PRICE
            # modify and cancel through the lane; unknown ids and risk rejects answered with reasons
            rest = await bob.place(BTCUSDT, Side.SELL, PRICE + 500, 3)
            mod = await bob.modify(rest.client_order_id, PRICE + 400, 2)
            assert mod.kind == MsgType.EXEC_MODIFIED and (mod.price_ticks, mod.leaves_lots) == (PRICE + 400, 2)
            gone = await bob.cancel(rest.client_order_id)
            assert gone.kind == MsgType.EXEC_CANCELLED
            unknown = await bob.cancel(987654321)
            assert unknown.kind == MsgType.EXEC_REJECTED and unknown.reason == Reason.UNKNOWN_ORDER
            band = await bob.place(BTCUSDT, Side.SELL, PRICE * 2, 1)
            assert band.kind == MsgType.EXEC_REJECTED and band.reason == Reason.RISK_PRICE_BAND
            # pipelined: 1,500 orders in a few reads, every one acknowledged once
            batch = order_records(1500)
            batch["instrument"], batch["side"], batch["ord_type"], batch["tif"] = ETHUSDT, Side.BUY, OrdType.LIMIT, Tif.GTC
            batch["price_ticks"] = 290_000 - 100 * (np.arange(1500) % 50)
            batch["qty_lots"] = 1
            acked = set()
            alice.on_report(lambda r: acked.add(r.client_order_id) if r.kind == MsgType.EXEC_ACCEPTED else None)
            cids = set(alice.place_batch_nowait(batch).tolist())
            for _ in range(500):
                if cids <= acked:
                    break
                await asyncio.sleep(0.01)
            assert cids <= acked
            # cancel-on-disconnect: carol's resting order goes when her connection does
            carol = await Client.connect("127.0.0.1", port, keys[2], cancel_on_disconnect=True, reconnect=False)
            await carol.place(BTCUSDT, Side.BUY, PRICE - 1000, 2)
            carol._link.transport.abort()
            await asyncio.sleep(0.3)
            await alice.close()
            await bob.close()

        asyncio.run(asyncio.wait_for(first_run(), 90))

        # raw bytes: a frame split across two sends, then a bad seq, then an order: all answered in order
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            enc, dec = FrameEncoder(), BinaryDecoder(GATEWAY_MESSAGES)
            raw.sendall(enc.message(MsgType.LOGIN, api_key=keys[3], flags=0, version=PROTOCOL_VERSION))
            [(t, _)] = _raw_frames(raw, dec, 1)
            assert t == MsgType.LOGIN_ACK
            frame = enc.message(MsgType.NEW_ORDER, client_order_id=7, price_ticks=PRICE - 2000, qty_lots=1,
                                instrument=BTCUSDT, side=Side.BUY, ord_type=OrdType.LIMIT, tif=Tif.GTC)
            raw.sendall(frame[:13])
            time.sleep(0.05)
            raw.sendall(frame[13:])
            [(t, rec)] = _raw_frames(raw, dec, 1)
            assert t == MsgType.EXEC_ACCEPTED and rec["client_order_id"] == 7
            bad = bytearray(enc.message(MsgType.NEW_ORDER, client_order_id=8, price_ticks=PRICE - 2000, qty_lots=1,
                                        instrument=BTCUSDT, side=Side.BUY, ord_type=OrdType.LIMIT, tif=Tif.GTC))
            bad[4:8] = (999).to_bytes(4, "little")  # a wrong seq: answered, skipped, the session goes on
            dup = bytearray(enc.message(MsgType.NEW_ORDER, client_order_id=7, price_ticks=PRICE - 2000, qty_lots=1,
                                        instrument=BTCUSDT, side=Side.BUY, ord_type=OrdType.LIMIT, tif=Tif.GTC))
            dup[4:8] = (1000).to_bytes(4, "little")  # counting goes on from the bad seq
            raw.sendall(bytes(bad) + bytes(dup))
            answers = _raw_frames(raw, dec, 2)
            assert answers[0][0] == MsgType.PROTOCOL_ERROR
            assert answers[1][0] == MsgType.EXEC_REJECTED and answers[1][1]["reason"] == Reason.DUPLICATE_ORDER_ID
            metrics = _scrape(metrics_port)
            assert sum(v for k, v in metrics.items() if k.startswith("microex_gateway_reads_total")) >= 10
            acks = sum(v for k, v in metrics.items() if k.startswith("microex_gateway_order_to_ack_seconds_count"))
            assert acks >= 1500
            assert sum(v for k, v in metrics.items() if k.startswith("microex_gateway_commands_total")) >= 1500
            assert metrics['microex_engine_commands_total{action="cancel"}'] >= 2  # bob's and carol's
            raw.setblocking(True)
            venue.proc.send_signal(15)  # a clean stop: LOGOUT SHUTDOWN to the sessions still open
            shutdown_seen.extend(_raw_frames(raw, dec, 1, timeout=30))
    finally:
        assert venue.stop() == 0
    assert [t for t, _ in shutdown_seen] == [MsgType.LOGOUT]
    assert shutdown_seen[0][1]["reason"] == ProtocolReason.SHUTDOWN
    assert list((data / "snapshots").glob("snapshot-*.snap")), "a clean stop takes a snapshot"
    engine_log = [json.loads(line) for line in (data / "logs" / "engine.jsonl").read_text().splitlines()]
    assert any(d["msg"] == "login" for d in engine_log) and engine_log[-1]["msg"] == "stopped"

    port2 = _free_port()
    venue = Serve(data, port2, "--colocated")
    try:
        async def second_run():
            fills = []
            dave = await Client.connect("127.0.0.1", port2, keys[4], on_report=fills.append)
            # alice's 6 lots rest from the first run (carol's order was cancelled on disconnect)
            ack = await dave.place(BTCUSDT, Side.SELL, PRICE - 1000, 10, tif=Tif.IOC)
            assert ack.kind == MsgType.EXEC_ACCEPTED
            for _ in range(200):
                if fills and fills[-1].kind != MsgType.EXEC_ACCEPTED:
                    break
                await asyncio.sleep(0.01)
            # 6 from alice at PRICE, then 1 from the raw session's order 7 at PRICE - 2000 is below
            # dave's limit: IOC leaves the rest
            assert [(r.qty_lots, r.price_ticks) for r in fills if r.kind == MsgType.EXEC_FILL] == [(6, PRICE)]
            await dave.close()

        asyncio.run(asyncio.wait_for(second_run(), 60))
    finally:
        assert venue.stop() == 0


def test_colocated_venue_feeds_market_data_and_the_http_edge(tmp_path):
    """The other stages keep their places around a colocated engine: the market-data stage on the
    outbound ring, the HTTP edge's ring and its journal-following replica."""
    import urllib.request

    from microex.client.marketdata import MarketDataClient

    data = tmp_path / "data"
    port, md_port, http_port = _free_port(), _free_port(), _free_port()
    venue = Serve(data, port, "--colocated", "--md-port", str(md_port), "--http-port", str(http_port))
    try:
        keys = _keys(data)

        async def run():
            md = await MarketDataClient.connect("127.0.0.1", md_port)
            await md.subscribe(BTCUSDT)
            await md.wait_synced(BTCUSDT)
            alice = await Client.connect("127.0.0.1", port, keys[0])
            ack = await alice.place(BTCUSDT, Side.BUY, PRICE - 3000, 7)
            assert ack.kind == MsgType.EXEC_ACCEPTED
            for _ in range(500):
                if md.book(BTCUSDT).best_bid() == (PRICE - 3000, 7):
                    break
                await asyncio.sleep(0.01)
            assert md.book(BTCUSDT).best_bid() == (PRICE - 3000, 7)
            await alice.close()
            await md.close()

        asyncio.run(asyncio.wait_for(run(), 60))
        depth = None
        for _ in range(100):  # the edge's replica follows the journal
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v3/depth?symbol=BTCUSDT", timeout=10) as r:
                depth = json.loads(r.read())
            if depth["bids"]:
                break
            time.sleep(0.05)
        price, qty = (float(v) for v in depth["bids"][0])
        assert (price, qty) == (59870.0, 0.007), depth  # 7 lots of 0.001 BTC at 5,987,000 ticks of 0.01
    finally:
        assert venue.stop() == 0


def test_kill_9_of_a_colocated_engine_loses_no_acknowledged_order(tmp_path):
    """With fsync=none an order is in the journal (the OS's page cache) before its ack leaves:
    after kill -9 of the engine process under load, every order a client saw acknowledged is
    in the journal, and a restart recovers exactly the journal."""
    import os
    import signal
    from pathlib import Path

    from microex.core.records import Action
    from microex.pipeline.datadir import DataDir
    from microex.pipeline.journal import replay_batches
    from microex.pipeline.recovery import recover, replay

    data = tmp_path / "data"
    port = _free_port()
    venue = Serve(data, port, "--colocated")
    acked: set[int] = set()
    try:
        keys = _keys(data)
        engine_pid = next(int(p) for p in Path(f"/proc/{venue.proc.pid}/task/{venue.proc.pid}/children").read_text().split()
                          if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text())

        async def load():
            def on_report(r):
                if r.kind == MsgType.EXEC_ACCEPTED:
                    acked.add(r.price_ticks)  # each order's price is its number: findable in the journal

            alice = await Client.connect("127.0.0.1", port, keys[0], on_report=on_report, reconnect=False)
            # resting 1-lot bids below the market, each at its own price (nothing trades); within the
            # demo account's 10,000 open orders and its USDT
            for k in range(1, 8_001):
                alice.place_nowait(BTCUSDT, Side.BUY, PRICE - 50_000 - 10 * k, 1)
                if k % 200 == 0:
                    await asyncio.sleep(0.001)
                if len(acked) >= 3000:
                    os.kill(engine_pid, signal.SIGKILL)  # with orders still in flight
                    break
            await asyncio.sleep(0.5)

        asyncio.run(asyncio.wait_for(load(), 90))
    finally:
        try:
            venue.proc.wait(60)  # the supervisor stops once its engine is gone
        finally:
            if venue.proc.poll() is None:
                venue.proc.kill()
    assert 3000 <= len(acked) < 8000  # killed mid-stream
    assert venue.proc.returncode != 0  # the supervisor saw its engine die
    engine_log = (data / "logs" / "engine.jsonl").read_text().splitlines()
    assert json.loads(engine_log[-1])["msg"] != "stopped"  # a kill, not a clean stop
    journaled = set()
    for batch in replay_batches(data / "journal"):
        news = batch[(batch["action"] == Action.NEW) & (batch["account"] == 1)]
        journaled.update(news["price_ticks"].tolist())
    assert acked <= journaled, sorted(acked - journaled)[:10]
    n, digest, _ = recover(DataDir(data))
    assert replay(DataDir(data)) == (n, digest)
