"""Sessions in Redis, shared by several ``aria serve`` processes, with one server at a time per session.

Keys, under ``prefix`` (``aria``)::

    aria:sessions                   sorted set: session id -> updated (UNIX time)
    aria:session:<id>:snapshot      the snapshot (JSON)
    aria:session:<id>:journal       list: the records since the snapshot (see aria.session.journal)
    aria:session:<id>:archive       list: archived messages, {"n": number, "message": {...}}
    aria:session:<id>:lease         the id of the server serving the session, with an expiry

The journal, archive and compaction follow :mod:`aria.session.journal` (a record is one ``RPUSH``, so it
is never torn; a compaction is one ``MULTI`` transaction). A lease is taken with ``SET NX PX`` when a
server opens a session, renewed every third of ``lease_s`` by a keeper thread while a connection uses
the session (and for ``lease_s`` after it was taken or opened), and given back when the session is
idle; a server that dies stops renewing, so its leases expire after ``lease_s`` and another server can
take them. Renewal and release only touch a lease that still names this server (a Lua script).

The ``redis`` package's (blocking, thread-safe) client is used from the session store's writer thread
and the keeper thread, and for the lease check when a session is opened. The session store's API is
synchronous (the server calls it from the event loop), so an asyncio client would not keep the loop
free any better: saves never wait for Redis; opening, reading and listing sessions wait for a round trip.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aria.errors import ConfigError, InvalidInput
from aria.session.journal import fold_archive, parse_record, replay
from aria.session.model import SessionSummary
from aria.session.serialize import check_session_id, parse_messages, parse_snapshot, summarize

try:
    import redis
except ImportError:  # pragma: no cover - depends on the environment
    redis = None  # type: ignore[assignment]

__all__ = ["RedisSnapshotStore"]

log = logging.getLogger(__name__)

_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call({}) end return 0"
_RENEW = _IF_OURS.format("'pexpire', KEYS[1], ARGV[2]")
_RELEASE = _IF_OURS.format("'del', KEYS[1]")

Lease = Literal["held", "taken", "busy"]


class RedisSnapshotStore:
    """A :class:`~aria.session.journal.JournalStore` in Redis, with leases (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "aria",
        max_messages: int = 0,
        compact_every: int = 64,
        lease_s: float = 15.0,
    ) -> None:
        if redis is None:
            raise ConfigError(
                "session.store = 'redis' needs the redis package",
                key="session.store",
                fix="pip install 'aria-assistant[redis]'",
            )
        if compact_every < 1 or lease_s <= 0:
            raise InvalidInput("compact_every must be at least 1 and lease_s positive")
        self.url = url
        self.prefix = prefix
        self.max_messages = max_messages
        self.compact_every = compact_every
        self.lease_s = lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        #: Whether a connection still uses a session (the session store sets it); read by the keeper.
        self.keep_alive: Callable[[str], bool] = lambda _session_id: False
        self._held: dict[str, float] = {}  # session id -> when last acquired or opened (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RedisSnapshotStore({self.url!r}, prefix={self.prefix!r})"

    def _key(self, session_id: str, part: str) -> str:
        return f"{self.prefix}:session:{check_session_id(session_id)}:{part}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:sessions"

    # -- snapshots and journal --------------------------------------------------------------------

    def load(self, session_id: str) -> dict[str, Any] | None:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self._key(session_id, "snapshot"))
        pipe.lrange(self._key(session_id, "journal"), 0, -1)
        raw, lines = pipe.execute()
        snapshot = None
        if raw is not None:
            try:
                snapshot = parse_snapshot(json.loads(raw))
            except (ValueError, InvalidInput) as exc:
                log.warning(
                    "session %s: its snapshot in Redis is unusable (%s); ignoring it", session_id, exc
                )
        records = []
        for line in lines:
            try:
                records.append(parse_record(json.loads(line)))
            except (ValueError, InvalidInput) as exc:
                log.warning(
                    "session %s: a journal record in Redis is damaged (%s); replaying up to it",
                    session_id,
                    exc,
                )
                break
        state, _applied = replay(snapshot, records)
        if state is None:
            return None
        try:
            return parse_snapshot(state)
        except InvalidInput as exc:
            log.warning("session %s: its journal does not make a session (%s)", session_id, exc)
            return snapshot

    def save(self, session_id: str, snapshot: Mapping[str, Any]) -> None:
        check_session_id(session_id)
        state, moved = fold_archive(parse_snapshot(snapshot), self.max_messages)
        if state["id"] != session_id:
            raise InvalidInput(f"snapshot of session {state['id']!r} saved as {session_id!r}")
        pipe = self.client.pipeline(transaction=True)
        if moved:
            pipe.rpush(self._key(session_id, "archive"), *[_json({"n": n, "message": m}) for n, m in moved])
        pipe.set(self._key(session_id, "snapshot"), _json(state))
        pipe.delete(self._key(session_id, "journal"))
        pipe.zadd(self._index, {session_id: state["updated"]})
        pipe.execute()

    def append(self, session_id: str, record: Mapping[str, Any]) -> None:
        checked = parse_record(record)
        if "snapshot" in checked:
            self.save(session_id, checked["snapshot"])
            return
        updated = checked["header"]["updated"]
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self._key(session_id, "journal"), _json(checked))
        pipe.zadd(self._index, {session_id: updated})
        length, _ = pipe.execute()
        if length >= self.compact_every:
            state = self.load(session_id)
            if state is not None:
                self.save(session_id, state)

    def delete(self, session_id: str) -> bool:
        keys = [self._key(session_id, part) for part in ("snapshot", "journal", "archive")]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.zrem(self._index, session_id)
        removed, indexed = pipe.execute()
        return bool(removed or indexed)

    def list(self) -> builtins.list[SessionSummary]:
        summaries = []
        for raw_id in self.client.zrevrange(self._index, 0, -1):
            session_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            snapshot = self.load(session_id)
            if snapshot is not None:
                summaries.append(summarize(snapshot))
        return sorted(summaries, key=lambda s: (s.updated, s.id), reverse=True)

    def latest(self) -> str | None:
        summaries = self.list()
        return summaries[0].id if summaries else None

    def earlier(self, session_id: str, before: int) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = []
        for line in self.client.lrange(self._key(session_id, "archive"), 0, -1):
            try:
                entry = json.loads(line)
                number, message = entry["n"], parse_messages([entry["message"]])[0]
            except (ValueError, KeyError, TypeError, InvalidInput):
                continue
            if number == len(found) and number < before:
                found.append(message)
        state = self.load(session_id)
        if state is not None:
            found = found[: state["archived"]] + state["history"][: max(0, before - state["archived"])]
        return found[:before]

    def prune(self, cutoff: float) -> builtins.list[str]:
        """Delete the sessions updated before ``cutoff`` that no server holds a lease on."""
        gone = []
        for raw_id in self.client.zrangebyscore(self._index, "-inf", f"({cutoff}"):
            session_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if self.client.exists(self._key(session_id, "lease")):
                continue
            self.delete(session_id)
            gone.append(session_id)
        return gone

    # -- leases -----------------------------------------------------------------------------------

    def acquire(self, session_id: str) -> Lease:
        """Take or keep the session's lease: ``held`` (still this server's), ``taken`` (now this
        server's, perhaps after another's expired) or ``busy`` (another server's)."""
        key, ms = self._key(session_id, "lease"), int(self.lease_s * 1000)
        with self._lock:
            was_held = session_id in self._held
        if was_held and self._renew(keys=[key], args=[self.owner, ms]):
            outcome: Lease = "held"
        elif self.client.set(key, self.owner, nx=True, px=ms):
            outcome = "taken"
        else:
            with self._lock:
                self._held.pop(session_id, None)
            return "busy"
        with self._lock:
            self._held[session_id] = time.monotonic()
        self._start_keeper()
        return outcome

    def release(self, session_id: str) -> None:
        with self._lock:
            self._held.pop(session_id, None)
        self._release(keys=[self._key(session_id, "lease")], args=[self.owner])

    def held(self) -> builtins.list[str]:
        """The sessions whose leases this server holds."""
        with self._lock:
            return sorted(self._held)

    def keep_leases(self) -> None:
        """Renew the leases still in use, give back the others (the keeper thread calls it)."""
        now, ms = time.monotonic(), int(self.lease_s * 1000)
        with self._lock:
            held = dict(self._held)
        for session_id, since in held.items():
            try:
                if self.keep_alive(session_id) or now - since < self.lease_s:
                    if not self._renew(keys=[self._key(session_id, "lease")], args=[self.owner, ms]):
                        log.warning(
                            "lost the lease of session %s (it expired); another server may serve it",
                            session_id,
                        )
                        with self._lock:
                            self._held.pop(session_id, None)
                else:
                    self.release(session_id)
            except redis.RedisError as exc:
                log.warning("could not renew the lease of session %s: %s", session_id, exc)

    def close(self) -> None:
        """Stop the keeper, give back every lease, close the connections."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        for session_id in self.held():
            try:
                self.release(session_id)
            except redis.RedisError as exc:
                log.warning("could not give back the lease of session %s: %s", session_id, exc)
        self.client.close()

    def _start_keeper(self) -> None:
        with self._lock:
            if self._keeper is not None or self._stop.is_set():
                return
            self._keeper = threading.Thread(target=self._keep, name="aria-session-leases", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.keep_leases()


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
