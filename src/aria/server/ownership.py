"""Who may use a session: its owner, who holds the secret resume key given when it was created.

A key is ``<session id>.<secret>`` (the secret from :func:`secrets.token_urlsafe`, 192 bits), so a key
names its own session: a client presents keys without saying which conversation each opens. Only a hash
of the key is kept (``session.meta["key_hash"]``, SHA-256), compared in constant time.

The rules (``docs/protocol.md``, *Session ownership*):

* ``/ws`` without ``session_id`` starts a new session; its key is in the ``session`` message, once.
* ``/ws?session_id=ID&key=KEY`` (or the header ``X-Aria-Session-Key``) resumes ID when KEY is its key;
  without it the connection gets ``error`` ``session_locked`` and is closed (close code 4403). A session
  id the server does not know starts a new session under that id, with a new key.
* REST reads and changes of a session (``GET``/``PATCH``/``DELETE /sessions/{id}``, ``/export``) need its
  key in ``X-Aria-Session-Key``, or the server's token; ``GET /sessions`` lists the sessions whose keys
  are presented (comma-separated), or all of them with the server's token.
* A session saved before keys existed has none: only the server's token reads it, and a ``/ws``
  connection that presents the token resumes it and is given a new key (it is then the owner's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aria.server.guards import token_ok

__all__ = [
    "HEADER",
    "KEY_META",
    "LOCKED_CLOSE",
    "MAX_KEYS",
    "TAKEN_OVER_CLOSE",
    "Locked",
    "Opened",
    "can_use",
    "give_key",
    "has_key",
    "is_admin",
    "key_matches",
    "keys_from",
    "open_owned",
    "session_of_key",
    "take_over",
]

log = logging.getLogger(__name__)

#: The header that carries session keys (one, or several separated by commas).
HEADER = "x-aria-session-key"
#: Where a session keeps its key's hash.
KEY_META = "key_hash"
#: At most this many keys are looked at in one request.
MAX_KEYS = 256
_SECRET_BYTES = 24


class _Owned(Protocol):
    id: str
    meta: dict[str, Any]


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def give_key(session: _Owned) -> str:
    """A new key for ``session`` (its hash replaces any earlier one); return it to the owner once."""
    key = f"{session.id}.{secrets.token_urlsafe(_SECRET_BYTES)}"
    session.meta[KEY_META] = _hash(key)
    return key


def has_key(session: _Owned) -> bool:
    """Whether the session was given a key (sessions saved before keys existed were not)."""
    return isinstance(session.meta.get(KEY_META), str) and bool(session.meta[KEY_META])


def key_matches(session: _Owned, key: str | None) -> bool:
    """Whether ``key`` is the session's key (constant-time comparison of the hashes)."""
    stored = session.meta.get(KEY_META)
    if not key or not isinstance(stored, str) or not stored:
        return False
    return hmac.compare_digest(_hash(key), stored)


def session_of_key(key: str) -> str | None:
    """The session id a key names, or ``None`` for something that is not a key."""
    session_id, dot, secret = key.partition(".")
    return session_id if dot and session_id and secret else None


def keys_from(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> list[str]:
    """The keys a request presents: ``X-Aria-Session-Key`` (comma-separated) and, for WebSockets (a
    browser cannot set headers there), ``?key=``; at most :data:`MAX_KEYS`."""
    found: list[str] = []
    if query is not None and query.get("key"):
        found.append(query["key"].strip())
    raw = headers.get(HEADER, "")
    found.extend(part.strip() for part in raw.split(",") if part.strip())
    return found[:MAX_KEYS]


def is_admin(query: Mapping[str, str], headers: Mapping[str, str], token: str | None) -> bool:
    """Whether the request presents the server's token (``?token=`` or ``Authorization: Bearer``) and one
    is configured: that caller may see and open every session."""
    return bool(token) and token_ok(query, headers, token)


def can_use(session: _Owned, keys: list[str], *, admin: bool) -> bool:
    """Whether a caller with ``keys`` (and the server's token when ``admin``) may read or change it."""
    if admin:
        return True
    return has_key(session) and any(key_matches(session, key) for key in keys)


# -- opening a session over /ws ------------------------------------------------------------------------

#: Close codes (private range: 4000 + the HTTP status they resemble).
LOCKED_CLOSE = 4403
TAKEN_OVER_CLOSE = 4409


class Locked(Exception):
    """The session exists and the connection does not hold its key."""

    code = "session_locked"


@dataclass(frozen=True)
class Opened:
    session: Any
    resumed: bool
    #: The key to send in the ``session`` message (new or newly keyed session), else ``None``.
    key: str | None


def open_owned(
    sessions: Any,
    *,
    wanted: str | None,
    keys: list[str],
    admin: bool,
    resume_id: str | None,
    mode: str,
) -> Opened:
    """Open the session a ``/ws`` connection asks for, by the rules in the module docstring: a new one
    (with a key), or an existing one when a key in ``keys`` is its key (or, for a session without a key,
    when ``admin``). ``resume_id`` (``aria serve --resume``) is used for a connection without ``wanted``
    only when it presents that session's key. Raises :class:`Locked`, or :class:`InvalidInput` for a
    malformed id."""
    if not wanted and resume_id and any(session_of_key(key) == resume_id for key in keys):
        wanted = resume_id
    session, resumed = sessions.open(wanted or None, mode=mode)
    if not resumed:
        return Opened(session, False, give_key(session))
    if has_key(session):
        if any(key_matches(session, key) for key in keys):
            return Opened(session, True, None)
        raise Locked(
            f"session {session.id} belongs to another client: connect with its key "
            "(?key= or the X-Aria-Session-Key header)"
        )
    if admin:  # saved before keys existed: the server's token claims it
        return Opened(session, True, give_key(session))
    raise Locked(
        f"session {session.id} was saved before sessions had keys: open it once with the server's token "
        "(aria serve --token ...) to claim it"
    )


async def take_over(seats: Iterable[Any], seat: Any, session_id: str, *, wait_s: float = 5.0) -> int:
    """Close every other connection (seat) serving ``session_id`` (each gets ``session_taken_over``) and
    wait, up to ``wait_s`` each, until it has finished (its turn saved); then ``seat`` serves it. Returns
    how many were closed."""
    others = [s for s in list(seats) if s is not seat and s.session_id == session_id]
    for other in others:
        log.info("session %s opened on another connection (with its key): closing the first", session_id)
        if other.kick is not None:
            await other.kick(
                "session_taken_over",
                "this conversation was opened on another connection with its key; this one is closed",
                TAKEN_OVER_CLOSE,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(other.done.wait(), wait_s)
    seat.session_id = session_id
    return len(others)
