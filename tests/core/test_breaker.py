"""Tests for aria.core.breaker: the circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from aria.core.resilience import BreakerState, CircuitBreaker
from aria.errors import CircuitOpenError, EngineError, InvalidInput


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state through a call so that mypy does not narrow it between reads."""
    return breaker.state


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Transitions:
    """Records on_state_change calls."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, BreakerState, BreakerState]] = []

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.seen.append((name, old, new))


class Engine:
    """A fake engine whose next calls fail or succeed as scripted."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_with: Exception | None = None

    async def run(self) -> str:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return "ok"


def make(
    clock: FakeClock,
    transitions: Transitions | None = None,
    *,
    failure_threshold: int = 3,
    recovery_timeout: float = 10.0,
    half_open_max_calls: int = 1,
) -> CircuitBreaker:
    return CircuitBreaker(
        "stt:whisper",
        failure_threshold=failure_threshold,
        recovery_timeout=recovery_timeout,
        half_open_max_calls=half_open_max_calls,
        clock=clock,
        on_state_change=transitions,
    )


async def fail_times(breaker: CircuitBreaker, engine: Engine, n: int) -> None:
    engine.fail_with = EngineError("boom")
    for _ in range(n):
        with pytest.raises(EngineError, match="boom"):
            await breaker.call(engine.run)


async def test_starts_closed_and_passes_calls_through() -> None:
    breaker = make(FakeClock())
    engine = Engine()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.state == "closed"
    assert await breaker.call(engine.run) == "ok"
    assert breaker.retry_after == 0.0
    assert (breaker.total_calls, breaker.failures, breaker.opened_count) == (1, 0, 0)


def test_state_values() -> None:
    assert [s.value for s in BreakerState] == ["closed", "open", "half_open"]


async def test_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make(clock)
    engine = Engine()

    await fail_times(breaker, engine, 2)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failures == 2

    await fail_times(breaker, engine, 1)
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.opened_count == 1
    assert breaker.total_failures == 3


async def test_success_resets_consecutive_failures() -> None:
    breaker = make(FakeClock())
    engine = Engine()
    await fail_times(breaker, engine, 2)
    engine.fail_with = None
    await breaker.call(engine.run)
    assert breaker.failures == 0
    await fail_times(breaker, engine, 2)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.total_failures == 4


async def test_rejects_while_open_without_calling() -> None:
    clock = FakeClock()
    breaker = make(clock)
    engine = Engine()
    await fail_times(breaker, engine, 3)
    clock.advance(4.0)

    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(engine.run)

    assert engine.calls == 3
    assert info.value.engine == "stt:whisper"
    assert "circuit open, retry in 6.0 s" in str(info.value)
    assert info.value.retryable is False
    assert breaker.retry_after == pytest.approx(6.0)
    assert breaker.total_calls == 3


async def test_half_opens_after_recovery_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await fail_times(breaker, Engine(), 3)
    clock.advance(9.99)
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(0.01)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.retry_after == 0.0


async def test_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = make(clock)
    engine = Engine()
    await fail_times(breaker, engine, 3)
    clock.advance(10.0)
    engine.fail_with = None

    assert await breaker.call(engine.run) == "ok"

    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failures == 0


async def test_probe_failure_reopens_with_new_recovery_period() -> None:
    clock = FakeClock()
    breaker = make(clock)
    engine = Engine()
    await fail_times(breaker, engine, 3)
    clock.advance(10.0)

    await fail_times(breaker, engine, 1)

    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.opened_count == 2
    assert breaker.retry_after == pytest.approx(10.0)
    clock.advance(5.0)
    with pytest.raises(CircuitOpenError):
        await breaker.call(engine.run)
    clock.advance(5.0)
    assert state_of(breaker) is BreakerState.HALF_OPEN


