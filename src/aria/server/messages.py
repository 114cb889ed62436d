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

This module is the one import surface; the models live in :mod:`~aria.server.message_base` (constants,
limits, shared objects), :mod:`~aria.server.server_messages` and :mod:`~aria.server.client_messages`.
"""

from __future__ import annotations

from aria.server.client_messages import (
    CLIENT_MODELS,
    ClientMessage,
    ConfirmActionControl,
    ControlMessage,
    ImageMessage,
    InterruptControl,
    PingMessage,
    PlaybackMessage,
    SetWatchControl,
    StartControl,
    SwitchModeControl,
    TextMessage,
    UpdateConfigControl,
)
from aria.server.message_base import (
    AUDIO_IN_RATE,
    AUDIO_TAG,
    ERROR_CODES,
    JPEG_MAGIC,
    MAX_ID_CHARS,
    PNG_MAGIC,
    PROTOCOL_VERSION,
    VIDEO_TAG,
    AudioFormat,
    EngineStatus,
    Limits,
    VideoFormat,
)
from aria.server.server_messages import (
    SERVER_MODELS,
    ControlSignalMessage,
    ErrorMessage,
    HistoryEntry,
    HistoryMessage,
    MetricsMessage,
    ModeInfo,
    ModeMessage,
    NotificationMessage,
    PlaybackControlMessage,
    PongMessage,
    ResponseDoneMessage,
    ServerMessage,
    SessionMessage,
    StateMessage,
    TextTokenMessage,
    ToolResultMessage,
    TranscriptMessage,
)

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
