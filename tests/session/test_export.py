"""Tests for aria.session.export: the JSON export and the Markdown transcript."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from aria.session.export import export_json, export_markdown
from aria.session.serialize import session_from_snapshot
from aria.session.store import Session
from aria.types import ImageFrame, Message, ToolCall

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
START = datetime(2024, 5, 14, 15, 42, 0, tzinfo=UTC).timestamp()


def conversation() -> Session:
    session = Session("export-test", mode="voice_chat", created=START, last_seen=START, updated=START + 60)
    add = session.history.append
    add(Message("system", "Be brief.", timestamp=START))
    add(Message("user", "What time is it?\n", "audio", timestamp=START + 5, mode="voice_chat"))
    add(Message("assistant", "It is a quarter to", timestamp=START + 7, interrupted=True, mode="voice_chat"))
    add(Message("user", "# not a heading\n\n---\nreally", timestamp=START + 20, mode="voice_chat"))
    add(
        Message(
            "assistant",
            "",
            timestamp=START + 21,
            mode="voice_chat",
            metadata={"tool_calls": (ToolCall("c1", "clock", "{}"),)},
        )
    )
    add(Message("tool", "15:42", timestamp=START + 22, metadata={"tool_call_id": "c1", "tool_name": "clock"}))
    add(Message("user", "and this?", "image", timestamp=START + 86_400, images=(ImageFrame(PNG, "PNG"),)))
    return session


EXPECTED = """\
# What time is it?

- Session: `export-test`
- Started: 2024-05-14 15:42 UTC
- Mode: voice_chat
- Messages: 7

---

**System** · 15:42:00

> Be brief.

**You** · 15:42:05 · [voice_chat] · (spoken)

> What time is it?

**Aria** · 15:42:07 · [voice_chat] · (interrupted)

> It is a quarter to

**You** · 15:42:20 · [voice_chat]

> # not a heading
>
> ---
> really

**Aria** · 15:42:21 · [voice_chat]

> _(no text)_

**Tool (clock)** · 15:42:22

> 15:42

**You** · 2024-05-15 15:42:00

> and this?
>
> _[1 image not included]_
"""


def test_the_markdown_transcript() -> None:
    assert export_markdown(conversation(), tz=UTC) == EXPECTED


def test_the_transcript_is_the_same_after_a_round_trip() -> None:
    session = conversation()
    back = session_from_snapshot(json.loads(export_json(session)))
    assert export_markdown(back, tz=UTC) == EXPECTED  # the image count survives without the image


def test_times_follow_the_time_zone() -> None:
    text = export_markdown(conversation(), tz=timezone(timedelta(hours=2), "CEST"))
    assert "- Started: 2024-05-14 17:42 CEST" in text
    assert "**You** · 17:42:05" in text


def test_local_time_is_the_default() -> None:
    text = export_markdown(conversation())
    local = datetime.fromtimestamp(START).astimezone()
    assert f"- Started: {local:%Y-%m-%d %H:%M}" in text


def test_a_session_without_user_messages_is_untitled() -> None:
    text = export_markdown(Session("empty-session", created=START), tz=UTC)
    assert text.startswith("# Untitled conversation\n")
    assert "- Messages: 0" in text


def test_the_json_export_is_the_snapshot_and_reads_back() -> None:
    session = conversation()
    text = export_json(session)
    data = json.loads(text)
    assert data["schema"] == 1
    assert data["id"] == "export-test"
    assert data["title"] == "What time is it?"
    assert text.endswith("\n")
    assert "\n  " in text  # indented for people
    back = session_from_snapshot(data)
    assert [(m.role, m.content, m.interrupted) for m in back.history] == [
        (m.role, m.content, m.interrupted) for m in session.history
    ]
    assert back.history[4].metadata["tool_calls"] == (ToolCall("c1", "clock", "{}"),)
    assert export_json(back) == text
