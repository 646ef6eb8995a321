"""The SDK's multicast receiver: MarketDataProtocol.feed_datagram against the venue's MarketState under
lost, duplicated and reordered datagrams (snapshots over TCP on request), datagrams decoded on their own,
joining a group on loopback, and MarketDataClient(multicast=...) over real sockets."""

from __future__ import annotations

import asyncio
import select
import socket
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microex.client.marketdata import MarketDataClient
from microex.client.md_multicast import multicast_socket
from microex.client.md_protocol import (
    BookChanged,
    MarketDataProtocol,
    Records,
    Trades,
    Violation,
)
from microex.core.records import MdKind, MdMsg
from microex.marketdata.multicast import MAX_DATAGRAM, frame_cuts, group_address
from microex.core.raw import take
from microex.protocol.md_binary import (
    CLIENT_MESSAGES,
    DecodeError,
    MdDecoder,
    MdStatus,
    SubFlag,
    status,
)
from tests.unit.marketdata._venue import Venue, frames

BASE = "239.77.0.0"
INSTRUMENTS = (1, 2, 3)


def instrument_bytes(out, i: int) -> bytes:
    """What the venue publishes for instrument i from one batch: its increments, BBO and candles."""
    return b"".join(take(recs, recs["instrument"] == i).tobytes() for recs in (out.updates, out.bbo, out.candles))


def datagrams(out, i: int, limit: int = MAX_DATAGRAM) -> list[bytes]:
    data = instrument_bytes(out, i)
    if not data:
        return []
    cuts = frame_cuts(data, limit)
    return [data[a:b] for a, b in pairwise(cuts)]


def interleave(rng, a: list, b: list) -> list:
    """a and b merged at random, each keeping its own order."""
    out, ia, ib = [], 0, 0
    while ia < len(a) or ib < len(b):
        if ib == len(b) or (ia < len(a) and rng.random() < 0.5):
            out.append(a[ia])
            ia += 1
        else:
            out.append(b[ib])
            ib += 1
    return out