@pytest.mark.parametrize("max_calls", [1, 2])
async def test_only_half_open_max_calls_concurrent_probes(max_calls: int) -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_max_calls=max_calls)
    await fail_times(breaker, Engine(), 3)
    clock.advance(10.0)

    release = asyncio.Event()
    entered = 0

    async def slow_probe() -> str:
        nonlocal entered
        entered += 1
        await release.wait()
        return "ok"

    probes = [asyncio.create_task(breaker.call(slow_probe)) for _ in range(max_calls)]
    await asyncio.sleep(0)
    assert entered == max_calls

    extra = Engine()
    with pytest.raises(CircuitOpenError):
        await breaker.call(extra.run)
    assert extra.calls == 0

    release.set()
    assert await asyncio.gather(*probes) == ["ok"] * max_calls
    assert state_of(breaker) is BreakerState.CLOSED


async def test_cancelled_probe_frees_its_slot_without_counting() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await fail_times(breaker, Engine(), 3)
    clock.advance(10.0)
    failures_before = breaker.total_failures

    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    probe = asyncio.create_task(breaker.call(hang))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.total_failures == failures_before
    assert await breaker.call(Engine().run) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED


async def test_invalid_input_does_not_count() -> None:
    breaker = make(FakeClock(), failure_threshold=1)
    engine = Engine()
    engine.fail_with = InvalidInput("sample rate 7 Hz")
    for _ in range(5):
        with pytest.raises(InvalidInput):
            await breaker.call(engine.run)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.failures == 0
    assert breaker.total_failures == 0
    assert breaker.total_calls == 5


async def test_invalid_input_in_half_open_frees_the_probe_slot() -> None:
    clock = FakeClock()
    breaker = make(clock)
    await fail_times(breaker, Engine(), 3)
    clock.advance(10.0)
    bad = Engine()
    bad.fail_with = InvalidInput("bad")
    with pytest.raises(InvalidInput):
        await breaker.call(bad.run)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert await breaker.call(Engine().run) == "ok"
    assert state_of(breaker) is BreakerState.CLOSED


async def test_state_change_callback_order() -> None:
    clock = FakeClock()
    transitions = Transitions()
    breaker = make(clock, transitions)
    engine = Engine()

    await fail_times(breaker, engine, 3)
    clock.advance(10.0)
    await fail_times(breaker, engine, 1)
    clock.advance(10.0)
    engine.fail_with = None
    await breaker.call(engine.run)

    open_, closed, half = BreakerState.OPEN, BreakerState.CLOSED, BreakerState.HALF_OPEN
    assert transitions.seen == [
        ("stt:whisper", closed, open_),
        ("stt:whisper", open_, half),
        ("stt:whisper", half, open_),
        ("stt:whisper", open_, half),
        ("stt:whisper", half, closed),
    ]


async def test_lazy_half_open_fires_callback_on_read() -> None:
    clock = FakeClock()
    transitions = Transitions()
    breaker = make(clock, transitions, failure_threshold=1)
    breaker.record_failure(EngineError("x"))
    clock.advance(10.0)
    assert len(transitions.seen) == 1
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert transitions.seen[-1][1:] == (BreakerState.OPEN, BreakerState.HALF_OPEN)
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert len(transitions.seen) == 2


async def test_guard_holds_across_a_stream() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1)

    async def chunks() -> list[int]:
        out = []
        async with breaker.guard():
            for i in range(3):
                await asyncio.sleep(0)
                out.append(i)
        return out

    assert await chunks() == [0, 1, 2]
    assert breaker.total_calls == 1

    with pytest.raises(RuntimeError):
        async with breaker.guard():
            raise RuntimeError("mid-stream")
    assert state_of(breaker) is BreakerState.OPEN

    with pytest.raises(CircuitOpenError):
        async with breaker.guard():
            pytest.fail("must not be admitted")


def test_record_success_and_failure_directly() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2)
    breaker.record_failure(EngineError("a"))
    breaker.record_failure(asyncio.CancelledError())
    breaker.record_failure(InvalidInput("b"))
    assert breaker.failures == 1
    breaker.record_success()
    assert breaker.failures == 0
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    breaker.record_success()  # a stale success while open changes nothing
    assert state_of(breaker) is BreakerState.OPEN


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"recovery_timeout": -1.0}, {"half_open_max_calls": 0}],
)
def test_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]
