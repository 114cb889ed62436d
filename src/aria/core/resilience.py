"""Resilience for engine calls: retries with backoff, deadlines, circuit breakers, fallback chains.

This module re-exports the public API of :mod:`aria.core.retry`, :mod:`aria.core.breaker` and
:mod:`aria.core.failover`; import from here.
"""

from __future__ import annotations

import logging

from aria.core.breaker import BreakerState, CircuitBreaker, counts_as_failure
from aria.core.failover import FallbackChain, Named
from aria.core.retry import DEFAULT_RETRY_POLICY, RetryPolicy, is_retryable, retry, with_timeout

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "BreakerState",
    "CircuitBreaker",
    "FallbackChain",
    "Named",
    "RetryPolicy",
    "counts_as_failure",
    "is_retryable",
    "retry",
    "with_timeout",
]

logger = logging.getLogger(__name__)
