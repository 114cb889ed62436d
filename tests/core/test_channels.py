"""Tests for aria.core.channels: overflow policies, closing, waiters and cancellation."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aria.core.channels import Channel, Overflow
from aria.errors import ChannelClosed


async def settle(rounds: int = 5) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def collect_into(channel: Channel[int], out: list[int]) -> None:
    async for item in channel:
        out.append(item)


def contents(channel: Channel[int] | Channel[str]) -> list[object]:
    """Everything buffered, drained without waiting."""
    items: list[object] = []
    while len(channel):
        items.append(channel.receive_nowait())
    return items


# -- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [0, -1])
def test_maxsize_must_be_positive_or_none(maxsize: int) -> None:
    with pytest.raises(ValueError, match="maxsize must be >= 1 or None"):
        Channel(maxsize)


@pytest.mark.parametrize("n", [0, -3])
def test_sample_needs_positive_n(n: int) -> None:
    with pytest.raises(ValueError, match="sample\\(n\\) needs n >= 1"):
        Overflow.sample(n)


def test_policies_are_distinct_values() -> None:
    assert Overflow.BLOCK.kind == "block"
    assert Overflow.DROP_OLDEST.kind == "drop_oldest"
    assert Overflow.sample(4) == Overflow("sample", 4)
    assert Overflow.BLOCK != Overflow.DROP_OLDEST


def test_repr_shows_name_policy_size_and_closed() -> None:
    channel: Channel[int] = Channel(4, name="audio")
    channel.send_nowait(1)
    assert repr(channel) == "<Channel audio block 1/4>"
    channel.close()
    assert repr(channel) == "<Channel audio block 1/4 closed>"
    assert "inf" in repr(Channel(None, name="x"))


# -- BLOCK --------------------------------------------------------------------------------------


async def test_block_send_waits_until_a_receive_makes_room() -> None:
    channel: Channel[int] = Channel(2)
    await channel.send(1)
    await channel.send(2)
    assert channel.full()

    sender = asyncio.create_task(channel.send(3))
    await settle()
    assert not sender.done()
    assert len(channel) == 2

    assert await channel.receive() == 1
    await settle()
    assert sender.done()
    assert sender.result() is True
    assert contents(channel) == [2, 3]
    assert channel.stats.sent == 3
    assert channel.stats.dropped == 0


async def test_block_send_nowait_on_full_raises_queue_full_and_keeps_items() -> None:
    channel: Channel[int] = Channel(1)
    assert channel.send_nowait(1) is True
    with pytest.raises(asyncio.QueueFull):
        channel.send_nowait(2)
    assert contents(channel) == [1]
    assert channel.stats.sent == 1


async def test_blocked_senders_are_served_in_order() -> None:
    channel: Channel[str] = Channel(1)
    channel.send_nowait("first")
    senders = [asyncio.create_task(channel.send(x)) for x in ("a", "b", "c")]
    await settle()
    received = [await channel.receive() for _ in range(4)]
    assert received == ["first", "a", "b", "c"]
    await settle()
    assert all(s.done() for s in senders)


async def test_one_receive_releases_exactly_one_blocked_sender() -> None:
    channel: Channel[int] = Channel(1)
    channel.send_nowait(0)
    senders = [asyncio.create_task(channel.send(i)) for i in (1, 2)]
    await settle()
    channel.receive_nowait()
    await settle()
    assert [s.done() for s in senders] == [True, False]
    assert contents(channel) == [1]
    await settle()
    assert senders[1].done()
    assert contents(channel) == [2]


# -- DROP_OLDEST and sample ---------------------------------------------------------------------


async def test_drop_oldest_keeps_the_newest_and_counts_drops() -> None:
    channel: Channel[int] = Channel(3, Overflow.DROP_OLDEST)
    for i in range(10):
        assert await channel.send(i) is True  # never waits
    assert len(channel) == 3
    assert channel.stats.dropped == 7
    assert channel.stats.sent == 10
    assert contents(channel) == [7, 8, 9]
    assert channel.stats.received == 3


async def test_drop_oldest_does_not_drop_while_there_is_room() -> None:
    channel: Channel[int] = Channel(3, Overflow.DROP_OLDEST)
    channel.send_nowait(1)
    channel.send_nowait(2)
    channel.receive_nowait()
    channel.send_nowait(3)
    channel.send_nowait(4)
    assert channel.stats.dropped == 0
    assert contents(channel) == [2, 3, 4]


async def test_sample_keeps_every_nth_item_starting_with_the_first() -> None:
    channel: Channel[int] = Channel(100, Overflow.sample(3))
    accepted = [channel.send_nowait(i) for i in range(10)]
    assert accepted == [True, False, False] * 3 + [True]
    assert contents(channel) == [0, 3, 6, 9]
    assert channel.stats.skipped == 6
    assert channel.stats.sent == 4
    assert channel.stats.dropped == 0


async def test_sample_counts_across_receives() -> None:
    channel: Channel[int] = Channel(100, Overflow.sample(2))
    kept = []
    for i in range(7):
        await channel.send(i)
        kept.extend(contents(channel))
    assert kept == [0, 2, 4, 6]


async def test_sample_one_keeps_everything() -> None:
    channel: Channel[int] = Channel(None, Overflow.sample(1))
    for i in range(5):
        channel.send_nowait(i)
    assert contents(channel) == [0, 1, 2, 3, 4]
    assert channel.stats.skipped == 0


async def test_sample_drops_the_oldest_when_full() -> None:
    channel: Channel[int] = Channel(2, Overflow.sample(2))
    for i in range(10):
        await channel.send(i)  # never waits
    # kept 0, 2, 4, 6, 8; only the newest two fit
    assert contents(channel) == [6, 8]
    assert channel.stats.dropped == 3
    assert channel.stats.skipped == 5


# -- closing ------------------------------------------------------------------------------------


async def test_close_lets_receivers_drain_then_ends_iteration() -> None:
    channel: Channel[int] = Channel(8)
    for i in range(3):
        await channel.send(i)
    channel.close()
    assert channel.closed
    assert [item async for item in channel] == [0, 1, 2]
    with pytest.raises(ChannelClosed):
        await channel.receive()
    with pytest.raises(ChannelClosed):
        channel.receive_nowait()
    assert channel.stats.received == 3


async def test_close_with_error_raises_it_after_the_buffered_items() -> None:
    channel: Channel[int] = Channel(8)
    channel.send_nowait(1)
    channel.send_nowait(2)
    boom = RuntimeError("producer failed")
    channel.close(boom)
    received: list[int] = []
    with pytest.raises(RuntimeError, match="producer failed") as excinfo:
        await collect_into(channel, received)
    assert received == [1, 2]
    assert excinfo.value is boom
    # every later receive reports the same failure
    with pytest.raises(RuntimeError, match="producer failed"):
        await channel.receive()
    with pytest.raises(RuntimeError, match="producer failed"):
        channel.receive_nowait()


async def test_close_is_idempotent_and_keeps_the_first_outcome() -> None:
    channel: Channel[int] = Channel(4)
    channel.close()
    channel.close(RuntimeError("too late"))
    assert [item async for item in channel] == []


async def test_send_on_closed_channel_raises() -> None:
    channel: Channel[int] = Channel(4)
    channel.close()
    with pytest.raises(ChannelClosed, match="is closed"):
        await channel.send(1)
    with pytest.raises(ChannelClosed):
        channel.send_nowait(1)
    with pytest.raises(ChannelClosed):
        channel.force(1)
    assert len(channel) == 0
    assert channel.stats.sent == 0


async def test_receive_on_empty_open_channel_nowait_raises_queue_empty() -> None:
    channel: Channel[int] = Channel(4)
    with pytest.raises(asyncio.QueueEmpty):
        channel.receive_nowait()


async def test_close_wakes_a_blocked_sender_with_channel_closed() -> None:
    channel: Channel[int] = Channel(1)
    channel.send_nowait(1)
    sender = asyncio.create_task(channel.send(2))
    await settle()
    assert not sender.done()
    channel.close()
    await settle()
    assert sender.done()
    assert isinstance(sender.exception(), ChannelClosed)
    assert [item async for item in channel] == [1]  # the rejected item was not added


# -- receive waiters ----------------------------------------------------------------------------


async def test_waiting_receive_is_woken_by_send() -> None:
    channel: Channel[str] = Channel(4)
    receiver = asyncio.create_task(channel.receive())
    await settle()
    assert not receiver.done()
    channel.send_nowait("hello")
    await settle()
    assert receiver.result() == "hello"
    assert channel.stats.received == 1


async def test_each_send_wakes_one_receiver_in_order() -> None:
    channel: Channel[int] = Channel(4)
    receivers = [asyncio.create_task(channel.receive()) for _ in range(3)]
    await settle()
    channel.send_nowait(10)
    channel.send_nowait(20)
    await settle()
    assert [r.done() for r in receivers] == [True, True, False]
    assert [receivers[0].result(), receivers[1].result()] == [10, 20]
    channel.send_nowait(30)
    await settle()
    assert receivers[2].result() == 30


async def test_close_wakes_every_waiting_receiver() -> None:
    channel: Channel[int] = Channel(4)
    receivers = [asyncio.create_task(channel.receive()) for _ in range(3)]
    await settle()
    channel.close()
    await settle()
    assert all(isinstance(r.exception(), ChannelClosed) for r in receivers)


async def test_close_with_error_wakes_every_waiting_receiver_with_it() -> None:
    channel: Channel[int] = Channel(4)
    receivers = [asyncio.create_task(channel.receive()) for _ in range(2)]
    await settle()
    channel.close(ValueError("bad source"))
    await settle()
    assert [type(r.exception()) for r in receivers] == [ValueError, ValueError]


async def test_async_iteration_ends_when_closed_while_waiting() -> None:
    channel: Channel[int] = Channel(4)

    async def collect() -> list[int]:
        return [item async for item in channel]

    consumer = asyncio.create_task(collect())
    await settle()
    channel.send_nowait(1)
    await settle()
    channel.send_nowait(2)
    channel.close()
    assert await consumer == [1, 2]


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelled_receiver_passes_its_wakeup_on() -> None:
    channel: Channel[int] = Channel(4)
    first = asyncio.create_task(channel.receive())
    second = asyncio.create_task(channel.receive())
    await settle()
    channel.send_nowait(42)  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it can take the item
    await settle()
    assert first.cancelled()
    assert second.done()
    assert second.result() == 42
    assert len(channel) == 0


async def test_cancelled_waiting_receiver_does_not_swallow_later_items() -> None:
    channel: Channel[int] = Channel(4)
    gone = asyncio.create_task(channel.receive())
    await settle()
    gone.cancel()
    await settle()
    assert gone.cancelled()
    waiting = asyncio.create_task(channel.receive())
    await settle()
    channel.send_nowait(7)
    await settle()
    assert waiting.result() == 7
    channel.send_nowait(8)
    assert channel.receive_nowait() == 8


async def test_cancelled_sender_passes_its_wakeup_on() -> None:
    channel: Channel[str] = Channel(1)
    channel.send_nowait("x")
    first = asyncio.create_task(channel.send("a"))
    second = asyncio.create_task(channel.send("b"))
    await settle()
    assert channel.receive_nowait() == "x"  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it can use the room
    await settle()
    assert first.cancelled()
    assert second.done()
    assert contents(channel) == ["b"]


async def test_cancelled_waiting_sender_does_not_add_its_item() -> None:
    channel: Channel[str] = Channel(1)
    channel.send_nowait("x")
    sender = asyncio.create_task(channel.send("never"))
    await settle()
    sender.cancel()
    await settle()
    assert sender.cancelled()
    assert channel.receive_nowait() == "x"
    await settle()
    assert len(channel) == 0
    # the channel still works for the next sender
    await channel.send("y")
    assert contents(channel) == ["y"]


async def test_wait_for_timeout_on_receive_leaves_channel_usable() -> None:
    channel: Channel[int] = Channel(2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(channel.receive(), 0.001)
    channel.send_nowait(5)
    assert await asyncio.wait_for(channel.receive(), 1.0) == 5


# -- discard and force ---------------------------------------------------------------------------


async def test_discard_returns_removed_items_and_keeps_the_rest_in_order() -> None:
    channel: Channel[int] = Channel(10)
    for i in range(8):
        channel.send_nowait(i)
    removed = channel.discard(lambda x: x % 3 == 0)
    assert removed == [0, 3, 6]
    assert channel.stats.dropped == 3
    assert contents(channel) == [1, 2, 4, 5, 7]


async def test_discard_without_a_match_changes_nothing() -> None:
    channel: Channel[int] = Channel(3)
    for i in range(3):
        channel.send_nowait(i)
    assert channel.discard(lambda x: x > 10) == []
    assert channel.stats.dropped == 0
    assert contents(channel) == [0, 1, 2]


async def test_discard_frees_room_for_blocked_senders() -> None:
    channel: Channel[int] = Channel(3)
    for i in (1, 2, 3):
        channel.send_nowait(i)
    senders = [asyncio.create_task(channel.send(i)) for i in (4, 5, 6)]
    await settle()
    assert not any(s.done() for s in senders)

    assert channel.discard(lambda x: x in (1, 2)) == [1, 2]
    await settle()
    assert [s.done() for s in senders] == [True, True, False]
    assert channel.full()
    assert channel.discard(lambda x: True) == [3, 4, 5]
    await settle()
    assert senders[2].done()
    assert contents(channel) == [6]


async def test_force_ignores_maxsize_and_keeps_everything() -> None:
    channel: Channel[str] = Channel(1, Overflow.DROP_OLDEST)
    channel.send_nowait("audio")
    channel.force("end-of-turn")
    channel.force("stop")
    assert len(channel) == 3
    assert channel.full()
    assert channel.stats.dropped == 0
    assert channel.stats.sent == 3
    assert contents(channel) == ["audio", "end-of-turn", "stop"]


async def test_force_on_full_block_channel_does_not_wait_and_wakes_receiver() -> None:
    channel: Channel[str] = Channel(1)
    receiver = asyncio.create_task(channel.receive())
    await settle()
    channel.force("urgent")
    await settle()
    assert receiver.result() == "urgent"
    channel.send_nowait("a")
    channel.force("b")
    assert contents(channel) == ["a", "b"]


# -- unbounded ----------------------------------------------------------------------------------


async def test_unbounded_channel_never_blocks_or_drops() -> None:
    channel: Channel[int] = Channel(None)
    for i in range(5000):
        assert await channel.send(i) is True
    assert not channel.full()
    assert len(channel) == 5000
    assert channel.stats.dropped == 0
    assert contents(channel) == list(range(5000))


# -- many producers and consumers ----------------------------------------------------------------


async def _run_producers_consumers(
    batches: list[list[int]], consumers: int, maxsize: int | None, yields: list[bool]
) -> tuple[list[tuple[int, int]], Channel[tuple[int, int]]]:
    channel: Channel[tuple[int, int]] = Channel(maxsize)
    log: list[tuple[int, int]] = []
    per_consumer: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]

    async def produce(pid: int, values: list[int]) -> None:
        for index, _ in enumerate(values):
            await channel.send((pid, index))
            if yields[(pid + index) % len(yields)]:
                await asyncio.sleep(0)

    async def consume(cid: int) -> None:
        async for item in channel:
            log.append(item)
            per_consumer[cid].append(item)
            if yields[(cid + len(log)) % len(yields)]:
                await asyncio.sleep(0)

    consumer_tasks = [asyncio.create_task(consume(c)) for c in range(consumers)]
    await asyncio.gather(*(produce(p, values) for p, values in enumerate(batches)))
    channel.close()
    await asyncio.wait_for(asyncio.gather(*consumer_tasks), 5)
    assert sorted(log) == sorted(item for consumer_items in per_consumer for item in consumer_items)
    return log, channel


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(), max_size=30), min_size=1, max_size=5),
    consumers=st.integers(1, 4),
    maxsize=st.one_of(st.none(), st.integers(1, 4)),
    yields=st.lists(st.booleans(), min_size=1, max_size=7),
)
def test_many_producers_and_consumers_conserve_items_in_fifo_order(
    batches: list[list[int]], consumers: int, maxsize: int | None, yields: list[bool]
) -> None:
    log, channel = asyncio.run(_run_producers_consumers(batches, consumers, maxsize, yields))
    expected = Counter((p, i) for p, values in enumerate(batches) for i in range(len(values)))
    assert Counter(log) == expected  # nothing lost, nothing duplicated
    for pid, values in enumerate(batches):  # each producer's items leave in the order they were sent
        assert [i for p, i in log if p == pid] == list(range(len(values)))
    assert channel.stats.sent == channel.stats.received == sum(map(len, batches))
    assert channel.stats.dropped == 0


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.integers(), max_size=50), maxsize=st.integers(1, 8))
def test_drop_oldest_keeps_the_last_maxsize_items(items: list[int], maxsize: int) -> None:
    channel: Channel[int] = Channel(maxsize, Overflow.DROP_OLDEST)
    for item in items:
        channel.send_nowait(item)
    assert contents(channel) == items[-maxsize:]
    assert channel.stats.dropped == max(0, len(items) - maxsize)
