"""The resume keys of the sessions a test created, so tests that resume, read or delete their own
sessions present them as an owner would (``docs/protocol.md``, *Session ownership*).

Clients record each ``session`` message with :func:`remember`; :func:`owned` adds the key to a ``/ws``
query that names a session; :data:`OWNER` is an ``httpx`` auth that sends the keys in
``X-Aria-Session-Key``. Tests about ownership itself (``tests/server/test_ownership.py``) pass keys by
hand instead.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import httpx

__all__ = ["KEYS", "OWNER", "owned", "remember"]

#: Session id -> resume key, for every session whose ``session`` message a test client read.
KEYS: dict[str, str] = {}


def remember(session: Mapping[str, Any]) -> None:
    """Keep the key of a ``session`` message (sent once, when the session is created)."""
    if session.get("type") == "session" and session.get("key"):
        KEYS[str(session["session_id"])] = str(session["key"])


def owned(query: str) -> str:
    """``query`` (``?session_id=...``) with that session's key added, when a test created it."""
    params = dict(parse_qsl(query.lstrip("?")))
    session_id = params.get("session_id")
    if session_id and "key" not in params and session_id in KEYS:
        return f"{query}&key={KEYS[session_id]}"
    return query


class _OwnerAuth(httpx.Auth):
    """Adds ``X-Aria-Session-Key``: the key of the session in the path, or the newest keys for a list."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        parts = request.url.path.split("/")
        if len(parts) > 2 and parts[1] == "sessions" and parts[2] in KEYS:
            request.headers["X-Aria-Session-Key"] = KEYS[parts[2]]
        elif KEYS:
            request.headers["X-Aria-Session-Key"] = ",".join(list(KEYS.values())[-200:])
        yield request


OWNER = _OwnerAuth()
