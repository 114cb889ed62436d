"""Sessions kept across reconnects and, over a persistent snapshot store, across restarts.

:class:`SessionStore` keeps live sessions in memory (at most ``max_sessions``: the idlest unconnected
one is dropped, saved first when it has unsaved changes) and reads a session from its snapshot store the
first time its id is asked for. Nothing is written until :meth:`SessionStore.save`; call it when a turn
completes.

Over a journaled store (:class:`~aria.session.journal.JournalStore`: files, Redis) a save costs the
same at any length: it checks and serialises only the messages added since the last save, plus the small
header, and hands that record to one writer thread, which appends and fsyncs it; the event loop never
waits for the disk on a save. The writer runs the store's calls in order, so a load, list or delete
(which wait for it) sees every save before them. A crash loses at most the records still queued (the
last turn). A history longer than ``max_messages`` is cut in memory to three quarters of it; the
store archives the oldest messages at its next compaction, and :meth:`Session.all_messages` (exports)
reads them back. Over a plain :class:`~aria.session.files.SnapshotStore` a save writes the whole
snapshot, on the caller's thread, and raises what the store raises.

With ``persist=False`` (a private server) nothing is written anywhere: sessions live in memory only.
A store with leases (Redis: ``acquire``/``release``) lets one process at a time serve a session: see
:mod:`aria.session.redis_store`.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import hashlib
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aria.core.history import History
from aria.errors import InvalidInput
from aria.session.files import MemorySnapshotStore, SnapshotStore
from aria.session.journal import JournalStore, message_record, snapshot_record
from aria.session.model import TITLE_CHARS, Session, SessionSummary
from aria.session.serialize import (
    check_session_id,
    header_of,
    message_from_dict,
    message_to_dict,
    parse_messages,
    session_from_snapshot,
    session_to_snapshot,
)
from aria.types import Message

__all__ = ["TITLE_CHARS", "Session", "SessionBusy", "SessionStore"]

log = logging.getLogger(__name__)

#: Snapshot fields that change without the conversation changing.
_VOLATILE = frozenset({"updated", "last_seen"})
_T = TypeVar("_T")
#: Written messages checked for changes at each save (the newest ones: clients edit recent items).
_TAIL = 128


class SessionBusy(InvalidInput):
    """Another server holds the session's lease (it is serving the session now)."""

    code = "session_busy"


@dataclass
class _Mark:
    """What the store last wrote (or read) of a live session."""

    count: int  # messages of the history written
    tail: tuple[Message, ...]  # the last of them (a message replaced or removed there: rewrite whole)
    digest: str  # of the header, or of the whole snapshot over a plain store


def _has_content(session: Session) -> bool:
    return bool(len(session.history) or session.memory or session.overrides)


def _digest(snapshot: Mapping[str, Any]) -> str:
    content = {key: value for key, value in snapshot.items() if key not in _VOLATILE}
    text = json.dumps(content, sort_keys=True, ensure_ascii=True)
    return hashlib.blake2b(text.encode("ascii"), digest_size=16).hexdigest()


