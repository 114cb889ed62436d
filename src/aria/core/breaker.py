"""A circuit breaker that stops calling an engine that keeps failing, then probes it again.

::

    CLOSED ──failure_threshold consecutive failures──▶ OPEN
      ▲                                                  │ recovery_timeout passes (read lazily)
      │                                                  ▼
      └──────────── a probe succeeds ─────────────── HALF_OPEN ──a probe fails──▶ OPEN (new period)

While OPEN every call is rejected with :class:`~aria.errors.CircuitOpenError` without running it.
In HALF_OPEN at most ``half_open_max_calls`` probe calls run at once; the rest are rejected.

What counts as a failure: any ``Exception`` except :class:`~aria.errors.InvalidInput` (bad input is
the caller's fault, not the engine's). ``asyncio.CancelledError`` (and any other ``BaseException``)
counts as neither success nor failure; it only frees the probe slot it held.

The breaker is meant for one event loop and is not thread-safe. The clock is injectable for tests.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aria.errors import CircuitOpenError, InvalidInput

__all__ = ["BreakerState", "CircuitBreaker", "counts_as_failure"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerState(enum.StrEnum):
    """The state of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def counts_as_failure(exc: BaseException) -> bool:
    """Whether ``exc`` ending a guarded call counts against the engine."""
    return isinstance(exc, Exception) and not isinstance(exc, InvalidInput)


class CircuitBreaker:
    """Guard calls to one engine; see the module docstring for the state machine.

    ``on_state_change(name, old, new)`` is called after every transition, including the lazy
    OPEN -> HALF_OPEN one that happens when :attr:`state` is read after ``recovery_timeout``.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if recovery_timeout < 0:
            raise ValueError(f"recovery_timeout must be >= 0, got {recovery_timeout}")
        if half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be >= 1, got {half_open_max_calls}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.half_open_max_calls = half_open_max_calls
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        # Bumped on every transition so that a guard only frees a probe slot of the period it took it in.
        self._epoch = 0
        self._probes = 0
        self._failures = 0
        self._total_failures = 0
        self._total_calls = 0
        self._opened_count = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value}, failures={self._failures})"

    # -- observation ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN becomes HALF_OPEN here once ``recovery_timeout`` has passed."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.recovery_timeout:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def retry_after(self) -> float:
        """Seconds until a probe call is allowed; 0 when CLOSED or HALF_OPEN."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.recovery_timeout - self._clock())

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def total_failures(self) -> int:
        """Failures recorded over the breaker's lifetime."""
        return self._total_failures

    @property
    def total_calls(self) -> int:
        """Calls admitted through :meth:`call` or :meth:`guard` (rejected calls are not counted)."""
        return self._total_calls

    @property
    def opened_count(self) -> int:
        """How many times the breaker has opened."""
        return self._opened_count

    # -- outcomes ------------------------------------------------------------------------------

    def record_success(self) -> None:
        """Record a successful call: resets the failure count and closes a HALF_OPEN breaker.

        A success reported while OPEN (a call admitted before the breaker opened) changes nothing.
        """
        state = self.state
        if state is BreakerState.OPEN:
            return
        self._failures = 0
        if state is BreakerState.HALF_OPEN:
            self._transition(BreakerState.CLOSED)

    def record_failure(self, exc: BaseException | None = None) -> None:
        """Record a failed call; ``exc`` that does not count as a failure (see module doc) is ignored.

        Opens a CLOSED breaker at ``failure_threshold`` consecutive failures and re-opens a
        HALF_OPEN one (starting a new recovery period).
        """
        if exc is not None and not counts_as_failure(exc):
            return
        state = self.state
        self._failures += 1
        self._total_failures += 1
        if state is BreakerState.HALF_OPEN or (
            state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._transition(BreakerState.OPEN)

    # -- guarding calls ------------------------------------------------------------------------

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` if admitted and record its outcome; raise CircuitOpenError otherwise."""
        async with self.guard():
            return await fn()

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """``async with breaker.guard(): ...``: admit the block or raise CircuitOpenError.

        The block's outcome is recorded like :meth:`call`'s, so streaming code can hold the guard
        around a whole stream.
        """
        epoch = self._admit()
        try:
            yield
        except BaseException as exc:
            if counts_as_failure(exc):
                self.record_failure(exc)
            raise
        else:
            self.record_success()
        finally:
            self._release(epoch)

    def _admit(self) -> int | None:
        """Admit one call; return the epoch of the probe slot it took (None when CLOSED)."""
        state = self.state
        if state is BreakerState.CLOSED:
            self._total_calls += 1
            return None
        if state is BreakerState.HALF_OPEN and self._probes < self.half_open_max_calls:
            self._probes += 1
            self._total_calls += 1
            return self._epoch
        remaining = self.retry_after
        raise CircuitOpenError(f"circuit open, retry in {remaining:.1f} s", engine=self.name)

    def _release(self, epoch: int | None) -> None:
        if epoch is not None and epoch == self._epoch and self._state is BreakerState.HALF_OPEN:
            self._probes = max(0, self._probes - 1)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        self._epoch += 1
        self._probes = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
            self._opened_count += 1
            logger.warning(
                "circuit %s opened after %d consecutive failures; probing again in %g s",
                self.name,
                self._failures,
                self.recovery_timeout,
            )
        else:
            logger.info("circuit %s: %s -> %s", self.name, old.value, new.value)
        if self._on_state_change is not None:
            self._on_state_change(self.name, old, new)
