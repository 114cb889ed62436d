"""Quality degradation: when the model answers too slowly for a conversation, use a faster one until the
usual model is fast again.

:class:`LatencyGovernor` watches the time to the first token of each turn. When ``window`` turns in a
row are slower than ``bound_ms``, it says ``degrade``; while degraded, the usual model is probed in the
background (:meth:`LatencyGovernor.probe`, one tiny request) at most every ``probe_every_s``, and when a
probe comes back within the bound it says ``recover``. The transport swaps the models and tells the
person; turns never wait on a probe.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from aria.core.aio import closing_stream
from aria.engines.base import LLM, LLMRequest
from aria.types import GeneratedToken, Message

__all__ = ["LatencyGovernor", "Verdict", "first_token_ms"]

Verdict = Literal["degrade", "recover"]
_PROBE = LLMRequest(messages=(Message("user", "Reply with the single word: ready."),), max_tokens=4)


async def first_token_ms(llm: LLM, request: LLMRequest = _PROBE) -> float:
    """How long ``llm`` takes to its first token (the whole answer, if it sends none)."""
    started = time.perf_counter()
    async with closing_stream(llm.stream(request)) as chunks:
        async for chunk in chunks:
            if isinstance(chunk, GeneratedToken) and chunk.text:
                break
    return (time.perf_counter() - started) * 1000


class LatencyGovernor:
    def __init__(
        self,
        bound_ms: float,
        *,
        window: int = 3,
        probe_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bound_ms <= 0:
            raise ValueError(f"bound_ms must be positive, not {bound_ms}")
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.bound_ms = bound_ms
        self.window = window
        self.probe_every_s = probe_every_s
        self.degraded = False
        self._recent: deque[float] = deque(maxlen=window)
        self._clock = clock
        self._last_probe = float("-inf")

    def observe(self, latency_ms: float) -> Verdict | None:
        """A turn of the usual model took ``latency_ms`` to its first token (ignored while degraded:
        those turns ran on the faster model)."""
        if self.degraded:
            return None
        self._recent.append(latency_ms)
        if len(self._recent) == self.window and all(ms > self.bound_ms for ms in self._recent):
            self.degraded = True
            self._recent.clear()
            self._last_probe = self._clock()
            return "degrade"
        return None

    def reset(self) -> None:
        """Back to the usual model, with no history (after a mode switch)."""
        self.degraded = False
        self._recent.clear()

    def probe_due(self) -> bool:
        return self.degraded and self._clock() - self._last_probe >= self.probe_every_s

    async def probe(self, usual: LLM) -> Verdict | None:
        """Time one tiny request to the usual model; ``recover`` when it is within the bound."""
        self._last_probe = self._clock()
        try:
            latency = await first_token_ms(usual)
        except Exception:  # still broken: stay on the faster model
            return None
        if latency <= self.bound_ms:
            self.degraded = False
            return "recover"
        return None

    @property
    def recent_ms(self) -> list[float]:
        return list(self._recent)
