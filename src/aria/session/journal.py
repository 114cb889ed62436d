"""Journaled snapshots: saving a turn costs the same however long the conversation is.

A session is stored as a snapshot plus an append-only journal of what changed since. Each save appends
one record (the messages added since the last save, and the small header: title, mode, overrides,
memory, metadata, times); every ``compact_every`` records the journal is folded into a new snapshot and
emptied. The history a snapshot keeps is bounded (``max_messages``): at compaction the oldest messages
move to the session's archive, from which exports still read them.

Records (JSON objects, one a line on disk, one a list entry in Redis)::

    {"at": 120, "messages": [...], "header": {...}}    messages number 120, 121, ... of the conversation
    {"snapshot": {...}}                                   the whole session (a rewrite: history cleared;
                                                          stores write it as the snapshot at once)

Replaying is idempotent, so a crash between writing a snapshot and emptying the journal is harmless: a
record's messages that the state already holds are skipped, and a record that would leave a gap ends the
replay (the records before it are kept). On disk the files of a session are ``<id>.json`` (the snapshot,
written atomically by :class:`~aria.session.files.FileSnapshotStore`), ``<id>.journal`` and
``<id>.archive`` (``{"n": number, "message": {...}}`` lines). Each record is written with one ``write``
and fsynced; a record torn by a crash (no final newline, or not JSON) is the last line, and it is
dropped and cut off the file before the next append. A line that is damaged in the middle ends the
replay there: the journal is copied to the quarantine folder and folded, so nothing after it is hidden.

A :class:`JournalFileStore` is used from one thread at a time (the session store's writer thread).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aria.errors import InvalidInput
from aria.session.files import FileSnapshotStore, SnapshotStore
from aria.session.model import SessionSummary
from aria.session.serialize import check_session_id, parse_messages, parse_snapshot, summarize

__all__ = [
    "JournalFileStore",
    "JournalStore",
    "apply_record",
    "fold_archive",
    "message_record",
    "parse_record",
    "replay",
    "snapshot_record",
]

log = logging.getLogger(__name__)

_JOURNAL = ".journal"
_ARCHIVE = ".archive"
#: Header fields a record carries (a snapshot's fields but the history and the archived count).
HEADER_FIELDS = (
    "schema",
    "id",
    "title",
    "mode",
    "created",
    "updated",
    "last_seen",
    "overrides",
    "memory",
    "meta",
)


@runtime_checkable
class JournalStore(SnapshotStore, Protocol):
    """A :class:`SnapshotStore` that also takes records and keeps archived messages."""

    def append(self, session_id: str, record: Mapping[str, Any]) -> None:
        """Add a checked record (:func:`message_record`, :func:`snapshot_record`) to the journal."""
        ...

    def earlier(self, session_id: str, before: int) -> builtins.list[dict[str, Any]]:
        """Messages number 0 to ``before - 1`` of the conversation (archived or not), as message dicts."""
        ...

    def prune(self, cutoff: float) -> builtins.list[str]:
        """Delete the sessions last updated before ``cutoff`` (a UNIX time); their ids."""
        ...


# -- records (pure) -----------------------------------------------------------------------------------


def message_record(
    at: int, messages: builtins.list[dict[str, Any]], header: Mapping[str, Any]
) -> dict[str, Any]:
    """A record of the messages numbered from ``at`` and the header (checked)."""
    return parse_record({"at": at, "messages": messages, "header": dict(header)})


def snapshot_record(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A record that replaces the whole session (checked)."""
    return {"snapshot": parse_snapshot(snapshot)}


def parse_record(record: object) -> dict[str, Any]:
    """A checked record; :class:`InvalidInput` says what is wrong with it."""
    if not isinstance(record, Mapping):
        raise InvalidInput("a journal record must be a JSON object")
    if set(record) == {"snapshot"}:
        return {"snapshot": parse_snapshot(record["snapshot"])}
    if set(record) != {"at", "messages", "header"}:
        raise InvalidInput(f"a journal record has the keys at, messages, header; got {sorted(record)}")
    at = record["at"]
    if not isinstance(at, int) or isinstance(at, bool) or at < 0:
        raise InvalidInput("a journal record's 'at' must be a message number")
    header = record["header"]
    if not isinstance(header, Mapping) or set(header) != set(HEADER_FIELDS):
        raise InvalidInput("a journal record's header must have the snapshot's header fields")
    checked = parse_snapshot({**header, "history": []})
    return {
        "at": at,
        "messages": parse_messages(record["messages"]),
        "header": {key: checked[key] for key in HEADER_FIELDS},
    }


