"""A session: one conversation's history, settings overrides, small memory and metadata.

It lives here, below :mod:`aria.session.serialize` (which turns it into a snapshot) and
:mod:`aria.session.store` (which keeps it live and saved), so neither imports the other to reach it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aria.core.config import Settings, apply_update
from aria.core.history import History
from aria.errors import InvalidInput
from aria.types import Message

__all__ = [
    "MAX_MEMORY_KEYS",
    "MAX_MEMORY_KEY_CHARS",
    "MAX_MEMORY_VALUE_CHARS",
    "TITLE_CHARS",
    "Session",
    "SessionSummary",
]

TITLE_CHARS = 80
MAX_MEMORY_KEYS = 200
MAX_MEMORY_KEY_CHARS = 100
MAX_MEMORY_VALUE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What a session list shows, without the history."""

    id: str
    title: str
    mode: str
    created: float
    updated: float
    messages: int


@dataclass(eq=False)
class Session:
    """One conversation. ``overrides`` are dotted settings keys changed for this session only (e.g.
    ``{"tts.voice": "af_bella", "llm.temperature": 0.3}``); ``memory`` is a small key-value store
    (bounded: use :meth:`remember`); ``updated`` is when its content last changed, as of the last save."""

    id: str
    history: History = field(default_factory=History)
    mode: str = "voice_chat"
    overrides: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    connections: int = 0
    updated: float = field(default_factory=time.time)
    #: A title someone gave the conversation (:meth:`rename`); empty: :attr:`title` is the first message.
    custom_title: str = ""
    #: Messages moved out of :attr:`history` to the session's archive (the oldest ones, once the history
    #: outgrew ``session.max_messages``); ``history[0]`` is message number ``archived`` of the conversation.
    archived: int = 0
    #: Small JSON-safe values other layers keep with the session (saved with it, never interpreted here).
    meta: dict[str, Any] = field(default_factory=dict)
    #: Reads the archived messages back (set by the store that archived them; ``None``: none kept).
    archive: Callable[[], list[Message]] | None = field(default=None, repr=False)

    def all_messages(self) -> list[Message]:
        """The whole conversation: the archived messages (when they can be read back), then the history."""
        earlier = self.archive() if self.archive is not None and self.archived else []
        return [*earlier, *self.history]

    @property
    def title(self) -> str:
        """The name given with :meth:`rename`, else the first user message on one line, cut to
        :data:`TITLE_CHARS` (empty before one)."""
        return self.custom_title or self.derived_title

    @property
    def derived_title(self) -> str:
        """The first user message on one line, cut to :data:`TITLE_CHARS` (empty before one)."""
        for message in self.history:
            if message.role == "user" and message.content.strip():
                text = " ".join(message.content.split())
                return _shorten(text)
        return ""

    def rename(self, title: str) -> None:
        """Name the conversation (one line, cut to :data:`TITLE_CHARS`); an empty title goes back to the
        first user message. :class:`InvalidInput` for a title that is not text."""
        if not isinstance(title, str):
            raise InvalidInput("a title must be text")
        self.custom_title = _shorten(" ".join(title.split()))

    def summary(self) -> SessionSummary:
        return SessionSummary(
            self.id, self.title, self.mode, self.created, self.updated, self.archived + len(self.history)
        )

    # -- memory -----------------------------------------------------------------------------------

    def remember(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``; :class:`InvalidInput` when it does not fit the limits."""
        if not isinstance(key, str) or not 0 < len(key) <= MAX_MEMORY_KEY_CHARS:
            raise InvalidInput(f"memory keys must be 1-{MAX_MEMORY_KEY_CHARS} characters")
        if not isinstance(value, str) or len(value) > MAX_MEMORY_VALUE_CHARS:
            raise InvalidInput(f"memory values must be text of at most {MAX_MEMORY_VALUE_CHARS} characters")
        if key not in self.memory and len(self.memory) >= MAX_MEMORY_KEYS:
            raise InvalidInput(f"memory is full ({MAX_MEMORY_KEYS} keys); forget one first")
        self.memory[key] = value

    def forget(self, key: str) -> bool:
        return self.memory.pop(key, None) is not None

    # -- settings ---------------------------------------------------------------------------------

    def settings(self, base: Settings) -> Settings:
        """``base`` with this session's overrides applied."""
        return apply_update(base, self.overrides) if self.overrides else base

    def update_overrides(self, updates: Mapping[str, Any], base: Settings) -> Settings:
        """Merge ``updates`` into the overrides if ``base`` accepts them all (else :class:`ConfigError`
        names the key, and nothing changes); returns the session's settings."""
        merged = {**self.overrides, **updates}
        settings = apply_update(base, merged)
        self.overrides = merged
        return settings


def _shorten(text: str) -> str:
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"
