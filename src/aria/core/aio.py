"""Small asyncio helpers shared by every layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

__all__ = ["aclose_quietly", "closing_stream"]

T = TypeVar("T")


async def aclose_quietly(stream: object) -> None:
    """Close an async generator (or anything with ``aclose``); plain iterators need nothing."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Like :func:`contextlib.aclosing`, for any async iterator: an engine's stream is closed (its
    ``finally`` blocks run, its connection is released) as soon as the consumer leaves the block."""
    try:
        yield stream
    finally:
        await aclose_quietly(stream)