def apply_record(state: dict[str, Any] | None, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """``state`` (a snapshot dict, changed in place) with the record applied; ``None`` when the record
    would leave a gap (its first message comes after the last one the state has)."""
    if "snapshot" in record:
        snapshot: dict[str, Any] = json.loads(json.dumps(record["snapshot"]))
        return snapshot
    if state is None:
        state = {"history": [], "archived": 0}
    end = state["archived"] + len(state["history"])
    at, messages = record["at"], record["messages"]
    if at > end:
        return None
    state["history"].extend(messages[end - at :])
    state.update(record["header"])
    return state


def replay(
    snapshot: dict[str, Any] | None, records: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Any] | None, int]:
    """The snapshot with the records applied in order, and how many applied (a gap ends the replay)."""
    state, applied = snapshot, 0
    for record in records:
        after = apply_record(state, record)
        if after is None:
            log.warning(
                "session journal: a record leaves a gap; %d records applied, the rest ignored", applied
            )
            break
        state, applied = after, applied + 1
    return state, applied


def fold_archive(
    state: dict[str, Any], max_messages: int
) -> tuple[dict[str, Any], builtins.list[tuple[int, dict[str, Any]]]]:
    """Move the oldest messages over ``max_messages`` (0: no bound) out of the state's history: the new
    state and the moved messages with their numbers."""
    excess = len(state["history"]) - max_messages
    if max_messages <= 0 or excess <= 0:
        return state, []
    first = state["archived"]
    moved = list(enumerate(state["history"][:excess], start=first))
    return {**state, "history": state["history"][excess:], "archived": first + excess}, moved


# -- on disk ------------------------------------------------------------------------------------------


