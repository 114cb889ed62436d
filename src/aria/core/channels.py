"""Bounded async channels with an explicit overflow policy.

A :class:`Channel` is an asyncio queue that can be closed: receivers drain what is left and then the
async iteration ends (no sentinel values). What happens when it is full is the channel's
:class:`Overflow` policy, chosen per stream:

* ``Overflow.BLOCK``: backpressure, ``send`` waits for room (audio, control, tokens);
* ``Overflow.DROP_OLDEST``: the oldest item is dropped to make room (video frames);
* ``Overflow.sample(n)``: only every n-th item is kept, and the oldest is dropped when full (sensors).

``maxsize=None`` makes a channel unbounded (for tiny items whose producer must never wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from aria.errors import ChannelClosed

__all__ = ["Channel", "ChannelStats", "Overflow"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Overflow:
    """What a full channel does with a new item."""

    kind: str
    every: int = 1

    @classmethod
    def sample(cls, n: int) -> Overflow:
        if n < 1:
            raise ValueError(f"sample(n) needs n >= 1, got {n}")
        return cls("sample", n)

    BLOCK: ClassVar[Overflow]  # assigned below
    DROP_OLDEST: ClassVar[Overflow]


Overflow.BLOCK = Overflow("block")
Overflow.DROP_OLDEST = Overflow("drop_oldest")


@dataclass(slots=True)
class ChannelStats:
    sent: int = 0
    received: int = 0
    dropped: int = 0
    skipped: int = 0


class Channel(Generic[T]):
    """A closable, bounded multi-producer multi-consumer channel."""

    def __init__(
        self, maxsize: int | None = 64, policy: Overflow = Overflow.BLOCK, *, name: str = ""
    ) -> None:
        if maxsize is not None and maxsize < 1:
            raise ValueError(f"maxsize must be >= 1 or None, got {maxsize}")
        self.maxsize = maxsize
        self.policy = policy
        self.name = name
        self.stats = ChannelStats()
        self._items: deque[T] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._error: BaseException | None = None
        self._offered = 0

    def __repr__(self) -> str:
        size = f"{len(self._items)}/{self.maxsize or 'inf'}"
        return (
            f"<Channel {self.name or id(self)} {self.policy.kind} {size}{' closed' if self._closed else ''}>"
        )

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def full(self) -> bool:
        return self.maxsize is not None and len(self._items) >= self.maxsize

    # -- sending -----------------------------------------------------------------------------------

    def send_nowait(self, item: T) -> bool:
        """Offer an item without waiting. Returns False when the policy skipped it (``sample``).

        Raises :class:`ChannelClosed` when closed, and :class:`asyncio.QueueFull` for a full
        ``block`` channel."""
        if self._closed:
            raise ChannelClosed(f"channel {self.name!r} is closed")
        policy = self.policy
        if policy.kind == "sample":
            self._offered += 1
            if (self._offered - 1) % policy.every:
                self.stats.skipped += 1
                return False
        if self.full():
            if policy.kind == "block":
                raise asyncio.QueueFull
            self._items.popleft()
            self.stats.dropped += 1
        self._items.append(item)
        self.stats.sent += 1
        self._wake(self._getters)
        return True

    def force(self, item: T) -> None:
        """Append ``item`` even when full, never dropping anything (small control items that must
        not wait behind backpressure, such as the end of an interrupted answer)."""
        if self._closed:
            raise ChannelClosed(f"channel {self.name!r} is closed")
        self._items.append(item)
        self.stats.sent += 1
        if self._getters:
            self._wake(self._getters)

    async def send(self, item: T) -> bool:
        """Send an item, waiting for room when the policy is ``block``."""
        items = self._items
        room = self.maxsize is None or (len(items) < self.maxsize and not self._putters)
        if room and not self._closed and self.policy.kind != "sample":  # the common case, inline
            items.append(item)
            self.stats.sent += 1
            if self._getters:
                self._wake(self._getters)
            return True
        while self.policy.kind == "block" and self.full():
            if self._closed:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                self._discard_waiter(self._putters, waiter)
                # Pass the wake-up on if room appeared while we were being cancelled.
                if not self.full():
                    self._wake(self._putters)
                raise
        return self.send_nowait(item)

    def close(self, error: BaseException | None = None) -> None:
        """No more items will be sent; receivers drain what is buffered, then iteration ends.

        With ``error``, receivers get that exception after the buffered items instead of the end
        (how a producer's failure reaches its consumers)."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        for waiters in (self._getters, self._putters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def discard(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove and return buffered items that match ``predicate`` (e.g. audio of a cancelled turn)."""
        removed = [item for item in self._items if predicate(item)]
        if removed:
            kept = [item for item in self._items if not predicate(item)]
            self._items.clear()
            self._items.extend(kept)
            self.stats.dropped += len(removed)
            for _ in removed:
                self._wake(self._putters)
        return removed

    # -- receiving ---------------------------------------------------------------------------------

    def receive_nowait(self) -> T:
        if self._items:
            item = self._items.popleft()
            self.stats.received += 1
            if self._putters:
                self._wake(self._putters)
            return item
        if self._closed:
            if self._error is not None:
                raise self._error
            raise ChannelClosed(f"channel {self.name!r} is closed")
        raise asyncio.QueueEmpty

    async def receive(self) -> T:
        """The next item; raises :class:`ChannelClosed` once the channel is closed and drained."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise ChannelClosed(f"channel {self.name!r} is closed") from None

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        # One frame per item, and no exception raised and caught at the end: every consumer of a
        # pipeline's outputs takes each text piece and audio block this way.
        items = self._items
        while not items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                self._discard_waiter(self._getters, waiter)
                if items:  # pass the wake-up on: this receiver will not take the item
                    self._wake(self._getters)
                raise
        item = items.popleft()
        self.stats.received += 1
        if self._putters:
            self._wake(self._putters)
        return item

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @staticmethod
    def _discard_waiter(waiters: deque[asyncio.Future[None]], waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by a wake-up
            waiters.remove(waiter)
