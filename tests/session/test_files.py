"""Tests for aria.session.files: snapshot stores in memory and on disk (atomic writes, quarantine)."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aria.errors import InvalidInput
from aria.session import files
from aria.session.files import FileSnapshotStore, MemorySnapshotStore, SnapshotStore
from aria.session.journal import JournalFileStore
from aria.session.redis_store import RedisSnapshotStore
from aria.session.serialize import session_to_snapshot
from aria.session.store import Session, SessionStore
from aria.types import Message

LOGGER = "aria.session.files"


def snapshot_of(session_id: str, *texts: str, updated: float = 1000.0) -> dict[str, Any]:
    session = Session(session_id, created=900.0, last_seen=950.0, updated=updated)
    for text in texts:
        session.history.append(Message("user", text, timestamp=999.0))
    return session_to_snapshot(session)


def quarantined(directory: Path) -> list[Path]:
    return sorted((directory / "quarantine").glob("*")) if (directory / "quarantine").exists() else []


def temp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


@pytest.fixture
def store(tmp_path: Path) -> FileSnapshotStore:
    return FileSnapshotStore(tmp_path / "sessions")


# -- both stores --------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "file", "journal", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SnapshotStore]:
    """Every snapshot store: the Redis one over a real redis-server (see tests/redis_server.py)."""
    if request.param == "memory":
        yield MemorySnapshotStore()
    elif request.param == "file":
        yield FileSnapshotStore(tmp_path)
    elif request.param == "journal":
        yield JournalFileStore(tmp_path)
    else:
        store = RedisSnapshotStore(request.getfixturevalue("redis_store_url"))
        yield store
        store.close()


def test_both_stores_implement_the_interface(any_store: SnapshotStore) -> None:
    assert isinstance(any_store, SnapshotStore)


def test_save_load_delete(any_store: SnapshotStore) -> None:
    snapshot = snapshot_of("session-one", "hello ✓")
    assert any_store.load("session-one") is None
    any_store.save("session-one", snapshot)
    assert any_store.load("session-one") == snapshot
    loaded = any_store.load("session-one")
    assert loaded is not None
    loaded["history"].clear()  # a copy: the store is not changed through it
    assert any_store.load("session-one") == snapshot
    any_store.save("session-one", snapshot_of("session-one", "hello", "again"))
    assert [m["content"] for m in any_store.load("session-one")["history"]] == ["hello", "again"]  # type: ignore[index]
    assert any_store.delete("session-one")
    assert not any_store.delete("session-one")
    assert any_store.load("session-one") is None


def test_list_and_latest_are_newest_first(any_store: SnapshotStore) -> None:
    assert any_store.list() == []
    assert any_store.latest() is None
    any_store.save("older-one", snapshot_of("older-one", "a", updated=10.0))
    any_store.save("newer-one", snapshot_of("newer-one", "b", "c", updated=20.0))
    any_store.save("middle-one", snapshot_of("middle-one", updated=15.0))
    assert [s.id for s in any_store.list()] == ["newer-one", "middle-one", "older-one"]
    assert any_store.list()[0].messages == 2
    assert any_store.list()[0].title == "b"
    assert any_store.latest() == "newer-one"


@pytest.mark.parametrize(
    "bad_id", ["../etc", "../../../../tmp/x", "a/../../b1234", "/etc/passwd", "", "short"]
)
def test_ids_are_checked_so_no_path_escapes(any_store: SnapshotStore, bad_id: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="session_id"):
        any_store.save(bad_id, snapshot_of("abcdefgh"))
    with pytest.raises(InvalidInput, match="session_id"):
        any_store.load(bad_id)
    with pytest.raises(InvalidInput, match="session_id"):
        any_store.delete(bad_id)
    assert not list(tmp_path.parent.glob("etc*"))


def test_a_bad_snapshot_or_a_mismatched_id_is_refused(any_store: SnapshotStore) -> None:
    with pytest.raises(InvalidInput, match="saved as"):
        any_store.save("another-id", snapshot_of("session-one"))
    with pytest.raises(InvalidInput, match="schema"):
        any_store.save("session-one", {**snapshot_of("session-one"), "schema": 2})
    assert any_store.list() == []


def test_the_memory_store_drops_the_least_recently_saved() -> None:
    store = MemorySnapshotStore(max_snapshots=2)
    for name in ("first-one", "second-one", "third-one"):
        store.save(name, snapshot_of(name))
    store.save("second-one", snapshot_of("second-one", "again"))
    store.save("fourth-one", snapshot_of("fourth-one"))
    assert len(store) == 2
    assert store.load("first-one") is None
    assert store.load("third-one") is None
    assert store.load("second-one") is not None
    with pytest.raises(InvalidInput):
        MemorySnapshotStore(max_snapshots=0)


# -- the file layout ----------------------------------------------------------------------------------


def test_one_private_json_file_per_session(store: FileSnapshotStore) -> None:
    store.save("session-one", snapshot_of("session-one", "hi"))
    path = store.directory / "session-one.json"
    assert store.path("session-one") == path
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == 1
    assert data["id"] == "session-one"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert temp_files(store.directory) == []


def test_files_are_readable_utf8_even_for_text_without_a_utf8_form(store: FileSnapshotStore) -> None:
    store.save("session-one", snapshot_of("session-one", "lone surrogate \ud800 and ✓"))
    assert "surrogate \ufffd and ✓" in store.path("session-one").read_text(encoding="utf-8")
    loaded = store.load("session-one")
    assert loaded is not None
    assert loaded["history"][0]["content"] == "lone surrogate \ufffd and ✓"


def test_the_write_is_fsynced_then_renamed_then_the_directory_fsynced(
    store: FileSnapshotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.save("session-one", snapshot_of("session-one"))
    assert events == ["fsync file", "replace", "fsync dir"]


# -- crashes ------------------------------------------------------------------------------------------


def failing(*args: Any) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("step", ["replace", "fsync"])
def test_a_failed_save_keeps_the_old_snapshot_and_no_temp_file(
    store: FileSnapshotStore, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    old = snapshot_of("session-one", "old")
    store.save("session-one", old)
    monkeypatch.setattr(os, step, failing)
    with pytest.raises(OSError, match="No space"):
        store.save("session-one", snapshot_of("session-one", "old", "new"))
    monkeypatch.undo()
    assert store.load("session-one") == old
    assert temp_files(store.directory) == []


def test_a_failed_save_through_the_session_store_loses_no_saved_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = SessionStore(FileSnapshotStore(tmp_path))
    session, _ = sessions.open("session-one", mode="voice_chat")
    session.history.append(Message("user", "saved turn"))
    sessions.save(session)
    session.history.append(Message("user", "turn whose save fails"))
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        sessions.save(session)
    monkeypatch.undo()
    back, _ = SessionStore(FileSnapshotStore(tmp_path)).open("session-one", mode="voice_chat")
    assert [m.content for m in back.history] == ["saved turn"]
    assert sessions.save(session)  # the failed save did not count as written


WRITER = textwrap.dedent(
    """
    import os, stat, sys, time
    from aria.session.files import FileSnapshotStore
    from aria.session.serialize import session_to_snapshot
    from aria.session.store import Session
    from aria.types import Message

    def slow_fsync(fd, fsync=os.fsync):  # widen the window between writing and renaming
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            time.sleep(0.05)
        fsync(fd)

    os.fsync = slow_fsync
    store = FileSnapshotStore(sys.argv[1])
    versions = []
    for label in ("A", "B"):
        session = Session("crash-test", created=1.0, last_seen=1.0, updated=1.0)
        for index in range(1000):
            session.history.append(Message("user", f"{label} message {index} " + "x" * 200, timestamp=1.0))
        versions.append(session_to_snapshot(session))
    store.save("crash-test", versions[0])
    print("ready", flush=True)
    while True:
        for version in versions:
            store.save("crash-test", version)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_at_any_moment_leaves_a_whole_snapshot(tmp_path: Path) -> None:
    """SIGKILL a process that saves two versions in a loop: the file is always one of them, whole."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    directory = tmp_path / "sessions"
    path = directory / "crash-test.json"
    rng = random.Random(1234)
    seen: set[str] = set()
    killed_mid_save = 0
    for _ in range(8):
        leftovers = len(temp_files(directory))
        writer = subprocess.Popen(
            [sys.executable, str(script), str(directory)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + rng.uniform(0.05, 0.4)
            while time.monotonic() < deadline:  # read while it writes: never a torn file
                first = json.loads(path.read_bytes())["history"][0]["content"][0]
                assert first in "AB"
                time.sleep(0.002)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=30)
            if writer.stdout is not None:
                writer.stdout.close()
        assert writer.returncode == -signal.SIGKILL
        killed_mid_save += len(temp_files(directory)) > leftovers
        loaded = FileSnapshotStore(directory).load("crash-test")
        assert loaded is not None
        contents = {message["content"][0] for message in loaded["history"]}
        assert len(contents) == 1
        assert len(loaded["history"]) == 1000
        seen |= contents
        assert quarantined(directory) == []
        assert [s.id for s in FileSnapshotStore(directory).list()] == ["crash-test"]
    assert seen <= {"A", "B"}
    assert killed_mid_save, "no kill landed inside a save (between the temp file and the rename)"


# -- corrupt files ------------------------------------------------------------------------------------


def valid_bytes() -> bytes:
    return json.dumps(snapshot_of("broken-one", "hello", "world")).encode()


CORRUPT: dict[str, Callable[[], bytes]] = {
    "truncated": lambda: valid_bytes()[: len(valid_bytes()) // 2],
    "empty": lambda: b"",
    "invalid JSON": lambda: b"{this is not json",
    "not UTF-8": lambda: b'{"schema": 1, "id": "\xff\xfe"}',
    "schema 99": lambda: json.dumps({**snapshot_of("broken-one"), "schema": 99}).encode(),
    "no schema": lambda: json.dumps(
        {k: v for k, v in snapshot_of("broken-one").items() if k != "schema"}
    ).encode(),
    "wrong shape": lambda: json.dumps({**snapshot_of("broken-one"), "history": "oops"}).encode(),
    "a list": lambda: b"[1, 2, 3]",
    "another session's id": lambda: json.dumps(snapshot_of("someone-else")).encode(),
    "deeply nested": lambda: b"[" * 100_000 + b"]" * 100_000,
}
REASONS = {
    "truncated": "not valid JSON",
    "empty": "not valid JSON",
    "invalid JSON": "not valid JSON",
    "not UTF-8": "not valid JSON",
    "schema 99": "schema version 99",
    "no schema": "no schema version",
    "wrong shape": "history",
    "a list": "JSON object",
    "another session's id": "saved as",
    "deeply nested": "not valid JSON",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_a_corrupt_snapshot_is_quarantined_and_reported_without_raising(
    store: FileSnapshotStore, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    payload = CORRUPT[kind]()
    path = store.directory / "broken-one.json"
    path.write_bytes(payload)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.load("broken-one") is None
    assert not path.exists()
    [moved] = quarantined(store.directory)
    assert moved.name.startswith("broken-one.")
    assert moved.name.endswith(".json")
    assert moved.read_bytes() == payload
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert str(moved) in record.getMessage()
    assert REASONS[kind] in record.getMessage()
    assert store.load("broken-one") is None  # and now it is simply absent


def test_list_skips_and_quarantines_broken_files(
    store: FileSnapshotStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.save("good-one", snapshot_of("good-one", "fine"))
    (store.directory / "broken-one.json").write_bytes(b'{"schema": 1, "id": "broken-one"')
    (store.directory / "wrong-schema.json").write_text(json.dumps({"schema": 99}))
    (store.directory / "notes.json").write_text("not a session name: left alone")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert [s.id for s in store.list()] == ["good-one"]
    assert len(quarantined(store.directory)) == 2
    assert (store.directory / "notes.json").exists()
    assert "broken-one.json" in caplog.text
    assert "wrong-schema.json" in caplog.text
    assert store.latest() == "good-one"


def test_an_unreadable_snapshot_is_set_aside(
    store: FileSnapshotStore, caplog: pytest.LogCaptureFixture
) -> None:
    (store.directory / "broken-one.json").mkdir()  # read_bytes() fails with IsADirectoryError
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert store.load("broken-one") is None
    assert "cannot be read" in caplog.text
    assert len(quarantined(store.directory)) == 1


def test_the_same_id_quarantined_twice_keeps_both(store: FileSnapshotStore) -> None:
    for payload in (b"first", b"second"):
        (store.directory / "broken-one.json").write_bytes(payload)
        assert store.load("broken-one") is None
    assert sorted(p.read_bytes() for p in quarantined(store.directory)) == [b"first", b"second"]


def test_a_session_store_over_a_corrupt_file_starts_a_new_session(tmp_path: Path) -> None:
    (tmp_path / "broken-one.json").write_text("{")
    session, resumed = SessionStore(FileSnapshotStore(tmp_path)).open("broken-one", mode="voice_chat")
    assert not resumed
    assert len(session.history) == 0


# -- leftovers ----------------------------------------------------------------------------------------


def test_stale_temp_files_are_removed_on_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stale = tmp_path / ".session-one.abc123.tmp"
    stale.write_text('{"half": ')
    old = time.time() - files.STALE_TEMP_SECONDS - 5
    os.utime(stale, (old, old))
    fresh = tmp_path / ".session-two.def456.tmp"  # maybe another process writing right now
    fresh.write_text("{")
    keep = tmp_path / "session-one.json"
    keep.write_text(json.dumps(snapshot_of("session-one")))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        store = FileSnapshotStore(tmp_path)
    assert not stale.exists()
    assert fresh.exists()
    assert keep.exists()
    assert str(stale) in caplog.text
    assert [s.id for s in store.list()] == ["session-one"]  # temp files are never listed


def test_the_directory_is_created(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path / "a" / "b")
    assert store.directory.is_dir()
    assert repr(store) == f"FileSnapshotStore({str(tmp_path / 'a' / 'b')!r})"