class Lines:
    """The venue's side of one receiver: its groups (datagrams lost, duplicated, held back, reordered)
    and its TCP recovery line (in order, chunks split anywhere, answers delivered a step later)."""

    def __init__(self, venue: Venue, client: MarketDataProtocol, rng, p_drop=0.0, p_dup=0.0, p_hold=0.0,
                 shuffle=False, p_split=0.0, limit=MAX_DATAGRAM) -> None:
        self.v, self.c, self.rng = venue, client, rng
        self.p_drop, self.p_dup, self.p_hold, self.shuffle, self.p_split = p_drop, p_dup, p_hold, shuffle, p_split
        self.limit = limit
        self.server = MdDecoder(CLIENT_MESSAGES)
        self.flight: list[bytes] = []  # datagrams sent and not delivered yet
        self.tcp: list[tuple[bytes, int]] = []  # (bytes, the instrument whose snapshot they complete, or 0)
        self.outstanding: set[int] = set()
        self.requests: Counter = Counter()
        self.dropped: Counter = Counter()  # lost datagrams with increments
        self.published: dict[tuple[int, int], bytes] = {}  # (instrument, md_seq) -> the increment's frame
        self.events: list = []

    def serve(self, data: bytes) -> None:
        """The market-data port answers the client's frames (snapshots at the venue's state now)."""
        for item in self.server.feed(data):
            assert not isinstance(item, DecodeError), item
            t, recs = item
            for r in recs:
                i = int(r["instrument"])
                assert int(r["depth"]) == 0
                if t == MdMsg.SUBSCRIBE:
                    assert int(r["flags"]) == SubFlag.RECOVERY
                    self.tcp.append((status(i, MdStatus.SUBSCRIBED, self.v.state.md_seq(i)), 0))
                else:
                    assert t == MdMsg.SNAPSHOT_REQUEST, t
                    assert i not in self.outstanding, "a second snapshot request while one is outstanding"
                    self.outstanding.add(i)
                    self.requests[i] += 1
                    self.tcp.append((self.v.state.snapshot(i)[1], i))

    def publish(self, n: int, faults: bool = True) -> None:
        out = self.v.batch(n)
        for r in out.updates:
            self.published[int(r["instrument"]), int(r["md_seq"])] = r.tobytes()
        for i in INSTRUMENTS:
            for d in datagrams(out, i, self.limit):
                if faults and self.rng.random() < self.p_drop:
                    self.dropped[i] += int.from_bytes(d[2:4], "little") == MdMsg.INCREMENT  # not BBO/candles only
                    continue
                self.flight += [d] * (2 if faults and self.rng.random() < self.p_dup else 1)

    def step(self, faults: bool = True) -> None:
        """Deliver what is due, datagrams and TCP chunks interleaved; the client's requests are served."""
        due, held = [], []
        for d in self.flight:
            (held if faults and self.rng.random() < self.p_hold else due).append(d)
        if faults and self.shuffle:
            self.rng.shuffle(due)
        self.flight = held
        chunks: list[tuple[str, bytes, int]] = []
        for data, i in self.tcp:
            if faults and len(data) > 1 and self.rng.random() < self.p_split:  # a frame split across reads
                cut = int(self.rng.integers(1, len(data)))
                chunks += [("tcp", data[:cut], 0), ("tcp", data[cut:], i)]
            else:
                chunks.append(("tcp", data, i))
        self.tcp = []
        for kind, data, i in interleave(self.rng, [("udp", d, 0) for d in due], chunks):
            if kind == "udp":
                self.events += self.c.feed_datagram(data)
            else:
                self.events += self.c.feed(data)
                self.outstanding.discard(i)
            self.serve(self.c.take_output())

    def drain(self) -> None:
        while self.flight or self.tcp:
            self.step(faults=False)

    def current(self, i: int) -> bool:
        sync = self.c.books[i]
        return sync.live and sync.replica.md_seq == self.v.state.md_seq(i)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), p_drop=st.sampled_from([0.0, 0.05, 0.3]), p_dup=st.sampled_from([0.0, 0.1, 0.5]),
       p_hold=st.sampled_from([0.0, 0.1, 0.4]), shuffle=st.booleans(), p_split=st.sampled_from([0.0, 0.5]),
       limit=st.sampled_from([256, MAX_DATAGRAM]))
def test_the_replica_heals_lost_duplicated_and_reordered_datagrams(seed, p_drop, p_dup, p_hold, shuffle, p_split,
                                                                   limit):
    rng = np.random.default_rng(seed)
    v = Venue(seed=seed % 1000 + 1, spread=8)
    v.batch(60)  # a book before the receiver joins
    c = MarketDataProtocol()
    lines = Lines(v, c, rng, p_drop, p_dup, p_hold, shuffle, p_split, limit)
    first = {i: v.state.md_seq(i) for i in INSTRUMENTS}
    for i in INSTRUMENTS:
        lines.serve(c.subscribe_multicast(i))
    for _ in range(25):
        lines.publish(40)
        lines.step()
        for i in INSTRUMENTS:
            if lines.current(i):
                v.assert_equal(c.books[i].replica, i)  # whenever it claims to be current, it is exact
    lines.drain()
    for _ in range(30):  # clean traffic until every book has seen a datagram past any loss
        if all(lines.current(i) for i in INSTRUMENTS):
            break
        lines.publish(30, faults=False)
        lines.drain()
    for i in INSTRUMENTS:
        assert lines.current(i), (i, c.books[i].pending, lines.outstanding)
        v.assert_equal(c.books[i].replica, i)
        if lines.dropped[i]:
            assert lines.requests[i] > 1  # only a snapshot can cross a lost datagram
    trades = [r for e in lines.events if type(e) is Trades for r in e.records]
    for i in INSTRUMENTS:
        seqs = [int(r["md_seq"]) for r in trades if r["instrument"] == i]
        assert seqs == sorted(set(seqs)), "a trade was delivered twice or out of order"
        assert all(lines.published[i, int(r["md_seq"])] == r.tobytes() for r in trades if r["instrument"] == i)
        if not (p_drop or p_hold or shuffle):  # nothing lost or reordered: every trade, once
            want = sorted(s for (j, s), f in lines.published.items()
                          if j == i and s > first[i] and f[60] == MdKind.TRADE)
            assert seqs == want
    assert any(type(e) is BookChanged for e in lines.events)
    assert any(type(e) is Records and e.msg_type == MdMsg.BBO for e in lines.events)
    assert not any(type(e) is Violation for e in lines.events)
    assert c.decoder.buffered == 0 and c.truncated == 0


