"""The multicast feed: group addresses, datagrams cut at frame boundaries, the Fanout's one send per
instrument whoever is subscribed over TCP, and a RECOVERY subscription that gets snapshots only."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microex.client.md_protocol import MarketDataProtocol
from microex.core.records import MdMsg
from microex.marketdata.fanout import Fanout
from microex.marketdata.multicast import MulticastFeed, frame_cuts, group_address, parse_endpoint
from microex.core.raw import take
from microex.protocol.md_binary import SERVER_MESSAGES, MdDecoder, MdStatus, SubFlag

from tests.unit.marketdata._venue import FakeTransport, Venue


class Datagrams:
    """A MulticastFeed double: what would have gone to each instrument's group."""

    def __init__(self) -> None:
        self.sent: dict[int, list[bytes]] = {}

    def send(self, instrument: int, data: bytes) -> None:
        if data:
            self.sent.setdefault(instrument, []).append(bytes(data))


def test_addresses_and_endpoints():
    assert group_address("239.77.0.0", 3) == "239.77.0.3"
    assert group_address("239.77.0.250", 10) == "239.77.1.4"
    assert parse_endpoint("239.77.0.0:9003") == ("239.77.0.0", 9003)
    for bad, why in (("239.77.0.0", "GROUP:PORT"), ("10.0.0.1:9003", "not a multicast"),
                     ("239.77.0.0:0", "GROUP:PORT"), ("nohost:9003", "not an IPv4")):
        with pytest.raises(ValueError, match=why):
            parse_endpoint(bad)


def _frames(sizes: list[int]) -> bytes:
    out = bytearray()
    for k, n in enumerate(sizes):
        frame = bytearray([k & 0xFF]) * n
        frame[0:2] = n.to_bytes(2, "little")
        out += frame
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([8, 16, 48, 64, 96, 256]), max_size=80), st.sampled_from([256, 300, 1400]))
def test_cuts_keep_frames_whole_and_under_the_limit(sizes, limit):
    data = _frames(sizes)
    cuts = frame_cuts(data, limit)
    pieces = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    assert b"".join(pieces) == data and all(pieces) == bool(data)
    frame_starts = set(np.cumsum([0, *sizes]).tolist())
    for a, b in zip(cuts, cuts[1:]):
        assert a in frame_starts and b in frame_starts
        assert b - a <= limit
    if data:  # as few datagrams as whole frames allow: no two neighbours would fit in one
        assert all(c - a > limit for a, c in zip(cuts, cuts[2:]))


@pytest.mark.parametrize("seed", [1, 2])
def test_every_increment_goes_to_its_group_once_in_order(seed):
    v = Venue(seed=seed, instruments=3)
    mc = Datagrams()
    fan = Fanout(v.state, multicast=mc, defer=True)  # nobody subscribed over TCP
    published = []
    for _ in range(20):
        out = v.batch(60)
        published.append(out.updates.copy())
        fan.publish(out.updates, out.bbo, out.candles)
        while fan.flush_next():
            pass
    updates = np.concatenate(published)
    for i in (1, 2, 3):
        got = []
        for data in mc.sent.get(i, []):
            for t, recs in MdDecoder(SERVER_MESSAGES).feed(data):
                assert (recs["instrument"] == i).all()
                if t == MdMsg.INCREMENT:
                    got.append(recs)
        got = np.concatenate(got)["md_seq"].tolist()
        mine = take(updates, updates["instrument"] == i)["md_seq"].tolist()
        assert got == mine and got == list(range(1, len(got) + 1))


def test_a_recovery_subscription_gets_snapshots_only():
    v = Venue(seed=5)
    mc = Datagrams()
    fan = Fanout(v.state, multicast=mc)
    t = FakeTransport()
    fan.add(1, t)
    fan.publish(v.batch(100).updates)
    fan.subscribe(1, 1, 0, SubFlag.RECOVERY)
    [(msg, recs)] = MdDecoder(SERVER_MESSAGES).feed(t.read())
    assert msg == MdMsg.STATUS and recs["status"][0] == MdStatus.SUBSCRIBED
    for _ in range(5):
        fan.publish(v.batch(100).updates)
    assert t.read() == b"" and mc.sent[1]  # the stream went by multicast only
    fan.snapshot_request(1, 1)
    proto = MarketDataProtocol()
    proto.subscribe(1, SubFlag.BOOK)
    proto.feed(t.read())
    assert proto.books[1].replica.md_seq == v.state.md_seq(1)
    v.assert_equal(proto.books[1].replica, 1)


def test_datagrams_reach_every_member_of_the_group():
    port = _free_udp_port()
    feed = MulticastFeed("239.77.0.0", port, max_datagram=300)
    members = [_member("239.77.0.2", port) for _ in range(3)]
    other = _member("239.77.0.1", port)
    try:
        data = _frames([64] * 20)
        feed.send(2, data)
        assert feed.datagrams == 5 and feed.dropped == 0
        for m in members:
            got = [m.recv(2048) for _ in range(5)]
            assert b"".join(got) == data and max(map(len, got)) <= 300
        other.setblocking(False)  # loopback delivery happened inside the sends: nothing is on its way
        with pytest.raises(BlockingIOError):
            other.recv(2048)  # another instrument's group
    finally:
        feed.close()
        for m in [*members, other]:
            m.close()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _member(group: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
    s.settimeout(2.0)
    return s