class JournalFileStore(FileSnapshotStore):
    """Snapshots, journals and archives in ``directory`` (see the module docstring)."""

    def __init__(
        self, directory: str | os.PathLike[str], *, max_messages: int = 0, compact_every: int = 64
    ) -> None:
        if compact_every < 1:
            raise InvalidInput(f"compact_every must be at least 1, got {compact_every}")
        super().__init__(directory)
        self.max_messages = max_messages
        self.compact_every = compact_every
        self._records: dict[str, int] = {}  # journal records per session id, as last counted
        #: Summaries by session id, with the file stamps they were read at (``list`` reads only changes).
        self._summaries: dict[str, tuple[tuple[tuple[int, int], ...], SessionSummary]] = {}

    def __repr__(self) -> str:
        return f"JournalFileStore({str(self.directory)!r})"

    def journal_path(self, session_id: str) -> Path:
        return self.directory / f"{check_session_id(session_id)}{_JOURNAL}"

    def archive_path(self, session_id: str) -> Path:
        return self.directory / f"{check_session_id(session_id)}{_ARCHIVE}"

    # -- reading ----------------------------------------------------------------------------------

    def load(self, session_id: str) -> dict[str, Any] | None:
        snapshot = super().load(session_id)
        records, damaged = self._read_journal(session_id)
        state, applied = replay(snapshot, records)
        self._records[session_id] = len(records)
        if state is None:
            return None
        try:
            checked = parse_snapshot(state)
        except InvalidInput as exc:  # a header without its snapshot: a journal from another store
            log.warning("session %s: its journal does not make a session (%s); ignoring it", session_id, exc)
            return snapshot
        if damaged or applied < len(records):
            self._set_journal_aside(session_id)
            self.save(session_id, checked)  # fold what was readable, so later appends are not hidden
        return checked

    def list(self) -> builtins.list[SessionSummary]:
        ids = {path.name.removesuffix(_JOURNAL) for path in self.directory.glob(f"*{_JOURNAL}")}
        ids |= {path.name.removesuffix(".json") for path in self.directory.glob("*.json")}
        summaries = []
        for session_id in sorted(ids):
            try:
                check_session_id(session_id)
            except InvalidInput:
                continue
            stamp = self._stamp(session_id)
            cached = self._summaries.get(session_id)
            if cached is not None and cached[0] == stamp:
                summaries.append(cached[1])
                continue
            snapshot = self.load(session_id)
            if snapshot is not None:
                summary = summarize(snapshot)
                self._summaries[session_id] = (self._stamp(session_id), summary)
                summaries.append(summary)
        return sorted(summaries, key=lambda s: (s.updated, s.id), reverse=True)

    def _stamp(self, session_id: str) -> tuple[tuple[int, int], ...]:
        """Size and change time of the snapshot and the journal: a summary read with the same is current."""
        found = []
        for path in (self.path(session_id), self.journal_path(session_id)):
            try:
                info = path.stat()
            except FileNotFoundError:
                found.append((-1, -1))
            else:
                found.append((info.st_size, info.st_mtime_ns))
        return tuple(found)

    def earlier(self, session_id: str, before: int) -> builtins.list[dict[str, Any]]:
        found: builtins.list[dict[str, Any]] = []
        try:
            lines = self.archive_path(session_id).read_bytes().split(b"\n")
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                entry = json.loads(line)
                number, message = entry["n"], parse_messages([entry["message"]])[0]
            except (ValueError, KeyError, TypeError, InvalidInput):
                continue  # a torn last line
            if number == len(found) and number < before:  # a line archived twice (crash) is skipped
                found.append(message)
        state = self.load(session_id)
        if state is not None:
            start = state["archived"]
            if start > len(found):
                log.warning("session %s: %d archived messages are missing", session_id, start - len(found))
            found = found[:start] + state["history"][: max(0, before - start)]
        return found[:before]

    # -- writing ----------------------------------------------------------------------------------

    def save(self, session_id: str, snapshot: Mapping[str, Any]) -> None:
        """Write a whole snapshot (archiving what is over ``max_messages``) and empty the journal."""
        check_session_id(session_id)
        state, moved = fold_archive(parse_snapshot(snapshot), self.max_messages)
        if state.get("id") != session_id:
            raise InvalidInput(f"snapshot of session {state.get('id')!r} saved as {session_id!r}")
        if moved:
            lines = b"".join(_line({"n": number, "message": message}) for number, message in moved)
            _append(self.archive_path(session_id), lines)
        super().save(session_id, state)
        path = self.journal_path(session_id)
        if path.exists():
            with path.open("r+b") as journal:
                journal.truncate(0)
                os.fsync(journal.fileno())
        self._records[session_id] = 0

    def append(self, session_id: str, record: Mapping[str, Any]) -> None:
        """Append a message record; a snapshot record is written as the new snapshot instead."""
        checked = parse_record(record)
        if "snapshot" in checked:
            self.save(session_id, checked["snapshot"])
            return
        path = self.journal_path(session_id)
        data = _line(checked)
        _cut_torn_tail(path)
        _append(path, data)
        count = self._records.get(session_id, 0) + 1
        self._records[session_id] = count
        if count >= self.compact_every:
            self.compact(session_id)

    def compact(self, session_id: str) -> None:
        """Fold the journal into a new snapshot (archiving what is over ``max_messages``)."""
        state = self.load(session_id)
        if state is not None:
            self.save(session_id, state)

    def delete(self, session_id: str) -> bool:
        found = super().delete(session_id)
        for path in (self.journal_path(session_id), self.archive_path(session_id)):
            try:
                path.unlink()
                found = True
            except FileNotFoundError:
                pass
        self._records.pop(session_id, None)
        self._summaries.pop(session_id, None)
        return found

    def prune(self, cutoff: float) -> builtins.list[str]:
        gone = [summary.id for summary in self.list() if summary.updated < cutoff]
        for session_id in gone:
            self.delete(session_id)
        return gone

    # -- internals --------------------------------------------------------------------------------

    def _read_journal(self, session_id: str) -> tuple[builtins.list[dict[str, Any]], bool]:
        """The journal's whole records, and whether a damaged line (not the torn last one) was met."""
        try:
            raw = self.journal_path(session_id).read_bytes()
        except FileNotFoundError:
            return [], False
        lines = raw.split(b"\n")
        lines.pop()  # after the last newline: empty, or a record torn by a crash
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(parse_record(json.loads(line)))
            except (ValueError, RecursionError, InvalidInput) as exc:
                log.warning(
                    "session %s: journal line %d is damaged (%s); replaying the lines before it",
                    session_id,
                    number,
                    exc,
                )
                return records, True
        return records, False

    def _set_journal_aside(self, session_id: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        try:
            self.quarantine.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(
                self.journal_path(session_id), self.quarantine / f"{session_id}.{stamp}{_JOURNAL}"
            )
        except OSError as exc:
            log.warning("could not copy the damaged journal of session %s aside: %s", session_id, exc)


def _line(value: Mapping[str, Any]) -> bytes:
    return (
        json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n"
    )


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` with one write and fsync it (a new file: the directory too)."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        _sync_directory(path.parent)


def _cut_torn_tail(path: Path) -> None:
    """Cut a record a crash left torn (after the last newline) off the journal, so the next one is whole."""
    try:
        with path.open("r+b") as journal:
            size = journal.seek(0, os.SEEK_END)
            if not size:
                return
            journal.seek(size - 1)
            if journal.read(1) == b"\n":
                return
            journal.seek(0)
            keep = journal.read().rfind(b"\n") + 1
            journal.truncate(keep)
            os.fsync(journal.fileno())
            log.warning("%s: cut a torn record (%d bytes) left by a crash", path, size - keep)
    except FileNotFoundError:
        return


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
