"""Quality degradation: when the model answers too slowly for a conversation, use a faster one until the
usual model is fast again.

:class:`GovernedLLM` is that behaviour as an LLM wrapper (like the fallback chain): it times each answer's
first token itself, and while answers are slow it streams from the faster model. :class:`LatencyGovernor`
watches the time to the first token of each turn. When ``window`` turns in a
row are slower than ``bound_ms``, it says ``degrade``; while degraded, the usual model is probed in the
background (:meth:`LatencyGovernor.probe`, one tiny request) at most every ``probe_every_s``, and when a
probe comes back within the bound it says ``recover``. Each switch is announced on
:attr:`GovernedLLM.changes` (for the person to be told); turns never wait on a probe or on the faster
model loading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from aria.core.aio import closing_stream
from aria.core.channels import Channel, Overflow
from aria.engines.base import LLM, Capabilities, EngineHealth, EngineKind, LLMChunk, LLMRequest
from aria.types import GeneratedToken, Message

__all__ = ["GovernedLLM", "LatencyGovernor", "QualityChange", "Verdict", "first_token_ms"]

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class QualityChange:
    """Answers switched to the faster model (``degraded``) or back to the usual one (``recovered``);
    ``model`` answers from now on."""

    state: Literal["degraded", "recovered"]
    model: str
    usual: str
    bound_ms: float


class GovernedLLM:
    """``usual``, or the faster model while ``usual`` is too slow (see :class:`LatencyGovernor`).

    ``fast()`` brings the faster model (None when there is none or it cannot load); ``release()`` says it
    is no longer needed. Neither is called while a turn waits: the switch happens in the background after
    the slow answer that decided it, the probe beside the answer that found it due."""

    kind: ClassVar[EngineKind] = "llm"

    def __init__(
        self,
        usual: LLM,
        governor: LatencyGovernor,
        *,
        fast: Callable[[], Awaitable[LLM | None]],
        release: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.usual, self.governor = usual, governor
        self._fast, self._release, self._clock = fast, release, clock
        self.faster: LLM | None = None
        #: Each switch, for the person to be told.
        self.changes: Channel[QualityChange] = Channel(8, Overflow.DROP_OLDEST, name="quality")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probing = False

    @property
    def serving(self) -> LLM:
        """The model that answers now."""
        return self.faster if self.faster is not None and self.governor.degraded else self.usual

    @property
    def name(self) -> str:
        return self.serving.name

    @name.setter
    def name(self, value: str) -> None:
        self.serving.name = value

    @property
    def capabilities(self) -> Capabilities:
        return self.serving.capabilities

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        self.serving.capabilities = value

    async def start(self) -> None:
        """The models are started by whoever owns them (the residency manager)."""

    async def health(self) -> EngineHealth:
        return await self.serving.health()

    async def aclose(self) -> None:
        """Stop switching: background work ends, the faster model is released, ``changes`` closes."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.faster is not None:
            self.faster = None
            self._release()
        self.changes.close()

    async def complete(self, request: LLMRequest) -> str:
        return await self.serving.complete(request)

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        if self.governor.degraded:
            if self.faster is not None and not self._probing and self.governor.probe_due():
                self._probing = True
                self._spawn(self._probe())
            async with closing_stream(self.serving.stream(request)) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        started, first_ms = self._clock(), None
        async with closing_stream(self.usual.stream(request)) as chunks:
            async for chunk in chunks:
                if first_ms is None and isinstance(chunk, GeneratedToken) and chunk.text:
                    first_ms = (self._clock() - started) * 1000
                yield chunk
        if first_ms is not None and self.governor.observe(first_ms) == "degrade":
            self._spawn(self._degrade())

    async def _degrade(self) -> None:
        try:
            fast = await self._fast()
        except Exception:
            log.exception("the faster model could not be brought in")
            fast = None
        if fast is None:
            self.governor.reset()
            return
        self.faster = fast
        self.changes.send_nowait(
            QualityChange("degraded", fast.name, self.usual.name, self.governor.bound_ms)
        )

    async def _probe(self) -> None:
        try:
            verdict = await self.governor.probe(self.usual)
        finally:
            self._probing = False
        if verdict != "recover":
            return
        self.faster = None
        self._release()
        self.changes.send_nowait(
            QualityChange("recovered", self.usual.name, self.usual.name, self.governor.bound_ms)
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="quality")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
