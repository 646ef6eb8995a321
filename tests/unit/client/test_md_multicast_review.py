"""Review regressions for the SDK's multicast receiver (MarketDataClient(multicast=...))."""

from __future__ import annotations

import asyncio


from microex.client import marketdata
from microex.client.marketdata import MarketDataClient
from microex.client.md_protocol import Trades
from microex.core.records import MdKind
from microex.core.raw import take
from tests.unit.client.test_md_multicast import (
    BASE,
    RecoveryPort,
    _free_udp_port,
    _synced,
    instrument_bytes,
)
from tests.unit.marketdata._venue import Venue


def test_no_group_socket_outlives_concurrent_subscribes_or_a_close_during_a_join(monkeypatch):
    """subscribe() awaits the group's endpoint before recording it: a second subscribe of the same
    instrument, or close(), running meanwhile must not leave a joined socket nobody closes."""
    made = []
    real = marketdata.multicast_socket

    def spy(*args, **kwargs):
        sock = real(*args, **kwargs)
        made.append(sock)
        return sock

    monkeypatch.setattr(marketdata, "multicast_socket", spy)

    async def main():
        v = Venue(seed=3)
        v.batch(50)
        port = RecoveryPort(v)
        server = await asyncio.start_server(port.handle, "127.0.0.1", 0)
        md = await MarketDataClient.connect("127.0.0.1", server.sockets[0].getsockname()[1],
                                            multicast=(BASE, _free_udp_port()))
        try:
            await asyncio.gather(md.subscribe(1), md.subscribe(1))  # both pass "not joined yet"
            assert set(md.groups) == {1}
            late = asyncio.ensure_future(md.subscribe(2))
            await asyncio.sleep(0)  # inside its join
            await md.close()
            await late
            await asyncio.sleep(0.05)  # transports close their sockets on the next loop turns
            assert md.groups == {}
            assert [s for s in made if s.fileno() != -1] == [], "a joined socket was left open"
        finally:
            await md.close()
            server.close()

    asyncio.run(main())


def test_a_stale_answer_does_not_swallow_the_trades_of_datagrams_still_in_flight():
    """A BBO overtakes its increments (reordering): the replica asks, then heals from the late increments
    and is LIVE. The answer to its request, taken after more increments went out, overtakes their
    datagram: it is loaded over the LIVE replica and those increments become duplicates, so their
    trades are never delivered although no datagram was lost."""
    v = Venue(seed=9)
    c = _synced(v)
    out = v.batch(80)
    incs = take(out.updates, out.updates["instrument"] == 1).tobytes()
    bbo = take(out.bbo, out.bbo["instrument"] == 1).tobytes()
    assert bbo
    c.feed_datagram(bbo)  # ahead of its increments
    assert c.take_output() and not c.books[1].live
    c.feed_datagram(incs)  # the late increments: healed without the snapshot
    assert c.books[1].live
    later = v.batch(80)  # more goes out by multicast...
    answer = v.state.snapshot(1)[1]  # ...before the stage answers the request
    assert (take(later.updates, later.updates["instrument"] == 1)["kind"] == MdKind.TRADE).any()
    c.feed(answer)  # TCP overtakes the datagram
    events = c.feed_datagram(instrument_bytes(later, 1))
    v.assert_equal(c.books[1].replica, 1)  # the book is right either way
    want = take(later.updates, (later.updates["instrument"] == 1) & (later.updates["kind"] == MdKind.TRADE))
    got = [r for e in events if type(e) is Trades for r in e.records]
    assert len(got) == len(want)  # nothing was lost: every trade, once
