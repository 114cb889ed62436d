"""The sans-I/O side of Aria's WebSocket protocol v1: frames in, events out; messages in, JSON out.

No sockets and no asyncio: the endpoint reads a frame, hands it to :class:`ServerProtocol` and acts on the
event it gets back, which is one of

* a parsed :data:`~aria.server.messages.ClientMessage` (``text``, ``image``, ``control``, ``playback``,
  ``ping``),
* :class:`AudioIn` (a validated PCM s16le block from a ``0x01`` binary frame),
* :class:`VideoIn` (a JPEG camera frame from a ``0x02`` binary frame),
* :class:`ProtocolError` (bad input, with a stable code: send ``error.to_message()`` and carry on; a bad
  frame never closes the connection).

:meth:`ServerProtocol.receive_text` and :meth:`ServerProtocol.receive_bytes` never raise on bad input.
Going the other way, :func:`encode` and :func:`encode_audio` make the frames, :func:`from_output` turns
pipeline outputs into server messages, and :func:`session_message` builds the greeting.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, assert_never

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from aria.errors import AriaError, InvalidInput
from aria.pipeline.outputs import (
    AudioOut,
    ErrorOut,
    MetricsOut,
    NoticeOut,
    Output,
    PlaybackOut,
    ResponseDone,
    StageOut,
    StateOut,
    TextOut,
    ToolResultOut,
    TranscriptOut,
)
from aria.server import messages as wire
from aria.server.messages import *  # noqa: F403 - re-exported: one import surface for the endpoint

__all__ = [
    "AudioIn",
    "Event",
    "ProtocolError",
    "RateLimiter",
    "ServerProtocol",
    "VideoIn",
    "decode",
    "encode",
    "encode_audio",
    "error_from_exception",
    "from_output",
    "session_message",
    *wire.__all__,
]

log = logging.getLogger(__name__)

_CLIENT: Final = TypeAdapter[wire.ClientMessage](wire.ClientMessage)
_SERVER: Final = TypeAdapter[wire.ServerMessage](wire.ServerMessage)
_CLIENT_TYPES: Final = tuple(dict.fromkeys(str(m.model_fields["type"].default) for m in wire.CLIENT_MODELS))
_ACTIONS: Final = tuple(
    str(m.model_fields["action"].default) for m in wire.CLIENT_MODELS if "action" in m.model_fields
)
_RATE_LIMITED_TYPES: Final = frozenset({"text", "image", "control", "ping"})
#: Error types raised by the models that have their own code (the rest are ``invalid_message``).
_OWN_CODES: Final = frozenset({"bad_image", "message_too_large"})
#: AriaError codes that are not wire codes, and the wire code that stands for them.
_WIRE_CODES: Final = dict(
    invalid_input="invalid_message", circuit_open="engine_unavailable", unknown_engine="engine_unavailable"
)


@dataclass(frozen=True, slots=True)
class AudioIn:
    """PCM signed 16-bit little-endian mono at 16 kHz: non-empty, even length, within the limit."""

    pcm: bytes

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / 2 / wire.AUDIO_IN_RATE * 1000.0


@dataclass(frozen=True, slots=True)
class VideoIn:
    """One camera frame, a JPEG (starts with ``FF D8 FF``) within the limit."""

    jpeg: bytes


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Bad input: ``code`` is one of :data:`ERROR_CODES`, ``field`` names the culprit where there is one."""

    code: str
    message: str
    field: str | None = None

    def to_message(self, turn_id: str | None = None) -> wire.ErrorMessage:
        return wire.ErrorMessage(
            code=self.code, message=self.message, retryable=self.code == "rate_limited", turn_id=turn_id
        )


Event = wire.ClientMessage | AudioIn | VideoIn | ProtocolError


