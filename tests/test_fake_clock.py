"""aria.testing.clock.FakeClock: timers fire in order, each at its own time; what they wake runs first."""

from __future__ import annotations

import asyncio

import pytest

from aria.testing.clock import FakeClock


async def test_timers_fire_in_order_each_at_its_own_time() -> None:
    clock = FakeClock(start=10.0)
    fired: list[tuple[str, float]] = []
    clock.call_later(0.3, lambda: fired.append(("c", clock())))
    clock.call_later(0.1, lambda: fired.append(("a", clock())))
    dropped = clock.call_later(0.2, lambda: fired.append(("x", clock())))
    clock.call_later(0.1, lambda: fired.append(("b", clock())))  # same time: in the order scheduled
    dropped.cancel()
    await clock.advance(0.25)
    assert fired == [("a", 10.1), ("b", 10.1)]
    assert clock() == 10.25
    await clock.advance(1.0)
    assert fired[-1] == ("c", 10.3)
    assert clock.pending == 0


async def test_sleep_wakes_when_time_has_moved_and_woken_tasks_run_before_the_next_timer() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        seen.append((name, clock()))
        await clock.sleep(delay)  # scheduled from inside the advance: still fires within it
        seen.append((name, clock()))

    tasks = [asyncio.create_task(sleeper("slow", 0.5)), asyncio.create_task(sleeper("fast", 0.2))]
    await clock.advance(1.0)
    assert seen == [("fast", 0.2), ("fast", 0.4), ("slow", 0.5), ("slow", 1.0)]
    await asyncio.gather(*tasks)


async def test_time_does_not_go_back() -> None:
    with pytest.raises(ValueError, match="does not go back"):
        await FakeClock().advance(-1)
