"""The binary market-data feed over gRPC server streaming (grpcio, no protobuf): service microex.MarketData.

    Subscribe  (unary -> stream)  request: SUBSCRIBE frame(s)        responses: the feed's frames
    Snapshot   (unary -> unary)   request: SNAPSHOT_REQUEST frame(s) response:  snapshot frames (or ERROR)

How it works
- No code generation: generic handlers with bytes in and bytes out, so every gRPC
  message is a run of the TCP feed's own frames (docs/marketdata.md has the byte
  tables): one message per batch the stream's writer picks up, always whole frames,
  at most `max_message` (1 MiB) bytes, well under gRPC's default 4 MiB receive limit.
- Each Subscribe call is a Fanout subscriber (`_Stream`: write / buffered / abort) of
  the stage's FeedSessions, the same object MdServer serves TCP from, so it gets the
  TCP feed's contract unchanged: STATUS SUBSCRIBED, a FULL snapshot at S, then
  INCREMENTs S+1, S+2... BBO, candles, tickers, and the slow-consumer policy.
  `write` appends to the stream's queue (never blocks); the call's writer coroutine
  joins what is queued into one message and awaits gRPC's send, which waits for
  HTTP/2 flow control: a slow reader makes the queue grow, and `buffered()` (queued
  bytes plus the message being sent) drives conflation / resync / drop as
  `get_write_buffer_size()` does for TCP. Dropped (SLOW_CONSUMER): the queue is
  discarded and the call ends with RESOURCE_EXHAUSTED.
- The request's frames go whole to `FeedSessions.on_bytes` (numbered 1, 2, 3... like
  a TCP connection's). If no subscription came out of it (unknown instrument, bad
  flags...) the ERROR frames are sent and the call ends with INVALID_ARGUMENT; so
  does a framing error. The stream is one-way: a client that sees a gap (it cannot
  happen on one ordered stream unless something is broken) subscribes again, which
  brings a fresh snapshot; RESYNC and conflation bundles arrive on the stream itself.
- Idle streams get a HEARTBEAT frame every `heartbeat_s`. `close()` (after the
  stage's shutdown wrote ERROR SHUTDOWN) sends what is queued and ends every call OK.
- Runs on the stage process's event loop (uvloop: grpc.aio works on it), beside
  MdServer, whose timer drives the stage's clock (`stage_timer=True` makes this one
  do it when it runs alone, e.g. in tests).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time

import grpc

from microex.core.records import BookCause, MdMsg, MdReason
from microex.marketdata.stage import FeedSessions
from microex.protocol.md_binary import CLIENT_MESSAGES, HEARTBEAT_FRAME, DecodeError, MdDecoder, error

log = logging.getLogger(__name__)

SERVICE = "microex.MarketData"
SUBSCRIBE_METHOD = f"/{SERVICE}/Subscribe"
SNAPSHOT_METHOD = f"/{SERVICE}/Snapshot"
MAX_MESSAGE = 1 << 20  # bytes per response message (whole frames)
MAX_REQUEST = 64 << 10  # a request is a few 16-byte frames
ID_BASE = 1 << 40  # subscriber ids of gRPC streams: apart from MdServer's TCP ids (1, 2, 3...)
TIMER_S = 0.1


class _Stream:
    """One Subscribe call: the Fanout's Transport, and the queue its writer sends from."""

    __slots__ = ("sub_id", "chunks", "size", "inflight", "wake", "wrote", "aborted", "closing", "limit")

    def __init__(self, sub_id: int, limit: int) -> None:
        self.sub_id, self.limit = sub_id, limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = self.inflight = 0
        self.wake = asyncio.Event()
        self.wrote = True
        self.aborted = self.closing = False

    # the Fanout's Transport
    def write(self, data: bytes) -> None:
        if self.aborted:
            return
        if len(data) > self.limit:
            self.chunks.extend(split_frames(data, self.limit))
        else:
            self.chunks.append(data)
        self.size += len(data)
        self.wrote = True
        if not self.wake.is_set():
            self.wake.set()

    def buffered(self) -> int:
        return self.size + self.inflight

    def abort(self) -> None:
        self.aborted = True
        self.chunks.clear()
        self.size = 0
        self.wake.set()

    def finish(self) -> None:
        self.closing = True
        self.wake.set()

    # the writer's side
    def take(self) -> bytes:
        """Whole queued writes joined up to `limit` bytes (at least one)."""
        chunks, limit = self.chunks, self.limit
        msg = chunks.popleft()
        if chunks and len(msg) + len(chunks[0]) <= limit:
            parts, n = [msg], len(msg)
            while chunks and n + len(chunks[0]) <= limit:
                c = chunks.popleft()
                parts.append(c)
                n += len(c)
            msg = b"".join(parts)
        self.size -= len(msg)
        return msg


