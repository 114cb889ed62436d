"""Tests for aria.core.events: routing, ordering, slow and failing subscribers, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from aria.core.events import WILDCARD, Event, EventBus, EventType

LOGGER = "aria.core.events"


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Recorder:
    """A sync handler that records what it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def numbers(self) -> list[int]:
        return [e.payload["n"] for e in self.events]


class Blocked:
    """An async handler that blocks on every event until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        await self.release.wait()


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = EventBus()
    yield bus
    await bus.aclose(0.1)


# -- routing ------------------------------------------------------------------------------------


async def test_typed_subscriber_gets_only_its_types(bus: EventBus) -> None:
    speech = Recorder()
    bus.subscribe(speech, EventType.SPEECH_STARTED, EventType.SPEECH_ENDED)
    for t in ["speech_started", "transcript_partial", "speech_ended", "error", "speech_started"]:
        bus.emit(t)
    await bus.drained()
    assert speech.types == ["speech_started", "speech_ended", "speech_started"]


async def test_wildcard_subscriber_gets_everything_in_order(bus: EventBus) -> None:
    everything = Recorder()
    explicit = Recorder()
    bus.subscribe(everything)
    bus.subscribe(explicit, WILDCARD)
    sent = [str(t) for t in EventType] + ["custom.thing"]
    for t in sent:
        bus.emit(t)
    await bus.drained()
    assert everything.types == sent
    assert explicit.types == sent


async def test_wildcard_with_types_gets_each_event_once(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe(rec, "a", WILDCARD)
    bus.emit("a")
    bus.emit("b")
    await bus.drained()
    assert rec.types == ["a", "b"]


async def test_duplicate_types_deliver_once(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe(rec, "a", "a", EventType.ERROR, "error")
    bus.emit("a")
    bus.emit(EventType.ERROR)
    await bus.drained()
    assert rec.types == ["a", "error"]


async def test_events_reach_typed_and_wildcard_subscribers_in_publish_order(bus: EventBus) -> None:
    typed, wild = Recorder(), Recorder()
    bus.subscribe(typed, "tick")
    bus.subscribe(wild)
    for n in range(100):
        bus.emit("tick" if n % 2 == 0 else "tock", {"n": n})
    await bus.drained()
    assert typed.numbers == list(range(0, 100, 2))
    assert wild.numbers == list(range(100))
    assert bus.published == 100


async def test_string_and_enum_types_are_the_same(bus: EventBus) -> None:
    by_enum, by_str = Recorder(), Recorder()
    bus.subscribe(by_enum, EventType.FIRST_AUDIO)
    bus.subscribe(by_str, "first_audio")
    bus.emit("first_audio")
    bus.publish(Event(EventType.FIRST_AUDIO))
    await bus.drained()
    assert by_enum.types == ["first_audio", "first_audio"]
    assert by_str.types == ["first_audio", "first_audio"]


async def test_publish_with_no_subscribers_is_counted(bus: EventBus) -> None:
    bus.emit("nobody")
    assert bus.published == 1


async def test_a_lazy_event_is_built_only_for_a_subscriber_and_always_counted(bus: EventBus) -> None:
    built: list[int] = []

    def payload(n: int) -> Callable[[], dict[str, int]]:
        def build() -> dict[str, int]:
            built.append(n)
            return {"n": n}

        return build

    bus.emit_lazily("tock", payload(0))  # nobody listens: not built
    typed = Recorder()
    bus.subscribe(typed, "tick")
    bus.emit_lazily("tock", payload(1))  # still nobody for "tock"
    bus.emit_lazily("tick", payload(2), source="state", correlation_id="turn-1")
    wild = Recorder()
    bus.subscribe(wild)
    bus.emit_lazily("tock", payload(3))  # a wildcard subscriber hears every type
    await bus.drained()
    assert built == [2, 3]
    assert typed.numbers == [2]
    assert wild.numbers == [3]
    assert bus.published == 4


# -- event fields -------------------------------------------------------------------------------


async def test_emit_builds_the_event(bus: EventBus) -> None:
    payload = {"text": "hi"}
    before = time.monotonic()
    event = bus.emit(EventType.TRANSCRIPT_FINAL, payload, source="stt", correlation_id="turn-7")
    after = time.monotonic()
    assert event.type == "transcript_final"
    assert type(event.type) is str
    assert dict(event.payload) == {"text": "hi"}
    assert event.source == "stt"
    assert event.correlation_id == "turn-7"
    assert before <= event.timestamp <= after
    payload["text"] = "changed"  # the event keeps its own copy ...
    assert event.payload["text"] == "hi"
    with pytest.raises(TypeError):  # ... which is read-only
        event.payload["text"] = "x"  # type: ignore[index]


async def test_emit_defaults(bus: EventBus) -> None:
    event = bus.emit("x")
    assert (dict(event.payload), event.source, event.correlation_id) == ({}, "", None)


async def test_timestamps_are_monotonic_in_publish_order(bus: EventBus) -> None:
    events = [bus.emit("x") for _ in range(50)]
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)


async def test_subscriber_receives_the_published_event_object(bus: EventBus) -> None:
    rec = Recorder()
    bus.subscribe(rec)
    event = bus.emit("x", {"k": 1}, source="vad", correlation_id="c1")
    await bus.drained()
    assert rec.events == [event]
    assert rec.events[0] is event


# -- slow subscribers ----------------------------------------------------------------------------


async def test_publish_never_blocks_on_a_blocked_subscriber(bus: EventBus) -> None:
    blocked = Blocked()
    bus.subscribe(blocked, name="stuck")
    bus.emit("first")
    await settle()
    assert len(blocked.events) == 1  # now stuck inside the handler

    start = time.perf_counter()
    for n in range(1000):
        bus.emit("x", {"n": n})
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05
    blocked.release.set()


async def test_slow_subscriber_drops_its_own_oldest_events_only(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    slow, fast = Blocked(), Recorder()
    slow_sub = bus.subscribe(slow, name="slow", queue_size=10)
    fast_sub = bus.subscribe(fast, name="fast", queue_size=10)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for n in range(1000):
            bus.emit("x", {"n": n})
            await asyncio.sleep(0)  # the fast subscriber keeps up
    assert [e.payload["n"] for e in slow.events] == [0]  # stuck on the first event
    assert slow_sub.dropped == 1000 - 1 - 10
    assert fast.numbers == list(range(1000))
    assert fast_sub.dropped == 0

    slow.release.set()
    await bus.drained()
    # what survived is the newest events, in order
    assert [e.payload["n"] for e in slow.events] == [0, *range(990, 1000)]
    assert slow_sub.delivered == 11
    assert fast_sub.delivered == 1000
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"event subscriber slow is slow: {n} events dropped so far" for n in (1, 10, 100)
    ]
    assert all(getattr(r, "subscriber", None) == "slow" for r in warnings)


async def test_burst_beyond_queue_size_keeps_the_newest(bus: EventBus) -> None:
    rec = Recorder()
    sub = bus.subscribe(rec, queue_size=5)
    for n in range(20):  # no await: the subscriber cannot run during the burst
        bus.emit("x", {"n": n})
    await bus.drained()
    assert rec.numbers == [15, 16, 17, 18, 19]
    assert sub.dropped == 15


# -- failing subscribers -------------------------------------------------------------------------


async def test_raising_handler_is_logged_counted_and_keeps_receiving(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[int] = []

    def picky(event: Event) -> None:
        received.append(event.payload["n"])
        if event.payload["n"] % 3 == 0:
            raise ValueError(f"cannot handle {event.payload['n']}")

    other = Recorder()
    sub = bus.subscribe(picky, name="picky")
    other_sub = bus.subscribe(other)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for n in range(7):
            bus.emit(EventType.TURN_METRICS, {"n": n})
        await bus.drained()

    assert received == list(range(7))
    assert sub.failed == 3  # 0, 3, 6
    assert sub.delivered == 4
    assert other.numbers == list(range(7))
    assert other_sub.failed == 0
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == ["event subscriber picky failed on turn_metrics"] * 3
    for record, n in zip(errors, (0, 3, 6), strict=True):
        assert record.exc_info is not None
        assert record.exc_info[0] is ValueError
        assert str(record.exc_info[1]) == f"cannot handle {n}"
        assert record.event_type == "turn_metrics"  # type: ignore[attr-defined]
    assert "Traceback" in caplog.text
    assert "in picky" in caplog.text


async def test_raising_async_handler_is_counted(bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(event: Event) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async failure")

    sub = bus.subscribe(broken, "x")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        bus.emit("x")
        bus.emit("x")
        await bus.drained()
    assert (sub.failed, sub.delivered) == (2, 0)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError, RuntimeError]


async def test_subscription_name_defaults_to_handler_qualname(bus: EventBus) -> None:
    def on_event(event: Event) -> None:
        pass

    sub = bus.subscribe(on_event)
    assert sub.name.endswith("on_event")
    assert bus.subscribe(on_event, name="metrics").name == "metrics"


# -- async handlers -------------------------------------------------------------------------------


async def test_async_handlers_are_awaited_one_event_at_a_time(bus: EventBus) -> None:
    log: list[str] = []

    async def handler(event: Event) -> None:
        log.append(f"start {event.payload['n']}")
        await asyncio.sleep(0.001)
        log.append(f"end {event.payload['n']}")

    sub = bus.subscribe(handler)
    for n in range(3):
        bus.emit("x", {"n": n})
    await bus.drained()
    assert log == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    assert sub.delivered == 3


async def test_a_slow_async_handler_does_not_delay_other_subscribers(bus: EventBus) -> None:
    slow, fast = Blocked(), Recorder()
    bus.subscribe(slow)
    bus.subscribe(fast)
    bus.emit("x", {"n": 1})
    bus.emit("x", {"n": 2})
    await settle()
    assert fast.numbers == [1, 2]
    assert len(slow.events) == 1
    slow.release.set()
    await bus.drained()
    assert len(slow.events) == 2


# -- unsubscribe, drained, aclose -----------------------------------------------------------------


async def test_unsubscribe_stops_new_events_but_delivers_queued_ones(bus: EventBus) -> None:
    rec, other = Recorder(), Recorder()
    sub = bus.subscribe(rec, "x")
    bus.subscribe(other, "x")
    bus.emit("x", {"n": 1})
    bus.emit("x", {"n": 2})
    sub.unsubscribe()
    bus.emit("x", {"n": 3})
    await bus.drained()
    await settle()
    assert rec.numbers == [1, 2]
    assert other.numbers == [1, 2, 3]
    assert sub not in bus.subscriptions
    assert len(bus.subscriptions) == 1


async def test_unsubscribe_wildcard(bus: EventBus) -> None:
    rec = Recorder()
    sub = bus.subscribe(rec)
    sub.unsubscribe()
    sub.unsubscribe()  # harmless twice
    bus.emit("x")
    await settle()
    assert rec.events == []
    assert bus.subscriptions == []


async def test_drained_waits_for_async_handlers(bus: EventBus) -> None:
    done: list[int] = []

    async def handler(event: Event) -> None:
        await asyncio.sleep(0.002)
        done.append(event.payload["n"])

    sub = bus.subscribe(handler)
    for n in range(5):
        bus.emit("x", {"n": n})
    assert done == []
    await asyncio.wait_for(sub.drained(), 2)
    assert done == [0, 1, 2, 3, 4]


async def test_drained_returns_at_once_when_idle(bus: EventBus) -> None:
    bus.subscribe(Recorder())
    await asyncio.wait_for(bus.drained(), 0.5)


async def test_drained_waits_while_a_handler_is_busy(bus: EventBus) -> None:
    blocked = Blocked()
    bus.subscribe(blocked)
    bus.emit("x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bus.drained(), 0.02)
    blocked.release.set()
    await asyncio.wait_for(bus.drained(), 1)


async def test_aclose_delivers_what_is_queued_then_stops() -> None:
    bus = EventBus()
    done: list[int] = []

    async def handler(event: Event) -> None:
        await asyncio.sleep(0.001)
        done.append(event.payload["n"])

    bus.subscribe(handler)
    for n in range(3):
        bus.emit("x", {"n": n})
    await bus.aclose(2.0)
    assert done == [0, 1, 2]
    assert bus.subscriptions == []
    bus.emit("x", {"n": 99})
    await settle()
    assert done == [0, 1, 2]


async def test_aclose_cancels_a_stuck_handler_after_the_grace_period() -> None:
    bus = EventBus()
    outcome: list[str] = []

    async def stuck(event: Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    bus.subscribe(stuck)
    bus.emit("x")
    bus.emit("never handled")
    await settle()
    start = time.perf_counter()
    await bus.aclose(0.05)
    assert 0.04 <= time.perf_counter() - start < 1.0
    assert outcome == ["cancelled"]
    assert bus.subscriptions == []
