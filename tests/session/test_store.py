"""Tests for aria.session.store (sessions live and saved) and aria.session.serialize (the snapshot format)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aria.core.config import Settings
from aria.core.history import History
from aria.errors import ConfigError, InvalidInput
from aria.session.files import MemorySnapshotStore, SnapshotStore
from aria.session.journal import JournalFileStore
from aria.session.redis_store import RedisSnapshotStore
from aria.session.serialize import (
    MAX_MEMORY_KEYS,
    MAX_MEMORY_VALUE_CHARS,
    SCHEMA_VERSION,
    SessionSummary,
    check_session_id,
    parse_snapshot,
    session_from_snapshot,
    session_to_snapshot,
    summarize,
)
from aria.session.store import TITLE_CHARS, Session, SessionStore
from aria.types import ImageFrame, Message, ToolCall

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def chat(session: Session, *pairs: tuple[str, str], interrupted: bool = False) -> None:
    for user, answer in pairs:
        session.history.append(Message("user", user, "audio", mode=session.mode))
        session.history.append(Message("assistant", answer, interrupted=interrupted, mode=session.mode))


def contents(session: Session) -> list[str]:
    return [m.content for m in session.history]


@pytest.fixture(params=["memory", "journal", "redis"])
def snapshots(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SnapshotStore]:
    """The stores sessions are saved in: the same tests for each (Redis: a real redis-server)."""
    if request.param == "memory":
        yield MemorySnapshotStore()
    elif request.param == "journal":
        yield JournalFileStore(tmp_path, compact_every=3)
    else:
        store = RedisSnapshotStore(request.getfixturevalue("redis_store_url"), compact_every=3)
        yield store
        store.close()


# -- the API the server uses --------------------------------------------------------------------------


def test_open_creates_then_resumes_by_id() -> None:
    store = SessionStore()
    session, resumed = store.open(None, mode="voice_chat")
    assert not resumed
    assert session.id.startswith("s_")
    check_session_id(session.id)
    again, resumed = store.open(session.id, mode="other")
    assert resumed
    assert again is session
    assert again.mode == "voice_chat"  # a resumed session keeps its mode
    assert len(store) == 1
    assert store.get(session.id) is session


def test_open_with_an_unknown_valid_id_creates_that_session() -> None:
    store = SessionStore()
    session, resumed = store.open("client-chosen_1", mode="voice_chat")
    assert (session.id, resumed) == ("client-chosen_1", False)


def test_session_fields_the_server_uses() -> None:
    session = Session("abcdefgh")
    assert isinstance(session.history, History)
    assert session.mode == "voice_chat"
    assert session.overrides == {}
    assert session.memory == {}
    assert session.connections == 0
    assert session.created <= session.last_seen
    assert session.updated >= session.created


@pytest.mark.parametrize(
    "bad",
    [
        "../etc",
        "../../etc/passwd",
        "short",
        "a" * 65,
        "has space1",
        "dots.in.it",
        "slash/abcdef",
        "é" * 10,
        "trailing-newline\n",
        "nul-byte\x00abc",
    ],
)
def test_malformed_ids_are_rejected(bad: str) -> None:
    store = SessionStore()
    with pytest.raises(InvalidInput, match="session_id"):
        store.open(bad, mode="voice_chat")
    with pytest.raises(InvalidInput, match="session_id"):
        store.delete(bad)
    assert store.get(bad) is None  # a lookup (the REST endpoint) just finds nothing
    assert len(store) == 0


def test_get_of_an_unknown_id_is_none() -> None:
    assert SessionStore().get("nobody-here") is None


def test_the_idlest_session_is_dropped_first_and_connected_ones_never() -> None:
    store = SessionStore(max_sessions=2)
    busy, _ = store.open("busy-session", mode="voice_chat")
    busy.connections = 1
    idle, _ = store.open("idle-session", mode="voice_chat")
    store.open("third-session", mode="voice_chat")
    assert store.get("busy-session") is busy
    assert len(store) == 2
    # the idle one was empty, so nothing was saved for it
    assert store.get("idle-session") is not idle


def test_max_sessions_gives_way_while_every_session_is_connected(caplog: pytest.LogCaptureFixture) -> None:
    store = SessionStore(max_sessions=1)
    first, _ = store.open("first-session", mode="voice_chat")
    first.connections = 1
    with caplog.at_level(logging.WARNING, logger="aria.session.store"):
        second, _ = store.open("second-session", mode="voice_chat")
    assert len(store) == 2
    assert "connected" in caplog.text
    assert store.open("first-session", mode="voice_chat") == (first, True)  # one copy per conversation
    second.connections = 0
    store.open("third-session", mode="voice_chat")
    assert store.get("first-session") is first
    assert len(store) == 2


def test_a_dropped_session_with_unsaved_turns_is_saved_first() -> None:
    store = SessionStore(max_sessions=1)
    first, _ = store.open("first-session", mode="voice_chat")
    chat(first, ("hello", "hi"))
    store.open("second-session", mode="voice_chat")  # drops first-session from memory
    back, resumed = store.open("first-session", mode="voice_chat")
    assert resumed
    assert back is not first
    assert contents(back) == ["hello", "hi"]


@pytest.mark.parametrize("max_sessions", [0, -1])
def test_max_sessions_must_be_positive(max_sessions: int) -> None:
    with pytest.raises(InvalidInput, match="max_sessions"):
        SessionStore(max_sessions=max_sessions)


# -- saving and restarting ----------------------------------------------------------------------------


def test_a_saved_session_survives_a_new_store(snapshots: SnapshotStore) -> None:
    store = SessionStore(snapshots)
    session, _ = store.open("kept-session", mode="voice_chat")
    chat(session, ("what time is it", "noon"))
    session.remember("name", "Ada")
    session.overrides["tts.voice"] = "af_bella"
    assert store.save(session)
    store.flush()  # over a journaled store the writer thread writes it

    restarted = SessionStore(snapshots)
    back, resumed = restarted.open("kept-session", mode="other")
    assert resumed
    assert contents(back) == ["what time is it", "noon"]
    assert back.memory == {"name": "Ada"}
    assert back.overrides == {"tts.voice": "af_bella"}
    assert back.mode == "voice_chat"
    assert (back.created, back.updated) == (session.created, session.updated)
    assert restarted.get("kept-session") is back


def test_get_loads_a_saved_session(snapshots: SnapshotStore) -> None:
    store = SessionStore(snapshots)
    session, _ = store.open("kept-session", mode="voice_chat")
    chat(session, ("hi", "hello"))
    store.save(session)
    store.flush()
    found = SessionStore(snapshots).get("kept-session")
    assert found is not None
    assert contents(found) == ["hi", "hello"]


def test_save_writes_only_changes_and_bumps_updated() -> None:
    store = SessionStore()
    session, _ = store.open("some-session", mode="voice_chat")
    assert store.save(session)  # the first save always writes
    assert not store.save(session)
    session.last_seen += 10  # not content
    assert not store.save(session)
    before = session.updated
    chat(session, ("a", "b"))
    assert store.save(session)
    assert session.updated >= before
    assert not store.save(session)
    assert store.save(session, force=True)
    session.mode = "other_mode"
    assert store.save(session)


def test_a_loaded_session_is_not_rewritten_until_it_changes(snapshots: SnapshotStore) -> None:
    store = SessionStore(snapshots)
    session, _ = store.open("some-session", mode="voice_chat")
    chat(session, ("a", "b"))
    store.save(session)
    store.flush()
    restarted = SessionStore(snapshots)
    back, _ = restarted.open("some-session", mode="voice_chat")
    assert not restarted.save(back)
    back.remember("k", "v")
    assert restarted.save(back)


def test_unsaved_turns_are_not_in_the_snapshot(snapshots: SnapshotStore) -> None:
    store = SessionStore(snapshots)
    session, _ = store.open("some-session", mode="voice_chat")
    chat(session, ("saved", "yes"))
    store.save(session)
    chat(session, ("not saved", "no"))
    store.flush()
    back, _ = SessionStore(snapshots).open("some-session", mode="voice_chat")
    assert contents(back) == ["saved", "yes"]


def test_delete_forgets_live_and_saved(snapshots: SnapshotStore) -> None:
    store = SessionStore(snapshots)
    session, _ = store.open("doomed-session", mode="voice_chat")
    chat(session, ("a", "b"))
    store.save(session)
    assert store.delete("doomed-session")
    assert not store.delete("doomed-session")
    assert store.get("doomed-session") is None
    assert snapshots.load("doomed-session") is None
    assert SessionStore(snapshots).list() == []


def test_list_and_latest_id_cover_saved_and_live_sessions(snapshots: SnapshotStore) -> None:
    old = SessionStore(snapshots)
    first, _ = old.open("first-session", mode="voice_chat")
    chat(first, ("first question", "first answer"))
    old.save(first)
    old.flush()

    store = SessionStore(snapshots)
    assert store.latest_id() == "first-session"
    store.open(None, mode="voice_chat")  # empty and unsaved: not listed
    assert [s.id for s in store.list()] == ["first-session"]
    second, _ = store.open("second-session", mode="voice_chat")
    chat(second, ("second question", "second answer"))
    store.save(second)
    assert store.latest_id() == "second-session"
    summaries = store.list()
    assert [s.id for s in summaries] == ["second-session", "first-session"]
    assert summaries[0] == SessionSummary(
        "second-session", "second question", "voice_chat", second.created, second.updated, 2
    )
    assert SessionStore().latest_id() is None
    assert SessionStore().list() == []


def test_the_default_store_is_in_memory_and_bounded() -> None:
    store = SessionStore()
    assert isinstance(store.snapshots, MemorySnapshotStore)


# -- title, memory, settings --------------------------------------------------------------------------


def test_the_title_is_the_first_user_message_on_one_line() -> None:
    session = Session("abcdefgh")
    assert session.title == ""
    session.history.append(Message("system", "be brief"))
    session.history.append(Message("user", "   \n "))
    session.history.append(Message("user", "  what   is\nthe time?  "))
    session.history.append(Message("user", "later"))
    assert session.title == "what is the time?"


def test_a_long_title_is_cut_with_an_ellipsis() -> None:
    session = Session("abcdefgh")
    session.history.append(Message("user", "word " * 100))
    assert len(session.title) == TITLE_CHARS
    assert session.title.endswith("…")


def test_memory_is_bounded() -> None:
    session = Session("abcdefgh")
    for index in range(MAX_MEMORY_KEYS):
        session.remember(f"key{index}", "v")
    session.remember("key0", "x" * MAX_MEMORY_VALUE_CHARS)  # replacing is fine when full
    with pytest.raises(InvalidInput, match="full"):
        session.remember("one-more", "v")
    assert session.forget("key1")
    assert not session.forget("key1")
    session.remember("one-more", "v")
    with pytest.raises(InvalidInput, match="values"):
        session.remember("key2", "x" * (MAX_MEMORY_VALUE_CHARS + 1))
    with pytest.raises(InvalidInput, match="keys"):
        session.remember("", "v")
    with pytest.raises(InvalidInput, match="keys"):
        session.remember("k" * 101, "v")


def test_settings_apply_the_overrides() -> None:
    base = Settings()
    session = Session("abcdefgh")
    assert session.settings(base) is base
    settings = session.update_overrides({"llm.temperature": 0.2, "tts.voice": "af_bella"}, base)
    assert settings.llm.temperature == 0.2
    assert session.settings(base).tts.voice == "af_bella"
    assert session.overrides == {"llm.temperature": 0.2, "tts.voice": "af_bella"}


def test_a_rejected_override_changes_nothing() -> None:
    session = Session("abcdefgh", overrides={"llm.temperature": 0.2})
    with pytest.raises(ConfigError):
        session.update_overrides({"llm.temperature": 0.9, "server.port": 1}, Settings())
    assert session.overrides == {"llm.temperature": 0.2}


# -- the snapshot format ------------------------------------------------------------------------------


def full_session() -> Session:
    session = Session("round-trip", mode="voice_chat", created=1000.0, last_seen=1001.0, updated=1002.0)
    session.overrides = {"llm.temperature": 0.5, "mode": "voice_chat"}
    session.memory = {"name": "Ada", "city": "Zürich"}
    session.history.append(Message("system", "be brief", timestamp=1000.5))
    session.history.append(Message("user", "hi there ✓", "audio", timestamp=1001.0, mode="voice_chat"))
    session.history.append(
        Message(
            "assistant",
            "Hel",
            timestamp=1002.0,
            interrupted=True,
            mode="voice_chat",
            metadata={"turn_id": "t1", "generated": "Hello there", "nested": {"a": [1, 2.5, None, True]}},
        )
    )
    session.history.append(
        Message("assistant", "", metadata={"tool_calls": (ToolCall("c1", "clock", '{"tz": "UTC"}'),)})
    )
    session.history.append(Message("tool", "12:00", metadata={"tool_call_id": "c1", "tool_name": "clock"}))
    return session


def message_fields(session: Session) -> list[tuple[Any, ...]]:
    return [
        (m.role, m.content, m.modality, m.timestamp, m.interrupted, m.mode, dict(m.metadata), m.images)
        for m in session.history
    ]


def test_a_session_round_trips_through_a_snapshot() -> None:
    session = full_session()
    snapshot = session_to_snapshot(session)
    assert snapshot["schema"] == SCHEMA_VERSION == 1
    assert snapshot["title"] == "hi there ✓"
    json.dumps(snapshot, allow_nan=False)  # JSON-safe
    back = session_from_snapshot(json.loads(json.dumps(snapshot)))
    assert message_fields(back) == message_fields(session)
    assert isinstance(back.history[3].metadata["tool_calls"][0], ToolCall)
    for name in ("id", "mode", "overrides", "memory", "created", "updated", "last_seen", "title"):
        assert getattr(back, name) == getattr(session, name), name
    assert back.connections == 0
    assert session_to_snapshot(back) == snapshot


def test_lone_surrogates_become_replacement_characters_everywhere() -> None:
    session = Session("surrogates", memory={"k\udc00": "v\ud800"})
    session.history.append(Message("user", "a\ud800b ✓", metadata={"m\udfff": ["x\ud800"]}))
    snapshot = session_to_snapshot(session)
    json.dumps(snapshot, ensure_ascii=False).encode("utf-8")  # has a UTF-8 form now
    assert snapshot["title"] == "a\ufffdb ✓"
    assert snapshot["memory"] == {"k\ufffd": "v\ufffd"}
    assert snapshot["history"][0]["content"] == "a\ufffdb ✓"
    assert snapshot["history"][0]["metadata"] == {"m\ufffd": ["x\ufffd"]}
    assert parse_snapshot({**snapshot, "title": "\ud83d\ude00"})["title"] == "😀"  # a split pair is joined


def test_images_are_not_stored_only_counted() -> None:
    session = Session("with-images")
    frame = ImageFrame(PNG, "PNG")
    session.history.append(Message("user", "look", "image", images=(frame, frame)))
    snapshot = session_to_snapshot(session)
    assert snapshot["history"][0]["metadata"] == {"image_count": 2}
    assert "PNG" not in json.dumps(snapshot)
    back = session_from_snapshot(snapshot)
    assert back.history[0].images == ()
    assert back.history[0].metadata == {"image_count": 2}
    assert session_to_snapshot(back) == snapshot  # stable on the next save


def test_metadata_that_json_cannot_hold_is_dropped() -> None:
    session = Session("odd-metadata")
    metadata: dict[Any, Any] = {
        "ok": "yes",
        "array": np.zeros(3),
        "obj": object(),
        "nan": math.nan,
        "inf": -math.inf,
        "mixed": [1, object(), "x", {"deep": object(), "kept": 1}],
        "tuple": (1, 2),
        "bytes": b"raw",
        "np_float": np.float64(1.5),
        7: "non-string key",
    }
    session.history.append(Message("assistant", "a", metadata=metadata))
    stored = session_to_snapshot(session)["history"][0]["metadata"]
    assert stored == {"ok": "yes", "mixed": [1, "x", {"kept": 1}], "tuple": [1, 2], "np_float": 1.5}
    assert type(stored["np_float"]) is float


def test_memory_over_the_limits_is_cut_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    session = Session("big-memory")
    session.memory = {f"k{i}": "v" * (MAX_MEMORY_VALUE_CHARS + 5) for i in range(MAX_MEMORY_KEYS + 3)}
    with caplog.at_level(logging.WARNING, logger="aria.session.serialize"):
        memory = session_to_snapshot(session)["memory"]
    assert len(memory) == MAX_MEMORY_KEYS
    assert all(len(v) == MAX_MEMORY_VALUE_CHARS for v in memory.values())
    assert "big-memory" in caplog.text
    assert "memory" in caplog.text


def test_stored_overrides_of_settings_that_are_not_live_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    snapshot = session_to_snapshot(Session("old-version"))
    snapshot["overrides"] = {"llm.temperature": 0.3, "llm.removed_option": 1, "server.port": 9}
    with caplog.at_level(logging.WARNING, logger="aria.session.serialize"):
        session = session_from_snapshot(snapshot)
    assert session.overrides == {"llm.temperature": 0.3}
    assert "llm.removed_option" in caplog.text


def valid_snapshot() -> dict[str, Any]:
    return session_to_snapshot(full_session())


def broken(change: Any) -> dict[str, Any]:
    snapshot = valid_snapshot()
    change(snapshot)
    return snapshot


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [
        ([], "JSON object"),
        ("text", "JSON object"),
        (broken(lambda s: s.pop("schema")), "no schema version"),
        (broken(lambda s: s.update(schema=99)), "schema version 99"),
        (broken(lambda s: s.update(schema="1")), "schema version '1'"),
        (broken(lambda s: s.update(schema=True)), "schema version True"),
        (broken(lambda s: s.pop("history")), "history"),
        (broken(lambda s: s.update(history={})), "history"),
        (broken(lambda s: s["history"][0].update(role="robot")), "history.0.role"),
        (broken(lambda s: s["history"][1].update(timestamp="noon")), "history.1.timestamp"),
        (broken(lambda s: s["history"][1].update(interrupted=1)), "history.1.interrupted"),
        (broken(lambda s: s["history"][1].update(extra=1)), "history.1.extra"),
        (broken(lambda s: s.update(id="../etc/passwd")), "id"),
        (broken(lambda s: s.update(created=-1.0)), "created"),
        (broken(lambda s: s.update(updated=math.inf)), "updated"),
        (broken(lambda s: s.update(memory={"k": 1})), "memory.k"),
        (broken(lambda s: s.update(memory={str(i): "" for i in range(MAX_MEMORY_KEYS + 1)})), "memory"),
        (broken(lambda s: s.update(overrides=[])), "overrides"),
        (broken(lambda s: s.update(unknown=1)), "unknown"),
    ],
)
def test_wrong_shapes_are_reported_with_the_field(snapshot: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=r"snapshot|schema") as caught:
        parse_snapshot(snapshot)
    assert message in str(caught.value)
    with pytest.raises(InvalidInput):
        session_from_snapshot(snapshot)


def test_summarize_reads_a_snapshot() -> None:
    assert summarize(valid_snapshot()) == SessionSummary(
        "round-trip", "hi there ✓", "voice_chat", 1000.0, 1002.0, 5
    )
