"""A fake clock for code that takes one: time moves only when the test says so.

Pass the clock itself where code wants ``clock: Callable[[], float]`` (calling it gives now), its
:meth:`FakeClock.call_later` where code schedules a wake-up, and :meth:`FakeClock.sleep` where it sleeps.
:meth:`FakeClock.advance` moves time forward, firing each timer at its own moment in order, and lets the
event loop run the tasks each one woke before the next; so a test asserts exact times, never "about".
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

__all__ = ["FakeClock", "FakeTimer"]

#: Loop turns given to woken tasks after each timer (enough for a chain of a few awaits).
_SETTLE_TURNS = 20


class FakeTimer:
    """One scheduled callback; :meth:`cancel` keeps it from firing."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Seconds on a time line of its own, starting at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + max(0.0, delay), callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        """Until :meth:`advance` has moved time ``delay`` seconds on."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.call_later(delay, wake)
        try:
            await woken
        finally:
            timer.cancel()

    @property
    def pending(self) -> int:
        """Timers scheduled and not cancelled."""
        return sum(not t.cancelled for _, _, t in self._timers)

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` on: each due timer fires at its own time, in order, and the tasks it woke
        run (and may schedule more timers) before the next fires."""
        if seconds < 0:
            raise ValueError(f"time does not go back ({seconds})")
        target = self.now + seconds
        await _settle()
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.callback()
            await _settle()
        self.now = target
        await _settle()


async def _settle() -> None:
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)
