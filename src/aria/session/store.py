"""Sessions: one conversation's history, settings overrides and small memory, kept across reconnects.

This is the in-memory store; persistence to disk comes with the sessions issue behind the same API.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aria.core.history import History
from aria.errors import InvalidInput

__all__ = ["Session", "SessionStore"]

_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass(eq=False)
class Session:
    id: str
    history: History = field(default_factory=History)
    mode: str = "voice_chat"
    overrides: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    connections: int = 0


class SessionStore:
    def __init__(self, *, max_sessions: int = 1000) -> None:
        self._sessions: dict[str, Session] = {}
        self.max_sessions = max_sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def open(self, session_id: str | None, *, mode: str) -> tuple[Session, bool]:
        """The session with this id (resumed) or a new one; ids are checked so they are safe anywhere."""
        if session_id:
            if not _ID.match(session_id):
                raise InvalidInput("session_id must be 8-64 letters, digits, '-' or '_'")
            existing = self._sessions.get(session_id)
            if existing is not None:
                existing.last_seen = time.time()
                return existing, True
        while len(self._sessions) >= self.max_sessions:
            idle = min(self._sessions.values(), key=lambda s: (s.connections > 0, s.last_seen))
            del self._sessions[idle.id]
        session = Session(session_id or "s_" + uuid.uuid4().hex[:20], mode=mode)
        self._sessions[session.id] = session
        return session, False
