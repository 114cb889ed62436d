"""A preemptive answer: started at a pause on the transcript so far, held back until the turn is
confirmed (then released at once), or dropped silently if the person goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aria.core.aio import closing_stream
from aria.core.channels import Channel
from aria.pipeline.outputs import Output
from aria.pipeline.turn import Turn
from aria.types import Message

__all__ = ["Held"]


class Held:
    """An answer prepared before the turn was confirmed: its text waits in a channel, its side effects
    (tool runs, notices, errors) wait until :meth:`release`."""

    def __init__(self, turn: Turn, question: Message) -> None:
        self.turn = turn
        #: The person's message it answers (with its picture): the history records this one on release.
        self.question = question
        self.text: Channel[str] = Channel(None, name="held-answer")
        self._outputs: list[Output] = []
        self._forward: Callable[[Output], None] | None = None
        self._released = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(
        self, answer: AsyncIterator[str], spawn: Callable[[Coroutine[Any, Any, None], str], Any]
    ) -> None:
        self.task = spawn(self._pump(answer), "preempt")

    async def _pump(self, answer: AsyncIterator[str]) -> None:
        try:
            async with closing_stream(answer) as pieces:
                async for piece in pieces:
                    self.text.send_nowait(piece)
        finally:
            self.text.close()

    def put(self, _turn: Turn, out: Output) -> None:
        if self._forward is not None:
            self._forward(out)
        else:
            self._outputs.append(out)

    async def confirmed(self, _turn: Turn) -> None:
        await self._released.wait()

    def release(self, put: Callable[[Output], None]) -> AsyncIterator[str]:
        """Let the held answer out: what it said meanwhile, then the rest as it comes."""
        self._forward = put
        for out in self._outputs:
            put(out)
        self._outputs.clear()
        self._released.set()
        return self._stream()

    async def _stream(self) -> AsyncIterator[str]:
        try:
            async for piece in self.text:
                yield piece
        finally:
            self.cancel()

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.text.close()
