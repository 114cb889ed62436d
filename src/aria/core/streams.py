"""Stream combinators over async iterables: map, filter, buffer-until, merge and split.

Every combinator is an async generator or an async context manager that owns its tasks, so nothing
outlives the consumer: close the iterator (``contextlib.aclosing``) or leave the ``async with`` and the
work behind it stops.

* :func:`amap` / :func:`afilter`: per-item transforms (sync or async functions);
* :func:`buffer_until`: accumulate items in a :class:`Buffer` and emit when it says (sentence chunking);
* :func:`merge`: interleave several sources as items arrive (audio + vision);
* :func:`split`: fan one source out to independent branches (tokens to the display and to TTS) so that
  neither branch waits on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

from aria.core.aio import aclose_quietly
from aria.core.channels import Channel, Overflow
from aria.errors import ChannelClosed

__all__ = ["Batch", "Buffer", "afilter", "amap", "buffer_until", "merge", "split"]

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
In = TypeVar("In", contravariant=True)
Out = TypeVar("Out")


async def amap(source: AsyncIterable[T], fn: Callable[[T], U | Awaitable[U]]) -> AsyncIterator[U]:
    async for item in source:
        result = fn(item)
        if inspect.isawaitable(result):
            result = await result
        yield result


async def afilter(source: AsyncIterable[T], pred: Callable[[T], bool | Awaitable[bool]]) -> AsyncIterator[T]:
    async for item in source:
        keep = pred(item)
        if inspect.isawaitable(keep):
            keep = await keep
        if keep:
            yield item


class Buffer(Protocol[In, Out]):
    """Accumulates items; ``push`` returns whatever became ready, ``flush`` the rest at the end."""

    def push(self, item: In) -> list[Out]: ...

    def flush(self) -> list[Out]: ...


class Batch(Generic[T]):
    """A :class:`Buffer` that emits the accumulated list when ``boundary(items)`` is true."""

    def __init__(self, boundary: Callable[[list[T]], bool]) -> None:
        self._boundary = boundary
        self._items: list[T] = []

    def push(self, item: T) -> list[list[T]]:
        self._items.append(item)
        if self._boundary(self._items):
            ready, self._items = self._items, []
            return [ready]
        return []

    def flush(self) -> list[list[T]]:
        ready, self._items = self._items, []
        return [ready] if ready else []


async def buffer_until(source: AsyncIterable[In], buffer: Buffer[In, Out]) -> AsyncIterator[Out]:
    """Feed ``source`` through ``buffer``, yielding each chunk as soon as the buffer releases it."""
    async for item in source:
        for ready in buffer.push(item):
            yield ready
    for ready in buffer.flush():
        yield ready


async def merge(*sources: AsyncIterable[T], maxsize: int = 64) -> AsyncIterator[T]:
    """Items from all sources in arrival order; ends when every source has ended.

    An error in any source is raised to the consumer and stops the others."""
    out: Channel[T] = Channel(maxsize, Overflow.BLOCK, name="merge")
    remaining = len(sources)

    async def pump(source: AsyncIterable[T]) -> None:
        nonlocal remaining
        try:
            async for item in source:
                await out.send(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the consumer, not swallowed
            out.close(exc)
            return
        finally:
            await aclose_quietly(source)
        remaining -= 1
        if remaining == 0:
            out.close()

    if not sources:
        return
    tasks = [asyncio.create_task(pump(source), name="merge-pump") for source in sources]
    try:
        async for item in out:
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def split(
    source: AsyncIterable[T],
    branches: int = 2,
    *,
    maxsize: int | None = None,
    policy: Overflow = Overflow.BLOCK,
) -> AsyncIterator[tuple[Channel[T], ...]]:
    """Fan ``source`` out to ``branches`` channels, each receiving every item.

    With the default unbounded branches the pump never waits, so a slow branch (TTS) never delays a
    fast one (the display). Bounded ``block`` branches apply backpressure to the source instead;
    ``drop_oldest`` branches drop. A source error is delivered to every branch after its items.
    Leaving the context stops the pump."""
    if branches < 1:
        raise ValueError("split needs at least one branch")
    outs: tuple[Channel[T], ...] = tuple(Channel(maxsize, policy, name=f"split-{i}") for i in range(branches))

    started = False

    async def pump() -> None:
        nonlocal started
        started = True
        error: BaseException | None = None
        try:
            async for item in source:
                for out in outs:
                    if out.closed:
                        continue
                    if maxsize is None or policy != Overflow.BLOCK:
                        out.send_nowait(item)
                    else:
                        # The branch's reader may close it while we wait: the other branches go on.
                        with contextlib.suppress(ChannelClosed):
                            await out.send(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        finally:
            await aclose_quietly(source)
        for out in outs:
            out.close(error)

    task = asyncio.create_task(pump(), name="split-pump")
    try:
        yield outs
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not started:  # cancelled before its first step, so its own finally never ran
            await aclose_quietly(source)
        for out in outs:
            out.close()
