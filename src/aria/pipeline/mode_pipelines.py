"""From a mode (:class:`aria.core.modespec.ModeSpec`) to what runs it: the engines it needs and its pipeline.

:func:`loadout_slots` names the engine slots a mode needs (``stt``, ``llm``, ``tts``, and for a mode whose
model differs from the main one ``llm:<mode>`` / ``router:<mode>``); :func:`mode_pipeline` builds the
pipeline over a session's history from the loaded engines. :func:`watch_command` understands "tell me
when someone comes in" and "stop watching", so the active monitor can be told what to watch by voice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aria.core.config import Settings
from aria.core.events import EventBus
from aria.core.history import History
from aria.core.modespec import LLMOverride, ModeSpec
from aria.engines.base import LLM, STT, TTS, VAD, EngineKind
from aria.pipeline.interruptions import InterruptionMode, InterruptionPolicy
from aria.pipeline.voice import PipelineConfig, VoicePipeline

__all__ = [
    "Loadout",
    "SlotPlan",
    "engine_key",
    "interruption_policy",
    "loadout_slots",
    "mode_pipeline",
    "watch_command",
]

_ENGINE_KEYS = ("backend", "fallback", "options", "timeout_s", "first_token_timeout_s", "memory_mb")


def engine_key(settings: Settings) -> str:
    """What makes two LLM configurations the same engine (request settings such as the temperature or
    the system prompt do not)."""
    data = settings.llm.model_dump(mode="json", include=set(_ENGINE_KEYS))
    return json.dumps(data, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """An engine slot a mode needs: its name, kind, and the settings that create its engine."""

    name: str
    kind: EngineKind
    settings: Settings


def _llm_slot(prefix: str, mode: str, settings: Settings, override: LLMOverride | None) -> SlotPlan:
    own = settings.with_llm(override)
    if engine_key(own) == engine_key(settings):
        return SlotPlan("llm", "llm", settings)
    return SlotPlan(f"{prefix}:{mode}", "llm", own)


def loadout_slots(mode: str, spec: ModeSpec, settings: Settings) -> dict[str, SlotPlan]:
    """The slots ``mode`` needs, by role (``stt``, ``llm``, ``router``, ``tts``). A mode's model that is
    configured like the main one shares the main ``llm`` slot."""
    plan: dict[str, SlotPlan] = {}
    if spec.listens and settings.stt.backend != "none":
        plan["stt"] = SlotPlan("stt", "stt", settings)
    if spec.answers:
        plan["llm"] = _llm_slot("llm", mode, settings, spec.llm)
        if "router" in spec.steps:
            plan["router"] = _llm_slot("router", mode, settings, spec.router)
    if spec.speaks and settings.tts.backend != "none" and settings.tts.enabled:
        plan["tts"] = SlotPlan("tts", "tts", settings)
    return plan


@dataclass(slots=True)
class Loadout:
    """A mode's loaded engines (None where a role is missing or could not load; ``problems`` says why)."""

    stt: STT | None = None
    llm: LLM | None = None
    router: LLM | None = None
    tts: TTS | None = None
    #: Slot name by role, for the ``mode`` message.
    slots: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def mode_pipeline(
    mode: str,
    spec: ModeSpec,
    settings: Settings,
    loadout: Loadout,
    *,
    vad: VAD | None,
    bus: EventBus | None = None,
    history: History | None = None,
    **hooks: Any,
) -> VoicePipeline:
    """The pipeline that runs ``mode`` over ``history`` (the session's, so a switch keeps it), with the
    transport's ``hooks`` (playback, context, tools, pictures, commands, turn detector, echo guard; see
    :class:`VoicePipeline`). The interruption policy comes from ``[turn]``."""
    llm_settings = settings.with_llm(spec.llm)
    speak = spec.speaks and loadout.tts is not None and settings.tts.enabled
    listens = spec.listens and loadout.stt is not None and vad is not None
    pipeline = VoicePipeline(
        llm=loadout.llm if spec.answers else None,
        stt=loadout.stt if listens else None,
        vad=vad if listens else None,
        tts=loadout.tts if speak else None,
        bus=bus,
        history=history,
        config=PipelineConfig.from_settings(llm_settings, speak=speak, mode=mode),
        router=loadout.router if "router" in spec.steps else None,  # else the main model routes
        interruption=interruption_policy(settings),
        **hooks,
    )
    return pipeline


def interruption_policy(settings: Settings) -> InterruptionPolicy:
    turn = settings.turn
    return InterruptionPolicy(
        InterruptionMode(turn.interruption),
        min_words=turn.min_interruption_words,
        resume_ms=turn.resume_ms,
        backchannels={lang: tuple(words) for lang, words in turn.backchannels.items()},
    )


_WHEN = r"(?:when(?:ever)?|if|whether|as\s+soon\s+as|once)\s+"
_LEAD = r"^(?:(?:please|now|ok(?:ay)?|hey\s+aria|aria)[\s,]+)*"
_WATCH = re.compile(
    _LEAD + r"(?:"
    rf"(?:(?:tell|let)\s+me(?:\s+know)?|(?:alert|notify|warn|ping|call)\s+me)\s+{_WHEN}"
    r"|(?:watch|look|keep\s+an\s+eye)\s+(?:out\s+)?for\s+"
    r"|keep\s+an\s+eye\s+on\s+"
    rf"|watch\s+(?!out\b)(?:{_WHEN})?"
    r")(?P<what>.+?)[\s.!?]*$",
    re.IGNORECASE,
)
_STOP = re.compile(
    _LEAD + r"(?:stop|quit|cancel|end)\s+(?:watching|monitoring|the\s+watch)\b.*$",
    re.IGNORECASE,
)
#: What cannot be a condition on its own ("watch for", "watch out").
_NOT_A_CONDITION = frozenset({"for", "out", "it", "this", "that", "me"})


def watch_command(text: str) -> tuple[str, str | None] | None:
    """``("watch", condition)`` for "tell me when someone comes in" (and its variants), ``("stop", None)``
    for "stop watching", None for anything else."""
    text = text.strip()
    if _STOP.match(text):
        return ("stop", None)
    match = _WATCH.match(text)
    if match is None:
        return None
    what = match.group("what").strip(" ,")
    if len(what) < 3 or what.lower() in _NOT_A_CONDITION:
        return None
    return ("watch", what)
