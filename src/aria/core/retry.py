"""Retrying with capped, jittered exponential backoff, and deadlines that raise engine errors.

* :func:`is_retryable` decides whether another attempt may help (the default ``retry_if``).
* :class:`RetryPolicy` holds the backoff parameters and computes the delay before each retry.
* :func:`retry` runs an async callable until it succeeds, the error is not retryable, or the
  attempts run out; the last error is re-raised unchanged.
* :func:`with_timeout` bounds an awaitable and turns the deadline into :class:`~aria.errors.EngineTimeout`.

``sleep`` and ``rng`` are injectable so tests run without real waiting and with reproducible jitter.
``asyncio.CancelledError`` is never retried: cancellation always propagates at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aria.errors import EngineError, EngineTimeout

__all__ = ["DEFAULT_RETRY_POLICY", "RetryPolicy", "is_retryable", "retry", "with_timeout"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt after ``exc`` may succeed.

    :class:`~aria.errors.EngineError` answers with its ``retryable`` flag; ``TimeoutError`` and
    ``ConnectionError`` are transient; everything else (``InvalidInput``, ``ValueError``, bugs,
    ``asyncio.CancelledError``) is not.
    """
    if isinstance(exc, asyncio.CancelledError):
        return False
    if isinstance(exc, EngineError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts to make and how long to wait between them.

    The delay before retry number ``attempt + 1`` (``attempt`` counted from 0) is
    ``min(max_delay, base_delay * multiplier ** attempt)`` scaled by a random factor drawn uniformly
    from ``[1 - jitter, 1 + jitter]``; with jitter the result may exceed ``max_delay`` by that factor.
    """

    attempts: int = 3
    base_delay: float = 0.1
    max_delay: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0:
            raise ValueError(f"base_delay must be >= 0, got {self.base_delay}")
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay ({self.max_delay}) must be >= base_delay ({self.base_delay})")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (counted from 0)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        try:
            raw = self.base_delay * self.multiplier**attempt
        except OverflowError:
            raw = self.max_delay
        capped = min(self.max_delay, raw)
        return capped * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)


#: Three attempts, 0.1 s doubling up to 2 s, ±20 % jitter.
DEFAULT_RETRY_POLICY = RetryPolicy()


async def retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    *,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, making at most ``policy.attempts`` attempts.

    Only ``Exception`` subclasses that ``retry_if`` accepts are retried; anything else, and the error
    of the last attempt, is re-raised unchanged. Before each retry the failure is logged at WARNING,
    ``on_retry(attempt, error, delay)`` is called (``attempt`` is the 1-based number of the attempt
    that failed) and ``sleep(delay)`` is awaited.
    """
    rand = rng if rng is not None else random.Random()
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if attempt + 1 >= policy.attempts or not retry_if(exc):
                raise
            wait = policy.delay(attempt, rand)
            logger.warning(
                "attempt %d/%d failed (%s: %s); retrying in %.3f s",
                attempt + 1,
                policy.attempts,
                type(exc).__name__,
                exc,
                wait,
            )
            if on_retry is not None:
                on_retry(attempt + 1, exc, wait)
        await sleep(wait)
        attempt += 1


async def with_timeout(aw: Awaitable[T], seconds: float | None, *, engine: str = "", what: str = "call") -> T:
    """Await ``aw`` for at most ``seconds`` (``None``: no limit).

    When the deadline passes the awaitable is cancelled and :class:`~aria.errors.EngineTimeout`
    (retryable) is raised from the ``TimeoutError``. A ``TimeoutError`` raised by ``aw`` itself,
    before the deadline, propagates unchanged.
    """
    if seconds is None:
        return await aw
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await aw
    except TimeoutError as exc:
        if deadline.expired():
            raise EngineTimeout(f"{what} timed out after {seconds:g} s", engine=engine) from exc
        raise
