"""MulticastFeed: the market-data stage's UDP multicast publisher (the way exchanges fan out).

How it works
- One datagram reaches every receiver of a group; the kernel copies it to each member
  socket, so the stage's cost per update no longer grows with the subscribers (a TCP
  send per subscriber costs ~3.5 us on loopback; one multicast send to 100 receivers
  ~20 us). This is how ITCH (MoldUDP64) and CME MDP 3.0 publish, with TCP for
  recovery: here the market-data port's SUBSCRIBE with SubFlag.RECOVERY and
  SNAPSHOT_REQUEST.
- Instrument i is published to group `base + i` (IPv4 arithmetic: 239.77.0.0 + 3 =
  239.77.0.3) on one port, so a receiver joins only the instruments it wants.
- A datagram is a run of whole frames of one instrument, the very bytes the TCP feed
  sends (INCREMENT, BBO, CANDLE, TICKER), cut at frame boundaries to at most
  `max_datagram` bytes. Receivers find loss, duplication and reordering by md_seq and
  heal from a snapshot (the SDK's BookSync does).
- Never blocks: the socket is non-blocking, and a send the kernel refuses (full
  buffer) is counted in `dropped` and left to the receivers' recovery.
- Defaults are host-local (TTL 0, interface 127.0.0.1): nothing leaves the machine
  unless the config says so.
"""

from __future__ import annotations

import socket

import numpy as np

MAX_DATAGRAM = 1400  # fits a 1500-byte Ethernet MTU with IP/UDP headers


def group_address(base: str, instrument: int) -> str:
    """The group of an instrument: base + instrument, as IPv4 addresses."""
    return socket.inet_ntoa((int.from_bytes(socket.inet_aton(base), "big") + instrument).to_bytes(4, "big"))


def parse_endpoint(text: str) -> tuple[str, int]:
    """'239.77.0.0:9100' -> ('239.77.0.0', 9100), checked: a multicast base and a port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"multicast endpoint {text!r}: expected GROUP:PORT such as 239.77.0.0:9100")
    try:
        first = socket.inet_aton(host)[0]
    except OSError:
        raise ValueError(f"multicast endpoint {text!r}: {host!r} is not an IPv4 address") from None
    if not 224 <= first <= 239:
        raise ValueError(f"multicast endpoint {text!r}: {host} is not a multicast address (224.0.0.0/4)")
    return host, int(port)


def check_groups(base: str, instruments: int) -> None:
    """Instruments 1..n's groups must all be multicast groups outside 224.0.0.0/24 (the local
    network control block: 224.0.0.1 is every host). A group past 239.255.255.255 is no group:
    the kernel sends it as unicast by the default route, whatever the TTL and interface say."""
    first = int.from_bytes(socket.inet_aton(base), "big") + 1
    last = first + max(instruments, 1) - 1
    if last >> 28 != 0xE:
        name = socket.inet_ntoa((last & 0xFFFFFFFF).to_bytes(4, "big"))
        raise ValueError(f"multicast groups {base}+1..{base}+{instruments}: {name} is not a multicast address "
                         f"(224.0.0.0/4)")
    if first >> 8 == 0xE00000:
        raise ValueError(f"multicast groups {base}+1..: {group_address(base, 1)} is in 224.0.0.0/24, the local "
                         f"network control block (224.0.0.1 is every host): use 239.x.y.z")


def frame_cuts(data: bytes, limit: int) -> list[int]:
    """Offsets that cut data (whole length-prefixed frames) into pieces of at most `limit` bytes."""
    buf = np.frombuffer(data, dtype=np.uint8)
    cuts, start, pos, n = [0], 0, 0, len(data)
    while pos < n:
        length = int(buf[pos]) | (int(buf[pos + 1]) << 8)
        if pos + length - start > limit and pos > start:
            cuts.append(pos)
            start = pos
        pos += length
    cuts.append(n)
    return cuts


class MulticastFeed:
    def __init__(self, base: str, port: int, *, interface: str = "127.0.0.1", ttl: int = 0,
                 max_datagram: int = MAX_DATAGRAM) -> None:
        self.base, self.port, self.max_datagram = base, port, max_datagram
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sock.setblocking(False)
        self._groups: dict[int, tuple[str, int]] = {}
        self.datagrams = self.dropped = 0
        self.last_error: OSError | None = None

    def send(self, instrument: int, data: bytes) -> None:
        """data (whole frames of one instrument) to its group, in as many datagrams as it takes."""
        if not data:
            return
        to = self._groups.get(instrument)
        if to is None:
            to = self._groups[instrument] = (group_address(self.base, instrument), self.port)
        if len(data) <= self.max_datagram:
            self._sendto(data, to)
            return
        view = memoryview(data)
        cuts = frame_cuts(data, self.max_datagram)
        for a, b in zip(cuts, cuts[1:]):
            self._sendto(view[a:b], to)

    def _sendto(self, data, to: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, to)
            self.datagrams += 1
        except OSError as e:  # ENOBUFS / EAGAIN: the receivers heal from a snapshot
            self.dropped += 1
            self.last_error = e

    def close(self) -> None:
        self.sock.close()
