"""Tests for aria.core.retry: retryability, backoff delays, the retry loop and deadlines."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aria.core.resilience import DEFAULT_RETRY_POLICY, RetryPolicy, is_retryable, retry, with_timeout
from aria.errors import (
    CircuitOpenError,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    InvalidInput,
)


class RecordingSleep:
    """A fake ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Flaky:
    """An async callable that raises the scripted errors in turn, then returns ``value``."""

    def __init__(self, errors: list[BaseException], value: str = "ok") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


# -- is_retryable ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (EngineError("boom"), True),
        (EngineError("boom", retryable=False), False),
        (EngineTimeout("slow"), True),
        (EngineUnavailable("gone"), False),
        (CircuitOpenError("open"), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (ConnectionError(), True),
        (InvalidInput("bad"), False),
        (ValueError("bad"), False),
        (RuntimeError("bug"), False),
        (asyncio.CancelledError(), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_is_retryable(exc: BaseException, expected: bool) -> None:
    assert is_retryable(exc) is expected


# -- RetryPolicy -------------------------------------------------------------------------------


def test_delays_grow_then_cap_without_jitter() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0, multiplier=2.0, jitter=0.0)
    rng = random.Random(0)
    delays = [policy.delay(n, rng) for n in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_delay_huge_attempt_is_capped() -> None:
    policy = RetryPolicy(max_delay=2.0, jitter=0.0)
    assert policy.delay(10_000, random.Random(0)) == pytest.approx(2.0)


def test_jitter_is_seeded_and_within_bounds() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.1, max_delay=2.0, jitter=0.2)
    first = [policy.delay(n, random.Random(42)) for n in range(5)]
    second = [policy.delay(n, random.Random(42)) for n in range(5)]
    assert first == second
    for n, value in enumerate(first):
        nominal = min(2.0, 0.1 * 2.0**n)
        assert nominal * 0.8 <= value <= nominal * 1.2


@given(
    attempt=st.integers(min_value=0, max_value=200),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_bounds_property(attempt: int, jitter: float, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.05, max_delay=3.0, multiplier=1.5, jitter=jitter)
    nominal = min(3.0, 0.05 * 1.5**attempt)
    value = policy.delay(attempt, random.Random(seed))
    assert nominal * (1 - jitter) - 1e-12 <= value <= nominal * (1 + jitter) + 1e-12


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"base_delay": -0.1},
        {"base_delay": 1.0, "max_delay": 0.5},
        {"multiplier": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_delay_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().delay(-1, random.Random(0))


def test_default_policy() -> None:
    assert RetryPolicy(attempts=3, base_delay=0.1, max_delay=2.0) == DEFAULT_RETRY_POLICY


# -- retry -------------------------------------------------------------------------------------


async def test_retry_succeeds_after_transient_errors() -> None:
    sleep = RecordingSleep()
    fn = Flaky([ConnectionError("reset"), EngineTimeout("slow")])
    seen: list[tuple[int, str, float]] = []
    policy = RetryPolicy(attempts=3, base_delay=0.1, jitter=0.0)

    result = await retry(
        fn, policy, sleep=sleep, rng=random.Random(1), on_retry=lambda n, e, d: seen.append((n, str(e), d))
    )

    assert result == "ok"
    assert fn.calls == 3
    assert sleep.delays == pytest.approx([0.1, 0.2])
    assert [(n, e) for n, e, _ in seen] == [(1, "reset"), (2, "slow")]
    assert [d for *_, d in seen] == sleep.delays


async def test_retry_reraises_last_error_unchanged_when_attempts_run_out() -> None:
    sleep = RecordingSleep()
    last = ConnectionError("third")
    fn = Flaky([ConnectionError("first"), ConnectionError("second"), last])

    with pytest.raises(ConnectionError) as info:
        await retry(fn, RetryPolicy(attempts=3), sleep=sleep, rng=random.Random(0))

    assert info.value is last
    assert fn.calls == 3
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    "error", [InvalidInput("bad audio"), ValueError("bug"), EngineUnavailable("missing model")]
)
async def test_non_retryable_errors_are_not_retried(error: Exception) -> None:
    sleep = RecordingSleep()
    fn = Flaky([error])

    with pytest.raises(type(error)) as info:
        await retry(fn, RetryPolicy(attempts=5), sleep=sleep)

    assert info.value is error
    assert fn.calls == 1
    assert sleep.delays == []


async def test_custom_retry_if() -> None:
    sleep = RecordingSleep()
    fn = Flaky([ValueError("once")])
    assert await retry(fn, retry_if=lambda e: isinstance(e, ValueError), sleep=sleep) == "ok"
    assert fn.calls == 2


async def test_cancelled_error_is_never_retried() -> None:
    sleep = RecordingSleep()
    fn = Flaky([asyncio.CancelledError()])

    with pytest.raises(asyncio.CancelledError):
        await retry(fn, RetryPolicy(attempts=5), retry_if=lambda e: True, sleep=sleep)

    assert fn.calls == 1
    assert sleep.delays == []


async def test_cancelling_the_task_during_backoff_propagates() -> None:
    started = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    fn = Flaky([ConnectionError("x")])
    task = asyncio.create_task(retry(fn, RetryPolicy(attempts=3), sleep=blocking_sleep))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1


async def test_retry_logs_each_retry_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    fn = Flaky([ConnectionError("a"), ConnectionError("b")])
    with caplog.at_level(logging.WARNING, logger="aria.core.retry"):
        await retry(fn, RetryPolicy(attempts=3), sleep=RecordingSleep(), rng=random.Random(0))
    records = [r for r in caplog.records if r.name == "aria.core.retry"]
    assert len(records) == 2
    assert all(r.levelno == logging.WARNING for r in records)
    assert "ConnectionError" in records[0].getMessage()


# -- with_timeout ------------------------------------------------------------------------------


async def test_with_timeout_returns_value() -> None:
    async def quick() -> int:
        return 7

    assert await with_timeout(quick(), 1.0) == 7
    assert await with_timeout(quick(), None) == 7


async def test_with_timeout_raises_retryable_engine_timeout() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    with pytest.raises(EngineTimeout) as info:
        await with_timeout(hang(), 0.005, engine="whisper", what="transcribe")

    err = info.value
    assert str(err) == "whisper: transcribe timed out after 0.005 s"
    assert err.engine == "whisper"
    assert err.retryable is True
    assert is_retryable(err)
    assert isinstance(err.__cause__, TimeoutError)


async def test_with_timeout_passes_inner_timeout_error_through() -> None:
    inner = TimeoutError("socket read")

    async def fail() -> None:
        raise inner

    with pytest.raises(TimeoutError) as info:
        await with_timeout(fail(), 10.0)
    assert info.value is inner
    assert not isinstance(info.value, EngineTimeout)


async def test_retry_of_timeouts_retries_then_gives_up() -> None:
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1

        async def hang() -> None:
            await asyncio.Event().wait()

        await with_timeout(hang(), 0.002, engine="llm")

    with pytest.raises(EngineTimeout):
        await retry(attempt, RetryPolicy(attempts=2), sleep=RecordingSleep())
    assert calls == 2
