"""Tests for aria.session.journal and the session store over it: one record per save, whatever the length;
torn and damaged records; idempotent replay; a bounded history with the older messages archived."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from aria.session.export import export_json, export_markdown
from aria.session.journal import JournalFileStore, apply_record, message_record, parse_record
from aria.session.serialize import header_of, message_to_dict, session_to_snapshot
from aria.session.store import Session, SessionStore
from aria.types import Message


def chat(session: Session, *texts: str) -> None:
    for text in texts:
        session.history.append(Message("user", text, timestamp=1000.0))
        session.history.append(Message("assistant", f"answer to {text}", timestamp=1000.0))


def contents(messages: Any) -> list[str]:
    return [m["content"] if isinstance(m, Mapping) else m.content for m in messages]


class Recording(JournalFileStore):
    """Counts what reaches the store; ``gate`` holds the writer until it is set."""

    def __init__(self, directory: Path, **options: Any) -> None:
        super().__init__(directory, **options)
        self.records: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate.set()

    def append(self, session_id: str, record: Mapping[str, Any]) -> None:
        self.gate.wait(10)
        self.records.append(dict(record))
        super().append(session_id, record)


def test_each_save_appends_one_record_of_what_is_new_and_its_size_does_not_grow(tmp_path: Path) -> None:
    snapshots = Recording(tmp_path, compact_every=10_000)
    store = SessionStore(snapshots)
    session, _ = store.open("long-session", mode="voice_chat")
    sizes = []
    for turn in range(600):
        chat(session, f"question {turn:04d}")
        assert store.save(session)
        store.flush()
        sizes.append(len(json.dumps(snapshots.records[-1])))
    assert len(snapshots.records) == 600
    assert [r["at"] for r in snapshots.records[1:4]] == [2, 4, 6]  # the first save writes the snapshot
    assert all(len(r["messages"]) == 2 for r in snapshots.records[1:])
    assert max(sizes[1:]) - min(sizes[1:]) < 40  # turn 10 and turn 600 write the same amount
    assert not store.save(session)  # nothing new: nothing written
    back = SessionStore(JournalFileStore(tmp_path)).get("long-session")
    assert back is not None
    assert contents(back.history) == contents(session.history)


def test_a_save_does_not_wait_for_the_disk(tmp_path: Path) -> None:
    snapshots = Recording(tmp_path)
    store = SessionStore(snapshots)
    session, _ = store.open("slow-disk-1", mode="voice_chat")
    store.save(session)
    store.flush()
    snapshots.gate.clear()  # the writer blocks in the next append
    chat(session, "held")
    assert store.save(session)  # returns while the writer waits
    assert len(snapshots.records) == 1
    snapshots.gate.set()
    store.flush()
    assert contents(snapshots.records[-1]["messages"]) == ["held", "answer to held"]
    store.close()


def test_the_store_compacts_and_archives_past_max_messages_and_exports_everything(tmp_path: Path) -> None:
    store = SessionStore(JournalFileStore(tmp_path, max_messages=40, compact_every=8), max_messages=40)
    session, _ = store.open("bounded-one", mode="voice_chat")
    for turn in range(100):
        chat(session, f"q{turn}")
        store.save(session)
        assert len(session.history) <= 40  # the bound in memory
    store.flush()
    expected = [text for turn in range(100) for text in (f"q{turn}", f"answer to q{turn}")]
    assert session.archived + len(session.history) == 200
    assert contents(session.all_messages()) == expected  # the archive is read back
    snapshot = json.loads((tmp_path / "bounded-one.json").read_text())
    assert len(snapshot["history"]) <= 40 + 2 * 8  # the bound on disk (plus one journal's worth)
    assert snapshot["archived"] + len(snapshot["history"]) <= 200
    assert (tmp_path / "bounded-one.archive").exists()
    exported = json.loads(export_json(session))
    assert contents(exported["history"]) == expected
    assert "> q0" in export_markdown(session)

    back = SessionStore(JournalFileStore(tmp_path, max_messages=40), max_messages=40).get("bounded-one")
    assert back is not None
    assert len(back.history) <= 40
    assert contents(back.all_messages()) == expected
    assert back.summary().messages == 200


def test_a_torn_last_record_is_dropped_and_cut_before_the_next_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SessionStore(JournalFileStore(tmp_path))
    session, _ = store.open("torn-tail1", mode="voice_chat")
    for text in ("one", "two"):
        chat(session, text)
        store.save(session)
    store.close()
    journal = tmp_path / "torn-tail1.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole.splitlines(keepends=True)[-1][:-25])  # a record cut by a crash
    files = JournalFileStore(tmp_path)
    loaded = files.load("torn-tail1")
    assert loaded is not None
    assert contents(loaded["history"]) == ["one", "answer to one", "two", "answer to two"]

    again = SessionStore(files)
    back, _ = again.open("torn-tail1", mode="voice_chat")
    chat(back, "three")
    with caplog.at_level(logging.WARNING):
        again.save(back)
        again.close()
    assert "cut a torn record" in caplog.text
    reloaded = JournalFileStore(tmp_path).load("torn-tail1")
    assert reloaded is not None
    assert contents(reloaded["history"])[-2:] == ["three", "answer to three"]


def test_a_damaged_middle_record_keeps_the_turns_before_it_and_hides_nothing_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SessionStore(JournalFileStore(tmp_path))
    session, _ = store.open("damaged-1", mode="voice_chat")
    for text in ("one", "two", "three"):
        chat(session, text)
        store.save(session)
    store.close()
    journal = tmp_path / "damaged-1.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"at": 2, "messages": [{"role": "nobody"}]}\n'
    journal.write_bytes(b"".join(lines))
    with caplog.at_level(logging.WARNING):
        loaded = JournalFileStore(tmp_path).load("damaged-1")
    assert loaded is not None
    # "one" is in the snapshot (a new session's first save), "two" the journal's line 1
    assert contents(loaded["history"]) == ["one", "answer to one", "two", "answer to two"]
    assert "journal line 2 is damaged" in caplog.text
    assert list((tmp_path / "quarantine").glob("damaged-1.*.journal"))
    # folded: what comes next is not hidden behind the damaged line
    again = SessionStore(JournalFileStore(tmp_path))
    back, _ = again.open("damaged-1", mode="voice_chat")
    chat(back, "four")
    again.save(back)
    again.close()
    final = JournalFileStore(tmp_path).load("damaged-1")
    assert final is not None
    assert contents(final["history"])[::2] == ["one", "two", "four"]


def test_replaying_records_a_snapshot_already_holds_changes_nothing(tmp_path: Path) -> None:
    """A crash between writing a compacted snapshot and emptying the journal replays old records."""
    files = JournalFileStore(tmp_path, max_messages=4)
    store = SessionStore(files)
    session, _ = store.open("replayed-1", mode="voice_chat")
    for text in ("a", "b", "c", "d"):
        chat(session, text)
        store.save(session)
    store.close()
    journal = (tmp_path / "replayed-1.journal").read_bytes()
    files.compact("replayed-1")  # the snapshot now holds them, and archived the oldest
    (tmp_path / "replayed-1.journal").write_bytes(journal)  # as if the truncation never happened
    loaded = JournalFileStore(tmp_path).load("replayed-1")
    assert loaded is not None
    assert loaded["archived"] == 4
    assert contents(loaded["history"]) == ["c", "answer to c", "d", "answer to d"]
    everything = JournalFileStore(tmp_path).earlier("replayed-1", 8)
    assert contents(everything) == [t for x in "abcd" for t in (x, f"answer to {x}")]


def test_a_record_that_leaves_a_gap_ends_the_replay() -> None:
    session = Session("gap-session")
    chat(session, "one")
    state = session_to_snapshot(session)
    header = {k: v for k, v in header_of(session).items()}
    later = message_record(5, [message_to_dict(Message("user", "lost"))], header)
    assert apply_record(state, later) is None
    with pytest.raises(Exception, match="keys at, messages, header"):
        parse_record({"at": 0})


def test_a_failed_append_is_logged_and_the_next_save_writes_the_session_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(JournalFileStore):
        fail = False

        def append(self, session_id: str, record: Mapping[str, Any]) -> None:
            if self.fail:
                raise OSError(28, "No space left on device")
            super().append(session_id, record)

    files = Failing(tmp_path)
    store = SessionStore(files)
    session, _ = store.open("full-disk-1", mode="voice_chat")
    chat(session, "kept")
    store.save(session)
    store.flush()
    files.fail = True
    chat(session, "while full")
    with caplog.at_level(logging.ERROR):
        assert store.save(session)  # no exception on the event loop
        store.flush()
    assert "could not save session full-disk-1" in caplog.text
    files.fail = False
    chat(session, "after")
    store.save(session)
    store.close()
    back = JournalFileStore(tmp_path).load("full-disk-1")
    assert back is not None
    assert contents(back["history"])[::2] == ["kept", "while full", "after"]


def test_a_private_store_writes_nothing(tmp_path: Path) -> None:
    files = JournalFileStore(tmp_path / "sessions")
    store = SessionStore(files, persist=False)
    session, _ = store.open("private-1", mode="voice_chat")
    chat(session, "secret")
    assert not store.save(session)
    assert store.get("private-1") is session  # still live for a reconnect
    assert [s.id for s in store.list()] == ["private-1"]
    assert list((tmp_path / "sessions").iterdir()) == []


def test_retention_deletes_old_sessions_but_not_connected_ones(tmp_path: Path) -> None:
    day, now = 86400.0, [1_700_000_000.0]
    store = SessionStore(JournalFileStore(tmp_path), clock=lambda: now[0])
    sessions = {}
    for name in ("old-session", "busy-session", "new-session"):
        sessions[name], _ = store.open(name, mode="voice_chat")
        chat(sessions[name], name)
        store.save(sessions[name])
    now[0] += 29 * day
    chat(sessions["new-session"], "recent")
    store.save(sessions["new-session"])
    sessions["busy-session"].connections = 1
    now[0] += 2 * day
    assert store.prune(0) == []  # 0 days: kept forever
    assert store.prune(30) == ["old-session"]
    assert store.get("old-session") is None
    assert not (tmp_path / "old-session.json").exists()
    assert sorted(s.id for s in store.list()) == ["busy-session", "new-session"]
    restarted = SessionStore(JournalFileStore(tmp_path), clock=lambda: now[0] + 30 * day)
    assert sorted(restarted.prune(30)) == ["busy-session", "new-session"]  # nobody connected there
    assert restarted.list() == []


def test_a_message_removed_or_replaced_by_a_client_is_written_whole(tmp_path: Path) -> None:
    """The Realtime API's items: deleting or cutting a recent message rewrites the session."""
    snapshots = Recording(tmp_path)
    store = SessionStore(snapshots)
    session, _ = store.open("edited-one", mode="voice_chat")
    chat(session, "one", "two", "three")
    store.save(session)
    cut = Message("assistant", "answer to", interrupted=True, timestamp=1000.0)
    session.history.replace(3, cut)  # "answer to two", with "three" after it
    chat(session, "four")
    store.save(session)
    store.flush()
    assert "snapshot" in snapshots.records[-1]
    session.history.remove(0)
    store.save(session)
    store.close()
    back = JournalFileStore(tmp_path).load("edited-one")
    assert back is not None
    assert contents(back["history"]) == contents(session.history)
    assert contents(back["history"])[2] == "answer to"


