"""The messages of Aria's WebSocket protocol v1, as pydantic models (see ``docs/protocol.md``).

Every message is a JSON object with a ``type``; every model here has a ``type: Literal[...]`` field and sits
in one of two discriminated unions: :data:`ClientMessage` (what a client may send; ``control`` messages are
a nested union on ``action``) and :data:`ServerMessage` (what the server sends). All models are frozen and
forbid unknown fields; client models are also strict (``"true"`` is not a bool, ``1`` is not a string).

Limits that depend on the server's configuration (``max_text_chars``, ``max_image_bytes``) are read from the
validation context: ``validate_python(obj, context={"limits": limits})``; without a context the defaults of
:class:`Limits` apply. Failures that have their own error code (``bad_image``, ``message_too_large``) are
raised as :class:`~pydantic_core.PydanticCustomError` with that code as the error ``type`` and the offending
field in ``ctx["field"]``; :mod:`aria.server.protocol` turns them into ``error`` messages.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aria.core.redact import redact, redact_tree
from aria.types import SAMPLE_RATES

__all__ = [
    "AUDIO_IN_RATE",
    "AUDIO_TAG",
    "CLIENT_MODELS",
    "ERROR_CODES",
    "JPEG_MAGIC",
    "MAX_ID_CHARS",
    "PNG_MAGIC",
    "PROTOCOL_VERSION",
    "SERVER_MODELS",
    "VIDEO_TAG",
    "AudioFormat",
    "ClientMessage",
    "ConfirmActionControl",
    "ControlMessage",
    "ControlSignalMessage",
    "EngineStatus",
    "ErrorMessage",
    "HistoryEntry",
    "HistoryMessage",
    "ImageMessage",
    "InterruptControl",
    "Limits",
    "MetricsMessage",
    "ModeInfo",
    "ModeMessage",
    "NotificationMessage",
    "PingMessage",
    "PlaybackControlMessage",
    "PlaybackMessage",
    "PongMessage",
    "ResponseDoneMessage",
    "ServerMessage",
    "SessionMessage",
    "SetWatchControl",
    "StartControl",
    "StateMessage",
    "SwitchModeControl",
    "TextMessage",
    "TextTokenMessage",
    "ToolResultMessage",
    "TranscriptMessage",
    "UpdateConfigControl",
    "VideoFormat",
]

PROTOCOL_VERSION: Final = 1
#: First byte of a binary frame holding PCM s16le mono audio (both directions).
AUDIO_TAG: Final = 0x01
#: First byte of a binary frame holding one JPEG camera frame (client to server).
VIDEO_TAG: Final = 0x02
#: Sample rate of the audio a client sends.
AUDIO_IN_RATE = 16000
#: Longest id, turn id or mode name a client may send.
MAX_ID_CHARS = 256
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# fmt: off
#: Every stable error code; ``docs/protocol.md`` says when each is sent.
ERROR_CODES: Final = frozenset({
    "invalid_json", "unknown_type", "invalid_message", "message_too_large", "frame_too_large", "bad_audio",
    "bad_image", "unknown_frame_tag", "empty_frame", "rate_limited", "invalid_config", "unknown_mode",
    "unknown_action", "invalid_session", "engine_unavailable", "internal_error", "stt_failed",
    "llm_failed", "tts_failed", "engine_error", "engine_timeout", "all_engines_failed",
    "residency_error", "mode_unavailable", "engine_busy", "engine_crashed",
    "session_locked", "session_taken_over", "idle_timeout", "idle_evicted", "too_many_connections",
})
# fmt: on


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ClientModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- shared objects --------------------------------------------------------------------------------------


class Limits(_Model):
    """Size limits of one server, sent in ``session.limits``."""

    max_audio_frame_bytes: int = Field(default=32000, gt=0)
    max_image_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    max_text_chars: int = Field(default=4000, gt=0)
    max_message_bytes: int = Field(default=3 * 1024 * 1024, gt=0)


_DEFAULT_LIMITS = Limits()


def _limits(info: ValidationInfo) -> Limits:
    context = info.context
    limits = context.get("limits") if isinstance(context, dict) else None
    return limits if isinstance(limits, Limits) else _DEFAULT_LIMITS


def _check_chars(value: str, info: ValidationInfo) -> str:
    limit = _limits(info).max_text_chars
    if len(value) > limit:
        raise PydanticCustomError(
            "string_too_long",
            "at most {limit} characters (limits.max_text_chars), got {length}",
            {"limit": limit, "length": len(value)},
        )
    return value


def _describe_image(image: bytes) -> str:
    if image.startswith(PNG_MAGIC):
        return "a PNG"
    if image.startswith(JPEG_MAGIC):
        return "a JPEG"
    return f"not a JPEG or PNG (it starts with {image[:4].hex(' ') or 'nothing'})"


def _models(union: Any) -> tuple[type[BaseModel], ...]:
    """The models of a (nested, annotated) union, in order."""
    if isinstance(union, type) and issubclass(union, BaseModel):
        return (union,)
    return tuple(model for arg in get_args(union) for model in _models(arg))


class AudioFormat(_Model):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: int = AUDIO_IN_RATE
    channels: Literal[1] = 1
    tag: Literal[1] = AUDIO_TAG

    @field_validator("sample_rate")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in SAMPLE_RATES:
            raise ValueError(f"unsupported sample rate {value}; use one of {sorted(SAMPLE_RATES)}")
        return value


class VideoFormat(_Model):
    encoding: Literal["jpeg"] = "jpeg"
    tag: Literal[2] = VIDEO_TAG
    max_fps: float = Field(default=2.0, gt=0, allow_inf_nan=False)


#: Text the server writes that may quote a configured URL: credentials in it are masked.
_Redacted = Annotated[str, AfterValidator(redact)]


class EngineStatus(_Model):
    name: str | None
    state: Literal["loading", "ready", "unavailable"]
    detail: _Redacted = ""


# --- server to client ------------------------------------------------------------------------------------


class ModeInfo(_Model):
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


class SessionMessage(_Model):
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


class ModeMessage(_Model):
    """The mode now in effect: after a ``switch_mode`` (once its engines are loaded) or a ``set_watch``."""

    type: Literal["mode"] = "mode"
    mode: str
    #: The condition the active monitor watches for (None: not watching).
    watch: str | None = None
    #: Engines this mode's loadout uses, by kind (``llm`` may be a mode-specific model).
    engines: dict[str, str] = Field(default_factory=dict)


class TranscriptMessage(_Model):
    type: Literal["transcript"] = "transcript"
    turn_id: str
    text: str
    final: bool
    confidence: float | None = None
    language: str | None = None


class TextTokenMessage(_Model):
    type: Literal["text_token"] = "text_token"
    turn_id: str
    text: str


class ResponseDoneMessage(_Model):
    type: Literal["response_done"] = "response_done"
    turn_id: str
    text: str
    interrupted: bool = False
    error: str | None = None
    audio_ms: float = Field(default=0.0, ge=0)


class PlaybackControlMessage(_Model):
    """Hold or go on with the answer's playback: speech started over it and may be a backchannel."""

    type: Literal["playback_control"] = "playback_control"
    turn_id: str
    command: Literal["pause", "resume"]


