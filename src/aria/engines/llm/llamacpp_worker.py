"""The worker thread of ``llm:llamacpp``: one dedicated thread that runs llama.cpp's blocking calls and
blocking generators for the event loop (:class:`ThreadWorker`), handing each item over with
``call_soon_threadsafe`` through a :class:`~aria.core.channels.Channel`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aria.core.channels import Channel

__all__ = ["ThreadWorker"]

T = TypeVar("T")


class ThreadWorker:
    """One dedicated thread that runs blocking calls and blocking iterators for the event loop, one at a
    time and in order."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._jobs: set[asyncio.Future[None]] = set()
        self._stops: set[threading.Event] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def iterate(self, produce: Callable[[], Iterable[T]]) -> AsyncIterator[T]:
        """Items of ``produce()`` iterated on the worker thread, as they come. Leaving early stops the
        iteration after the item in progress (and closes the iterator); an exception raised on the thread
        is raised here after the items before it."""
        loop = asyncio.get_running_loop()
        channel: Channel[T] = Channel(maxsize=None, name="thread-worker")
        stop = threading.Event()

        def hand_over(call: Callable[..., Any], *args: Any) -> bool:
            try:
                loop.call_soon_threadsafe(call, *args)
                return True
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False

        def work() -> None:
            error: BaseException | None = None
            iterator: Any = None
            try:
                if stop.is_set():
                    return
                iterator = iter(produce())
                for item in iterator:
                    if stop.is_set() or not hand_over(channel.send_nowait, item):
                        break
            except BaseException as exc:  # handed to the consumer, never lost
                error = exc
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception as exc:
                        error = error or exc
                hand_over(channel.close, error)

        job = loop.run_in_executor(self._executor, work)
        self._jobs.add(job)
        self._stops.add(stop)
        job.add_done_callback(self._jobs.discard)
        try:
            async for item in channel:
                yield item
        finally:
            stop.set()
            self._stops.discard(stop)

    async def aclose(self) -> None:
        """Stop every iteration and wait for the thread to finish what it is doing."""
        for stop in list(self._stops):
            stop.set()
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)
        self._executor.shutdown(wait=False)
