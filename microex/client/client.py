"""The asyncio client SDK: one logged-in binary-protocol session, with awaitable acks and reconnects.

How it works. `Client.connect` opens a TCP connection (an `asyncio.Protocol`, not
streams, TCP_NODELAY), sends LOGIN and waits for LOGIN_ACK. Every byte goes
through a sans-I/O `ClientProtocol` (microex/client/protocol.py); this module
only moves bytes, keeps futures and runs two timers (heartbeats, reconnect).

- Client order ids come from one counter for the Client object's whole life
  (across reconnects too); an explicit `client_order_id` moves the counter past it.
- `place` resolves at the order's first report (EXEC_ACCEPTED or EXEC_REJECTED);
  `cancel` at EXEC_CANCELLED or EXEC_REJECTED; `modify` at EXEC_MODIFIED or
  EXEC_REJECTED; several requests in flight for one id are matched to their
  answers by protocol.answered_request. Every report, whether it
  resolves a future or not (fills, IOC remainders...), goes to every
  `on_report` callback, in stream order.
- Heartbeats: a HEARTBEAT when nothing was sent for heartbeat_ms (LOGIN_ACK);
  a gateway silent for 3 intervals is a lost connection. So is a PROTOCOL_ERROR
  (the gateway skipped one of our frames, which will never be answered) and a
  frame from the gateway that cannot be resynced.
- `*_nowait` calls never block; pipelining callers `await drain()` now and then
  (the transport's high-water mark) so memory stays bounded.
- Reconnect: when the connection drops and `close()` was not called, pending
  futures fail with ConnectionError (the client cannot know their outcome),
  and with reconnect=True the client reconnects with exponential back-off and
  logs in again (a LoginError then ends it for good). The gateway maps client
  ids per session: orders of the old session can no longer be cancelled or
  modified by client id through the new one (the new session answers
  UNKNOWN_ORDER) and their later reports are not delivered; log in with
  cancel_on_disconnect=True to have the gateway cancel them when the connection
  drops. `orders` (the local view of open orders) covers the current session only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from microex.client.protocol import (
    ClientProtocol,
    ClientState,
    ExecReport,
    LoginAccepted,
    LoginRejected,
    Logout,
    ProtocolError,
    ProtocolViolation,
    answered_request,
    reason_name,
)
from microex.core.records import OrdType, Tif
from microex.protocol.binary import NEW_ORDER, MsgType

log = logging.getLogger(__name__)

ReportCallback = Callable[[ExecReport], None]

_LOGOUT_WAIT_S = 1.0


class LoginError(ConnectionError):
    """The gateway refused the login (reason: AUTH_FAILED, UNSUPPORTED_VERSION...)."""

    def __init__(self, reason: int) -> None:
        self.reason = reason
        super().__init__(f"login rejected: {reason_name(reason)}")


@dataclass(slots=True)
class OpenOrder:
    client_order_id: int
    instrument: int
    side: int
    price_ticks: int
    qty_lots: int
    leaves_lots: int


class _Pending:
    __slots__ = ("request", "future")

    def __init__(self, request: MsgType, future: asyncio.Future) -> None:
        self.request, self.future = request, future


class _Link(asyncio.Protocol):
    """One TCP connection: hands bytes to the Client, remembers when it is gone."""

    def __init__(self, client: Client, proto: ClientProtocol, login: asyncio.Future) -> None:
        self.client, self.proto, self.login = client, proto, login
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.writable: asyncio.Future | None = None  # set while the transport's buffer is over its high mark

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.client._on_data(self, data)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def connection_lost(self, exc) -> None:
        self.proto.connection_lost()
        for fut in (self.lost, self.writable):
            if fut is not None and not fut.done():
                fut.set_result(None)
        if not self.login.done():
            self.login.set_exception(ConnectionError("connection closed before LOGIN_ACK"))
        self.client._on_lost(self)


class Client:
    """A logged-in session with the gateway; create it with `await Client.connect(...)`."""

    def __init__(self, host: str, port: int, api_key: bytes, *, cancel_on_disconnect: bool = False,
                 reconnect: bool = True, timeout: float = 5.0, reconnect_delay_s: float = 0.05,
                 max_reconnect_delay_s: float = 2.0) -> None:
        self.host, self.port = host, port
        self.api_key = api_key.encode() if isinstance(api_key, str) else bytes(api_key)
        self.cancel_on_disconnect, self.reconnect, self.timeout = cancel_on_disconnect, reconnect, timeout
        self.reconnect_delay_s, self.max_reconnect_delay_s = reconnect_delay_s, max_reconnect_delay_s
        self.session = self.account = 0  # of the current (or last) login
        self.reconnects = 0  # successful reconnects so far
        self.last_error: BaseException | None = None  # why the last connection or attempt ended
        self.orders: dict[int, OpenOrder] = {}  # open orders of the current session, by client id
        self._link: _Link | None = None  # the logged-in connection, if any
        self._next_cid = 1
        self._callbacks: list[ReportCallback] = []
        self._pending: dict[int, list[_Pending]] = {}  # per client id, oldest first
        self._closing = False
        self._closed = False  # for good: close() or a failed re-login
        self._connected = asyncio.Event()
        self._heartbeat_task: asyncio.Task | None = None
        self._reconnect_task: asyncio.Task | None = None

    @classmethod
    async def connect(cls, host: str, port: int, api_key: bytes, *, cancel_on_disconnect: bool = False,
                      reconnect: bool = True, on_report: ReportCallback | None = None, timeout: float = 5.0,
                      **options) -> Client:
        """Connect and log in; raises LoginError (with the reason code and name) or ConnectionError.
        `options`: reconnect_delay_s, max_reconnect_delay_s (the back-off's first and longest delay)."""
        client = cls(host, port, api_key, cancel_on_disconnect=cancel_on_disconnect, reconnect=reconnect,
                     timeout=timeout, **options)
        if on_report is not None:
            client.on_report(on_report)
        await client._open()
        return client

    async def __aenter__(self) -> Client:  # `async with await Client.connect(...) as client:`
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._link is not None

    def on_report(self, callback: ReportCallback) -> ReportCallback:
        """Call `callback(report)` for every execution report (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until logged in (e.g. after a reconnect); ConnectionError if the client closed for good."""
        async with asyncio.timeout(timeout):
            while self._link is None:
                if self._closed:
                    raise ConnectionError("client closed") from self.last_error
                await self._connected.wait()

    # -- connection --------------------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        proto = ClientProtocol()
        login = loop.create_future()
        link: _Link | None = None
        try:
            async with asyncio.timeout(self.timeout):
                _, link = await loop.create_connection(lambda: _Link(self, proto, login), self.host, self.port)
                link.transport.write(proto.login(self.api_key, self.cancel_on_disconnect))
                await login
        except BaseException as e:
            if link is not None and link is not self._link:
                link.transport.abort()  # never leave a half-open connection behind (cancel included)
            if isinstance(e, TimeoutError):
                raise ConnectionError(f"no LOGIN_ACK from {self.host}:{self.port} within {self.timeout}s") from e
            if isinstance(e, OSError) and not isinstance(e, ConnectionError):
                raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {e}") from e
            raise

    def _logged_in(self, link: _Link, ack: LoginAccepted) -> None:
        if link.login.done():  # _open gave up on this connection (timeout, cancel)
            link.transport.abort()
            return
        if self.session:
            self.reconnects += 1
        self.session, self.account = ack.session, ack.account
        self._link = link
        self._connected.set()
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeats(link))
        link.login.set_result(ack)

    def _on_lost(self, link: _Link) -> None:
        if link is not self._link:
            return  # a connection that never logged in: _open reports it
        self._link = None
        self._connected.clear()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        self._fail_pending(ConnectionError("connection lost; outcome unknown"))
        self.orders.clear()
        if self._closing or not self.reconnect:
            self._set_closed()
        elif self._reconnect_task is None:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self.reconnect_delay_s
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self._open()  # counts itself in reconnects
                    return
                except LoginError as e:  # the key no longer works: retrying would not help
                    self.last_error = e
                    self._set_closed()
                    return
                except ConnectionError as e:
                    self.last_error = e
                delay = min(delay * 2, self.max_reconnect_delay_s)
        finally:
            self._reconnect_task = None

    def _set_closed(self) -> None:
        self._closed = True
        self._connected.set()  # wakes wait_connected, which then raises

    async def _heartbeats(self, link: _Link) -> None:
        period = max(link.proto.heartbeat_ms / 4000, 0.005)  # a quarter interval: sent within 1.25 intervals
        while link is self._link:
            await asyncio.sleep(period)
            data, silent = link.proto.on_timer()
            if silent:
                self.last_error = ConnectionError("gateway silent for 3 heartbeat intervals")
                link.transport.abort()  # connection_lost follows, then the reconnect
                return
            if data:
                link.transport.write(data)

    async def close(self) -> None:
        """LOGOUT, wait briefly for the gateway's LOGOUT/close, then close; no reconnect after it."""
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        link = self._link
        if link is not None:
            if link.proto.state is ClientState.LOGGED_IN and not link.transport.is_closing():
                link.transport.write(link.proto.logout())
                try:
                    await asyncio.wait_for(asyncio.shield(link.lost), _LOGOUT_WAIT_S)
                except TimeoutError:
                    pass
            link.transport.close()
            await asyncio.sleep(0)  # let connection_lost run
        self._fail_pending(ConnectionError("client closed"))
        self._set_closed()

    # -- requests ----------------------------------------------------------------------------------

    def _live(self) -> _Link:
        link = self._link
        if link is None or link.transport.is_closing():
            raise ConnectionError("not connected" + (" (closed)" if self._closed else " (reconnecting)"))
        return link

    def _take_cid(self, client_order_id: int | None) -> int:
        if client_order_id is None:
            cid = self._next_cid
            self._next_cid += 1
            return cid
        self._next_cid = max(self._next_cid, client_order_id + 1)
        return client_order_id

    def _expect(self, cid: int, request: MsgType) -> asyncio.Future:
        entry = _Pending(request, asyncio.get_running_loop().create_future())
        q = self._pending.get(cid)
        if q is None:
            q = self._pending[cid] = []
        q.append(entry)
        return entry.future

    def place_nowait(self, instrument: int, side: int, price_ticks: int, qty_lots: int, ord_type: int = OrdType.LIMIT,
                     tif: int = Tif.GTC, flags: int = 0, client_order_id: int | None = None) -> int:
        """Send a NEW_ORDER without waiting; returns its client order id (reports go to callbacks)."""
        link = self._live()
        cid = self._take_cid(client_order_id)
        link.transport.write(link.proto.new_order(cid, instrument, side, price_ticks, qty_lots, ord_type, tif, flags))
        return cid

    async def place(self, instrument: int, side: int, price_ticks: int, qty_lots: int, ord_type: int = OrdType.LIMIT,
                    tif: int = Tif.GTC, flags: int = 0, client_order_id: int | None = None) -> ExecReport:
        """Send a NEW_ORDER; returns its EXEC_ACCEPTED or EXEC_REJECTED report."""
        link = self._live()
        cid = self._take_cid(client_order_id)
        data = link.proto.new_order(cid, instrument, side, price_ticks, qty_lots, ord_type, tif, flags)
        fut = self._expect(cid, MsgType.NEW_ORDER)  # after encoding: a ValueError leaves nothing pending
        link.transport.write(data)
        return await fut

    def place_batch_nowait(self, orders: np.ndarray) -> np.ndarray:
        """Many orders in one write. `orders`: records with NEW_ORDER's body fields (see
        protocol.order_records); their client_order_id is replaced by fresh ids, returned."""
        link = self._live()
        n = len(orders)
        recs = np.zeros(n, dtype=NEW_ORDER)
        for name in ("price_ticks", "qty_lots", "instrument", "side", "ord_type", "tif", "flags"):
            recs[name] = orders[name]
        cids = np.arange(self._next_cid, self._next_cid + n, dtype=np.uint64)
        self._next_cid += n
        recs["client_order_id"] = cids
        link.transport.write(link.proto.new_orders(recs))
        return cids

    async def cancel(self, client_order_id: int) -> ExecReport:
        """Send a CANCEL; returns the EXEC_CANCELLED or EXEC_REJECTED report for that id."""
        link = self._live()
        data = link.proto.cancel(client_order_id)
        fut = self._expect(client_order_id, MsgType.CANCEL)
        link.transport.write(data)
        return await fut

    async def modify(self, client_order_id: int, price_ticks: int, qty_lots: int) -> ExecReport:
        """Send a MODIFY (new price, new leaves); returns the EXEC_MODIFIED or EXEC_REJECTED report."""
        link = self._live()
        data = link.proto.modify(client_order_id, price_ticks, qty_lots)
        fut = self._expect(client_order_id, MsgType.MODIFY)
        link.transport.write(data)
        return await fut

    def cancel_nowait(self, client_order_id: int) -> None:
        link = self._live()
        link.transport.write(link.proto.cancel(client_order_id))

    async def drain(self) -> None:
        """Until the socket's send buffer is below its high-water mark: pipelining *_nowait callers
        await it now and then so an unread connection does not grow memory without bound."""
        link = self._live()
        if link.writable is not None:
            await link.writable

    # -- bytes in ----------------------------------------------------------------------------------

    def _on_data(self, link: _Link, data: bytes) -> None:
        for ev in link.proto.feed(data):
            if type(ev) is ExecReport:
                self._report(ev)
            elif type(ev) is LoginAccepted:
                self._logged_in(link, ev)
            elif type(ev) is LoginRejected:
                self.last_error = LoginError(ev.reason)
                if not link.login.done():
                    link.login.set_exception(self.last_error)
                link.transport.close()
            elif type(ev) is Logout:
                if ev.reason:
                    self.last_error = ConnectionError(f"gateway logged out: {reason_name(ev.reason)}")
                link.transport.close()
            elif type(ev) is ProtocolError:
                # the gateway refused one of our frames: it and this client disagree about the protocol,
                # and that request will never be answered; start afresh (pending requests fail)
                self.last_error = ConnectionError(f"gateway protocol error: {reason_name(ev.reason)} "
                                                  f"(frame type {ev.ref_type}, seq {ev.ref_seq})")
                link.transport.abort()
            elif type(ev) is ProtocolViolation:
                log.warning("bad frame from the gateway: %s (%s)", reason_name(ev.reason), ev)
                if ev.closing:
                    self.last_error = ConnectionError(f"gateway stream unusable: {reason_name(ev.reason)}")
                    link.transport.abort()

    def _report(self, r: ExecReport) -> None:
        q = self._pending.get(r.client_order_id)
        if q:
            i = answered_request([e.request for e in q], r)
            if i is not None:
                entry = q[i]
                del q[i]
                if not q:
                    del self._pending[r.client_order_id]
                if not entry.future.done():  # done: the awaiting task was cancelled
                    entry.future.set_result(r)
        self._track(r)
        for cb in self._callbacks:
            try:
                cb(r)
            except Exception:  # a bad callback must not stop the reports of the others
                log.exception("on_report callback failed for %s", r)

    def _track(self, r: ExecReport) -> None:
        """The local view of open orders: in on ACCEPTED (if it rests), out at leaves 0 or CANCELLED."""
        kind, cid = r.kind, r.client_order_id
        if kind == MsgType.EXEC_ACCEPTED and r.leaves_lots > 0:
            self.orders[cid] = OpenOrder(cid, r.instrument, r.side, r.price_ticks, r.qty_lots, r.leaves_lots)
        elif (kind == MsgType.EXEC_FILL or kind == MsgType.EXEC_MODIFIED) and cid in self.orders:
            o = self.orders[cid]
            o.leaves_lots = r.leaves_lots
            if kind == MsgType.EXEC_MODIFIED:
                o.price_ticks = r.price_ticks
            if o.leaves_lots <= 0:
                del self.orders[cid]
        elif kind == MsgType.EXEC_CANCELLED:
            self.orders.pop(cid, None)

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for q in pending.values():
            for entry in q:
                if not entry.future.done():
                    entry.future.set_exception(exc)
