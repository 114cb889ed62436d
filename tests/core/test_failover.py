"""Tests for aria.core.failover: fallback chains over fake engines, for calls and streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from aria.core.resilience import BreakerState, CircuitBreaker, FallbackChain, RetryPolicy
from aria.errors import AllEnginesFailed, CircuitOpenError, EngineError, EngineTimeout, InvalidInput


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state through a call so that mypy does not narrow it between reads."""
    return breaker.state


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedStream:
    """An async iterator over ``items`` that fails at index ``fail_at`` and records ``aclose``."""

    def __init__(self, items: list[str], fail_at: int | None, hang_first: bool, error: Exception) -> None:
        self.items = items
        self.fail_at = fail_at
        self.hang_first = hang_first
        self.error = error
        self.index = 0
        self.closed = False

    def __aiter__(self) -> ScriptedStream:
        return self

    async def __anext__(self) -> str:
        if self.hang_first and self.index == 0:
            await asyncio.Event().wait()
        if self.index == self.fail_at:
            raise self.error
        if self.index >= len(self.items):
            raise StopAsyncIteration
        item = self.items[self.index]
        self.index += 1
        await asyncio.sleep(0)
        return item

    async def aclose(self) -> None:
        self.closed = True


class FakeEngine:
    """A named fake engine: ``fail`` scripts errors for its next calls; ``stream`` yields its items."""

    def __init__(
        self,
        name: str,
        *,
        fail: list[Exception] | None = None,
        items: list[str] | None = None,
        fail_at: int | None = None,
        hang_first: bool = False,
    ) -> None:
        self.name = name
        self.fail = list(fail or [])
        self.items = items if items is not None else [f"{name}-1", f"{name}-2", f"{name}-3"]
        self.fail_at = fail_at
        self.hang_first = hang_first
        self.calls = 0
        self.streams: list[ScriptedStream] = []

    async def transcribe(self, audio: str) -> str:
        self.calls += 1
        if self.fail:
            raise self.fail.pop(0)
        return f"{self.name}:{audio}"

    def stream(self) -> ScriptedStream:
        self.calls += 1
        error = self.fail.pop(0) if self.fail else EngineError("mid-stream", engine=self.name)
        s = ScriptedStream(self.items, self.fail_at, self.hang_first, error)
        self.streams.append(s)
        return s


class Fallbacks:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, BaseException]] = []

    def __call__(self, kind: str, name: str, exc: BaseException) -> None:
        self.seen.append((kind, name, exc))


def chain(
    *engines: FakeEngine,
    clock: FakeClock | None = None,
    on_fallback: Fallbacks | None = None,
    threshold: int = 1,
    timeout: float | None = None,
    retry_policy: RetryPolicy | None = None,
) -> FallbackChain[FakeEngine]:
    fake_clock = clock if clock is not None else FakeClock()

    def factory(name: str) -> CircuitBreaker:
        return CircuitBreaker(name, failure_threshold=threshold, recovery_timeout=10.0, clock=fake_clock)

    return FallbackChain(
        "stt",
        engines,
        timeout=timeout,
        retry_policy=retry_policy,
        breaker_factory=factory,
        on_fallback=on_fallback,
    )


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [item async for item in stream]


# -- call --------------------------------------------------------------------------------------


async def test_uses_primary_when_healthy() -> None:
    primary, secondary = FakeEngine("a"), FakeEngine("b")
    c = chain(primary, secondary)
    assert await c.call(lambda e: e.transcribe("hi")) == "a:hi"
    assert c.last_used == "a"
    assert secondary.calls == 0
    assert set(c.breakers) == {"a", "b"}
    assert list(c.engines) == [primary, secondary]


async def test_uses_secondary_when_primary_fails(caplog: pytest.LogCaptureFixture) -> None:
    error = EngineError("model crashed")
    primary, secondary = FakeEngine("a", fail=[error]), FakeEngine("b")
    fallbacks = Fallbacks()
    c = chain(primary, secondary, on_fallback=fallbacks, threshold=3)

    with caplog.at_level(logging.WARNING, logger="aria.core.failover"):
        assert await c.call(lambda e: e.transcribe("hi")) == "b:hi"

    assert c.last_used == "b"
    assert fallbacks.seen == [("stt", "a", error)]
    assert c.breakers["a"].failures == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "aria.core.failover"]
    assert len(warnings) == 1
    assert "a" in warnings[0]
    assert "model crashed" in warnings[0]


