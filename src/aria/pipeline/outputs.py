"""What a pipeline emits, in order, on its output channel. Transports translate these to the wire."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aria.types import AudioChunk

__all__ = [
    "AudioOut",
    "ErrorOut",
    "MetricsOut",
    "NoticeOut",
    "Output",
    "PlaybackOut",
    "ResponseDone",
    "StageOut",
    "StateOut",
    "TextOut",
    "ToolResultOut",
    "TranscriptOut",
]


@dataclass(frozen=True, slots=True)
class TranscriptOut:
    turn_id: str
    text: str
    final: bool
    confidence: float = 1.0
    language: str | None = None


@dataclass(frozen=True, slots=True)
class TextOut:
    """One streamed piece of the answer's text."""

    turn_id: str
    text: str


@dataclass(frozen=True, slots=True)
class AudioOut:
    """A block of the answer's speech; ``clause`` indexes the text chunk it speaks."""

    turn_id: str
    chunk: AudioChunk
    clause: int
    seq: int


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """Ends every answer. ``text`` is what was output (for an interrupted turn, what was heard)."""

    turn_id: str
    text: str
    interrupted: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StateOut:
    state: str
    reason: str = ""
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorOut:
    code: str
    message: str
    turn_id: str | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class MetricsOut:
    turn_id: str
    waterfall: Mapping[str, float | None] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResultOut:
    """A tool the model called has run (or was refused)."""

    turn_id: str
    call_id: str
    tool: str
    ok: bool
    content: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class NoticeOut:
    """Something the person should know that is not an error: a degraded answer ("could not look at the
    picture"), a switch to another model."""

    text: str
    level: str = "warning"
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StageOut:
    """A turn reached a stage (``speech_started``, ``llm_request``, ``first_audio``, ``routed`` ...):
    for observers (the event bus, logs); transports send nothing for it."""

    turn_id: str
    stage: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlaybackOut:
    """Pause or resume the answer's playback: speech started over it and is not (yet) a barge-in."""

    turn_id: str
    action: str  # "pause" | "resume"


Output = (
    TranscriptOut
    | TextOut
    | AudioOut
    | ResponseDone
    | StateOut
    | ErrorOut
    | MetricsOut
    | ToolResultOut
    | NoticeOut
    | StageOut
    | PlaybackOut
)
