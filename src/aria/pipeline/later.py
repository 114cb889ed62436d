"""Bookkeeping that may wait one loop step: what a pipeline does after the work a person waits for.

A barge-in must reach the transport first: the interrupted answer's ``response_done`` wakes it, and the
turn's closing outputs and the new turn's setup follow. Typed input must reach the model first: the
model's stream starts, and the turn's state and stage follow. :class:`Later` holds that follow-up work:
it runs in the next loop step, after the tasks already woken, or sooner, when its owner calls
:meth:`settle` because input came or something asked about the turn. It always runs in order, and
never nested: work queued from inside queued work waits its turn, so its outputs cannot overtake earlier
ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["Later"]


class Later:
    def __init__(self) -> None:
        #: The work waiting, oldest first (its owner tests it for emptiness on hot paths).
        self.work: deque[Callable[[], None]] = deque()
        self._settling = False

    def add(self, work: Callable[[], None]) -> None:
        """Do ``work`` in the next loop step, or at the next :meth:`settle` if that comes first."""
        if not self.work:
            asyncio.get_running_loop().call_soon(self.settle)
        self.work.append(work)

    def settle(self) -> None:
        """Do the waiting work now, in order; a no-op when there is none, or from inside that work."""
        if self._settling:
            return
        self._settling = True
        try:
            work = self.work
            while work:
                work.popleft()()
        finally:
            self._settling = False
