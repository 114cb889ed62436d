"""Tests for aria.core.streams: amap, afilter, buffer_until, merge and split."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing

import pytest

from aria.core.channels import Channel, Overflow
from aria.core.streams import Batch, afilter, amap, buffer_until, merge, split
from aria.errors import ChannelClosed


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def aiter_of(items: Iterable[object]) -> AsyncIterator[object]:
    for item in items:
        yield item


async def collect(stream: AsyncIterator[object] | Channel[object]) -> list[object]:
    return [item async for item in stream]


async def collect_into(stream: AsyncIterator[object] | Channel[object], out: list[object]) -> None:
    """Append each item to ``out`` (so that a test can see what came before an error)."""
    async with contextlib.AsyncExitStack() as stack:
        if hasattr(stream, "aclose"):
            await stack.enter_async_context(aclosing(stream))  # type: ignore[arg-type]
        async for item in stream:
            out.append(item)


class Tracked:
    """An async iterator (not a generator) that counts ``aclose`` calls and can be fed by the test."""

    def __init__(self, items: Iterable[object] = (), *, then_wait: bool = False) -> None:
        self.items = list(items)
        self.then_wait = then_wait
        self.produced = 0
        self.aclose_calls = 0
        self._forever = asyncio.Event()

    def __aiter__(self) -> Tracked:
        return self

    async def __anext__(self) -> object:
        if self.items:
            self.produced += 1
            return self.items.pop(0)
        if self.then_wait:
            await self._forever.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.aclose_calls += 1


class Fed:
    """An async generator fed item by item through a channel, recording whether it was closed."""

    def __init__(self) -> None:
        self.inbox: Channel[object] = Channel(None)
        self.closed = False
        self.produced: list[object] = []

    async def stream(self) -> AsyncIterator[object]:
        try:
            async for item in self.inbox:
                self.produced.append(item)
                yield item
        finally:
            self.closed = True


# -- amap / afilter -----------------------------------------------------------------------------


async def test_amap_with_sync_function() -> None:
    assert await collect(amap(aiter_of([1, 2, 3]), lambda x: x * 10)) == [10, 20, 30]


async def test_amap_with_async_function_keeps_order() -> None:
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.001 * (3 - x))
        return 2 * x

    assert await collect(amap(aiter_of([0, 1, 2]), slow_double)) == [0, 2, 4]


async def test_amap_with_function_returning_awaitable_sometimes() -> None:
    async def later(x: int) -> str:
        return f"async {x}"

    def mixed(x: int) -> object:
        return later(x) if x % 2 else f"sync {x}"

    assert await collect(amap(aiter_of(range(4)), mixed)) == ["sync 0", "async 1", "sync 2", "async 3"]


async def test_amap_of_empty_source() -> None:
    assert await collect(amap(aiter_of([]), str)) == []


async def test_amap_propagates_function_errors_after_earlier_items() -> None:
    seen: list[object] = []

    def invert(x: int) -> float:
        return 1 / x

    with pytest.raises(ZeroDivisionError):
        await collect_into(amap(aiter_of([1, 2, 0, 4]), invert), seen)
    assert seen == [1.0, 0.5]


async def test_afilter_with_sync_predicate() -> None:
    assert await collect(afilter(aiter_of(range(10)), lambda x: x % 3 == 0)) == [0, 3, 6, 9]


async def test_afilter_with_async_predicate() -> None:
    async def is_word(x: str) -> bool:
        await asyncio.sleep(0)
        return x.isalpha()

    assert await collect(afilter(aiter_of(["a", "1", "bc", " ", "d"]), is_word)) == ["a", "bc", "d"]


async def test_afilter_uses_truthiness() -> None:
    assert await collect(afilter(aiter_of(["", "x", 0, 3, None]), lambda x: x)) == ["x", 3]  # type: ignore[arg-type,return-value]


# -- Batch / buffer_until -----------------------------------------------------------------------


def test_batch_emits_when_boundary_holds_and_flushes_the_rest() -> None:
    batch: Batch[int] = Batch(lambda items: sum(items) >= 5)
    assert batch.push(2) == []
    assert batch.push(2) == []
    assert batch.push(1) == [[2, 2, 1]]
    assert batch.push(9) == [[9]]
    assert batch.push(1) == []
    assert batch.flush() == [[1]]
    assert batch.flush() == []


async def test_buffer_until_groups_items_and_flushes_the_tail() -> None:
    chunks = await collect(buffer_until(aiter_of(range(8)), Batch(lambda items: len(items) == 3)))
    assert chunks == [[0, 1, 2], [3, 4, 5], [6, 7]]


async def test_buffer_until_has_no_empty_tail() -> None:
    chunks = await collect(buffer_until(aiter_of(range(4)), Batch(lambda items: len(items) == 2)))
    assert chunks == [[0, 1], [2, 3]]


async def test_buffer_until_of_empty_source_is_empty() -> None:
    assert await collect(buffer_until(aiter_of([]), Batch(lambda items: True))) == []


async def test_buffer_until_yields_a_chunk_before_reading_further() -> None:
    fed = Fed()
    out: list[object] = []

    async def consume() -> None:
        async for chunk in buffer_until(fed.stream(), Batch(lambda items: items[-1] == ".")):
            out.append(chunk)

    consumer = asyncio.create_task(consume())
    for token in ["Hi", "."]:
        fed.inbox.send_nowait(token)
    await settle()
    assert out == [["Hi", "."]]  # released without waiting for the next token or the end
    fed.inbox.send_nowait("More")
    await settle()
    assert out == [["Hi", "."]]
    fed.inbox.close()
    await asyncio.wait_for(consumer, 1)
    assert out == [["Hi", "."], ["More"]]


# -- merge --------------------------------------------------------------------------------------


async def test_merge_interleaves_by_arrival_time() -> None:
    async def timed(name: str, delays: list[float]) -> AsyncIterator[str]:
        for i, delay in enumerate(delays):
            await asyncio.sleep(delay)
            yield f"{name}{i}"

    # a at ~1 ms and ~9 ms, b at ~5 ms and ~13 ms
    items = await collect(merge(timed("a", [0.001, 0.008]), timed("b", [0.005, 0.008])))
    assert items == ["a0", "b0", "a1", "b1"]


async def test_merge_interleaves_as_items_arrive() -> None:
    left, right = Fed(), Fed()
    got: list[object] = []

    async def consume() -> None:
        async for item in merge(left.stream(), right.stream()):
            got.append(item)

    consumer = asyncio.create_task(consume())
    for source, item in [(right, "r1"), (left, "l1"), (left, "l2"), (right, "r2"), (left, "l3")]:
        source.inbox.send_nowait(item)
        await settle()
        assert got[-1] == item  # delivered as soon as it arrived
    left.inbox.close()
    await settle()
    assert not consumer.done()  # right is still open
    right.inbox.send_nowait("r3")
    right.inbox.close()
    await asyncio.wait_for(consumer, 1)
    assert got == ["r1", "l1", "l2", "r2", "l3", "r3"]


async def test_merge_ends_when_every_source_has_ended() -> None:
    sources = [aiter_of(range(5)), aiter_of("abc"), aiter_of([])]
    items = await asyncio.wait_for(collect(merge(*sources)), 2)
    assert len(items) == 8
    assert [x for x in items if isinstance(x, int)] == [0, 1, 2, 3, 4]
    assert [x for x in items if isinstance(x, str)] == ["a", "b", "c"]


async def test_merge_of_nothing_is_empty() -> None:
    assert await collect(merge()) == []


async def test_merge_closes_sources_that_end() -> None:
    a, b = Tracked([1, 2]), Tracked([3])
    assert sorted(await collect(merge(a, b))) == [1, 2, 3]  # type: ignore[type-var]
    assert (a.aclose_calls, b.aclose_calls) == (1, 1)


async def test_merge_raises_a_source_error_after_earlier_items_and_closes_the_others() -> None:
    other = Fed()
    endless = Tracked(["t0"], then_wait=True)

    async def failing() -> AsyncIterator[object]:
        yield "f0"
        await asyncio.sleep(0.002)
        raise ValueError("source broke")

    got: list[object] = []
    with pytest.raises(ValueError, match="source broke"):
        await collect_into(merge(failing(), other.stream(), endless), got)
    assert sorted(got) == ["f0", "t0"]  # type: ignore[type-var]
    assert other.closed  # the async generator source was closed (its finally ran)
    assert endless.aclose_calls == 1


async def test_merge_error_reaches_consumer_even_while_others_keep_producing() -> None:
    async def chatty() -> AsyncIterator[int]:
        i = 0
        while True:
            await asyncio.sleep(0.001)
            i += 1
            yield i

    async def failing() -> AsyncIterator[int]:
        await asyncio.sleep(0.005)
        raise RuntimeError("late failure")
        yield 0  # pragma: no cover - makes this an async generator

    with pytest.raises(RuntimeError, match="late failure"):
        await asyncio.wait_for(collect(merge(chatty(), failing())), 2)


async def test_closing_the_merged_stream_early_closes_every_source() -> None:
    a, b = Fed(), Fed()
    a.inbox.send_nowait("a0")
    async with aclosing(merge(a.stream(), b.stream())) as merged:
        assert await anext(merged) == "a0"
    assert a.closed
    assert b.closed


async def test_merge_applies_backpressure_to_fast_sources() -> None:
    source = Tracked(range(100))
    async with aclosing(merge(source, maxsize=2)) as merged:
        assert await anext(merged) == 0
        await settle()
        # one item taken, two buffered, one waiting in the pump: far from all 100
        assert source.produced <= 5
    assert source.aclose_calls == 1


# -- split --------------------------------------------------------------------------------------


async def test_split_needs_a_branch() -> None:
    with pytest.raises(ValueError, match="at least one branch"):
        async with split(aiter_of([]), 0):
            pass  # pragma: no cover


async def test_split_gives_every_branch_every_item_in_order() -> None:
    items = list(range(50))
    async with split(aiter_of(items), 3) as branches:
        assert len(branches) == 3
        results = await asyncio.wait_for(asyncio.gather(*(collect(b) for b in branches)), 2)
    assert results == [items, items, items]


async def test_split_an_unread_branch_does_not_delay_the_other() -> None:
    fed = Fed()
    shown: list[object] = []
    async with split(fed.stream()) as (display, speech):

        async def show() -> None:
            async for token in display:
                shown.append(token)

        shower = asyncio.create_task(show())
        for i in range(200):
            fed.inbox.send_nowait(i)
            await settle(3)
            assert shown[-1:] == [i]  # each token reaches the display at once, speech is never read
        fed.inbox.close()
        await asyncio.wait_for(shower, 1)
        assert shown == list(range(200))
        assert len(speech) == 200  # everything kept for the slow branch
        assert speech.closed
        assert await collect(speech) == list(range(200))


async def test_split_a_slow_branch_does_not_delay_the_other() -> None:
    tokens = [f"t{i}" for i in range(30)]
    shown_at: list[int] = []
    spoken: list[object] = []
    progress = 0

    async def source() -> AsyncIterator[str]:
        nonlocal progress
        for token in tokens:
            progress += 1
            yield token
            await asyncio.sleep(0)

    async with split(source()) as (display, speech):

        async def show() -> None:
            async for _ in display:
                shown_at.append(progress)

        async def speak() -> None:
            async for token in speech:
                await asyncio.sleep(0.005)  # a slow TTS
                spoken.append(token)

        speaker = asyncio.create_task(speak())
        await asyncio.wait_for(show(), 1)
        assert len(shown_at) == 30
        assert len(spoken) < 30  # the display finished long before the speech
        await asyncio.wait_for(speaker, 2)
    assert spoken == tokens


async def test_split_with_bounded_block_branches_applies_backpressure() -> None:
    source = Tracked(range(100), then_wait=True)
    async with split(source, maxsize=2) as (fast, unread):
        got = []
        for _ in range(3):
            got.append(await asyncio.wait_for(fast.receive(), 1))
        await settle()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(fast.receive(), 0.02)
        assert got == [0, 1, 2]
        assert len(unread) == 2
        assert source.produced <= 4
    assert source.aclose_calls == 1


async def test_split_with_an_equal_block_policy_value_applies_backpressure() -> None:
    source = Tracked(range(10), then_wait=True)
    async with split(source, maxsize=1, policy=Overflow("block")) as (fast, unread):
        assert await asyncio.wait_for(fast.receive(), 1) == 0
        assert await asyncio.wait_for(fast.receive(), 1) == 1
        await settle()
        assert not fast.closed  # not closed with a QueueFull error
        assert len(unread) == 1
    assert source.aclose_calls == 1


async def test_split_with_drop_oldest_branches_drops_for_the_unread_one() -> None:
    async with split(aiter_of(range(20)), maxsize=3, policy=Overflow.DROP_OLDEST) as (fast, unread):
        await settle()
        assert await collect(unread) == [17, 18, 19]
        assert unread.stats.dropped == 17
        assert await collect(fast) == [17, 18, 19]


async def test_split_delivers_a_source_error_to_every_branch_after_its_items() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("llm died")

    async with split(failing(), 2) as branches:
        for branch in branches:
            got: list[object] = []
            with pytest.raises(ValueError, match="llm died"):
                await collect_into(branch, got)
            assert got == [1, 2]


async def test_split_ends_every_branch_when_the_source_ends() -> None:
    async with split(aiter_of("ab"), 2) as (a, b):
        assert await collect(b) == ["a", "b"]
        assert await collect(a) == ["a", "b"]
        assert a.closed
        assert b.closed


async def test_leaving_split_cancels_the_pump_and_closes_the_source() -> None:
    fed = Fed()
    async with split(fed.stream()) as (a, b):
        fed.inbox.send_nowait("x")
        assert await asyncio.wait_for(a.receive(), 1) == "x"
    assert fed.closed
    assert a.closed
    assert b.closed
    assert await collect(b) == ["x"]  # what was already buffered can still be drained
    fed.inbox.send_nowait("late")
    await settle()
    assert fed.produced == ["x"]  # nothing is pulled from the source any more


async def test_leaving_split_at_once_still_closes_the_source() -> None:
    source = Tracked(["a", "b"], then_wait=True)
    async with split(source) as (a, _):
        assert not a.closed
    assert source.aclose_calls == 1
    assert source.produced == 0


async def test_leaving_split_at_once_closes_a_started_generator() -> None:
    fed = Fed()
    stream = fed.stream()
    fed.inbox.send_nowait("peeked")
    assert await anext(stream) == "peeked"  # the caller already started the generator
    async with split(stream):
        pass
    assert fed.closed


async def test_split_keeps_feeding_a_branch_when_the_other_is_closed_by_its_reader() -> None:
    fed = Fed()
    async with split(fed.stream(), maxsize=1) as (display, speech):
        fed.inbox.send_nowait(0)
        assert await asyncio.wait_for(display.receive(), 1) == 0
        fed.inbox.send_nowait(1)
        await settle()  # the pump waits for room in `speech`, which holds 0
        speech.close()  # the speech reader gives up
        for expected in [1, 2, 3]:
            if expected > 1:
                fed.inbox.send_nowait(expected)
            assert await asyncio.wait_for(display.receive(), 1) == expected
        fed.inbox.close()
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(display.receive(), 1)
        assert await collect(speech) == [0]


async def test_split_skips_a_closed_unbounded_branch() -> None:
    fed = Fed()
    async with split(fed.stream()) as (display, speech):
        fed.inbox.send_nowait("a")
        await settle()
        speech.close()
        fed.inbox.send_nowait("b")
        fed.inbox.close()
        assert await asyncio.wait_for(collect(display), 1) == ["a", "b"]
        assert await collect(speech) == ["a"]