def _synced(v: Venue, i: int = 1) -> MarketDataProtocol:
    c = MarketDataProtocol()
    out = c.subscribe_multicast(i)
    [(t1, sub), (t2, req)] = MdDecoder(CLIENT_MESSAGES).feed(out)
    assert (t1, int(sub["flags"][0]), t2, int(req["instrument"][0]), int(req["depth"][0])) == \
        (MdMsg.SUBSCRIBE, SubFlag.RECOVERY, MdMsg.SNAPSHOT_REQUEST, i, 0)
    c.feed(v.state.snapshot(i)[1])
    assert c.books[i].live and c.take_output() == b""
    return c


def _increments(out, i: int = 1) -> list[bytes]:
    return frames(take(out.updates, out.updates["instrument"] == i).tobytes())


def test_a_truncated_datagram_does_not_corrupt_the_next():
    v = Venue(seed=3)
    c = _synced(v)
    fs = _increments(v.batch(120))
    assert len(fs) > 8
    c.feed_datagram(b"".join(fs[:3]) + fs[3][:40])  # cut inside a frame's body
    assert c.truncated == 1 and c.books[1].replica.md_seq == int.from_bytes(fs[2][8:16], "little")
    c.feed_datagram(b"".join(fs[3:6]) + fs[6][:5])  # cut inside a header
    assert c.truncated == 2
    events = c.feed_datagram(b"".join(fs[6:]))  # starts with a whole frame, which must decode as one
    assert not any(type(e) is Violation for e in events)
    assert c.books[1].live and c.take_output() == b""  # no gap: the cut frames came again whole
    v.assert_equal(c.books[1].replica, 1)
    assert c.decoder.buffered == 0 and c.datagrams == 3


def test_a_bad_frame_drops_the_rest_of_its_datagram_only():
    v = Venue(seed=5)
    c = _synced(v)
    fs = _increments(v.batch(120))
    bad = (12).to_bytes(2, "little") + bytes(6)  # a length that cannot be trusted
    [violation] = [e for e in c.feed_datagram(fs[0] + bad + fs[1]) if type(e) is Violation]
    assert not violation.closing  # a datagram's framing never ends the TCP connection
    status_frame = status(1, MdStatus.SUBSCRIBED, 0)  # control frames belong to TCP, never to a datagram
    assert [type(e) for e in c.feed_datagram(status_frame)] == [Violation]
    c.feed_datagram(b"".join(fs[1:]))
    assert c.books[1].live
    v.assert_equal(c.books[1].replica, 1)
    assert not c.decoder.closed


def test_datagrams_between_the_pieces_of_a_split_tcp_snapshot():
    v = Venue(seed=7)
    v.batch(150)
    c = MarketDataProtocol()
    c.subscribe_multicast(1)
    snap = v.state.snapshot(1)[1]
    assert len(snap) > 48 + 2 * 64
    out = v.batch(120)
    grams = datagrams(out, 1, 256)
    forged_end = snap[-48:-40] + (10**9).to_bytes(8, "little") + snap[-32:]  # a SNAPSHOT_END in a datagram
    c.feed(snap[:100])  # BEGIN and part of the first LEVEL
    for d in grams[:2]:
        c.feed_datagram(d)
    c.feed_datagram(forged_end)
    c.feed_datagram(grams[2][:70])  # a truncated datagram: its tail must not reach the TCP decoder
    c.feed(snap[100:150])
    for d in grams[2:]:
        c.feed_datagram(d)
    assert not c.books[1].live  # still no snapshot
    c.feed(snap[150:])
    assert c.books[1].live and c.decoder.buffered == 0 and c.books[1].resyncs == 1
    v.assert_equal(c.books[1].replica, 1)