class StateMessage(_Model):
    type: Literal["state"] = "state"
    state: Literal["idle", "listening", "processing", "responding"]
    reason: str = ""
    turn_id: str | None = None
    loading: list[str] = Field(default_factory=list)


class MetricsMessage(_Model):
    type: Literal["metrics"] = "metrics"
    turn_id: str
    waterfall: dict[str, float | None]
    extra: dict[str, Any] = Field(default_factory=dict)


class NotificationMessage(_Model):
    type: Literal["notification"] = "notification"
    text: _Redacted
    level: Literal["info", "warning"] = "info"
    data: Annotated[dict[str, Any], AfterValidator(redact_tree)] = Field(default_factory=dict)


class ControlSignalMessage(_Model):
    type: Literal["control_signal"] = "control_signal"
    id: str
    signal: str
    payload: dict[str, Any] = Field(default_factory=dict)


class ToolResultMessage(_Model):
    type: Literal["tool_result"] = "tool_result"
    id: str
    tool: str
    result: Any = None
    ok: bool = True


class ErrorMessage(_Model):
    type: Literal["error"] = "error"
    code: str
    message: _Redacted
    retryable: bool = False
    turn_id: str | None = None


class PongMessage(_Model):
    type: Literal["pong"] = "pong"
    id: str | None = None


class HistoryEntry(_Model):
    role: Literal["user", "assistant", "system", "tool"]
    content: str
    modality: Literal["text", "audio", "image"] = "text"
    interrupted: bool = False
    mode: str | None = None
    timestamp: float
    #: For an interrupted answer: the whole text the model wrote (``content`` is the part heard).
    generated: str | None = None


