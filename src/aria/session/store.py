"""Sessions: one conversation's history, settings overrides and small memory, kept across reconnects
and, over a :class:`~aria.session.files.FileSnapshotStore`, across restarts.

:class:`SessionStore` keeps live sessions in memory (at most ``max_sessions``: the idlest unconnected
one is dropped, saved first when it has unsaved changes) and reads a session from its snapshot store the
first time its id is asked for. Nothing is written until :meth:`SessionStore.save`; call it when a turn
completes, so a crash loses at most the turn in progress.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aria.core.config import Settings, apply_update
from aria.core.history import History
from aria.errors import InvalidInput
from aria.session.files import MemorySnapshotStore, SnapshotStore
from aria.session.serialize import (
    MAX_MEMORY_KEY_CHARS,
    MAX_MEMORY_KEYS,
    MAX_MEMORY_VALUE_CHARS,
    SessionSummary,
    check_session_id,
    session_from_snapshot,
    session_to_snapshot,
)

__all__ = ["TITLE_CHARS", "Session", "SessionStore"]

log = logging.getLogger(__name__)

TITLE_CHARS = 80
#: Snapshot fields that change without the conversation changing.
_VOLATILE = frozenset({"updated", "last_seen"})


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
        return SessionSummary(self.id, self.title, self.mode, self.created, self.updated, len(self.history))

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


def _has_content(session: Session) -> bool:
    return bool(len(session.history) or session.memory or session.overrides)


def _digest(snapshot: Mapping[str, Any]) -> str:
    content = {key: value for key, value in snapshot.items() if key not in _VOLATILE}
    text = json.dumps(content, sort_keys=True)
    return hashlib.blake2b(text.encode("ascii"), digest_size=16).hexdigest()


class SessionStore:
    """Live sessions over a :class:`~aria.session.files.SnapshotStore` (in memory by default).

    Not thread-safe: use it from one thread (the server's event loop). A session with an open connection
    is never dropped from memory, so ``max_sessions`` may be exceeded while every session is connected
    (the server's connection limit bounds that); dropping one would give a second connection to the same
    id a second copy of the conversation.
    """

    def __init__(self, snapshots: SnapshotStore | None = None, *, max_sessions: int = 1000) -> None:
        if max_sessions < 1:
            raise InvalidInput(f"max_sessions must be at least 1, got {max_sessions}")
        self.snapshots: SnapshotStore = snapshots if snapshots is not None else MemorySnapshotStore()
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._saved: dict[str, str] = {}  # live id -> digest of the content last saved or loaded

    def __len__(self) -> int:
        """The number of live sessions."""
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        """The live session, else the saved one (now live); ``None`` for an unknown or malformed id."""
        try:
            check_session_id(session_id)
        except InvalidInput:
            return None
        return self._sessions.get(session_id) or self._load(session_id)

    def open(self, session_id: str | None, *, mode: str) -> tuple[Session, bool]:
        """The session with this id, live or saved (``resumed`` is ``True``), or a new one; ids are
        checked so they are safe anywhere (:class:`InvalidInput` if not)."""
        if session_id:
            check_session_id(session_id)
            existing = self._sessions.get(session_id) or self._load(session_id)
            if existing is not None:
                existing.last_seen = time.time()
                return existing, True
        session = Session(session_id or "s_" + uuid.uuid4().hex[:20], mode=mode)
        self._admit(session)
        return session, False

    def save(self, session: Session, *, force: bool = False) -> bool:
        """Write the session's snapshot if its content changed since it was last saved or loaded here
        (always with ``force``); ``True`` when written. Errors of the snapshot store propagate."""
        snapshot = session_to_snapshot(session)
        digest = _digest(snapshot)
        live = self._sessions.get(session.id) is session
        if not force and live and self._saved.get(session.id) == digest:
            return False
        session.updated = snapshot["updated"] = time.time()
        self.snapshots.save(session.id, snapshot)
        if live:
            self._saved[session.id] = digest
        return True

    def delete(self, session_id: str) -> bool:
        """Forget the session, live and saved; ``True`` if there was one. Open connections keep their
        :class:`Session` object, and saving it again brings it back."""
        check_session_id(session_id)
        live = self._sessions.pop(session_id, None)
        self._saved.pop(session_id, None)
        stored = self.snapshots.delete(session_id)
        return live is not None or stored

    def rename(self, session_id: str, title: str) -> Session | None:
        """Give the session (live or saved) a title and save it; an empty title goes back to the first
        user message. ``None`` for an unknown session; :class:`InvalidInput` for a bad id or title."""
        check_session_id(session_id)
        session = self.get(session_id)
        if session is None:
            return None
        session.rename(title)
        self.save(session, force=True)
        return session

    def list(self) -> builtins.list[SessionSummary]:
        """Every saved session, and every live one with content, most recently updated first."""
        found = {summary.id: summary for summary in self.snapshots.list()}
        for session in self._sessions.values():
            if session.id in found or _has_content(session):
                found[session.id] = session.summary()
        return sorted(found.values(), key=lambda s: (s.updated, s.id), reverse=True)

    def latest_id(self) -> str | None:
        """The id of the most recently updated session (as :meth:`list` orders them), if any."""
        candidates = [
            (session.updated, session.id)
            for session in self._sessions.values()
            if session.id in self._saved or _has_content(session)
        ]
        saved_id = self.snapshots.latest()
        if saved_id is not None and saved_id not in self._sessions:
            snapshot = self.snapshots.load(saved_id)
            if snapshot is not None:
                candidates.append((snapshot["updated"], saved_id))
        return max(candidates)[1] if candidates else None

    # -- internals --------------------------------------------------------------------------------

    def _load(self, session_id: str) -> Session | None:
        snapshot = self.snapshots.load(session_id)
        if snapshot is None:
            return None
        session = session_from_snapshot(snapshot)
        session.last_seen = time.time()
        self._admit(session)
        self._saved[session.id] = _digest(session_to_snapshot(session))
        return session

    def _admit(self, session: Session) -> None:
        while len(self._sessions) >= self.max_sessions:
            idle = [s for s in self._sessions.values() if s.connections <= 0]
            if not idle:
                log.warning("all %d live sessions are connected; keeping them all", len(self._sessions))
                break
            self._evict(min(idle, key=lambda s: s.last_seen))
        self._sessions[session.id] = session

    def _evict(self, session: Session) -> None:
        try:
            if _has_content(session) or session.id in self._saved:
                self.save(session)
        except (OSError, InvalidInput):
            log.exception("could not save session %s before dropping it from memory", session.id)
        del self._sessions[session.id]
        self._saved.pop(session.id, None)