def test_list_reads_only_the_sessions_that_changed(tmp_path: Path) -> None:
    class Counting(JournalFileStore):
        loads = 0

        def load(self, session_id: str) -> dict[str, Any] | None:
            self.loads += 1
            return super().load(session_id)

    files = Counting(tmp_path)
    store = SessionStore(files)
    sessions = {}
    for name in ("listed-one", "listed-two"):
        sessions[name], _ = store.open(name, mode="voice_chat")
        chat(sessions[name], name)
        store.save(sessions[name])
    store.flush()
    before = files.loads
    assert [s.messages for s in files.list()] == [2, 2]
    assert files.loads == before + 2
    assert len(files.list()) == 2
    assert files.loads == before + 2  # nothing changed: nothing read
    chat(sessions["listed-one"], "more")
    store.save(sessions["listed-one"])
    store.flush()
    assert {s.id: s.messages for s in files.list()} == {"listed-one": 4, "listed-two": 2}
    assert files.loads == before + 3
    store.close()


def test_a_save_after_close_is_written_on_the_callers_thread(tmp_path: Path) -> None:
    store = SessionStore(JournalFileStore(tmp_path))
    session, _ = store.open("late-save1", mode="voice_chat")
    chat(session, "before")
    store.save(session)
    store.close()  # the server stops while a connection is still closing
    chat(session, "after")
    assert store.save(session)
    back = JournalFileStore(tmp_path).load("late-save1")
    assert back is not None
    assert contents(back["history"])[::2] == ["before", "after"]
    assert [s.id for s in store.list()] == ["late-save1"]
