"""What the Realtime protocol asks its shell to do (the actions among the events it returns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aria.server.realtime.state import Item

__all__ = [
    "AddItem",
    "AudioIn",
    "Cancel",
    "ClearInput",
    "Commit",
    "Configure",
    "DeleteItem",
    "Respond",
    "TranscribeItem",
    "TruncateItem",
]

Json = dict[str, Any]


@dataclass(frozen=True)
class AudioIn:
    """Input audio for the listener: float32 mono at 16 kHz."""

    samples: Any


@dataclass(frozen=True)
class Commit:
    """The input buffer became ``item_id``: transcribe the listener's audio into it."""

    item_id: str


@dataclass(frozen=True)
class ClearInput:
    pass


@dataclass(frozen=True)
class TranscribeItem:
    """An ``input_audio`` item the client created: transcribe ``samples`` (16 kHz) into it."""

    item_id: str
    samples: Any


@dataclass(frozen=True)
class AddItem:
    """A client item entered the conversation (an ``input_audio`` one is transcribed first)."""

    item: Item


@dataclass(frozen=True)
class DeleteItem:
    item: Item


@dataclass(frozen=True)
class TruncateItem:
    """An answer was cut at ``audio_end_ms`` (the item already holds the words heard)."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class Configure:
    """The session changed: the shell reconfigures listening and output."""


@dataclass(frozen=True)
class Respond:
    response_id: str
    instructions: str
    modalities: tuple[str, ...]
    voice: str | None
    speed: float
    output_format: str
    tools: tuple[Json, ...]
    max_tokens: int | None


@dataclass(frozen=True)
class Cancel:
    """Stop generating ``response_id`` (the shell then calls :meth:`RealtimeProtocol.finish`)."""

    response_id: str
    reason: str
