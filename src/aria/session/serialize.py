"""The session snapshot format: a :class:`~aria.session.store.Session` as a JSON-safe dict, and back.

Schema 1, one JSON object per session::

    {"schema": 1, "id": "...", "title": "...", "mode": "voice_chat",
     "created": 1717000000.0, "updated": ..., "last_seen": ...,
     "overrides": {"tts.voice": "af_bella"}, "memory": {"name": "Ada"},
     "history": [{"role": "user", "content": "...", "modality": "audio", "timestamp": ...,
                  "interrupted": false, "mode": "voice_chat", "metadata": {...}}]}

Snapshots are checked with pydantic models (strict: no coercion, no unknown keys, finite numbers), so a
wrong shape is reported as :class:`~aria.errors.InvalidInput` naming the field. Text is stored as valid
Unicode: a lone surrogate (which a client's JSON can carry) becomes U+FFFD. What is not stored:
images (a message keeps ``metadata["image_count"]`` instead), metadata values JSON cannot hold (dropped;
:class:`~aria.types.ToolCall` objects in ``metadata["tool_calls"]`` are kept as OpenAI-style dicts and come
back as ``ToolCall``), and the live connection count.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError
from pydantic_core import PydanticSerializationError

from aria.core.config import HOT_RELOADABLE
from aria.core.history import History
from aria.errors import InvalidInput
from aria.session.model import (
    MAX_MEMORY_KEY_CHARS,
    MAX_MEMORY_KEYS,
    MAX_MEMORY_VALUE_CHARS,
    Session,
    SessionSummary,
)
from aria.types import Message, ToolCall

__all__ = [
    "MAX_MEMORY_KEYS",
    "MAX_MEMORY_KEY_CHARS",
    "MAX_MEMORY_VALUE_CHARS",
    "SCHEMA_VERSION",
    "SESSION_ID",
    "SessionSummary",
    "check_session_id",
    "header_of",
    "message_from_dict",
    "message_to_dict",
    "parse_messages",
    "parse_snapshot",
    "session_from_snapshot",
    "session_to_snapshot",
    "summarize",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Session ids are safe as file names, URL parts and log fields.
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_MAX_DEPTH = 32


def check_session_id(session_id: str) -> str:
    """``session_id`` if it is 8-64 letters, digits, ``-`` or ``_``; raises :class:`InvalidInput` if not."""
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):  # "$" allows a final "\n"
        raise InvalidInput("session_id must be 8-64 letters, digits, '-' or '_'")
    return session_id


# -- the schema ---------------------------------------------------------------------------------------

_MemoryKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MEMORY_KEY_CHARS)]
_MemoryValue = Annotated[str, StringConstraints(max_length=MAX_MEMORY_VALUE_CHARS)]
_Time = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class _MessageModel(_Model):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    modality: Literal["text", "audio", "image"]
    timestamp: float
    interrupted: bool
    mode: str | None
    metadata: dict[str, JsonValue]


class _SnapshotModel(_Model):
    schema_: Literal[1] = Field(alias="schema")
    id: Annotated[str, StringConstraints(pattern=SESSION_ID.pattern)]
    title: str
    mode: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    created: _Time
    updated: _Time
    last_seen: _Time
    overrides: dict[str, JsonValue]
    memory: Annotated[dict[_MemoryKey, _MemoryValue], Field(max_length=MAX_MEMORY_KEYS)]
    history: list[_MessageModel]
    #: Optional (older snapshots have neither): messages moved to the archive before ``history[0]``,
    #: and other layers' small metadata.
    archived: Annotated[int, Field(ge=0)] = 0
    meta: dict[str, JsonValue] = Field(default_factory=dict)


class _MessagesModel(_Model):
    messages: list[_MessageModel]


def parse_snapshot(data: object) -> dict[str, Any]:
    """A checked, normalised copy of a snapshot; :class:`InvalidInput` says what is wrong with it."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"a snapshot must be a JSON object, got {type(data).__name__}")
    version = data.get("schema")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        found = "no schema version" if version is None else f"schema version {version!r}"
        raise InvalidInput(f"{found}; this Aria reads schema {SCHEMA_VERSION}")
    try:
        text = _validated_json(data)
    except _LoneSurrogate:  # rare: pay for a walk over every string only then
        text = _validated_json(_valid_unicode(data, 0))
    snapshot: dict[str, Any] = json.loads(text)
    return snapshot