def _norm(events: list) -> list:
    return [(type(e).__name__, getattr(e, "instrument", None), getattr(e, "msg_type", None),
             e.records.tobytes() if hasattr(e, "records") else None) for e in events]


def test_a_datagram_gives_the_events_the_tcp_stream_gives():
    v = Venue(seed=9)
    tcp, udp = _synced(v), _synced(v)
    kinds = set()
    for _ in range(5):
        data = instrument_bytes(v.batch(80), 1)
        events = udp.feed_datagram(data)
        assert _norm(tcp.feed(data)) == _norm(events)
        kinds |= {type(e) for e in events}
    assert {Trades, Records, BookChanged} <= kinds
    v.assert_equal(udp.books[1].replica, 1)


def test_an_answer_overtaken_by_datagrams_is_not_loaded():
    """A snapshot older than what datagrams already brought: going back would apply duplicates twice."""
    v = Venue(seed=11)
    c = _synced(v)
    fs = _increments(v.batch(150))
    c.feed_datagram(b"".join(fs[:2] + fs[3:5]))  # a gap: a request goes out
    assert not c.books[1].live and c.take_output()
    old = v.state.snapshot(1)
    fs2 = _increments(v.batch(150))
    c.feed_datagram(fs[2])  # healed by the late datagram
    c.feed_datagram(b"".join(fs[5:] + fs2[:3] + fs2[4:]))  # a new gap, the request still outstanding
    assert not c.books[1].live and c.take_output() == b""
    seq = c.books[1].replica.md_seq
    trades = [e for e in c.feed(old[1]) if type(e) is Trades]  # the stale answer to the first request
    assert c.books[1].replica.md_seq == seq and not trades
    assert c.take_output()  # still a gap: asks again
    c.feed_datagram(b"".join(fs[5:] + fs2))  # duplicates and the missing one
    assert c.books[1].live
    v.assert_equal(c.books[1].replica, 1)


