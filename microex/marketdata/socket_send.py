"""send_each: the same bytes to many sockets in one compiled call (the fan-out's hot loop).

How it works: a numba kernel calls libc `send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)`
once per socket and writes what each call returned (bytes taken, or -1) into `sent`.
Measured on the 2-vCPU machine (1,000 loopback TCP sockets, 320 bytes each): 2.4 us a
socket against 3.4 us for a Python loop of `socket.send`, and uvloop's `transport.write`
plus our bookkeeping cost more again; at 1,000 subscribers a fan-out cycle is this loop.
Invariants: it never blocks and never raises; a short or failed send is only reported,
and the caller queues the rest (the byte order per socket is the caller's business: it
only calls this for sockets that have nothing queued). With NUMBA_DISABLE_JIT=1 it is
plain Python over the same ctypes function.
"""

from __future__ import annotations

import ctypes
import socket

import numpy as np
from numba import njit

_libc = ctypes.CDLL(None)
_send = _libc.send
_send.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]  # the pointer as an integer
_send.restype = ctypes.c_ssize_t
_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL  # no SIGPIPE from a peer that has gone


@njit(nogil=True)  # not cached: numba cannot cache a kernel that holds a ctypes function
def send_each(fds, data, sent) -> int:
    """sent[k] = send(fds[k], data) for every k; returns how many took all of data."""
    ptr = data.ctypes.data
    n = data.shape[0]
    whole = 0
    for k in range(fds.shape[0]):
        r = _send(fds[k], ptr, n, _FLAGS)
        sent[k] = r
        if r == n:
            whole += 1
    return whole


def warm_up() -> None:
    """Compile send_each now (it cannot be cached): the first fan-out must not stall for it."""
    send_each(np.zeros(0, dtype=np.int32), np.frombuffer(b"\0", dtype=np.uint8), np.zeros(0, dtype=np.int64))
