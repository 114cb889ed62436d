"""Small asyncio helpers shared by every layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["aclose_quietly", "closing_stream"]

T = TypeVar("T")


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