class RateLimiter:
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._last) * self.rate_per_s)
        self._last = now

    def allow(self, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are that many; False (taking nothing) if not."""
        self._refill()
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until :meth:`allow` with ``cost`` would succeed (0 if it would now)."""
        self._refill()
        return max(0.0, (cost - self._tokens) / self.rate_per_s)


class ServerProtocol:
    """One connection's protocol state: turns frames into events, never raising on bad input.

    With a ``rate_limiter``, ``text``, ``image``, ``control`` and ``ping`` messages beyond its rate become
    ``rate_limited`` errors (``playback`` reports and binary frames are never limited).
    """

    def __init__(self, limits: wire.Limits | None = None, *, rate_limiter: RateLimiter | None = None) -> None:
        self.limits = limits if limits is not None else wire.Limits()
        self.rate_limiter = rate_limiter
        self._context = {"limits": self.limits}

    def receive_text(self, text: str) -> Event:
        """The event for one text frame."""
        try:
            return self._receive_text(text)
        except Exception as exc:  # a bug; bad input has its own codes
            log.exception("unexpected failure parsing a text frame")
            return ProtocolError("internal_error", f"the server failed to read the message ({exc})")

    def receive_bytes(self, data: bytes | bytearray | memoryview) -> Event:
        """The event for one binary frame: first byte the tag, the rest the payload."""
        if not data:
            return ProtocolError(
                "empty_frame", "empty binary frame; the first byte must be a tag: 0x01 or 0x02"
            )
        if isinstance(data, memoryview):
            data = data.tobytes()  # its items may be wider than bytes
        tag, size = data[0], len(data) - 1
        if tag == wire.AUDIO_TAG:
            limit = self.limits.max_audio_frame_bytes
            if size > limit:
                return _too_large("audio", size, limit, "max_audio_frame_bytes")
            if size == 0:
                return ProtocolError("bad_audio", "audio frame holds no samples after the 0x01 tag")
            if size % 2:
                return ProtocolError(
                    "bad_audio",
                    f"audio payload is {size} bytes, not a whole number of 16-bit samples (must be even)",
                )
            return AudioIn(bytes(data[1:]))
        if tag == wire.VIDEO_TAG:
            limit = self.limits.max_image_bytes
            if size > limit:
                return _too_large("video", size, limit, "max_image_bytes")
            jpeg = bytes(data[1:])
            if not jpeg.startswith(wire.JPEG_MAGIC):
                start = jpeg[:3].hex(" ").upper() or "nothing"
                return ProtocolError(
                    "bad_image", f"video frame is not a JPEG: it must start with FF D8 FF, not {start}"
                )
            return VideoIn(jpeg)
        return ProtocolError(
            "unknown_frame_tag", f"unknown binary frame tag 0x{tag:02X}; use 0x01 (audio) or 0x02 (video)"
        )

    def _receive_text(self, text: str) -> Event:
        limit = self.limits.max_message_bytes
        try:
            size = len(text) if len(text) > limit else len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return ProtocolError("invalid_json", "text frame is not valid UTF-8")
        if size > limit:
            return ProtocolError(
                "message_too_large",
                f"text frame is at least {size} bytes; the limit is {limit} (limits.max_message_bytes)",
            )
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            return ProtocolError("invalid_json", f"text frame is not valid JSON: {exc}")
        if not isinstance(obj, dict):
            return ProtocolError(
                "invalid_message",
                f'a text frame must hold one JSON object with a "type", got {_json_kind(obj)}',
            )
        kind = obj.get("type")
        if not isinstance(kind, str):
            expected = ", ".join(_CLIENT_TYPES)
            what = "no" if kind is None else f"a {_json_kind(kind)} as its"
            return ProtocolError(
                "invalid_message", f'message has {what} "type"; expected one of: {expected}', "type"
            )
        if kind not in _CLIENT_TYPES:
            return _unknown_type(kind)
        if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(obj):
            return ProtocolError("invalid_json", "text frame holds a lone UTF-16 surrogate escape (\\udXXX)")
        try:
            message = _CLIENT.validate_python(obj, context=self._context)
        except ValidationError as exc:
            return _invalid(kind, obj, exc.errors(include_url=False, include_input=False))
        if self.rate_limiter is not None and kind in _RATE_LIMITED_TYPES and not self.rate_limiter.allow():
            wait = self.rate_limiter.retry_after()
            return ProtocolError(
                "rate_limited",
                f"too many messages (at most {self.rate_limiter.rate_per_s:g}/s, bursts of "
                f"{self.rate_limiter.burst}); this {kind} message was dropped, try again in {wait:.1f} s",
            )
        return message


def _too_large(what: str, size: int, limit: int, key: str) -> ProtocolError:
    return ProtocolError(
        "frame_too_large", f"{what} frame payload is {size} bytes; the limit is {limit} (limits.{key})"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else _json_kind(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _unknown_type(kind: str) -> ProtocolError:
    close = difflib.get_close_matches(kind, _CLIENT_TYPES, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return ProtocolError(
        "unknown_type",
        f"unknown message type {_shown(kind)}{hint}; expected one of: {', '.join(_CLIENT_TYPES)}",
        "type",
    )


def _has_lone_surrogate(obj: object) -> bool:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and any("\ud800" <= ch <= "\udfff" for ch in item):
            return True
    return False


def _invalid(kind: str, obj: dict[str, Any], errors: list[ErrorDetails]) -> ProtocolError:
    """One ProtocolError for a message that failed validation, naming the first bad field."""
    label = f"{kind} ({obj['action']})" if kind == "control" and isinstance(obj.get("action"), str) else kind
    first = errors[0]
    error_type = first["type"]
    context = first.get("ctx") or {}
    if error_type in ("union_tag_invalid", "union_tag_not_found"):  # the control action
        action = obj.get("action")
        problem = f"unknown control action {_shown(action)}" if action is not None else 'no "action"'
        expected = ", ".join(_ACTIONS)
        return ProtocolError("invalid_message", f"{problem}; expected one of: {expected}", "action")
    loc = first["loc"][2 if kind == "control" else 1 :]
    field = str(context.get("field", "")) or ".".join(str(part) for part in loc) or None
    if error_type in _OWN_CODES:
        return ProtocolError(error_type, f"{label} message: {first['msg']}", field)
    if error_type == "missing":
        detail = f"missing required field {field!r}"
    elif error_type == "extra_forbidden":
        detail = f"unknown field {field!r}"
    else:
        detail = f"field {field!r}: {first['msg']}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return ProtocolError("invalid_message", f"invalid {label} message: {detail}{more}", field)


# --- server to client ------------------------------------------------------------------------------------


def encode(msg: wire.ServerMessage) -> str:
    """The compact JSON text frame for ``msg``."""
    return msg.model_dump_json()


def decode(text: str) -> wire.ServerMessage:
    """Parse a server message (for clients and tests); raises :class:`pydantic.ValidationError`."""
    return _SERVER.validate_json(text)


def encode_audio(pcm: bytes | bytearray | memoryview) -> bytes:
    """The binary frame for a block of PCM s16le mono answer audio: the ``0x01`` tag, then the samples."""
    raw = bytes(pcm)
    if len(raw) % 2:
        raise InvalidInput(f"PCM s16le audio must have an even number of bytes, got {len(raw)}")
    return bytes((wire.AUDIO_TAG,)) + raw


def from_output(
    output: Output, *, audio_ms: float = 0.0, loading: Sequence[str] = ()
) -> wire.ServerMessage | None:
    """The server message for a pipeline output; None for :class:`AudioOut`, which is sent as binary.

    ``audio_ms`` fills ``response_done.audio_ms`` and ``loading`` fills ``state.loading``.
    """
    if isinstance(output, TranscriptOut):
        return wire.TranscriptMessage(
            turn_id=output.turn_id,
            text=output.text,
            final=output.final,
            confidence=output.confidence,
            language=output.language,
        )
    if isinstance(output, TextOut):
        return wire.TextTokenMessage(turn_id=output.turn_id, text=output.text)
    if isinstance(output, ResponseDone):
        return wire.ResponseDoneMessage(
            turn_id=output.turn_id,
            text=output.text,
            interrupted=output.interrupted,
            error=output.error,
            audio_ms=audio_ms,
        )
    if isinstance(output, StateOut):
        return wire.StateMessage.model_validate(
            {
                "state": output.state,
                "reason": output.reason,
                "turn_id": output.turn_id,
                "loading": list(loading),
            }
        )
    if isinstance(output, ErrorOut):
        code = _WIRE_CODES.get(output.code, output.code)
        return wire.ErrorMessage(
            code=code, message=output.message, retryable=output.retryable, turn_id=output.turn_id
        )
    if isinstance(output, MetricsOut):
        return wire.MetricsMessage(
            turn_id=output.turn_id, waterfall=dict(output.waterfall), extra=dict(output.extra)
        )
    if isinstance(output, ToolResultOut):
        result = output.data if output.data is not None else output.content
        return wire.ToolResultMessage(id=output.call_id, tool=output.tool, result=result, ok=output.ok)
    if isinstance(output, NoticeOut):
        level: Literal["info", "warning"] = "info" if output.level == "info" else "warning"
        return wire.NotificationMessage(text=output.text, level=level, data=dict(output.data))
    if isinstance(output, PlaybackOut):
        command: Literal["pause", "resume"] = "pause" if output.action == "pause" else "resume"
        return wire.PlaybackControlMessage(turn_id=output.turn_id, command=command)
    if isinstance(output, AudioOut | StageOut):
        return None
    assert_never(output)


def error_from_exception(exc: BaseException, *, turn_id: str | None = None) -> wire.ErrorMessage:
    """The ``error`` message for an exception: an :class:`AriaError`'s code (mapped onto a wire code) and
    text; anything else is an ``internal_error`` that names only the exception's type."""
    if not isinstance(exc, AriaError):
        return wire.ErrorMessage(
            code="internal_error", message=f"internal error ({type(exc).__name__})", turn_id=turn_id
        )
    code = _WIRE_CODES.get(exc.code, exc.code)
    if code not in wire.ERROR_CODES:
        code = "internal_error"
    retryable = bool(getattr(exc, "retryable", False))
    return wire.ErrorMessage(
        code=code, message=str(exc) or type(exc).__name__, retryable=retryable, turn_id=turn_id
    )


def session_message(
    session_id: str,
    *,
    mode: str,
    modes: Sequence[str],
    audio_out_rate: int,
    limits: wire.Limits | None = None,
    engines: Mapping[str, wire.EngineStatus | Mapping[str, Any]] | None = None,
    resumed: bool = False,
    max_fps: float = 2.0,
    mode_details: Sequence[wire.ModeInfo] = (),
    private: bool = False,
) -> wire.SessionMessage:
    """The ``session`` message every connection starts with.

    ``engines`` maps each engine kind to an :class:`EngineStatus` or a mapping with its ``name``,
    ``state`` and ``detail`` (other keys are ignored; a ``disabled`` state is sent as ``unavailable``).
    """
    return wire.SessionMessage(
        session_id=session_id,
        resumed=resumed,
        mode=mode,
        modes=list(modes),
        audio_in=wire.AudioFormat(),
        audio_out=wire.AudioFormat(sample_rate=audio_out_rate),
        video_in=wire.VideoFormat(max_fps=max_fps),
        limits=limits if limits is not None else wire.Limits(),
        engines={kind: _engine_status(status) for kind, status in (engines or {}).items()},
        mode_details=list(mode_details),
        private=private,
    )


def _engine_status(status: wire.EngineStatus | Mapping[str, Any]) -> wire.EngineStatus:
    if isinstance(status, wire.EngineStatus):
        return status
    state, detail = status.get("state"), status.get("detail") or ""
    if state == "disabled":
        state, detail = "unavailable", detail or "disabled in the configuration"
    return wire.EngineStatus.model_validate({"name": status.get("name"), "state": state, "detail": detail})