class SessionStore:
    """Live sessions over a :class:`~aria.session.files.SnapshotStore` (in memory by default).

    Use it from one thread (the server's event loop). A session with an open connection is never
    dropped from memory, so ``max_sessions`` may be exceeded while every session is connected (the
    server's connection limit bounds that); dropping one would give a second connection to the same id
    a second copy of the conversation. :meth:`close` waits for the writer.
    """

    def __init__(
        self,
        snapshots: SnapshotStore | None = None,
        *,
        max_sessions: int = 1000,
        max_messages: int = 0,
        persist: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_sessions < 1:
            raise InvalidInput(f"max_sessions must be at least 1, got {max_sessions}")
        if max_messages < 0:
            raise InvalidInput(f"max_messages must be 0 (no bound) or more, got {max_messages}")
        self.snapshots: SnapshotStore = snapshots if snapshots is not None else MemorySnapshotStore()
        self.max_sessions = max_sessions
        self.max_messages = max_messages
        #: ``False``: a private server, nothing is written anywhere.
        self.persist = persist
        #: UNIX time now: when sessions were updated, and what retention counts from.
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._marks: dict[str, _Mark] = {}  # live id -> what was last saved or loaded
        self._journaled = persist and isinstance(self.snapshots, JournalStore)
        self._writer = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aria-session-writer")
            if self._journaled
            else None
        )
        self._failed: set[str] = set()  # ids whose last write failed (written whole next time)
        self._closed = False  # after close(): the caller's thread writes
        #: Sessions deleted while a connection still held them: never saved again (no resurrection).
        self._deleted: weakref.WeakSet[Session] = weakref.WeakSet()
        self._failed_lock = threading.Lock()
        acquire = getattr(self.snapshots, "acquire", None)
        self._acquire: Callable[[str], str] | None = acquire if persist and callable(acquire) else None
        if self._acquire is not None:
            self.snapshots.keep_alive = self._connected  # type: ignore[attr-defined]

    def __len__(self) -> int:
        """The number of live sessions."""
        return len(self._sessions)

    # -- the API the server uses ------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        """The live session, else the saved one (now live); ``None`` for an unknown or malformed id."""
        try:
            check_session_id(session_id)
        except InvalidInput:
            return None
        return self._sessions.get(session_id) or self._load(session_id)

    def open(self, session_id: str | None, *, mode: str) -> tuple[Session, bool]:
        """The session with this id, live or saved (``resumed`` is ``True``), or a new one; ids are
        checked so they are safe anywhere (:class:`InvalidInput` if not). Over a store with leases,
        :class:`SessionBusy` while another server serves the session."""
        new_id = session_id or "s_" + uuid.uuid4().hex[:20]
        check_session_id(new_id)
        if self._acquire is not None:
            lease = self._acquire(new_id)  # "held" (still ours), "taken" (now ours) or "busy"
            if lease == "busy":
                raise SessionBusy(f"session {new_id} is being served by another server; try again shortly")
            live = self._sessions.get(new_id)
            if lease == "taken" and live is not None and live.connections <= 0:
                self._drop(new_id)  # another server may have changed it since: read it again
        if session_id:
            existing = self._sessions.get(session_id) or self._load(session_id)
            if existing is not None:
                existing.last_seen = self.clock()
                return existing, True
        now = self.clock()
        session = Session(new_id, mode=mode, created=now, last_seen=now, updated=now)
        self._admit(session)
        return session, False

    def save(self, session: Session, *, force: bool = False) -> bool:
        """Write what changed since the session was last saved or loaded here (always something with
        ``force``); ``True`` when written or queued. Over a plain store its errors propagate; over a
        journaled one a failed write is logged and the next save writes the session whole."""
        if not self.persist or session in self._deleted:
            return False
        live = self._sessions.get(session.id) is session
        mark = self._marks.get(session.id) if live else None
        if self._writer is None:
            return self._save_whole(session, mark, force=force, live=live)
        with self._failed_lock:
            failed = session.id in self._failed
            self._failed.discard(session.id)
        history = session.history
        replaced = mark is None or _changed(history, mark)
        if failed or replaced or mark is None:
            written = self._queue_whole(session)
        else:
            header = header_of(session)
            new = [history[index] for index in range(mark.count, len(history))]
            digest = _digest(header)
            if not new and digest == mark.digest and not force:
                return False
            session.updated = header["updated"] = self.clock()
            record = message_record(session.archived + mark.count, parse_messages(_dicts(new)), header)
            self._submit(session.id, self.snapshots.append, session.id, record)  # type: ignore[attr-defined]
            written = _Mark(len(history), _tail(history), digest)
        if live:
            self._marks[session.id] = written
            self._bound(session)
        return True

    def delete(self, session_id: str) -> bool:
        """Forget the session, live and saved; ``True`` if there was one. Open connections keep their
        :class:`Session` object, but saving it again does nothing: the conversation stays deleted."""
        check_session_id(session_id)
        live = self._sessions.pop(session_id, None)
        if live is not None:
            self._deleted.add(live)
        self._marks.pop(session_id, None)
        stored = self._call(self.snapshots.delete, session_id) if self.persist else False
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
        saved = self._call(self.snapshots.list) if self.persist else []
        found = {summary.id: summary for summary in saved}
        for session in self._sessions.values():
            if session.id in found or _has_content(session):
                found[session.id] = session.summary()
        return sorted(found.values(), key=lambda s: (s.updated, s.id), reverse=True)

    def latest_id(self) -> str | None:
        """The id of the most recently updated session (as :meth:`list` orders them), if any."""
        summaries = self.list()
        return summaries[0].id if summaries else None

    def prune(self, retention_days: float) -> builtins.list[str]:
        """Delete the sessions not updated for ``retention_days`` (0: keep all), saved and live, but
        never one with a connection; their ids."""
        if retention_days <= 0:
            return []
        cutoff = self.clock() - retention_days * 86400
        connected = {s.id for s in self._sessions.values() if s.connections > 0}
        gone = [s.id for s in self.list() if s.updated < cutoff and s.id not in connected]
        for session_id in gone:
            self.delete(session_id)
        if gone:
            log.info("deleted %d sessions older than %g days", len(gone), retention_days)
        return gone

    def flush(self) -> None:
        """Wait until everything saved so far is written."""
        self._call(lambda: None)

    def close(self) -> None:
        """Write what is queued, then stop the writer (and a store's lease keeper)."""
        self._closed = True
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        close = getattr(self.snapshots, "close", None)
        if callable(close):
            close()

    # -- internals --------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the writer thread after everything queued, and wait (directly without one, or
        once it is closed)."""
        if self._writer is None or self._closed:
            return fn(*args)
        return self._writer.submit(fn, *args).result()

    def _submit(self, session_id: str, fn: Callable[..., Any], *args: Any) -> None:
        future: concurrent.futures.Future[Any]
        if self._writer is None or self._closed:  # after close (a connection ending late): write here
            future = concurrent.futures.Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
        else:
            future = self._writer.submit(fn, *args)
        future.add_done_callback(lambda done: self._written(session_id, done))

    def _written(self, session_id: str, future: concurrent.futures.Future[Any]) -> None:
        """On the writer thread: remember a failed write, so the next save writes the session whole."""
        exc = future.exception()
        if exc is not None:
            with self._failed_lock:
                self._failed.add(session_id)
            log.error("could not save session %s: %s", session_id, exc, exc_info=not isinstance(exc, OSError))

    def _save_whole(self, session: Session, mark: _Mark | None, *, force: bool, live: bool) -> bool:
        snapshot = session_to_snapshot(session)
        digest = _digest(snapshot)
        if not force and mark is not None and mark.digest == digest:
            return False
        session.updated = snapshot["updated"] = self.clock()
        self.snapshots.save(session.id, snapshot)
        if live:
            self._marks[session.id] = _Mark(len(session.history), (), digest)
        return True

    def _queue_whole(self, session: Session) -> _Mark:
        session.updated = self.clock()
        snapshot = session_to_snapshot(session)
        self._submit(session.id, self.snapshots.append, session.id, snapshot_record(snapshot))  # type: ignore[attr-defined]
        history = session.history
        return _Mark(len(history), _tail(history), _digest(header_of(session)))

    def _bound(self, session: Session) -> None:
        """Cut a history longer than ``max_messages`` to three quarters of it (its older messages are
        saved already: the store archives them)."""
        if not self.max_messages or len(session.history) <= self.max_messages:
            return
        messages = list(session.history)
        drop = len(messages) - max(1, self.max_messages * 3 // 4)
        session.history.clear()
        for message in messages[drop:]:
            session.history.append(message)
        session.archived += drop
        self._attach_archive(session)
        mark = self._marks.get(session.id)
        if mark is not None:
            mark.count -= drop
            mark.tail = mark.tail[len(mark.tail) - mark.count :] if mark.count < len(mark.tail) else mark.tail

    def _attach_archive(self, session: Session) -> None:
        if self._writer is None:
            return
        earlier = self.snapshots.earlier  # type: ignore[attr-defined]

        def read(session_id: str = session.id) -> builtins.list[Message]:
            current = self._sessions.get(session_id, session)
            dicts = self._call(earlier, session_id, current.archived)
            return [message_from_dict(entry) for entry in dicts]

        session.archive = read

    def _load(self, session_id: str) -> Session | None:
        if not self.persist:
            return None
        snapshot = self._call(self.snapshots.load, session_id)
        if snapshot is None:
            return None
        session = session_from_snapshot(snapshot)
        session.last_seen = self.clock()
        self._admit(session)
        history = session.history
        if self._writer is not None:
            digest = _digest(header_of(session))
            self._attach_archive(session)
        else:
            digest = _digest(session_to_snapshot(session))
        self._marks[session.id] = _Mark(len(history), _tail(history), digest)
        self._bound(session)
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
            if _has_content(session) or session.id in self._marks:
                self.save(session)
        except (OSError, InvalidInput):
            log.exception("could not save session %s before dropping it from memory", session.id)
        self._forget(session.id)

    def _drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._marks.pop(session_id, None)

    def _forget(self, session_id: str) -> None:
        self._drop(session_id)
        release = getattr(self.snapshots, "release", None)
        if self._acquire is not None and callable(release):
            release(session_id)

    def _connected(self, session_id: str) -> bool:
        """Whether a connection is using the session (read by a lease keeper's thread)."""
        session = self._sessions.get(session_id)
        return session is not None and session.connections > 0


def _tail(history: History) -> tuple[Message, ...]:
    return tuple(history[index] for index in range(max(0, len(history) - _TAIL), len(history)))


def _changed(history: History, mark: _Mark) -> bool:
    """Whether the messages written were changed other than by appending (a client deleted or cut one:
    the Realtime API's items, which reach back a few dozen turns at most)."""
    if len(history) < mark.count:
        return True
    start = mark.count - len(mark.tail)
    return any(history[start + offset] is not message for offset, message in enumerate(mark.tail))


def _dicts(messages: builtins.list[Message]) -> builtins.list[dict[str, Any]]:
    return [message_to_dict(message) for message in messages]
