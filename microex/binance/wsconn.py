"""Outbox: one WebSocket connection's outgoing messages, written by its own task.

How it works: producers (the replica's hooks, timers) call `send(obj)`, which
encodes the message once and queues it without awaiting, so a slow client never
holds up the edge's poll loop. One writer task per connection drains the queue.
A connection with more than `max_queued` unsent messages is a slow consumer: it is
closed (code 1008, "slow consumer"), as Binance disconnects clients that do not
keep up, and its queue dropped.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web

log = logging.getLogger(__name__)
_enc = msgspec.json.Encoder()


class Outbox:
    def __init__(self, ws: web.WebSocketResponse, max_queued: int = 10_000) -> None:
        self.ws = ws
        self.max_queued = max_queued
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._writer())

    def send(self, obj) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.max_queued:
            self.closed = True
            asyncio.get_running_loop().create_task(self.ws.close(code=1008, message=b"slow consumer"))
            return
        self.queue.put_nowait(obj if isinstance(obj, str) else _enc.encode(obj).decode())

    async def _writer(self) -> None:
        try:
            while True:
                text = await self.queue.get()
                if text is None or self.ws.closed:
                    return
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        except Exception:  # never let a writer die loudly: the connection just ends
            log.exception("websocket writer failed")

    async def close(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)
        try:
            await asyncio.wait_for(self.task, 1.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.task.cancel()