# -- sockets ----------------------------------------------------------------------------------------


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sender() -> socket.socket:
    """Sends as the venue does by default: interface 127.0.0.1, TTL 0 (this host only), loop on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return s


def test_group_addresses():
    assert group_address(BASE, 3) == "239.77.0.3"
    assert group_address("239.77.0.250", 10) == "239.77.1.4"


def test_two_members_of_a_group_receive_a_datagram_and_another_group_does_not():
    port = _free_udp_port()
    try:
        members = [multicast_socket(group_address(BASE, 1), port) for _ in range(2)]
        other = multicast_socket(group_address(BASE, 2), port)
    except OSError as e:
        pytest.skip(f"the OS refuses to join a multicast group on loopback: {e}")
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out = _sender()
    try:
        for m in members:
            assert not m.getblocking()
            assert m.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > plain.getsockopt(socket.SOL_SOCKET,
                                                                                         socket.SO_RCVBUF)
        out.sendto(b"frames of instrument 1", (group_address(BASE, 1), port))
        for m in members:
            assert select.select([m], [], [], 2.0)[0], "a member got nothing"
            assert m.recv(2048) == b"frames of instrument 1"
        with pytest.raises(BlockingIOError):  # loopback delivery happens inside sendto: nothing is on its way
            other.recv(2048)
    finally:
        for s in [*members, other, plain, out]:
            s.close()


class RecoveryPort:
    """A tiny market-data port for multicast receivers: STATUS for SUBSCRIBE RECOVERY, FULL snapshots on request."""

    def __init__(self, venue: Venue) -> None:
        self.v = venue
        self.requests: Counter = Counter()
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        decoder = MdDecoder(CLIENT_MESSAGES)
        while data := await reader.read(65536):
            for item in decoder.feed(data):
                assert not isinstance(item, DecodeError), item
                t, recs = item
                for r in recs:
                    i = int(r["instrument"])
                    if t == MdMsg.SUBSCRIBE:
                        assert int(r["flags"]) == SubFlag.RECOVERY
                        writer.write(status(i, MdStatus.SUBSCRIBED, self.v.state.md_seq(i)))
                    elif t == MdMsg.SNAPSHOT_REQUEST:
                        self.requests[i] += 1
                        writer.write(self.v.state.snapshot(i)[1])
        writer.close()


def test_client_over_multicast_with_recovery_over_tcp():
    async def main():
        v = Venue(seed=13)
        v.batch(100)
        port = RecoveryPort(v)
        server = await asyncio.start_server(port.handle, "127.0.0.1", 0)
        tcp_port = server.sockets[0].getsockname()[1]
        mc_port = _free_udp_port()
        out = _sender()
        trades: list = []
        md = await MarketDataClient.connect("127.0.0.1", tcp_port, on_trade=trades.append, timeout_s=30.0,
                                            reconnect_delay_s=0.01, multicast=(BASE, mc_port))
        books: Counter = Counter()
        md.on_book.append(lambda i, book: books.update([i]))

        def send(batch, skip: dict[int, int] | None = None) -> None:
            for i in (1, 2):
                for k, d in enumerate(datagrams(batch, i, 512)):
                    if (skip or {}).get(i) != k:
                        out.sendto(d, (group_address(BASE, i), mc_port))

        async def current() -> None:
            await md.wait_until(lambda: all(md.synced(i) and md.book(i).md_seq == v.state.md_seq(i) for i in (1, 2)))
            for i in (1, 2):
                v.assert_equal(md.book(i), i)

        try:
            await md.subscribe(1)
            await md.subscribe(2)
            assert set(md.groups) == {1, 2}
            for i in (1, 2):
                v.assert_equal(await md.wait_synced(i), i)
            send(v.batch(150))
            await current()
            assert port.requests == {1: 1, 2: 1} and md.stats()[1]["gaps"] == 0 and books[1] > 0
            batch = v.batch(300)
            assert len(datagrams(batch, 1, 512)) > 2
            send(batch, skip={1: 1})  # a lost datagram: the next one shows the gap
            await current()
            assert md.stats()[1]["gaps"] == 1 and port.requests == {1: 2, 2: 1} and md.stats()[2]["gaps"] == 0
            for w in port.writers:  # the recovery line drops; the groups stay joined
                w.transport.abort()
            await md.wait_until(lambda: md.reconnects == 1 and md.synced(1) and md.synced(2))
            assert port.requests == {1: 3, 2: 2}
            send(v.batch(150))
            await current()
            await md.unsubscribe(2)
            assert set(md.groups) == {1}
            seqs = [int(t["md_seq"]) for t in trades if t["instrument"] == 1]
            assert trades and len(seqs) == len(set(seqs))
        finally:
            await md.close()
            out.close()
            server.close()
            await server.wait_closed()
        assert md.groups == {}

    asyncio.run(main())


def test_a_ticker_reveals_the_lost_last_datagram_of_a_quiet_instrument():
    v = Venue(seed=9)
    c = _synced(v)
    out = v.batch(80)
    fs = _increments(out)
    c.feed_datagram(b"".join(fs[:-1]))  # the last datagram before the instrument goes quiet is lost
    assert c.books[1].live and c.take_output() == b""  # nothing after it shows the gap
    ticker = v.state.tickers(out.updates["ts_ns"].max())[0:1].copy()  # instrument 1's, as on_timer sends it
    stale = ticker.copy()
    stale["md_seq"] = c.books[1].replica.md_seq
    c.feed_datagram(stale.tobytes())
    assert c.books[1].live and c.take_output() == b""  # not ahead: nothing to do
    c.feed_datagram(ticker.tobytes())
    [(t, req)] = MdDecoder(CLIENT_MESSAGES, check_sequence=False).feed(c.take_output())
    assert t == MdMsg.SNAPSHOT_REQUEST and not c.books[1].live and c.books[1].gaps == 1
    c.feed_datagram(ticker.tobytes())  # a second hint while the request is out asks nothing more
    assert c.take_output() == b""
    c.feed(v.state.snapshot(1)[1])
    assert c.books[1].live
    v.assert_equal(c.books[1].replica, 1)
