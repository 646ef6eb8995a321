"""The I/O side of the multicast market-data feed: joining an instrument's group.

The venue sends instrument i's datagrams to group `base + i` on one port (host-local
by default: TTL 0 on interface 127.0.0.1). `multicast_socket` makes the receiving
socket, `DatagramReceiver` hands each datagram to a callback on the event loop
(`loop.create_datagram_endpoint(lambda: DatagramReceiver(cb), sock=sock)`); the
sans-I/O side is `MarketDataProtocol.feed_datagram` (client/md_protocol.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("microex.client.marketdata")

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: beyond rmem_max, with CAP_NET_ADMIN
RCVBUF = 8 << 20  # bursts are lost in the socket's buffer, not on the loopback wire: make it large


def multicast_socket(group: str, port: int, interface: str = "127.0.0.1", rcvbuf: int = RCVBUF) -> socket.socket:
    """A non-blocking UDP socket joined to `group` on `interface`, receiving what is sent to (group, port).

    Bound to the group address, not INADDR_ANY, so it gets that group's datagrams only
    (on Linux a wildcard bind also gets every other group joined on the host)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # several receivers of one group on one host
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _set_rcvbuf(sock, rcvbuf)
        sock.bind((group, port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(group) + socket.inet_aton(interface))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:  # not permitted (or not Linux): capped by net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class DatagramReceiver(asyncio.DatagramProtocol):
    """Calls on_datagram(data) for each datagram received."""

    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        log.warning("multicast receive error: %s", exc)
