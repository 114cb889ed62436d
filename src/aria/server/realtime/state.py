"""The session and the conversation of one Realtime connection, in their GA JSON shapes.

:class:`SessionState` merges ``session.update`` into the effective settings and renders the ``session``
object; :class:`Conversation` keeps the items in order (with what Aria needs beside them: the clauses an
answer spoke, for ``conversation.item.truncate``) and turns them into the language model's messages.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aria.errors import InvalidInput
from aria.pipeline.heard import heard_chars
from aria.server.realtime.events import FunctionTool, ItemIn, SessionConfig
from aria.types import ImageFrame, Message, ToolCall, ToolSpec, WordMark

__all__ = [
    "OPENAI_VOICES",
    "Conversation",
    "Item",
    "SessionState",
    "Spoken",
    "image_of",
    "item_json",
    "new_id",
    "server_vad_defaults",
    "tool_specs",
]

Json = dict[str, Any]
#: Voice names of OpenAI's API: accepted, and spoken with Aria's default voice.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar", "fable", "onyx"}
)
_EAGERNESS = ("low", "medium", "high", "auto")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _deep_merge(base: Json, update: Json) -> Json:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and "type" not in value:
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def server_vad_defaults() -> Json:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def _turn_detection(value: Json | None) -> Json | None:
    if value is None:
        return None
    if value["type"] == "semantic_vad":
        base: Json = {"type": "semantic_vad", "eagerness": "auto", "create_response": True}
        base["interrupt_response"] = True
    else:
        base = server_vad_defaults()
    return base | {k: v for k, v in value.items() if v is not None}


class SessionState:
    """The effective session: GA defaults, then every ``session.update`` merged in."""

    def __init__(
        self, *, model: str, kind: str, voices: Sequence[str] = (), default_voice: str | None = None
    ) -> None:
        self.id = new_id("sess")
        self.kind = kind
        self.voices = tuple(voices)
        pcm = {"type": "audio/pcm", "rate": 24000}
        self.config: Json = {
            "model": model,
            "instructions": "",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": dict(pcm),
                    "transcription": {"model": "aria"} if kind == "transcription" else None,
                    "turn_detection": server_vad_defaults(),
                    "noise_reduction": None,
                },
                "output": {"format": dict(pcm), "voice": default_voice or "alloy", "speed": 1.0},
            },
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
        }

    def apply(self, update: SessionConfig) -> None:
        """Merge ``update`` (only the fields it sets). Raises :class:`InvalidInput` naming the field."""
        changes = update.model_dump(exclude_unset=True)
        kind = changes.pop("type", None)
        if kind is not None and kind != self.kind:
            raise InvalidInput(f"session.type: this is a {self.kind} session; it cannot become {kind}")
        for name in ("include", "prompt", "tracing", "truncation", "parallel_tool_calls", "reasoning"):
            changes.pop(name, None)
        voice = changes.get("audio", {}).get("output", {}).get("voice")
        if voice is not None and voice not in self.voices and voice not in OPENAI_VOICES:
            known = ", ".join(self.voices) or "none"
            raise InvalidInput(f"session.audio.output.voice: unknown voice {voice!r}; Aria's voices: {known}")
        audio_in = changes.get("audio", {}).get("input", {})
        if "turn_detection" in audio_in:
            audio_in["turn_detection"] = _turn_detection(audio_in["turn_detection"])
        if audio_in.get("format", {}).get("type") == "audio/pcm":
            audio_in["format"]["rate"] = 24000
        if changes.get("tools") is not None:
            changes["tools"] = [
                FunctionTool.model_validate(t).model_dump(exclude_none=True) for t in changes["tools"]
            ]
        self.config = _deep_merge(self.config, {k: v for k, v in changes.items() if k != "audio"})
        if "audio" in changes:
            self.config["audio"] = _deep_merge(self.config["audio"], changes["audio"])
        if self.config["max_output_tokens"] is None:
            self.config["max_output_tokens"] = "inf"

    # -- typed access --------------------------------------------------------------------------------

    @property
    def input_format(self) -> str:
        return str(self.config["audio"]["input"]["format"]["type"])

    @property
    def output_format(self) -> str:
        return str(self.config["audio"]["output"]["format"]["type"])

    @property
    def turn_detection(self) -> Json | None:
        value: Json | None = self.config["audio"]["input"]["turn_detection"]
        return value

    @property
    def transcription(self) -> Json | None:
        value: Json | None = self.config["audio"]["input"]["transcription"]
        return value

    @property
    def voice(self) -> str | None:
        """The TTS voice to use: Aria's own voice when named, else the engine's default (None)."""
        voice = self.config["audio"]["output"]["voice"]
        return str(voice) if voice in self.voices else None

    def to_json(self) -> Json:
        """The ``session`` object of ``session.created`` / ``session.updated``."""
        if self.kind == "transcription":
            audio_in = {k: v for k, v in self.config["audio"]["input"].items()}
            return {
                "type": "transcription",
                "audio": {"input": audio_in},
                "include": None,
            }
        return {
            "type": "realtime",
            **self.config,
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
        }


@dataclass
class Spoken:
    """A clause an answer spoke: its text, when its audio starts in the item, how long, its word marks."""

    text: str
    start_s: float
    seconds: float
    marks: tuple[WordMark, ...] = ()


@dataclass
class Item:
    json: Json
    spoken: list[Spoken] = field(default_factory=list)
    images: tuple[ImageFrame, ...] = ()

    @property
    def id(self) -> str:
        return str(self.json["id"])

    def audio_seconds(self) -> float:
        return sum(s.seconds for s in self.spoken)

    def heard(self, seconds: float) -> str:
        """The words heard when ``seconds`` of the item's audio had played."""
        words: list[str] = []
        for clause in self.spoken:
            if clause.start_s >= seconds:
                break
            upto = heard_chars(clause.text, clause.marks, clause.seconds, seconds - clause.start_s)
            words.append(clause.text[:upto].strip())
        return " ".join(w for w in words if w)