async def test_skips_open_primary_then_returns_after_recovery() -> None:
    clock = FakeClock()
    primary, secondary = FakeEngine("a", fail=[EngineError("down")]), FakeEngine("b")
    fallbacks = Fallbacks()
    c = chain(primary, secondary, clock=clock, on_fallback=fallbacks)

    assert await c.call(lambda e: e.transcribe("1")) == "b:1"
    assert state_of(c.breakers["a"]) is BreakerState.OPEN

    assert await c.call(lambda e: e.transcribe("2")) == "b:2"
    assert primary.calls == 1  # skipped while open, not called
    assert len(fallbacks.seen) == 1  # a skip is not a failure

    clock.advance(10.0)
    assert await c.call(lambda e: e.transcribe("3")) == "a:3"
    assert c.last_used == "a"
    assert state_of(c.breakers["a"]) is BreakerState.CLOSED


async def test_invalid_input_is_not_fallen_back() -> None:
    bad = InvalidInput("audio must be 16 kHz")
    primary, secondary = FakeEngine("a", fail=[bad]), FakeEngine("b")
    fallbacks = Fallbacks()
    c = chain(primary, secondary, on_fallback=fallbacks)

    with pytest.raises(InvalidInput) as info:
        await c.call(lambda e: e.transcribe("hi"))

    assert info.value is bad
    assert secondary.calls == 0
    assert fallbacks.seen == []
    assert state_of(c.breakers["a"]) is BreakerState.CLOSED


async def test_all_engines_failed_lists_every_error() -> None:
    err_a, err_c = EngineError("a broke"), ConnectionError("c unreachable")
    a, b, c_ = FakeEngine("a", fail=[err_a]), FakeEngine("b"), FakeEngine("c", fail=[err_c])
    c = chain(a, b, c_)
    c.breakers["b"].record_failure(EngineError("earlier"))  # b is open: skipped

    with pytest.raises(AllEnginesFailed) as info:
        await c.call(lambda e: e.transcribe("hi"))

    errors = info.value.errors
    assert errors[0] is err_a
    assert isinstance(errors[1], CircuitOpenError)
    assert errors[1].engine == "b"
    assert errors[2] is err_c
    assert info.value.engine == "stt"
    assert "every stt engine failed" in str(info.value)
    assert info.value.__cause__ is err_c
    assert b.calls == 0


async def test_empty_chain_fails() -> None:
    c: FallbackChain[FakeEngine] = FallbackChain("tts", [])
    with pytest.raises(AllEnginesFailed, match="no engine configured"):
        await c.call(lambda e: e.transcribe("x"))


async def test_retries_each_engine_before_falling_back() -> None:
    primary = FakeEngine("a", fail=[EngineTimeout("slow"), EngineTimeout("slow again")])
    secondary = FakeEngine("b")
    policy = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, jitter=0.0)
    c = chain(primary, secondary, threshold=5, retry_policy=policy)

    assert await c.call(lambda e: e.transcribe("x")) == "b:x"
    assert primary.calls == 2
    assert c.breakers["a"].failures == 1  # one breaker outcome per engine, around the retries


async def test_call_timeout_falls_back() -> None:
    class Hanging(FakeEngine):
        async def transcribe(self, audio: str) -> str:
            self.calls += 1
            await asyncio.Event().wait()
            return "never"

    c = chain(Hanging("a"), FakeEngine("b"), timeout=0.005)
    assert await c.call(lambda e: e.transcribe("x")) == "b:x"


