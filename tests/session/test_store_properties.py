"""Properties of saved sessions: random add-turn / interrupt / save / failed save / restart sequences never
lose a saved turn, and any session round-trips through its snapshot."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from aria.session.files import FileSnapshotStore
from aria.session.serialize import session_from_snapshot, session_to_snapshot
from aria.session.store import Session, SessionStore
from aria.types import Message

IDS = st.sampled_from(["session-a1", "session-b2"])
#: Any code point, lone surrogates included (a client's JSON can carry them).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
#: Valid Unicode only: stored exactly.
TEXT = st.text(max_size=20)
Key = tuple[str, str, bool, str | None]


def stored(text: str) -> str:
    """What a snapshot keeps of ``text``: lone surrogates become U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def key(message: Message) -> Key:
    return (message.role, stored(message.content), message.interrupted, message.mode)


def keys(session: Session) -> list[Key]:
    return [key(m) for m in session.history]


class SessionsSurviveRestarts(RuleBasedStateMachine):
    """The model: ``live`` is what each session holds in memory, ``saved`` what its last successful
    ``save()`` wrote. What is on disk always starts with ``saved`` and is where ``live`` started from."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="aria-sessions-")
        self.directory = Path(self._tmp.name)
        self.max_sessions = 1
        self.store = SessionStore(FileSnapshotStore(self.directory))
        self.live: dict[str, list[Key]] = {}
        self.saved: dict[str, list[Key]] = {}

    def teardown(self) -> None:
        self._tmp.cleanup()

    def restart_store(self) -> None:
        self.store = SessionStore(FileSnapshotStore(self.directory), max_sessions=self.max_sessions)

    def on_disk(self, session_id: str) -> list[Key]:
        snapshot = FileSnapshotStore(self.directory).load(session_id)
        return [] if snapshot is None else keys(session_from_snapshot(snapshot))

    def session(self, session_id: str) -> Session:
        session, _ = self.store.open(session_id, mode="voice_chat")
        assert keys(session) == self.live.get(session_id, [])  # what was dropped from memory came back
        return session

    def append(self, session: Session, *messages: Message) -> None:
        for message in messages:
            session.history.append(message)
            self.live.setdefault(session.id, []).append(key(message))

    @initialize(max_sessions=st.sampled_from([1, 2, 10]))
    def configure(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions  # 1: every switch of session drops the other from memory
        self.restart_store()

    @rule(session_id=IDS, text=ANY_TEXT, answer=ANY_TEXT)
    def add_turn(self, session_id: str, text: str, answer: str) -> None:
        self.append(
            self.session(session_id),
            Message("user", text, "audio", mode="voice_chat"),
            Message("assistant", answer, mode="voice_chat"),
        )

    @rule(session_id=IDS, text=ANY_TEXT, answer=ANY_TEXT, cut=st.integers(0, 20))
    def interrupted_turn(self, session_id: str, text: str, answer: str, cut: int) -> None:
        self.append(
            self.session(session_id),
            Message("user", text, mode="voice_chat"),
            Message("assistant", answer[:cut], interrupted=True, mode="voice_chat"),
        )

    @rule(session_id=IDS)
    def save(self, session_id: str) -> None:
        self.store.save(self.session(session_id))
        self.saved[session_id] = list(self.live.get(session_id, []))

    @rule(session_id=IDS, step=st.sampled_from(["replace", "fsync"]))
    def failed_save(self, session_id: str, step: str) -> None:
        session = self.session(session_id)
        failure = OSError(28, "No space left on device")
        with mock.patch.object(os, step, side_effect=failure), pytest.raises(OSError, match="No space"):
            self.store.save(session, force=True)

    @precondition(lambda self: self.live)
    @rule()
    def restart(self) -> None:
        """A restart or a crash: whatever was not saved is gone, nothing saved is."""
        self.restart_store()
        for session_id in list(self.live):
            self.live[session_id] = self.on_disk(session_id)

    @invariant()
    def saved_turns_are_never_lost(self) -> None:
        for session_id in self.live:
            disk = self.on_disk(session_id)
            saved = self.saved.get(session_id, [])
            assert disk[: len(saved)] == saved
            assert self.live[session_id][: len(disk)] == disk
        assert not list(self.directory.glob("quarantine/*"))
        assert not list(self.directory.glob(".*.tmp"))


SessionsSurviveRestarts.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSessionsSurviveRestarts = SessionsSurviveRestarts.TestCase


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
        max_leaves=10,
    )


def messages(text: st.SearchStrategy[str]) -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        role=st.sampled_from(["system", "user", "assistant", "tool"]),
        content=text,
        modality=st.sampled_from(["text", "audio", "image"]),
        timestamp=st.floats(0, 4e9),
        interrupted=st.booleans(),
        mode=st.none() | st.sampled_from(["voice_chat", "plain"]),
        metadata=st.dictionaries(text.filter(lambda k: k != "tool_calls"), json_values(text), max_size=4),
    )


def build(history: list[Message], memory: dict[str, str], temperature: float | None) -> Session:
    session = Session("round-trip", mode="voice_chat", created=1.0, last_seen=2.0, updated=3.0)
    for message in history:
        session.history.append(message)
    session.memory = memory
    if temperature is not None:
        session.overrides["llm.temperature"] = temperature
    return session


@settings(max_examples=150, deadline=None)
@given(
    history=st.lists(messages(TEXT), max_size=6),
    memory=st.dictionaries(TEXT.filter(bool), TEXT, max_size=4),
    temperature=st.none() | st.floats(0, 2),
)
def test_any_session_round_trips_exactly_through_json(
    history: list[Message], memory: dict[str, str], temperature: float | None
) -> None:
    session = build(history, memory, temperature)
    snapshot: dict[str, Any] = session_to_snapshot(session)
    back = session_from_snapshot(json.loads(json.dumps(snapshot)))
    assert [(key(m), m.modality, m.timestamp, dict(m.metadata)) for m in back.history] == [
        (key(m), m.modality, m.timestamp, dict(m.metadata)) for m in history
    ]
    assert (back.memory, back.overrides, back.title) == (session.memory, session.overrides, session.title)
    assert session_to_snapshot(back) == snapshot


@settings(max_examples=150, deadline=None)
@given(
    history=st.lists(messages(ANY_TEXT), max_size=6),
    memory=st.dictionaries(ANY_TEXT.filter(bool), ANY_TEXT, max_size=4),
)
def test_any_text_can_be_saved_as_utf8_and_is_stable_from_then_on(
    history: list[Message], memory: dict[str, str]
) -> None:
    snapshot = session_to_snapshot(build(history, memory, None))
    text = json.dumps(snapshot, ensure_ascii=False).encode("utf-8").decode("utf-8")
    back = session_from_snapshot(json.loads(text))
    assert [key(m) for m in back.history] == [key(m) for m in history]
    assert session_to_snapshot(back) == snapshot