def image_of(url: str) -> ImageFrame:
    """An ``input_image``'s ``image_url``: a ``data:image/png|jpeg;base64,`` URL (nothing is fetched)."""
    head, _, payload = url.partition(",")
    kinds = {
        "data:image/png;base64": "PNG",
        "data:image/jpeg;base64": "JPEG",
        "data:image/jpg;base64": "JPEG",
    }
    if head.lower() not in kinds:
        raise InvalidInput("image_url must be a data:image/png or data:image/jpeg base64 URL")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"image_url is not valid base64: {exc}") from exc
    return ImageFrame(data, "PNG" if kinds[head.lower()] == "PNG" else "JPEG")


def item_json(item: ItemIn, item_id: str) -> Json:
    """A client item in its GA shape, checked (user content types, required fields)."""
    if item.type == "message":
        if item.role is None or not item.content:
            raise InvalidInput("item: a message needs a role and content")
        allowed = {
            "user": {"input_text", "input_audio", "input_image"},
            "system": {"input_text"},
            "assistant": {"output_text", "output_audio", "text"},
        }[item.role]
        content = []
        for index, part in enumerate(item.content):
            if part.type not in allowed:
                raise InvalidInput(
                    f"item.content[{index}].type: {part.type} is not allowed in a {item.role} message"
                )
            content.append(part.model_dump(exclude_none=True))
        return {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": item.role,
            "content": content,
        }
    if item.type == "function_call_output":
        if item.call_id is None or item.output is None:
            raise InvalidInput("item: a function_call_output needs call_id and output")
        return {
            "id": item_id,
            "type": "function_call_output",
            "object": "realtime.item",
            "status": "completed",
            "call_id": item.call_id,
            "output": item.output,
        }
    if item.name is None or item.call_id is None:
        raise InvalidInput("item: a function_call needs name and call_id")
    return {
        "id": item_id,
        "type": "function_call",
        "object": "realtime.item",
        "status": "completed",
        "call_id": item.call_id,
        "name": item.name,
        "arguments": item.arguments or "",
    }


class Conversation:
    """The items, in order."""

    def __init__(self) -> None:
        self.items: list[Item] = []

    def get(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def insert(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Add ``item`` after ``previous_item_id`` (``"root"``: first; None: last); returns the id of the
        item before it."""
        if previous_item_id is None:
            before = self.last_id()
            self.items.append(item)
            return before
        if previous_item_id == "root":
            self.items.insert(0, item)
            return None
        for index, existing in enumerate(self.items):
            if existing.id == previous_item_id:
                self.items.insert(index + 1, item)
                return previous_item_id
        raise InvalidInput(f"previous_item_id: no item {previous_item_id!r}")

    def delete(self, item_id: str) -> bool:
        item = self.get(item_id)
        if item is not None:
            self.items.remove(item)
        return item is not None

    def messages(self) -> tuple[list[Message], list[str]]:
        """The language model's messages, and the text of system items (for the system prompt)."""
        out: list[Message] = []
        system: list[str] = []
        names = {i.json["call_id"]: i.json["name"] for i in self.items if i.json["type"] == "function_call"}
        for item in self.items:
            j = item.json
            if j["type"] == "function_call":
                call = ToolCall(j["call_id"], j["name"], j["arguments"])
                prev = out[-1] if out else None
                if prev is not None and prev.role == "assistant" and prev.metadata.get("tool_calls"):
                    out[-1] = Message(
                        "assistant",
                        prev.content,
                        metadata={"tool_calls": (*prev.metadata["tool_calls"], call)},
                    )
                else:
                    out.append(Message("assistant", "", metadata={"tool_calls": (call,)}))
                continue
            if j["type"] == "function_call_output":
                name = names.get(j["call_id"], "")
                out.append(
                    Message("tool", j["output"], metadata={"tool_call_id": j["call_id"], "name": name})
                )
                continue
            parts = [p.get("text") or p.get("transcript") or "" for p in j["content"]]
            text = " ".join(p for p in parts if p).strip()
            if j["role"] == "system":
                system.append(text)
            elif j["role"] == "user" and (text or item.images):
                audio = any(p["type"] == "input_audio" for p in j["content"])
                out.append(Message("user", text, "audio" if audio else "text", images=item.images))
            elif j["role"] == "assistant" and text:
                out.append(Message("assistant", text, interrupted=j.get("status") == "incomplete"))
        return out, system


def tool_specs(tools: Sequence[Json]) -> tuple[ToolSpec, ...]:
    return tuple(
        ToolSpec(
            t["name"], t.get("description") or "", t.get("parameters") or {"type": "object", "properties": {}}
        )
        for t in tools
    )
