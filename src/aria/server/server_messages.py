"""The messages the server sends over Aria's WebSocket protocol (``docs/protocol.md``): the models of the
:data:`ServerMessage` union, re-exported by :mod:`aria.server.messages`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from aria.core.redact import redact_tree
from aria.server.message_base import (
    PROTOCOL_VERSION,
    AudioFormat,
    EngineStatus,
    Limits,
    Redacted,
    VideoFormat,
    WireModel,
    models_of,
)

__all__ = [
    "SERVER_MODELS",
    "ControlSignalMessage",
    "ErrorMessage",
    "HistoryEntry",
    "HistoryMessage",
    "MetricsMessage",
    "ModeInfo",
    "ModeMessage",
    "NotificationMessage",
    "PlaybackControlMessage",
    "PongMessage",
    "ResponseDoneMessage",
    "ServerMessage",
    "SessionMessage",
    "StateMessage",
    "TextTokenMessage",
    "ToolResultMessage",
    "TranscriptMessage",
]


class ModeInfo(WireModel):
    """One mode a client may switch to: what it takes in and what it gives back."""

    name: str
    label: str
    description: str = ""
    inputs: list[Literal["audio", "text", "image", "video"]]
    outputs: list[Literal["transcript", "text", "audio", "notification", "tool_result", "control_signal"]]
    #: Whether the mode watches the camera for a condition (``switch_mode.watch`` / ``set_watch``).
    watches: bool = False
    #: Whether it can work with the engines at hand (a mode that looks needs a model that can see) ...
    available: bool = True
    #: ... and, when not, why and how to fix it.
    reason: str = ""


class SessionMessage(WireModel):
    """Always the first message on a connection."""

    type: Literal["session"] = "session"
    session_id: str
    protocol: Literal[1] = PROTOCOL_VERSION
    resumed: bool = False
    mode: str
    modes: list[str]
    audio_in: AudioFormat = Field(default_factory=AudioFormat)
    audio_out: AudioFormat
    video_in: VideoFormat = Field(default_factory=VideoFormat)
    limits: Limits = Field(default_factory=Limits)
    engines: dict[str, EngineStatus] = Field(default_factory=dict)
    mode_details: list[ModeInfo] = Field(default_factory=list)
    #: True on a private server (``session.persist = false``): nothing of the conversation is written.
    private: bool = False
    #: The session's resume key, sent once: when the session is created (or first given a key). Keep it:
    #: resuming, reading, exporting, renaming and deleting the session need it (``null`` otherwise).
    key: str | None = None


class ModeMessage(WireModel):
    """The mode now in effect: after a ``switch_mode`` (once its engines are loaded) or a ``set_watch``."""

    type: Literal["mode"] = "mode"
    mode: str
    #: The condition the active monitor watches for (None: not watching).
    watch: str | None = None
    #: Engines this mode's loadout uses, by kind (``llm`` may be a mode-specific model).
    engines: dict[str, str] = Field(default_factory=dict)


class TranscriptMessage(WireModel):
    type: Literal["transcript"] = "transcript"
    turn_id: str
    text: str
    final: bool
    confidence: float | None = None
    language: str | None = None


class TextTokenMessage(WireModel):
    type: Literal["text_token"] = "text_token"
    turn_id: str
    text: str


class ResponseDoneMessage(WireModel):
    type: Literal["response_done"] = "response_done"
    turn_id: str
    text: str
    interrupted: bool = False
    error: str | None = None
    audio_ms: float = Field(default=0.0, ge=0)


class PlaybackControlMessage(WireModel):
    """Hold or go on with the answer's playback: speech started over it and may be a backchannel."""

    type: Literal["playback_control"] = "playback_control"
    turn_id: str
    command: Literal["pause", "resume"]


class StateMessage(WireModel):
    type: Literal["state"] = "state"
    state: Literal["idle", "listening", "processing", "responding"]
    reason: str = ""
    turn_id: str | None = None
    loading: list[str] = Field(default_factory=list)


class MetricsMessage(WireModel):
    type: Literal["metrics"] = "metrics"
    turn_id: str
    waterfall: dict[str, float | None]
    extra: dict[str, Any] = Field(default_factory=dict)


class NotificationMessage(WireModel):
    type: Literal["notification"] = "notification"
    text: Redacted
    level: Literal["info", "warning"] = "info"
    data: Annotated[dict[str, Any], AfterValidator(redact_tree)] = Field(default_factory=dict)


class ControlSignalMessage(WireModel):
    type: Literal["control_signal"] = "control_signal"
    id: str
    signal: str
    payload: dict[str, Any] = Field(default_factory=dict)


class ToolResultMessage(WireModel):
    type: Literal["tool_result"] = "tool_result"
    id: str
    tool: str
    result: Any = None
    ok: bool = True


class ErrorMessage(WireModel):
    type: Literal["error"] = "error"
    code: str
    message: Redacted
    retryable: bool = False
    turn_id: str | None = None


class PongMessage(WireModel):
    type: Literal["pong"] = "pong"
    id: str | None = None


class HistoryEntry(WireModel):
    role: Literal["user", "assistant", "system", "tool"]
    content: str
    modality: Literal["text", "audio", "image"] = "text"
    interrupted: bool = False
    mode: str | None = None
    timestamp: float
    #: For an interrupted answer: the whole text the model wrote (``content`` is the part heard).
    generated: str | None = None


class HistoryMessage(WireModel):
    """A resumed session's conversation so far, sent right after ``session`` when ``resumed``."""

    type: Literal["history"] = "history"
    session_id: str
    messages: list[HistoryEntry]


ServerMessage = Annotated[
    SessionMessage
    | TranscriptMessage
    | TextTokenMessage
    | ResponseDoneMessage
    | PlaybackControlMessage
    | StateMessage
    | MetricsMessage
    | NotificationMessage
    | ControlSignalMessage
    | ToolResultMessage
    | ErrorMessage
    | PongMessage
    | HistoryMessage
    | ModeMessage,
    Field(discriminator="type"),
]

SERVER_MODELS: tuple[type[BaseModel], ...] = models_of(ServerMessage)
