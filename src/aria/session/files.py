"""Where session snapshots live: the :class:`SnapshotStore` interface, in memory and on disk.

:class:`FileSnapshotStore` keeps one JSON file per session, ``<directory>/<id>.json``. A save writes a
temporary file next to it, flushes and fsyncs it, renames it over the old file (``os.replace``) and
fsyncs the directory, so a crash at any moment leaves the old snapshot or the new one, never a torn
file. A snapshot that cannot be read back (truncated, not JSON, another schema version, wrong shape) is
moved to ``<directory>/quarantine/<id>.<UTC time>.json`` with a WARNING and treated as absent: reading
never raises because of a bad file. Temporary files a crash left behind are removed when the store is
opened (those untouched for a minute, so a second process writing there is not disturbed).

Both stores check every snapshot they are given (:func:`~aria.session.serialize.parse_snapshot`) and
every session id, so nothing outside the directory can be named.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aria.errors import InvalidInput
from aria.session.serialize import SessionSummary, check_session_id, parse_snapshot, summarize

__all__ = ["STALE_TEMP_SECONDS", "FileSnapshotStore", "MemorySnapshotStore", "SnapshotStore"]

log = logging.getLogger(__name__)

_SUFFIX = ".json"
_TEMP_SUFFIX = ".tmp"
#: Temporary files older than this (seconds) are left over from a crash.
STALE_TEMP_SECONDS = 60.0


def _newest_first(summaries: builtins.list[SessionSummary]) -> builtins.list[SessionSummary]:
    return sorted(summaries, key=lambda s: (s.updated, s.id), reverse=True)


@runtime_checkable
class SnapshotStore(Protocol):
    """Snapshots (checked JSON-safe dicts, see :mod:`aria.session.serialize`) by session id."""

    def load(self, session_id: str) -> dict[str, Any] | None:
        """The snapshot, or ``None`` when there is none (or it was unreadable)."""
        ...

    def save(self, session_id: str, snapshot: Mapping[str, Any]) -> None:
        """Store ``snapshot`` (whose ``id`` must be ``session_id``), replacing any older one."""
        ...

    def delete(self, session_id: str) -> bool:
        """Remove the snapshot; ``True`` if there was one."""
        ...

    def list(self) -> builtins.list[SessionSummary]:
        """A summary of every readable snapshot, most recently updated first."""
        ...

    def latest(self) -> str | None:
        """The id of the most recently updated snapshot, if any."""
        ...


def _checked(session_id: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
    check_session_id(session_id)
    data = parse_snapshot(snapshot)
    if data["id"] != session_id:
        raise InvalidInput(f"snapshot of session {data['id']!r} saved as {session_id!r}")
    return data


class MemorySnapshotStore:
    """Snapshots in a dict: for tests, and for a server without a data directory. Holds at most
    ``max_snapshots``; saving one more drops the least recently saved."""

    def __init__(self, *, max_snapshots: int = 1000) -> None:
        if max_snapshots < 1:
            raise InvalidInput(f"max_snapshots must be at least 1, got {max_snapshots}")
        self.max_snapshots = max_snapshots
        self._snapshots: dict[str, str] = {}  # JSON text: every load is a fresh copy

    def __len__(self) -> int:
        return len(self._snapshots)

    def load(self, session_id: str) -> dict[str, Any] | None:
        text = self._snapshots.get(check_session_id(session_id))
        if text is None:
            return None
        snapshot: dict[str, Any] = json.loads(text)
        return snapshot

    def save(self, session_id: str, snapshot: Mapping[str, Any]) -> None:
        text = json.dumps(_checked(session_id, snapshot), ensure_ascii=False, allow_nan=False)
        self._snapshots.pop(session_id, None)
        self._snapshots[session_id] = text
        while len(self._snapshots) > self.max_snapshots:
            del self._snapshots[next(iter(self._snapshots))]

    def delete(self, session_id: str) -> bool:
        return self._snapshots.pop(check_session_id(session_id), None) is not None

    def list(self) -> builtins.list[SessionSummary]:
        return _newest_first([summarize(json.loads(text)) for text in self._snapshots.values()])

    def latest(self) -> str | None:
        summaries = self.list()
        return summaries[0].id if summaries else None


class FileSnapshotStore:
    """One JSON file per session in ``directory`` (created, private to the user, if missing)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.quarantine = self.directory / "quarantine"
        self._remove_stale_temp_files()

    def __repr__(self) -> str:
        return f"FileSnapshotStore({str(self.directory)!r})"

    def path(self, session_id: str) -> Path:
        """The snapshot file of ``session_id`` (checked, so it is always inside the directory)."""
        return self.directory / f"{check_session_id(session_id)}{_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------------

    def load(self, session_id: str) -> dict[str, Any] | None:
        path = self.path(session_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._set_aside(path, f"it cannot be read ({exc.strerror or exc})")
            return None
        try:
            data = _checked(session_id, json.loads(raw))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError included
            self._set_aside(path, f"it is not valid JSON ({exc})")
            return None
        except InvalidInput as exc:
            self._set_aside(path, str(exc))
            return None
        return data

    def list(self) -> builtins.list[SessionSummary]:
        summaries = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            session_id = path.name.removesuffix(_SUFFIX)
            try:
                check_session_id(session_id)
            except InvalidInput:
                log.debug("ignoring %s: not a session snapshot name", path)
                continue
            snapshot = self.load(session_id)
            if snapshot is not None:
                summaries.append(summarize(snapshot))
        return _newest_first(summaries)

    def latest(self) -> str | None:
        summaries = self.list()
        return summaries[0].id if summaries else None

    # -- writing ----------------------------------------------------------------------------------

    def save(self, session_id: str, snapshot: Mapping[str, Any]) -> None:
        """Write the snapshot atomically (see the module docstring). Raises :class:`InvalidInput` for a
        bad snapshot and ``OSError`` when the disk fails; the old snapshot is then left as it was."""
        path = self.path(session_id)
        payload = json.dumps(_checked(session_id, snapshot), ensure_ascii=False, allow_nan=False)
        fd, temp_name = tempfile.mkstemp(prefix=f".{session_id}.", suffix=_TEMP_SUFFIX, dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as temp:
                temp.write(payload.encode("utf-8"))
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        self._sync_directory()

    def delete(self, session_id: str) -> bool:
        try:
            self.path(session_id).unlink()
        except FileNotFoundError:
            return False
        self._sync_directory()
        return True

    # -- housekeeping -----------------------------------------------------------------------------

    def _sync_directory(self) -> None:
        """Make the rename itself durable (POSIX; other systems have no directory handles)."""
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
        try:
            fd = os.open(self.directory, flags)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            log.debug("cannot fsync %s: %s", self.directory, exc)
        finally:
            os.close(fd)

    def _set_aside(self, path: Path, reason: str) -> None:
        """Move a broken snapshot to the quarantine folder, so it is kept for a look but not read again."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        stem = path.name.removesuffix(_SUFFIX)
        try:
            self.quarantine.mkdir(mode=0o700, exist_ok=True)
            target = self.quarantine / f"{stem}.{stamp}{_SUFFIX}"
            suffix = 1
            while target.exists():
                target = self.quarantine / f"{stem}.{stamp}-{suffix}{_SUFFIX}"
                suffix += 1
            os.replace(path, target)
        except OSError as exc:
            log.warning("session snapshot %s is unusable: %s; could not move it aside: %s", path, reason, exc)
            return
        self._sync_directory()
        log.warning("session snapshot %s is unusable: %s; moved it to %s", path, reason, target)

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - STALE_TEMP_SECONDS
        for temp in self.directory.glob(f".*{_TEMP_SUFFIX}"):
            try:
                if temp.is_file() and temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    log.info("removed %s, left over from an interrupted save", temp)
            except OSError as exc:
                log.warning("cannot remove the leftover temporary file %s: %s", temp, exc)
