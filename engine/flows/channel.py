"""A bounded channel between stages: `send` waits while full, `receive` waits while empty,
and end of input travels through it once every producer has closed its end.

Like anyio's memory object streams, but single-loop and allocation-light: waiters sleep on
futures and are woken by the operation that makes room or data, never by polling."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class EndOfStream(Exception):
    """Raised by `receive` once the channel is closed and drained."""


class Channel(Generic[T]):
    def __init__(self, maxsize: int, producers: int = 1) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._producers = producers
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    # -- statistics -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._producers == 0

    def statistics(self) -> dict[str, int]:
        return {"queued": len(self._items), "waiting_receivers": len(self._getters),
                "waiting_senders": len(self._putters), "open_producers": self._producers}

    # -- producers --------------------------------------------------------------------
    async def send(self, item: T) -> bool:
        """Queue `item`; True when it woke a receiver that was waiting for one."""
        while len(self._items) >= self.maxsize:
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                self._forget(self._putters, fut)
                raise
        self._items.append(item)
        return self._wake(self._getters)

    def put_back(self, item: T) -> None:
        """Queue `item` first, past the size limit: work that was set aside comes back ahead
        of new input and never waits for room (the room may be what it frees)."""
        self._items.appendleft(item)
        self._wake(self._getters)

    def open_producer(self) -> None:
        """One more producer (while another still has its end open: an ended channel stays
        ended); the channel does not end until it closes its end too."""
        if self._producers == 0:
            raise RuntimeError("channel already closed")
        self._producers += 1

    def close_producer(self) -> None:
        """One producer is finished; at zero the channel ends after its items drain."""
        if self._producers == 0:
            raise RuntimeError("channel already closed")
        self._producers -= 1
        if self._producers == 0:
            while self._getters:  # every receiver must see the end
                self._wake(self._getters)

    # -- consumers --------------------------------------------------------------------
    async def receive(self, hold: bool = False) -> T:
        """The next item; with `hold`, the receiver also becomes a producer (closed with
        `close_producer` once it is done with the item), so the channel cannot end while the
        item may still put something back."""
        while not self._items:
            if self._producers == 0:
                raise EndOfStream
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                self._forget(self._getters, fut)
                raise
        item = self._items.popleft()
        if hold:
            self._producers += 1
        self._wake(self._putters)
        return item

    def __aiter__(self) -> "Channel[T]":
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EndOfStream:
            raise StopAsyncIteration from None

    # -- internals --------------------------------------------------------------------
    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> bool:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return True
        return False

    def _forget(self, waiters: deque[asyncio.Future[None]], fut: asyncio.Future[None]) -> None:
        # A cancelled waiter may already have been woken; pass the wake-up on so it is not lost.
        if fut in waiters:
            waiters.remove(fut)
        elif fut.done() and not fut.cancelled():
            self._wake(waiters)