class _LoneSurrogate(Exception):
    """Text with a lone surrogate, which has no UTF-8 form (internal)."""


def _validated_json(data: Mapping[str, Any]) -> str:
    try:
        return _SnapshotModel.model_validate(data).model_dump_json(by_alias=True)
    except ValidationError as exc:
        if any(error["type"] == "string_unicode" for error in exc.errors()):
            raise _LoneSurrogate from exc
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "snapshot"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise InvalidInput(f"snapshot field {where}: {first['msg']}{more}") from exc
    except PydanticSerializationError as exc:  # a lone surrogate in text the schema does not constrain
        raise _LoneSurrogate from exc


def parse_messages(messages: object) -> list[dict[str, Any]]:
    """Checked, normalised message dicts (a journal record's, an archive's): lone surrogates become
    U+FFFD as in :func:`parse_snapshot`; :class:`InvalidInput` names what is malformed."""
    try:
        text = _validated_messages({"messages": messages})
    except _LoneSurrogate:
        text = _validated_messages(_valid_unicode({"messages": messages}, 0))
    checked: list[dict[str, Any]] = json.loads(text)["messages"]
    return checked


def _validated_messages(data: Mapping[str, Any]) -> str:
    try:
        return _MessagesModel.model_validate(data).model_dump_json()
    except ValidationError as exc:
        if any(error["type"] == "string_unicode" for error in exc.errors()):
            raise _LoneSurrogate from exc
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"record field {where}: {first['msg']}") from exc
    except PydanticSerializationError as exc:
        raise _LoneSurrogate from exc


def summarize(snapshot: Mapping[str, Any]) -> SessionSummary:
    """The summary of a checked snapshot (see :func:`parse_snapshot`)."""
    return SessionSummary(
        id=snapshot["id"],
        title=snapshot["title"],
        mode=snapshot["mode"],
        created=snapshot["created"],
        updated=snapshot["updated"],
        messages=snapshot.get("archived", 0) + len(snapshot["history"]),
    )


# -- session <-> snapshot -----------------------------------------------------------------------------


def session_to_snapshot(session: Session, *, whole: bool = False) -> dict[str, Any]:
    """The session as a checked snapshot dict (JSON-safe; see the module docstring for what is left out);
    with ``whole``, the archived messages too (an export: ``archived`` is then 0).

    Memory over the limits (filled in without :meth:`Session.remember`) is cut to fit, with a warning.
    """
    messages = session.all_messages() if whole else session.history
    snapshot = {
        **header_of(session),
        "history": [message_to_dict(message) for message in messages],
        "archived": 0 if whole else session.archived,
    }
    return parse_snapshot(snapshot)


def header_of(session: Session) -> dict[str, Any]:
    """Everything of a snapshot but the history and ``archived`` (JSON-safe, unchecked): what a
    journal record carries when it changed."""
    return {
        "schema": SCHEMA_VERSION,
        "id": session.id,
        "title": session.title,
        "mode": session.mode,
        "created": session.created,
        "updated": session.updated,
        "last_seen": session.last_seen,
        "overrides": _json_dict(session.overrides),
        "memory": _bounded_memory(session.id, session.memory),
        "meta": _json_dict(session.meta),
    }


def session_from_snapshot(snapshot: Mapping[str, Any]) -> Session:
    """A session from a snapshot (checked here too). Override keys that can no longer be changed live
    are dropped with a warning, so a snapshot from an older Aria cannot break the settings."""
    data = parse_snapshot(snapshot)
    history = History([message_from_dict(entry) for entry in data["history"]])
    overrides = {key: value for key, value in data["overrides"].items() if key in HOT_RELOADABLE}
    if dropped := sorted(set(data["overrides"]) - set(overrides)):
        log.warning("session %s: ignoring stored overrides of non-live settings %s", data["id"], dropped)
    session = Session(
        id=data["id"],
        history=history,
        mode=data["mode"],
        overrides=overrides,
        memory=dict(data["memory"]),
        created=data["created"],
        updated=data["updated"],
        last_seen=data["last_seen"],
        archived=data["archived"],
        meta=dict(data["meta"]),
    )
    # A stored title that is not the first user message is one someone gave it (the snapshot keeps one
    # title field: no schema change, and older snapshots read the same).
    if data["title"] != session.derived_title:
        session.custom_title = data["title"]
    return session


