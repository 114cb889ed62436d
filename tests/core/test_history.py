"""Tests for aria.core.history: the message list and its turn window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aria.core.history import History
from aria.types import ImageFrame, Message


def conversation(*spec: str) -> list[Message]:
    """Messages from "role:content" strings."""
    return [Message(role, content) for role, content in (s.split(":", 1) for s in spec)]  # type: ignore[arg-type]


def contents(messages: tuple[Message, ...]) -> list[str]:
    return [m.content for m in messages]


ROLES = ("user", "assistant", "tool", "system")
PICTURE = ImageFrame(b"\xff\xd8\xff\xe0 jpeg", "JPEG")
THREE_TURNS = conversation("user:u1", "assistant:a1", "user:u2", "assistant:a2", "user:u3", "assistant:a3")


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        (1, ["u3", "a3"]),
        (2, ["u2", "a2", "u3", "a3"]),
        (3, ["u1", "a1", "u2", "a2", "u3", "a3"]),
        (4, ["u1", "a1", "u2", "a2", "u3", "a3"]),
        (100, ["u1", "a1", "u2", "a2", "u3", "a3"]),
    ],
)
def test_window_returns_the_last_user_turns_with_what_follows(turns: int, expected: list[str]) -> None:
    assert contents(History(THREE_TURNS).window(turns)) == expected


@pytest.mark.parametrize("turns", [0, -1])
def test_window_of_no_turns_is_empty(turns: int) -> None:
    assert History(THREE_TURNS).window(turns) == ()


def test_window_of_empty_history_is_empty() -> None:
    assert History().window(3) == ()


def test_window_keeps_everything_after_a_user_turn() -> None:
    history = History(
        conversation(
            "user:u1",
            "assistant:a1",
            "user:u2",
            "assistant:calling a tool",
            "tool:result",
            "assistant:a2",
        )
    )
    assert contents(history.window(1)) == ["u2", "calling a tool", "result", "a2"]


def test_window_when_the_last_turn_has_no_answer_yet() -> None:
    history = History(conversation("user:u1", "assistant:a1", "user:u2"))
    assert contents(history.window(1)) == ["u2"]
    assert contents(history.window(2)) == ["u1", "a1", "u2"]


def test_window_counts_consecutive_user_messages_as_turns() -> None:
    history = History(conversation("user:u1", "assistant:a1", "user:u2", "user:u3"))
    assert contents(history.window(1)) == ["u3"]
    assert contents(history.window(2)) == ["u2", "u3"]


def test_window_drops_older_turns_and_what_preceded_them() -> None:
    history = History(conversation("system:be brief", "assistant:hello", *[f"user:u{i}" for i in range(5)]))
    assert contents(history.window(2)) == ["u3", "u4"]


def test_window_is_a_tuple_snapshot() -> None:
    history = History(THREE_TURNS)
    window = history.window(1)
    history.append(Message("user", "u4"))
    assert isinstance(window, tuple)
    assert contents(window) == ["u3", "a3"]
    assert contents(history.window(1)) == ["u4"]


def test_window_grows_by_one_turn_at_a_time() -> None:
    history = History(THREE_TURNS)
    sizes = [len(history.window(n)) for n in range(5)]
    assert sizes == [0, 2, 4, 6, 6]
    for n in range(1, 4):  # each window ends with the smaller one
        small, large = history.window(n), history.window(n + 1)
        assert large[len(large) - len(small) :] == small


def test_list_operations() -> None:
    history = History()
    assert len(history) == 0
    for message in THREE_TURNS:
        history.append(message)
    assert len(history) == 6
    assert history[0] is THREE_TURNS[0]
    assert history[-1].content == "a3"
    assert list(history) == THREE_TURNS
    history.clear()
    assert len(history) == 0
    assert list(history) == []


def test_history_copies_the_initial_list() -> None:
    messages = conversation("user:u1")
    history = History(messages)
    messages.append(Message("assistant", "a1"))
    history.append(Message("user", "u2"))
    assert len(messages) == 2
    assert contents(tuple(history)) == ["u1", "u2"]


def _scanned_window(messages: list[Message], turns: int) -> tuple[Message, ...]:
    """The window as the history used to cut it: scanning back for the ``turns``-th user message."""
    if turns <= 0:
        return ()
    seen = 0
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            seen += 1
            if seen == turns:
                return tuple(messages[index:])
    return tuple(messages)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["append", "remove", "replace", "clear"]),
            st.sampled_from(ROLES),
            st.integers(0, 30),
        ),
        max_size=40,
    ),
    st.integers(0, 6),
)
def test_the_indexed_window_matches_a_scan_through_appends_removals_and_replacements(
    operations: list[tuple[str, str, int]], turns: int
) -> None:
    """The window is cut from an index of the user messages kept up to date by every change; it must
    be exactly what scanning the messages gives, whatever a client did to the history."""
    history = History()
    mirror: list[Message] = []
    for n, (operation, role, at) in enumerate(operations):
        pictures = (PICTURE,) if at % 5 == 0 else ()
        message = Message(role, f"m{n}", images=pictures)  # type: ignore[arg-type]
        if operation == "append" or not mirror:
            history.append(message)
            mirror.append(message)
        elif operation == "remove":
            assert history.remove(at % len(mirror)) is mirror.pop(at % len(mirror))
        elif operation == "replace":
            history.replace(at % len(mirror), message)
            mirror[at % len(mirror)] = message
        else:
            history.clear()
            mirror.clear()
        assert history.window(turns) == _scanned_window(mirror, turns)
        assert history.has_pictures == any(m.images for m in mirror)
    assert History(mirror).window(turns) == _scanned_window(mirror, turns)