class HistoryMessage(_Model):
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

SERVER_MODELS: tuple[type[BaseModel], ...] = _models(ServerMessage)

# --- client to server ------------------------------------------------------------------------------------

_Id = Annotated[str, Field(max_length=MAX_ID_CHARS)]


class TextMessage(_ClientModel):
    type: Literal["text"] = "text"
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _chars(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise PydanticCustomError("string_blank", "must hold more than white space")
        return _check_chars(value, info)


class ImageMessage(_ClientModel):
    """An image with an optional question. :attr:`image` holds the decoded bytes."""

    type: Literal["image"] = "image"
    data: str = Field(min_length=1, repr=False)
    format: Literal["jpeg", "png"]
    text: str | None = None

    _image: bytes = PrivateAttr(default=b"")

    @field_validator("text")
    @classmethod
    def _chars(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_chars(value, info)

    @property
    def image(self) -> bytes:
        return self._image

    @model_validator(mode="after")
    def _decode(self, info: ValidationInfo) -> ImageMessage:
        limit = _limits(info).max_image_bytes
        data = self.data
        if data.startswith("data:"):  # a data URL, as canvas.toDataURL() makes
            _, _, data = data.partition(",")
        if len(data) > 4 * (limit // 3 + 1) + 4:
            raise PydanticCustomError(
                "message_too_large",
                "image data is about {size} bytes; the limit is {limit} (limits.max_image_bytes)",
                {"field": "data", "size": len(data) * 3 // 4, "limit": limit},
            )
        try:
            image = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError(
                "bad_image", "image data is not valid base64", {"field": "data"}
            ) from None
        if len(image) > limit:
            raise PydanticCustomError(
                "message_too_large",
                "image is {size} bytes; the limit is {limit} (limits.max_image_bytes)",
                {"field": "data", "size": len(image), "limit": limit},
            )
        magic = JPEG_MAGIC if self.format == "jpeg" else PNG_MAGIC
        if not image.startswith(magic):
            raise PydanticCustomError(
                "bad_image",
                "format is '{format}' but the data is {what}",
                {"field": "data", "format": self.format, "what": _describe_image(image)},
            )
        self._image = image
        return self


class InterruptControl(_ClientModel):
    type: Literal["control"] = "control"
    action: Literal["interrupt"] = "interrupt"


class SwitchModeControl(_ClientModel):
    type: Literal["control"] = "control"
    action: Literal["switch_mode"] = "switch_mode"
    mode: _Id = Field(min_length=1)
    #: For a mode that watches the camera: the condition to watch for.
    watch: str | None = None

    @field_validator("watch")
    @classmethod
    def _watch_chars(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_chars(value, info)


class SetWatchControl(_ClientModel):
    """Set (or, with an empty string, clear) the condition the active monitor watches for."""

    type: Literal["control"] = "control"
    action: Literal["set_watch"] = "set_watch"
    watch: str

    @field_validator("watch")
    @classmethod
    def _watch_chars(cls, value: str, info: ValidationInfo) -> str:
        return _check_chars(value, info)


class ConfirmActionControl(_ClientModel):
    type: Literal["control"] = "control"
    action: Literal["confirm_action"] = "confirm_action"
    id: _Id
    accept: bool


class UpdateConfigControl(_ClientModel):
    type: Literal["control"] = "control"
    action: Literal["update_config"] = "update_config"
    config: dict[str, Any]


class StartControl(_ClientModel):
    type: Literal["control"] = "control"
    action: Literal["start"] = "start"


ControlMessage = Annotated[
    InterruptControl
    | SwitchModeControl
    | SetWatchControl
    | ConfirmActionControl
    | UpdateConfigControl
    | StartControl,
    Field(discriminator="action"),
]


class PlaybackMessage(_ClientModel):
    type: Literal["playback"] = "playback"
    turn_id: _Id
    played_ms: float = Field(ge=0, allow_inf_nan=False)


class PingMessage(_ClientModel):
    type: Literal["ping"] = "ping"
    id: _Id | None = None


ClientMessage = Annotated[
    TextMessage | ImageMessage | ControlMessage | PlaybackMessage | PingMessage,
    Field(discriminator="type"),
]

CLIENT_MODELS: tuple[type[BaseModel], ...] = _models(ClientMessage)
