"""The asyncio Client against a real gateway server on loopback (in-process engine)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from microex.client import Client, ExecReport, LoginError, MsgType, OrdType, Reason, Side, Tif, order_records
from microex.gateway.inprocess import InProcessVenue
from microex.protocol.binary import Liquidity, ProtocolReason

KEYS = {b"key-1": 1, b"key-2": 2}


def run(coro, timeout: float = 15.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_connect_login_and_close():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            client = await Client.connect(venue.host, venue.port, b"key-2")
            assert client.connected and client.account == 2 and client.session >= 1
            assert len(venue.sessions.sessions) == 1
            await client.close()
            assert not client.connected
            await until(lambda: not venue.sessions.conns)  # the gateway saw the logout and the close
            with pytest.raises(ConnectionError):
                client.place_nowait(1, Side.BUY, 100, 1)
    run(main())


def test_bad_key_raises_login_error_with_the_reason():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            with pytest.raises(LoginError) as info:
                await Client.connect(venue.host, venue.port, b"nope")
            assert info.value.reason == ProtocolReason.AUTH_FAILED and "AUTH_FAILED" in str(info.value)
        with pytest.raises(ConnectionError):  # nobody listening any more
            await Client.connect(venue.host, venue.port, b"key-1", timeout=1.0)
    run(main())


def test_place_modify_cancel():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            client = await Client.connect(venue.host, venue.port, b"key-1")
            ack = await client.place(1, Side.BUY, 100, 5)
            assert (ack.kind, ack.price_ticks, ack.qty_lots, ack.leaves_lots) == (MsgType.EXEC_ACCEPTED, 100, 5, 5)
            assert venue.engine.best(1) == (100, 0)
            assert client.orders[ack.client_order_id].leaves_lots == 5
            mod = await client.modify(ack.client_order_id, 99, 3)
            assert (mod.kind, mod.client_order_id, mod.price_ticks, mod.leaves_lots) == \
                (MsgType.EXEC_MODIFIED, ack.client_order_id, 99, 3)
            assert venue.engine.depth(1, Side.BUY) == [(99, 3, 1)]
            assert client.orders[ack.client_order_id].price_ticks == 99
            can = await client.cancel(ack.client_order_id)
            assert (can.kind, can.reason, can.qty_lots) == (MsgType.EXEC_CANCELLED, Reason.USER, 3)
            assert venue.engine.best(1) == (0, 0) and not client.orders
            again = await client.cancel(ack.client_order_id)
            assert (again.kind, again.reason) == (MsgType.EXEC_REJECTED, Reason.UNKNOWN_ORDER)
            rej = await client.place(1, Side.BUY, 100, 0)
            assert (rej.kind, rej.reason) == (MsgType.EXEC_REJECTED, Reason.INVALID_QTY)
            assert rej.client_order_id == ack.client_order_id + 1
            await client.close()
    run(main())


def test_fills_reach_both_clients_with_their_own_ids():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            reports: dict[int, list[ExecReport]] = {1: [], 2: []}
            seller = await Client.connect(venue.host, venue.port, b"key-1", on_report=reports[1].append)
            buyer = await Client.connect(venue.host, venue.port, b"key-2", on_report=reports[2].append)
            sell = await seller.place(1, Side.SELL, 100, 10, client_order_id=500)
            buy = await buyer.place(1, Side.BUY, 101, 4, tif=Tif.IOC)
            assert buy.kind == MsgType.EXEC_ACCEPTED
            await until(lambda: any(r.kind == MsgType.EXEC_FILL for r in reports[1]))
            [maker] = [r for r in reports[1] if r.kind == MsgType.EXEC_FILL]
            [taker] = [r for r in reports[2] if r.kind == MsgType.EXEC_FILL]
            assert (maker.client_order_id, maker.liquidity, maker.price_ticks, maker.qty_lots, maker.leaves_lots) \
                == (500, Liquidity.MAKER, 100, 4, 6)
            assert (taker.client_order_id, taker.liquidity, taker.price_ticks, taker.qty_lots, taker.leaves_lots) \
                == (buy.client_order_id, Liquidity.TAKER, 100, 4, 0)
            assert [r.kind for r in reports[2]] == [MsgType.EXEC_ACCEPTED, MsgType.EXEC_FILL]
            assert seller.orders[500].leaves_lots == 6 and not buyer.orders
            assert sell.client_order_id == 500 and seller.place_nowait(1, Side.SELL, 120, 1) == 501
            # a market order sweeping the rest: fill, then nothing left for the maker
            await buyer.place(1, Side.BUY, 0, 6, ord_type=OrdType.MARKET)
            await until(lambda: 500 not in seller.orders)
            await seller.close()
            await buyer.close()
    run(main())


def test_reconnect_after_the_server_drops_the_connection():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            seen: list[ExecReport] = []
            client = await Client.connect(venue.host, venue.port, b"key-1", on_report=seen.append,
                                          reconnect_delay_s=0.01)
            first_session = client.session
            old = await client.place(1, Side.BUY, 90, 1)
            in_flight = asyncio.ensure_future(client.place(1, Side.BUY, 91, 1))
            await asyncio.sleep(0)  # the NEW is written, the server has not read it yet
            venue.drop_all()
            with pytest.raises(ConnectionError):
                await in_flight  # its outcome is unknown to the client
            assert not client.connected and not client.orders
            await client.wait_connected(timeout=5.0)
            assert client.reconnects == 1 and client.session != first_session
            ack = await client.place(1, Side.BUY, 95, 2)
            assert ack.kind == MsgType.EXEC_ACCEPTED and ack.client_order_id > old.client_order_id + 1
            # the old session's order still rests, but the new session does not know its client id
            rej = await client.cancel(old.client_order_id)
            assert (rej.kind, rej.reason) == (MsgType.EXEC_REJECTED, Reason.UNKNOWN_ORDER)
            assert venue.engine.depth(1, Side.BUY)[-1][0] == 90
            await client.close()
            assert client.reconnects == 1
    run(main())


def test_pipelined_orders_are_all_acked():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            acked: set[int] = set()
            done = asyncio.Event()

            def on_report(r: ExecReport) -> None:
                assert r.kind == MsgType.EXEC_ACCEPTED, r
                acked.add(r.client_order_id)
                if len(acked) == 2000:
                    done.set()

            client = await Client.connect(venue.host, venue.port, b"key-1", on_report=on_report)
            cids = [client.place_nowait(1, Side.BUY, 1 + i % 50, 1) for i in range(1000)]
            batch = order_records(1000)
            batch["instrument"], batch["side"], batch["ord_type"], batch["tif"] = 2, Side.SELL, OrdType.LIMIT, Tif.GTC
            batch["price_ticks"] = 100 + np.arange(1000) % 50
            batch["qty_lots"] = 1
            batch_cids = client.place_batch_nowait(batch)
            await asyncio.wait_for(done.wait(), 10)
            assert acked == set(cids) | set(batch_cids.tolist()) and len(acked) == 2000
            assert len(client.orders) == 2000 and venue.engine.live_orders == 2000
            await client.close()
    run(main())


def test_cancel_on_disconnect_pulls_resting_orders_and_plain_sessions_keep_them():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            cod = await Client.connect(venue.host, venue.port, b"key-1", cancel_on_disconnect=True, reconnect=False)
            plain = await Client.connect(venue.host, venue.port, b"key-2", reconnect=False)
            await cod.place(1, Side.BUY, 100, 1)
            await cod.place(1, Side.SELL, 110, 1)
            await plain.place(2, Side.BUY, 50, 1)
            cod._link.transport.abort()  # a network failure, not a logout
            await until(lambda: venue.engine.best(1) == (0, 0))
            await plain.close()
            await asyncio.sleep(0.05)
            assert venue.engine.best(2) == (50, 0)
            with pytest.raises(ConnectionError):
                await cod.wait_connected(timeout=1.0)  # reconnect=False: closed for good
    run(main())


def test_heartbeats_keep_an_idle_session_alive_and_a_silent_gateway_is_dropped():
    async def main():
        async with InProcessVenue(api_keys=KEYS, heartbeat_ms=100) as venue:
            client = await Client.connect(venue.host, venue.port, b"key-1", reconnect_delay_s=0.01)
            session = client.session
            await asyncio.sleep(0.7)  # 7 intervals: the gateway closes a client silent for 3
            assert client.connected and client.session == session and client.reconnects == 0
            venue.sessions.on_timer = lambda now_ns=None: ({}, [])  # the gateway goes quiet
            await until(lambda: client.reconnects >= 1, timeout=3.0)
            assert "silent" in str(client.last_error)
            await client.close()
    run(main())


def test_a_protocol_error_drops_the_connection_and_fails_the_request():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            client = await Client.connect(venue.host, venue.port, b"key-1", reconnect_delay_s=0.01)
            client._link.proto.encoder.next_seq += 5  # a broken sender: a gap in our numbering
            with pytest.raises(ConnectionError):
                await client.place(1, Side.BUY, 100, 1)  # the gateway skips the frame: it will never be answered
            assert "BAD_SEQUENCE" in str(client.last_error)
            await client.wait_connected(timeout=5.0)
            assert (await client.place(1, Side.BUY, 100, 1)).kind == MsgType.EXEC_ACCEPTED
            await client.close()
    run(main())


def test_awaited_requests_from_many_tasks_resolve_to_their_own_reports():
    async def main():
        async with InProcessVenue(api_keys=KEYS) as venue:
            client = await Client.connect(venue.host, venue.port, b"key-1")
            acks = await asyncio.gather(*(client.place(1, Side.BUY, 10 + i, 1) for i in range(50)))
            assert [a.price_ticks for a in acks] == [10 + i for i in range(50)]
            # a cancel and a modify of one id in flight together: each gets its own answer
            mod, can = await asyncio.gather(client.modify(acks[0].client_order_id, 9, 1),
                                            client.cancel(acks[0].client_order_id))
            assert (mod.kind, can.kind) == (MsgType.EXEC_MODIFIED, MsgType.EXEC_CANCELLED)
            await client.close()
    run(main())


def test_rate_limited_cancel_answered_ahead_of_its_orders_ack_resolves_the_right_future():
    async def main():
        async with InProcessVenue(api_keys=KEYS, rate_per_s=1.0, burst=1) as venue:
            client = await Client.connect(venue.host, venue.port, b"key-1")
            cid = client._next_cid
            # one write-burst: the gateway lets the NEW through and refuses the CANCEL at once,
            # so the CANCEL's reject arrives before the NEW's ack
            place, cancel = await asyncio.gather(client.place(1, Side.BUY, 100, 1), client.cancel(cid))
            assert (place.kind, place.client_order_id) == (MsgType.EXEC_ACCEPTED, cid)
            assert (cancel.kind, cancel.reason) == (MsgType.EXEC_REJECTED, 72)  # GatewayReason.RATE_LIMITED
            assert venue.engine.best(1) == (100, 0)
            await client.close()
    run(main())


def test_server_shutdown_then_close_while_reconnecting_leaves_nothing_running():
    async def main():
        venue = InProcessVenue(api_keys=KEYS)
        await venue.__aenter__()
        client = await Client.connect(venue.host, venue.port, b"key-1", reconnect_delay_s=0.01)
        await venue.__aexit__(None, None, None)  # LOGOUT SHUTDOWN, then nobody listens
        await until(lambda: not client.connected)
        assert "SHUTDOWN" in str(client.last_error)
        await asyncio.sleep(0.05)  # a few refused reconnect attempts
        with pytest.raises(ConnectionError):
            await client.place(1, Side.BUY, 100, 1)
        await client.close()
        await asyncio.sleep(0)
        assert not [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("Client.")]
        with pytest.raises(ConnectionError):
            await client.wait_connected(timeout=1.0)
    run(main())


def test_the_example_runs_in_process():
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "client_example.py"
    out = subprocess.run([sys.executable, str(example), "--in-process"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "EXEC_MODIFIED" in out and "EXEC_CANCELLED" in out
    assert out.count("(maker)") == 2 and out.count("(taker)") == 2
