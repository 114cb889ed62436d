"""start_now: a task's first step run inside the caller, with the task as the current task."""

from __future__ import annotations

import asyncio

import pytest

from aria.core.aio import start_now


async def test_first_step_runs_inside_the_call_as_the_task_itself() -> None:
    log: list[object] = []
    caller = asyncio.current_task()

    async def work() -> str:
        log.append(("first", asyncio.current_task()))
        await asyncio.sleep(0)
        log.append(("second", asyncio.current_task()))
        return "done"

    task = asyncio.get_running_loop().create_task(work())
    assert log == []
    assert start_now(task) is True
    assert log == [("first", task)]  # before the call returned, as the task
    assert asyncio.current_task() is caller  # and the caller is the current task again
    assert await task == "done"
    assert log == [("first", task), ("second", task)]


async def test_the_step_runs_once() -> None:
    steps: list[int] = []

    async def work() -> None:
        steps.append(1)
        await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(work())
    assert start_now(task) is True
    assert start_now(task) is False  # nothing of it is waiting to start any more
    await task
    assert steps == [1]


async def test_a_task_that_never_waits_is_done_when_the_call_returns() -> None:
    async def work() -> int:
        return 7

    task = asyncio.get_running_loop().create_task(work())
    start_now(task)
    assert task.done()
    assert task.result() == 7


async def test_an_error_in_the_first_step_is_the_tasks_not_the_callers() -> None:
    async def work() -> None:
        raise ValueError("bad request")

    task = asyncio.get_running_loop().create_task(work())
    assert start_now(task) is True  # no exception here
    with pytest.raises(ValueError, match="bad request"):
        await task


async def test_a_timeout_entered_in_the_first_step_cancels_the_task_not_the_caller() -> None:
    async def work() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(10)

    task = asyncio.get_running_loop().create_task(work())
    start_now(task)
    with pytest.raises(TimeoutError):
        await task
    await asyncio.sleep(0.02)  # the caller was not cancelled meanwhile


async def test_nested_starts_each_run_as_their_own_task() -> None:
    seen: list[tuple[str, object]] = []
    loop = asyncio.get_running_loop()

    async def inner() -> None:
        seen.append(("inner", asyncio.current_task()))
        await asyncio.sleep(0)

    async def outer() -> None:
        seen.append(("outer", asyncio.current_task()))
        child = loop.create_task(inner())
        start_now(child)
        seen.append(("outer again", asyncio.current_task()))
        await child

    task = loop.create_task(outer())
    start_now(task)
    child_task = seen[1][1]
    assert [name for name, _ in seen] == ["outer", "inner", "outer again"]
    assert seen[0][1] is task
    assert seen[2][1] is task
    assert child_task not in (task, None)
    await task


async def test_a_task_cancelled_before_it_started_is_cancelled_at_its_first_step() -> None:
    began: list[int] = []

    async def work() -> None:
        began.append(1)

    task = asyncio.get_running_loop().create_task(work())
    task.cancel()
    start_now(task)
    assert task.cancelled()
    assert began == []


async def test_other_work_scheduled_meanwhile_keeps_its_place() -> None:
    order: list[str] = []
    loop = asyncio.get_running_loop()

    async def work() -> None:
        order.append("task")

    task = loop.create_task(work())
    loop.call_soon(order.append, "callback")  # queued after the task's step
    start_now(task)
    assert order == ["task"]
    await asyncio.sleep(0)
    assert order == ["task", "callback"]


def test_from_a_plain_loop_callback_there_is_no_current_task_after() -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        seen: list[object] = []

        async def work() -> None:
            seen.append(asyncio.current_task())

        def callback() -> None:
            task = loop.create_task(work())
            start_now(task)
            seen.append(asyncio.current_task())  # none: a callback runs outside any task

        loop.call_soon(callback)
        await asyncio.sleep(0.01)
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 2
    assert seen[0] is not None
    assert seen[1] is None