async def test_cancellation_propagates_without_fallback() -> None:
    started = asyncio.Event()

    class Hanging(FakeEngine):
        async def transcribe(self, audio: str) -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

    secondary = FakeEngine("b")
    c = chain(Hanging("a"), secondary)
    task = asyncio.create_task(c.call(lambda e: e.transcribe("x")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert secondary.calls == 0
    assert c.breakers["a"].failures == 0


def test_rejects_duplicate_names_and_bad_timeout() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        FallbackChain("stt", [FakeEngine("a"), FakeEngine("a")])
    with pytest.raises(ValueError, match="timeout"):
        FallbackChain("stt", [FakeEngine("a")], timeout=0)


# -- stream ------------------------------------------------------------------------------------


async def test_stream_from_primary_closes_iterator() -> None:
    primary, secondary = FakeEngine("a"), FakeEngine("b")
    c = chain(primary, secondary)
    assert await collect(c.stream(lambda e: e.stream())) == ["a-1", "a-2", "a-3"]
    assert primary.streams[0].closed
    assert secondary.calls == 0
    assert c.last_used == "a"
    assert c.breakers["a"].total_calls == 1


async def test_stream_falls_back_before_first_item() -> None:
    primary = FakeEngine("a", fail_at=0, fail=[EngineError("no first item")])
    secondary = FakeEngine("b")
    fallbacks = Fallbacks()
    c = chain(primary, secondary, on_fallback=fallbacks)

    assert await collect(c.stream(lambda e: e.stream())) == ["b-1", "b-2", "b-3"]

    assert primary.streams[0].closed
    assert [name for _, name, _ in fallbacks.seen] == ["a"]
    assert state_of(c.breakers["a"]) is BreakerState.OPEN
    assert c.last_used == "b"


async def test_stream_first_item_timeout_falls_back() -> None:
    primary, secondary = FakeEngine("a", hang_first=True), FakeEngine("b")
    fallbacks = Fallbacks()
    c = chain(primary, secondary, on_fallback=fallbacks, timeout=30.0)

    result = await collect(c.stream(lambda e: e.stream(), first_item_timeout=0.005))

    assert result == ["b-1", "b-2", "b-3"]
    assert primary.streams[0].closed
    assert isinstance(fallbacks.seen[0][2], EngineTimeout)
    assert "first item timed out after 0.005 s" in str(fallbacks.seen[0][2])


async def test_stream_chain_timeout_bounds_first_item_by_default() -> None:
    c = chain(FakeEngine("a", hang_first=True), FakeEngine("b"), timeout=0.005)
    assert await collect(c.stream(lambda e: e.stream())) == ["b-1", "b-2", "b-3"]


async def test_stream_does_not_fall_back_after_first_item() -> None:
    primary, secondary = FakeEngine("a", fail_at=2), FakeEngine("b")
    fallbacks = Fallbacks()
    c = chain(primary, secondary, on_fallback=fallbacks)
    received: list[str] = []

    async def consume() -> None:
        async for item in c.stream(lambda e: e.stream()):
            received.append(item)

    with pytest.raises(EngineError, match="mid-stream"):
        await consume()

    assert received == ["a-1", "a-2"]
    assert secondary.calls == 0
    assert fallbacks.seen == []
    assert primary.streams[0].closed
    assert c.breakers["a"].total_failures == 1


async def test_stream_all_failed() -> None:
    c = chain(FakeEngine("a", fail_at=0), FakeEngine("b", fail_at=0))
    with pytest.raises(AllEnginesFailed) as info:
        await collect(c.stream(lambda e: e.stream()))
    assert [type(e) for e in info.value.errors] == [EngineError, EngineError]


async def test_stream_skips_open_engine() -> None:
    primary, secondary = FakeEngine("a"), FakeEngine("b")
    c = chain(primary, secondary)
    c.breakers["a"].record_failure(EngineError("earlier"))
    assert await collect(c.stream(lambda e: e.stream())) == ["b-1", "b-2", "b-3"]
    assert primary.calls == 0


async def test_stream_invalid_input_is_not_fallen_back() -> None:
    bad = InvalidInput("empty text")
    secondary = FakeEngine("b")
    c = chain(FakeEngine("a", fail_at=0, fail=[bad]), secondary)
    with pytest.raises(InvalidInput):
        await collect(c.stream(lambda e: e.stream()))
    assert secondary.calls == 0


async def test_empty_stream_is_a_success() -> None:
    primary = FakeEngine("a", items=[])
    c = chain(primary, FakeEngine("b"))
    assert await collect(c.stream(lambda e: e.stream())) == []
    assert c.last_used == "a"
    assert c.breakers["a"].failures == 0
    assert primary.streams[0].closed


async def test_stream_aclose_on_early_consumer_exit() -> None:
    clock = FakeClock()
    primary = FakeEngine("a")
    c = chain(primary, FakeEngine("b"), clock=clock)
    c.breakers["a"].record_failure(EngineError("earlier"))
    clock.advance(10.0)  # half-open: this stream is the probe

    async with contextlib.aclosing(c.stream(lambda e: e.stream())) as items:
        async for item in items:
            assert item == "a-1"
            break

    assert primary.streams[0].closed
    assert state_of(c.breakers["a"]) is BreakerState.CLOSED  # delivered output: the probe succeeded


async def test_stream_aclose_on_consumer_cancellation() -> None:
    release = asyncio.Event()
    got_first = asyncio.Event()

    class SlowSecond(ScriptedStream):
        async def __anext__(self) -> str:
            if self.index == 1:
                await release.wait()
            return await super().__anext__()

    class Engine(FakeEngine):
        def stream(self) -> ScriptedStream:
            s = SlowSecond(self.items, None, False, EngineError("x"))
            self.streams.append(s)
            return s

    primary = Engine("a")
    c = chain(primary, FakeEngine("b"))

    async def consume() -> None:
        async with contextlib.aclosing(c.stream(lambda e: e.stream())) as items:
            async for _ in items:
                got_first.set()

    task = asyncio.create_task(consume())
    await got_first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert primary.streams[0].closed
    assert c.breakers["a"].failures == 0
    assert state_of(c.breakers["a"]) is BreakerState.CLOSED


async def test_stream_with_async_generator_engine() -> None:
    finalized: list[str] = []

    class GenEngine:
        def __init__(self, name: str) -> None:
            self.name = name

        async def stream(self) -> AsyncIterator[str]:
            try:
                for i in range(5):
                    yield f"{self.name}-{i}"
            finally:
                finalized.append(self.name)

    c: FallbackChain[GenEngine] = FallbackChain("tts", [GenEngine("kokoro")])
    async with contextlib.aclosing(c.stream(lambda e: e.stream())) as items:
        first = await anext(items)
    assert first == "kokoro-0"
    assert finalized == ["kokoro"]


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


async def test_a_full_bulkhead_sends_the_call_to_the_next_engine_without_blaming_the_busy_one() -> None:
    busy, spare = Named("busy"), Named("spare")
    chain = FallbackChain("llm", [busy, spare], timeout=5.0, max_concurrency=1, bulkhead_wait_s=0.05)
    release = asyncio.Event()
    served: list[str] = []

    async def work(engine: Named) -> str:
        served.append(engine.name)
        if engine is busy:
            await release.wait()
        return engine.name

    first = asyncio.create_task(chain.call(work))
    await asyncio.sleep(0.01)
    assert chain.in_use("busy") == 1
    assert await chain.call(work) == "spare"  # waited 50 ms for a slot, then fell back
    assert chain.breakers["busy"].failures == 0
    release.set()
    assert await first == "busy"
    assert chain.in_use("busy") == 0
    assert served == ["busy", "spare"]


async def test_a_stream_holds_its_bulkhead_slot_until_it_ends() -> None:
    only = Named("only")
    chain = FallbackChain("tts", [only], timeout=0.05, max_concurrency=1)

    async def speak(engine: Named) -> AsyncIterator[str]:
        for word in ("a", "b"):
            yield word

    stream = chain.stream(speak)
    assert await anext(stream) == "a"
    assert chain.in_use("only") == 1
    with pytest.raises(AllEnginesFailed, match="EngineBusy"):
        await chain.call(lambda e: asyncio.sleep(0, e.name))
    assert [x async for x in stream] == ["b"]
    assert chain.in_use("only") == 0
    assert await chain.call(lambda e: asyncio.sleep(0, e.name)) == "only"


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        FallbackChain("llm", [Named("x")], max_concurrency=0)
