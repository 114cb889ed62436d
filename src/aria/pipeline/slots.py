"""Stable engines for residency slots: each call goes to the engine the slot holds at the time.

:meth:`~aria.pipeline.residency.ResidencyManager.handle` makes them. A pipeline built over handles keeps
working when the slot's engine is swapped (restarted after a crash, reloaded with a downloaded or newly
chosen model): nothing is rebuilt and nobody has to be told. The slot's lifecycle stays with the manager.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import ClassVar, cast

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
)
from aria.errors import EngineUnavailable
from aria.types import AudioChunk, Transcription

__all__ = ["HANDLES", "SlotEngine", "SlotLLM", "SlotSTT", "SlotTTS"]


class SlotEngine:
    """The engine a slot holds at each call (see :meth:`ResidencyManager.handle`). Its lifecycle belongs to
    the manager: ``start`` and ``aclose`` do nothing."""

    kind: ClassVar[EngineKind]

    def __init__(self, lookup: Callable[[str], Engine | None], slot: str) -> None:
        self.lookup, self.slot = lookup, slot
        self._last: Engine | None = lookup(slot)

    @property
    def engine(self) -> Engine:
        """The slot's engine now; :class:`EngineUnavailable` when the slot is not resident."""
        engine = self.lookup(self.slot)
        if engine is None:
            raise EngineUnavailable(f"{self.slot} is not loaded", engine=self.slot)
        self._last = engine
        return engine

    def _known(self) -> Engine | None:
        engine = self.lookup(self.slot)
        if engine is not None:
            self._last = engine
        return self._last

    @property
    def name(self) -> str:
        known = self._known()
        return known.name if known is not None else self.slot

    @name.setter
    def name(self, value: str) -> None:
        self.engine.name = value

    @property
    def capabilities(self) -> Capabilities:
        known = self._known()
        return known.capabilities if known is not None else Capabilities()

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        self.engine.capabilities = value

    async def start(self) -> None:
        """The manager loads the slot."""

    async def aclose(self) -> None:
        """The manager unloads the slot."""

    async def health(self) -> EngineHealth:
        engine = self.lookup(self.slot)
        if engine is None:
            return EngineHealth(ok=False, detail=f"{self.slot} is not loaded")
        return await engine.health()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.slot}: {self.name}>"


class SlotLLM(SlotEngine):
    kind = "llm"

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        return cast(LLM, self.engine).stream(request)

    async def complete(self, request: LLMRequest) -> str:
        return await cast(LLM, self.engine).complete(request)


class SlotSTT(SlotEngine):
    kind = "stt"

    def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        return cast(STT, self.engine).stream(audio)

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        return await cast(STT, self.engine).transcribe(audio)


class SlotTTS(SlotEngine):
    kind = "tts"

    def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        return cast(TTS, self.engine).synthesize(text, voice=voice)


HANDLES: dict[str, type[SlotEngine]] = {"llm": SlotLLM, "stt": SlotSTT, "tts": SlotTTS}
