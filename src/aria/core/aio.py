"""Small asyncio helpers shared by every layer."""

from __future__ import annotations

import asyncio
import asyncio.tasks
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["aclose_quietly", "closing_stream", "start_now"]

T = TypeVar("T")


def _swap_current_311(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> Any:
    current = asyncio.tasks._current_tasks  # type: ignore[attr-defined]
    previous = current.pop(loop, None)
    if task is not None:
        current[loop] = task
    return previous


# Make ``task`` the loop's current task and return the one before (3.12+ has this; 3.11 keeps a dict).
_swap_current: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any] | None], Any] | None = getattr(
    asyncio.tasks, "_swap_current_task", None
) or (_swap_current_311 if hasattr(asyncio.tasks, "_current_tasks") else None)


def start_now(task: asyncio.Task[Any]) -> bool:
    """Run ``task``'s first step now, inside the caller, up to its coroutine's first real wait, instead of
    on the loop's next iteration: what Python 3.12's eager tasks do, but after the caller has recorded
    the task (an eager task may finish, and start the next one, before its constructor returns).

    The step is the one ``create_task`` scheduled, taken off the loop's ready queue and run with the task
    as the current task (``asyncio.timeout`` and cancel scopes in it bind to it, as in any step). Where
    the loop is not asyncio's own (uvloop) or the step is not found, nothing happens: the task starts on
    the next iteration as usual. Returns whether the step ran."""
    coro, loop = task.get_coro(), task.get_loop()
    ready = getattr(loop, "_ready", None)
    if ready is None or _swap_current is None or getattr(coro, "cr_frame", None) is None:
        return False
    if getattr(coro, "cr_suspended", True) or coro.cr_running:  # type: ignore[union-attr]
        return False  # started already: only a first step is taken early
    for index in range(len(ready) - 1, max(len(ready) - 8, 0) - 1, -1):  # scheduled just now: at the end
        handle = ready[index]
        if getattr(handle._callback, "__self__", None) is task and not handle._cancelled:
            break
    else:
        return False
    del ready[index]
    outer = _swap_current(loop, None)
    try:
        handle._run()
    finally:
        _swap_current(loop, outer)
    return True


async def aclose_quietly(stream: object) -> None:
    """Close an async generator (or anything with ``aclose``); plain iterators need nothing."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class closing_stream(Generic[T]):  # lower case: used like the function it replaced
    """Like :func:`contextlib.aclosing`, for any async iterator: an engine's stream is closed (its
    ``finally`` blocks run, its connection is released) as soon as the consumer leaves the block.

    A class, not an ``@asynccontextmanager``: a generator-based manager costs a generator, its frame and
    two more steps each time it is entered. (The answer's hot path, from the input to the model and from a
    clause to TTS, uses ``try``/``finally`` with :func:`aclose_quietly` itself: not even this.)"""

    __slots__ = ("stream",)

    def __init__(self, stream: AsyncIterator[T]) -> None:
        self.stream = stream

    async def __aenter__(self) -> AsyncIterator[T]:
        return self.stream

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await aclose_quietly(self.stream)
