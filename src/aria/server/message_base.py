"""What the messages of Aria's WebSocket protocol share: the constants, the base models, the size limits
read from the validation context, and the objects both directions use (see :mod:`aria.server.messages`)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

from aria.core.redact import redact
from aria.engines.options import SampleRate

__all__ = [
    "AUDIO_IN_RATE",
    "AUDIO_TAG",
    "DEFAULT_LIMITS",
    "ERROR_CODES",
    "JPEG_MAGIC",
    "MAX_ID_CHARS",
    "PNG_MAGIC",
    "PROTOCOL_VERSION",
    "VIDEO_TAG",
    "AudioFormat",
    "ClientModel",
    "EngineStatus",
    "Limits",
    "Redacted",
    "VideoFormat",
    "WireModel",
    "check_chars",
    "describe_image",
    "limits_of",
    "models_of",
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


class WireModel(BaseModel):
    """A message or object the server sends: frozen, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientModel(BaseModel):
    """A message a client sends: frozen, strict, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- shared objects --------------------------------------------------------------------------------------


class Limits(WireModel):
    """Size limits of one server, sent in ``session.limits``."""

    max_audio_frame_bytes: int = Field(default=32000, gt=0)
    max_image_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    max_text_chars: int = Field(default=4000, gt=0)
    max_message_bytes: int = Field(default=3 * 1024 * 1024, gt=0)


DEFAULT_LIMITS = Limits()


def limits_of(info: ValidationInfo) -> Limits:
    context = info.context
    limits = context.get("limits") if isinstance(context, dict) else None
    return limits if isinstance(limits, Limits) else DEFAULT_LIMITS


def check_chars(value: str, info: ValidationInfo) -> str:
    limit = limits_of(info).max_text_chars
    if len(value) > limit:
        raise PydanticCustomError(
            "string_too_long",
            "at most {limit} characters (limits.max_text_chars), got {length}",
            {"limit": limit, "length": len(value)},
        )
    return value


def describe_image(image: bytes) -> str:
    if image.startswith(PNG_MAGIC):
        return "a PNG"
    if image.startswith(JPEG_MAGIC):
        return "a JPEG"
    return f"not a JPEG or PNG (it starts with {image[:4].hex(' ') or 'nothing'})"


def models_of(union: Any) -> tuple[type[BaseModel], ...]:
    """The models of a (nested, annotated) union, in order."""
    if isinstance(union, type) and issubclass(union, BaseModel):
        return (union,)
    return tuple(model for arg in get_args(union) for model in models_of(arg))


class AudioFormat(WireModel):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: SampleRate = AUDIO_IN_RATE
    channels: Literal[1] = 1
    tag: Literal[1] = AUDIO_TAG


class VideoFormat(WireModel):
    encoding: Literal["jpeg"] = "jpeg"
    tag: Literal[2] = VIDEO_TAG
    max_fps: float = Field(default=2.0, gt=0, allow_inf_nan=False)


#: Text the server writes that may quote a configured URL: credentials in it are masked.
Redacted = Annotated[str, AfterValidator(redact)]


class EngineStatus(WireModel):
    name: str | None
    state: Literal["loading", "ready", "unavailable"]
    detail: Redacted = ""
