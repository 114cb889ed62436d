"""Fallback wrappers: a chain of engines of one kind that is itself an engine of that kind.

``FallbackLLM([openai, builtin])`` streams from the first engine whose breaker is closed and that
produces a first token in time; engines that fail to ``start`` are left out of the chain (and said so in
the log and in ``health``). Behaviour added by wrapping, so the pipeline never knows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from aria.core.breaker import CircuitBreaker
from aria.core.failover import FallbackChain
from aria.core.retry import RetryPolicy
from aria.engines.base import (
    LLM,
    STT,
    TTS,
    Capabilities,
    Engine,
    EngineHealth,
    EngineKind,
    LLMChunk,
    LLMRequest,
    TurnDetector,
    TurnPrediction,
)
from aria.errors import AllEnginesFailed
from aria.types import AudioChunk, Transcription

__all__ = [
    "FallbackEngine",
    "FallbackLLM",
    "FallbackSTT",
    "FallbackTTS",
    "FallbackTurn",
    "answered_by",
    "primary",
    "serving",
]

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Engine)


class FallbackEngine(Generic[E]):
    """Lifecycle shared by the fallback wrappers: start every engine, keep those that started."""

    kind: ClassVar[EngineKind]

    def __init__(
        self,
        engines: Sequence[E],
        *,
        timeout: float | None = None,
        first_item_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        breaker_factory: Callable[[str], CircuitBreaker] | None = None,
        on_fallback: Callable[[str, str, BaseException], None] | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if not engines:
            raise ValueError("a fallback chain needs at least one engine")
        self.engines = list(engines)
        self.name = " > ".join(e.name for e in engines)
        self.capabilities: Capabilities = engines[0].capabilities
        self.first_item_timeout = first_item_timeout
        self.unavailable: dict[str, str] = {}
        self._chain_kw = {
            "timeout": timeout,
            "retry_policy": retry_policy,
            "breaker_factory": breaker_factory,
            "on_fallback": on_fallback,
            "max_concurrency": max_concurrency,
        }
        self.chain: FallbackChain[E] = FallbackChain(self.kind, self.engines, **self._chain_kw)  # type: ignore[arg-type]

    async def start(self) -> None:
        started: list[E] = []
        errors: list[BaseException] = []
        for engine in self.engines:
            try:
                await engine.start()
            except Exception as exc:
                log.warning("%s engine %s is unavailable: %s", self.kind, engine.name, exc)
                self.unavailable[engine.name] = str(exc)
                errors.append(exc)
            else:
                started.append(engine)
        if not started:
            raise AllEnginesFailed(self.kind, errors)
        self.capabilities = started[0].capabilities
        self.chain = FallbackChain(self.kind, started, **self._chain_kw)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        for engine in self.engines:
            try:
                await engine.aclose()
            except Exception:
                log.exception("closing %s engine %s failed", self.kind, engine.name)

    async def health(self) -> EngineHealth:
        parts = []
        ok = False
        for engine in self.chain.engines:
            state = self.chain.breakers[engine.name].state
            ok = ok or state != "open"
            parts.append(f"{engine.name}: {state}")
        parts.extend(f"{name}: unavailable ({why})" for name, why in self.unavailable.items())
        return EngineHealth(ok=ok, detail="; ".join(parts))

    @property
    def serving(self) -> E:
        """The member the next call goes to: the first that started whose breaker lets calls through
        (the first that started when every breaker is open)."""
        members = self.chain.engines
        return next((e for e in members if self.chain.breakers[e.name].state != "open"), members[0])


class FallbackLLM(FallbackEngine[LLM]):
    kind = "llm"

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        return self.chain.stream(lambda e: e.stream(request), first_item_timeout=self.first_item_timeout)

    async def complete(self, request: LLMRequest) -> str:
        return await self.chain.call(lambda e: e.complete(request))


class FallbackSTT(FallbackEngine[STT]):
    """Streams are not replayed: fallback happens before the first transcript of an utterance."""

    kind = "stt"

    def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        return self.chain.stream(lambda e: e.stream(audio), first_item_timeout=self.first_item_timeout)

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        return await self.chain.call(lambda e: e.transcribe(audio))


class FallbackTTS(FallbackEngine[TTS]):
    kind = "tts"

    def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        # Voices are per engine: a fallback that does not know the chosen voice uses its default.
        def speak(engine: TTS) -> AsyncIterator[AudioChunk]:
            primary = engine is self.chain.engines[0]
            known = primary or voice in engine.capabilities.voices
            return engine.synthesize(text, voice=voice if known else None)

        return self.chain.stream(speak, first_item_timeout=self.first_item_timeout)


class FallbackTurn(FallbackEngine[TurnDetector]):
    """A turn model that fails or runs past its deadline gives way to the next (``turn:silence`` last)."""

    kind = "turn"

    async def predict(self, audio: npt.NDArray[np.float32], text: str | None = None) -> TurnPrediction:
        return await self.chain.call(lambda e: e.predict(audio, text))


def primary(engine: Engine) -> Engine:
    """The engine a chain tries first (its first one that started), or the engine itself."""
    if isinstance(engine, FallbackEngine):
        return engine.chain.engines[0]  # type: ignore[no-any-return]
    return engine


def serving(engine: Engine) -> Engine:
    """The engine that answers the next call: a chain's serving member, or the engine itself."""
    if isinstance(engine, FallbackEngine):
        return engine.serving  # type: ignore[no-any-return]
    return engine


def answered_by(engine: Engine) -> str:
    """The name of the engine that gave the latest answer (a chain's member that last served, else the one
    serving now), with its model where it names one (``ollama (llava)``)."""
    member = serving(engine)
    if isinstance(engine, FallbackEngine) and engine.chain.last_used is not None:
        member = next((e for e in engine.chain.engines if e.name == engine.chain.last_used), member)
    model = getattr(getattr(member, "config", None), "model", None)
    if isinstance(model, str) and model and model not in member.name:
        return f"{member.name} ({model})"
    return member.name