def message_to_dict(message: Message) -> dict[str, Any]:
    metadata = dict(message.metadata)
    calls = metadata.get("tool_calls")
    if isinstance(calls, list | tuple):
        metadata["tool_calls"] = [_tool_call_to_dict(call) for call in calls]
    metadata = _json_dict(metadata)
    if message.images:
        metadata["image_count"] = len(message.images)
    return {
        "role": message.role,
        "content": message.content,
        "modality": message.modality,
        "timestamp": message.timestamp,
        "interrupted": message.interrupted,
        "mode": message.mode,
        "metadata": metadata,
    }


def message_from_dict(entry: Mapping[str, Any]) -> Message:
    metadata = dict(entry["metadata"])
    calls = metadata.get("tool_calls")
    if isinstance(calls, list) and calls and all(_is_openai_call(call) for call in calls):
        metadata["tool_calls"] = tuple(
            ToolCall(call["id"], call["function"]["name"], call["function"]["arguments"]) for call in calls
        )
    return Message(
        role=entry["role"],
        content=entry["content"],
        modality=entry["modality"],
        timestamp=entry["timestamp"],
        interrupted=entry["interrupted"],
        mode=entry["mode"],
        metadata=metadata,
    )


def _tool_call_to_dict(call: object) -> object:
    if isinstance(call, ToolCall):
        return {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
    return call


def _is_openai_call(call: object) -> bool:
    if not isinstance(call, dict) or set(call) != {"id", "type", "function"} or call["type"] != "function":
        return False
    function = call["function"]
    return (
        isinstance(call["id"], str)
        and isinstance(function, dict)
        and set(function) == {"name", "arguments"}
        and all(isinstance(value, str) for value in function.values())
    )


def _valid_unicode(value: Any, depth: int) -> Any:
    """``value`` with lone surrogates in its strings replaced by U+FFFD: a client's JSON can carry them,
    but they have no UTF-8 form (so no file could hold them) and pydantic refuses them."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if depth > 2 * _MAX_DEPTH:
        return value  # left to the schema, which refuses what is this deep
    if isinstance(value, Mapping):
        return {_valid_unicode(k, depth): _valid_unicode(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_unicode(item, depth + 1) for item in value]
    return value


class _NotJson(Exception):
    """A value JSON cannot hold (internal: such values are dropped)."""


def _json_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-safe entries of ``values``; the others are dropped (logged at debug level)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            if not isinstance(key, str):
                raise _NotJson
            out[key] = _json_value(value, 0)
        except _NotJson:
            log.debug("dropping %r from a snapshot: %s is not JSON-safe", key, type(value).__name__)
    return out


def _json_value(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _NotJson
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)  # plain types: an IntEnum or a str subclass would not come back as itself
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson
        return float(value)
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            try:
                items.append(_json_value(item, depth + 1))
            except _NotJson:
                continue
        return items
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            try:
                if not isinstance(key, str):
                    raise _NotJson
                out[key] = _json_value(item, depth + 1)
            except _NotJson:
                continue
        return out
    raise _NotJson


def _bounded_memory(session_id: str, memory: Mapping[str, str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for key, value in memory.items():
        if len(kept) == MAX_MEMORY_KEYS:
            break
        if isinstance(key, str) and 0 < len(key) <= MAX_MEMORY_KEY_CHARS and isinstance(value, str):
            kept[key] = value[:MAX_MEMORY_VALUE_CHARS]
    if kept != dict(memory):
        log.warning(
            "session %s: memory over the limits (%d keys of at most %d chars, values of at most %d chars) "
            "was cut to fit the snapshot",
            session_id,
            MAX_MEMORY_KEYS,
            MAX_MEMORY_KEY_CHARS,
            MAX_MEMORY_VALUE_CHARS,
        )
    return kept
