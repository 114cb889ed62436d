"""Assemble a voice pipeline from settings: create and start the configured engines."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aria.core.config import Settings
from aria.core.events import EventBus, EventType
from aria.core.history import History
from aria.engines.base import LLM, STT, TTS, VAD, Engine, EngineKind, VisionEncoder
from aria.engines.factory import create_engine, detect_llm
from aria.engines.registry import EngineRegistry
from aria.errors import AriaError
from aria.pipeline.voice import PipelineConfig, VoicePipeline

__all__ = ["Engines", "build_pipeline", "start_engines"]

log = logging.getLogger(__name__)


@dataclass
class Engines:
    """The started engines of one loadout; ``problems`` says why a kind is missing."""

    vad: VAD | None = None
    stt: STT | None = None
    llm: LLM | None = None
    vision: VisionEncoder | None = None
    tts: TTS | None = None
    problems: dict[str, str] = field(default_factory=dict)

    def all(self) -> list[Engine]:
        return [e for e in (self.vad, self.stt, self.llm, self.vision, self.tts) if e is not None]

    async def aclose(self) -> None:
        for engine in self.all():
            try:
                await engine.aclose()
            except Exception:
                log.exception("closing %s failed", engine.name)


async def start_engines(
    settings: Settings,
    *,
    kinds: tuple[EngineKind, ...] = ("vad", "stt", "llm", "tts"),
    bus: EventBus | None = None,
    registry: EngineRegistry | None = None,
) -> Engines:
    """Create and start each kind's engine (in parallel). A kind that cannot start is left out and its
    reason kept in ``problems``: the LLM is required, the others degrade (no TTS: text-only answers)."""
    settings = await detect_llm(settings) if "llm" in kinds else settings

    def on_fallback(kind: str, engine: str, exc: BaseException) -> None:
        if bus is not None:
            bus.emit(
                EventType.ENGINE_FALLBACK,
                {"kind": kind, "engine": engine, "error": str(exc)},
                source="engines",
            )

    engines = Engines()

    async def start(kind: EngineKind) -> None:
        try:
            engine = create_engine(kind, settings, registry, on_fallback=on_fallback)
            if engine is not None:
                await engine.start()
                setattr(engines, kind, engine)
                log.info("%s engine ready: %s", kind, engine.name)
        except AriaError as exc:
            engines.problems[kind] = str(exc)
            log.warning("%s engine unavailable: %s", kind, exc)

    await asyncio.gather(*(start(kind) for kind in kinds))
    if "llm" in kinds and engines.llm is None:
        await engines.aclose()
        raise AriaError(f"no language model could start: {engines.problems.get('llm')}")
    return engines


def build_pipeline(
    settings: Settings, engines: Engines, *, bus: EventBus | None = None, history: History | None = None
) -> VoicePipeline:
    assert engines.llm is not None
    speak = settings.tts.enabled and engines.tts is not None
    return VoicePipeline(
        llm=engines.llm,
        stt=engines.stt,
        vad=engines.vad,
        tts=engines.tts,
        bus=bus,
        history=history,
        config=PipelineConfig.from_settings(settings, speak=speak),
    )
