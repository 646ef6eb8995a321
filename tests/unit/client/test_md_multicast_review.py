"""Review regressions for the SDK's multicast receiver (MarketDataClient(multicast=...))."""

from __future__ import annotations

import asyncio

import microex.client.marketdata as marketdata
from microex.client.marketdata import MarketDataClient

from tests.unit.client.test_md_multicast import BASE, RecoveryPort, _free_udp_port
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
