"""A fallback chain: try engines of one kind in order until one succeeds.

Each engine has its own :class:`~aria.core.breaker.CircuitBreaker`; an engine whose breaker is open
is skipped without being called. One engine attempt is ``breaker(retry(with_timeout(fn(engine))))``.

* :class:`~aria.errors.InvalidInput` is re-raised at once: bad input is bad for every engine.
* When every engine fails, :class:`~aria.errors.AllEnginesFailed` lists each engine's error in order
  (a :class:`~aria.errors.CircuitOpenError` for a skipped one).
* Streams fall back only before their first item: once output has reached the caller, a mid-stream
  error is recorded on that engine's breaker and re-raised as-is.
* A bulkhead bounds each engine's concurrent calls (``max_concurrency``; a stream holds its slot until
  it ends): a call that cannot get a slot within its timeout goes to the next engine, without counting
  as a failure of the busy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from aria.core.aio import aclose_quietly
from aria.core.breaker import CircuitBreaker
from aria.core.retry import RetryPolicy, retry, with_timeout
from aria.errors import AllEnginesFailed, EngineBusy, InvalidInput

__all__ = ["FallbackChain", "Named"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SINGLE_ATTEMPT = RetryPolicy(attempts=1)


class Named(Protocol):
    """Anything with a ``name``: what a fallback chain needs to know about an engine."""

    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=Named)


def _default_breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(name, failure_threshold=3, recovery_timeout=10.0)


class FallbackChain(Generic[E]):
    """Engines of one ``kind`` tried in order, each behind its own circuit breaker.

    ``timeout`` bounds each attempt (each call, or the wait for a stream's first item);
    ``retry_policy`` retries an engine before falling back (``None``: one attempt per engine);
    ``breaker_factory(name)`` builds each engine's breaker (default: 3 failures, 10 s recovery);
    ``on_fallback(kind, engine_name, error)`` is called each time an engine fails, after which the
    chain tries the next engine (or raises AllEnginesFailed after the last). Skipping an engine
    whose breaker is open is not a failure and does not call it.
    """

    def __init__(
        self,
        kind: str,
        engines: Sequence[E],
        *,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker_factory: Callable[[str], CircuitBreaker] | None = None,
        on_fallback: Callable[[str, str, BaseException], None] | None = None,
        max_concurrency: int | None = None,
        bulkhead_wait_s: float | None = None,
    ) -> None:
        names = [engine.name for engine in engines]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"{kind} fallback chain has duplicate engine names: {', '.join(duplicates)}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout}")
        factory = breaker_factory if breaker_factory is not None else _default_breaker
        self.kind = kind
        self.engines: Sequence[E] = tuple(engines)
        self.timeout = timeout
        self.retry_policy = retry_policy if retry_policy is not None else _SINGLE_ATTEMPT
        self.breakers: dict[str, CircuitBreaker] = {name: factory(name) for name in names}
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        #: How long a call waits for a bulkhead slot before going to the next engine (None: the timeout).
        self.bulkhead_wait_s = bulkhead_wait_s
        self._slots: dict[str, asyncio.Semaphore] = {
            name: asyncio.Semaphore(max_concurrency) for name in names if max_concurrency is not None
        }
        self._busy: dict[str, int] = {}
        self.last_used: str | None = None
        self._on_fallback = on_fallback

    def __repr__(self) -> str:
        return f"FallbackChain({self.kind!r}, [{', '.join(e.name for e in self.engines)}])"

    async def call(self, fn: Callable[[E], Awaitable[T]]) -> T:
        """Return ``await fn(engine)`` from the first engine that succeeds."""
        errors: list[BaseException] = []
        for engine in self.engines:
            admitted = False
            try:
                async with self._bulkhead(engine, self.timeout), self.breakers[engine.name].guard():
                    admitted = True
                    result = await retry(functools.partial(self._attempt, engine, fn), self.retry_policy)
            except InvalidInput:
                raise
            except Exception as exc:
                self._failed(engine, exc, errors, admitted=admitted)
                continue
            self.last_used = engine.name
            return result
        raise AllEnginesFailed(self.kind, errors) from (errors[-1] if errors else None)

    async def stream(
        self, fn: Callable[[E], AsyncIterator[T]], *, first_item_timeout: float | None = None
    ) -> AsyncGenerator[T, None]:
        """Yield the items of ``fn(engine)`` from the first engine that produces one.

        Waiting for the first item is bounded by ``first_item_timeout`` (else ``timeout``) and
        retried per ``retry_policy``; later items are not time-bounded. Once an item has been
        yielded there is no fallback: an error is recorded on the engine's breaker and re-raised.
        A stream that ends records success, and so does a consumer that stops after the first item;
        cancellation records neither. The engine's iterator is always closed (``aclose``). Consume
        with ``contextlib.aclosing`` so that an early exit closes this generator promptly.
        """
        wait = first_item_timeout if first_item_timeout is not None else self.timeout
        errors: list[BaseException] = []
        for engine in self.engines:
            breaker = self.breakers[engine.name]
            admitted = False
            delivered = False
            try:
                async with self._bulkhead(engine, wait), breaker.guard():
                    admitted = True
                    opened = functools.partial(self._open, engine, fn, wait)
                    iterator, head = await retry(opened, self.retry_policy)
                    self.last_used = engine.name
                    try:
                        for item in head:
                            delivered = True
                            yield item
                        if head:
                            async for item in iterator:
                                yield item
                    except GeneratorExit:
                        breaker.record_success()
                        raise
                    finally:
                        await aclose_quietly(iterator)
                return
            except InvalidInput:
                raise
            except Exception as exc:
                if delivered:
                    raise
                self._failed(engine, exc, errors, admitted=admitted)
        raise AllEnginesFailed(self.kind, errors) from (errors[-1] if errors else None)

    def in_use(self, name: str) -> int:
        """Calls the named engine is serving now (counted with a bulkhead only)."""
        return self._busy.get(name, 0)

    @contextlib.asynccontextmanager
    async def _bulkhead(self, engine: E, wait: float | None) -> AsyncIterator[None]:
        slots = self._slots.get(engine.name)
        if slots is None:
            yield
            return
        wait = self.bulkhead_wait_s if self.bulkhead_wait_s is not None else wait
        try:
            # ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` swallows a cancellation
            # that arrives just as the inner acquire completes, and a barged-in turn would run on.
            async with asyncio.timeout(wait):
                await slots.acquire()
        except TimeoutError:
            raise EngineBusy(
                f"all {self.max_concurrency} slots stayed busy for {wait} s", engine=engine.name
            ) from None
        self._busy[engine.name] = self._busy.get(engine.name, 0) + 1
        try:
            yield
        finally:
            self._busy[engine.name] -= 1
            slots.release()

    async def _attempt(self, engine: E, fn: Callable[[E], Awaitable[T]]) -> T:
        return await with_timeout(fn(engine), self.timeout, engine=engine.name, what=f"{self.kind} call")

    async def _open(
        self, engine: E, fn: Callable[[E], AsyncIterator[T]], wait: float | None
    ) -> tuple[AsyncIterator[T], tuple[T, ...]]:
        """Start ``fn(engine)`` and wait for its first item; the tuple is empty if the stream ended."""
        iterator = fn(engine)
        try:
            first = await with_timeout(
                anext(iterator), wait, engine=engine.name, what=f"{self.kind} first item"
            )
        except StopAsyncIteration:
            return iterator, ()
        except BaseException:
            await aclose_quietly(iterator)
            raise
        return iterator, (first,)

    def _failed(self, engine: E, exc: Exception, errors: list[BaseException], *, admitted: bool) -> None:
        errors.append(exc)
        if not admitted:
            logger.info("%s engine %s skipped: %s", self.kind, engine.name, exc)
            return
        logger.warning(
            "%s engine %s failed (%s: %s); falling back", self.kind, engine.name, type(exc).__name__, exc
        )
        if self._on_fallback is not None:
            self._on_fallback(self.kind, engine.name, exc)