def split_frames(data: bytes, limit: int) -> list[bytes]:
    """`data` (whole frames) cut at frame boundaries into pieces of at most `limit` bytes."""
    out = []
    start = pos = 0
    n = len(data)
    while pos < n:
        length = data[pos] | data[pos + 1] << 8
        if length < 8:  # not frames (cannot happen with the stage's output): cut anywhere
            pos = n
            break
        if pos + length - start > limit and pos > start:
            out.append(data[start:pos])
            start = pos
        pos += length
    out.append(data[start:])
    return out


class GrpcMdServer:
    def __init__(self, sessions: FeedSessions, heartbeat_s: float = 1.0, *, max_message: int = MAX_MESSAGE,
                 stage_timer: bool = False) -> None:
        self.sessions = sessions
        self.heartbeat_s = heartbeat_s
        self.max_message = max_message
        self.stage_timer = stage_timer
        self.streams: dict[int, _Stream] = {}
        self.stats = collections.Counter()
        self._ids = itertools.count(ID_BASE)
        self._server: grpc.aio.Server | None = None
        self._timer: asyncio.Task | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),  # a taken port must fail, not be shared
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", MAX_REQUEST),
        ])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Subscribe": grpc.unary_stream_rpc_method_handler(self._subscribe),
            "Snapshot": grpc.unary_unary_rpc_method_handler(self._snapshot),
        }),))
        addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound = server.add_insecure_port(addr)  # raises (or returns 0 on old grpcio) if it cannot bind
        if not bound:
            raise OSError(f"cannot listen for gRPC on {addr}")
        await server.start()
        self._server = server
        self._timer = asyncio.get_running_loop().create_task(self._tick())
        return bound

    # -- Subscribe -----------------------------------------------------------------------------

    async def _subscribe(self, request: bytes, context):
        st = _Stream(next(self._ids), self.max_message)
        self.streams[st.sub_id] = st
        self.stats["streams"] += 1
        sessions = self.sessions
        sessions.connect(st.sub_id, st)
        context.add_done_callback(lambda _: self._gone(st))  # however the call ends (cancelled mid-send too)
        try:
            ok = sessions.on_bytes(st.sub_id, request)
            sub = sessions.fanout.subscribers.get(st.sub_id)
            subscribed = ok and sub is not None and bool(sub.subs)
            if not subscribed:
                st.finish()  # the ERROR frames, then the end
            while True:
                if st.aborted:
                    break
                if st.chunks:
                    msg = st.take()
                    st.inflight = len(msg)
                    yield msg
                    st.inflight = 0
                    continue
                if st.closing:
                    break
                st.wake.clear()
                await st.wake.wait()
            if st.aborted:
                self.stats["dropped"] += 1
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"slow consumer (reason {int(MdReason.SLOW_CONSUMER)})")
            if not subscribed:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "no subscription: see the ERROR frames" if ok else "bad framing")
        finally:
            self._gone(st)

    def _gone(self, st: _Stream) -> None:
        if self.streams.pop(st.sub_id, None) is not None:
            self.sessions.disconnect(st.sub_id)

    # -- Snapshot ------------------------------------------------------------------------------

    async def _snapshot(self, request: bytes, context) -> bytes:
        source = self.sessions.fanout.source
        out = []
        for item in MdDecoder(CLIENT_MESSAGES).feed(request):
            if isinstance(item, DecodeError):
                out.append(error(item.reason, item.msg_type, item.seq))
                if item.closing:
                    break
                continue
            t, recs = item
            for r in recs:
                seq = int(r["seq"])
                if t == MdMsg.SNAPSHOT_REQUEST:
                    i = int(r["instrument"])
                    if 1 <= i <= source.n_instruments:
                        out.append(source.snapshot(i, int(r["depth"]), BookCause.REQUEST)[1])
                    else:
                        out.append(error(MdReason.UNKNOWN_INSTRUMENT, t, seq))
                elif t != MdMsg.HEARTBEAT:
                    out.append(error(MdReason.BAD_REQUEST, t, seq))
        self.stats["snapshots"] += 1
        return b"".join(out)

    # -- timer and close -----------------------------------------------------------------------

    async def _tick(self) -> None:
        beat = time.monotonic() + self.heartbeat_s
        while True:
            await asyncio.sleep(TIMER_S)
            if self.stage_timer:
                try:
                    self.sessions.on_timer(time.time_ns())
                except Exception:  # the feed must go on
                    log.exception("market-data timer failed")
            if time.monotonic() >= beat:
                beat = time.monotonic() + self.heartbeat_s
                for st in list(self.streams.values()):
                    if not st.wrote:
                        st.write(HEARTBEAT_FRAME)
                    st.wrote = False

    async def close(self, grace: float = 1.0) -> None:
        """End every stream once its queue is sent (the stage's ERROR SHUTDOWN included), then stop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for st in list(self.streams.values()):
            st.finish()
        if self._server is not None:
            if self.streams:
                try:
                    async with asyncio.timeout(grace):
                        while self.streams:
                            await asyncio.sleep(0.01)
                except TimeoutError:
                    pass
            await self._server.stop(0)  # what is left had its grace: a reader that does not read
            self._server = None
