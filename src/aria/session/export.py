"""Exports of a session: its JSON snapshot, and a Markdown transcript people can read.

The transcript has the title, the date and the session's mode, then each message with its speaker and
time, a ``[mode]`` tag, ``(interrupted)`` on turns the user cut short and ``(spoken)`` on voice input.
Message text is quoted (``> ``) so Markdown in it cannot break the layout.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo

from aria.session.model import Session
from aria.session.serialize import session_to_snapshot
from aria.types import Message

__all__ = ["SPEAKERS", "export_json", "export_markdown"]

SPEAKERS = {"user": "You", "assistant": "Aria", "system": "System", "tool": "Tool"}


def export_json(session: Session) -> str:
    """The session's snapshot (schema 1) as indented JSON, archived messages included;
    ``session_from_snapshot(json.loads(text))`` reads it back."""
    return json.dumps(session_to_snapshot(session, whole=True), ensure_ascii=False, indent=2) + "\n"


def export_markdown(session: Session, *, tz: tzinfo | None = None) -> str:
    """A readable transcript; times are shown in ``tz`` (the local time zone when ``None``)."""
    started = _time(session.created, tz)
    messages = session.all_messages()
    lines = [
        f"# {session.title or 'Untitled conversation'}",
        "",
        f"- Session: `{session.id}`",
        f"- Started: {started:%Y-%m-%d %H:%M} {started.tzname() or ''}".rstrip(),
        f"- Mode: {session.mode}",
        f"- Messages: {len(messages)}",
        "",
        "---",
    ]
    day = started.date()
    for message in messages:
        when = _time(message.timestamp, tz)
        stamp = f"{when:%H:%M:%S}" if when.date() == day else f"{when:%Y-%m-%d %H:%M:%S}"
        day = when.date()
        lines += ["", _heading(message, stamp), "", *_quoted(message)]
    return "\n".join(lines) + "\n"


def _time(timestamp: float, tz: tzinfo | None) -> datetime:
    return (
        datetime.fromtimestamp(timestamp, tz)
        if tz is not None
        else datetime.fromtimestamp(timestamp).astimezone()
    )


def _heading(message: Message, stamp: str) -> str:
    speaker = SPEAKERS[message.role]
    tool_name = message.metadata.get("tool_name") or message.metadata.get("name")
    if message.role == "tool" and isinstance(tool_name, str) and tool_name:
        speaker = f"{speaker} ({tool_name})"
    parts = [f"**{speaker}**", stamp]
    if message.mode:
        parts.append(f"[{message.mode}]")
    if message.modality == "audio" and message.role == "user":
        parts.append("(spoken)")
    if message.interrupted:
        parts.append("(interrupted)")
    return " · ".join(parts)


def _quoted(message: Message) -> list[str]:
    text = message.content.strip("\n")
    lines = [f"> {line}".rstrip() for line in text.splitlines()] if text.strip() else ["> _(no text)_"]
    images = message.metadata.get("image_count") or len(message.images)
    if isinstance(images, int) and images > 0:
        lines += [">", f"> _[{images} image{'s' if images != 1 else ''} not included]_"]
    return lines
