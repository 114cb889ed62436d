"""The tools Aria ships: ``current_time``, ``calculator``, ``remember``, ``recall`` and ``shell``.

``shell`` is disabled unless configuration turns it on (:meth:`ToolRegistry.set_enabled
<aria.tools.registry.ToolRegistry.set_enabled>`), and even then every command needs the user's
confirmation. ``remember``/``recall`` keep notes for the session in ``context.memory[NOTES]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aria.errors import InvalidInput
from aria.tools.calculator import evaluate, format_number
from aria.tools.registry import Tool, ToolContext, ToolOutput
from aria.tools.runner import run_program

__all__ = ["MAX_NOTES", "NOTES", "SHELL_TIMEOUT_S", "builtin_tools", "zone"]

#: The key of the notes dict in the session memory.
NOTES = "notes"
MAX_NOTES = 100
SHELL_TIMEOUT_S = 10.0

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def builtin_tools(
    *,
    clock: Callable[[], datetime] | None = None,
    timezone: str | None = None,
    max_notes: int = MAX_NOTES,
) -> list[Tool]:
    """Fresh built-in tool definitions. ``clock`` returns the current time (an aware datetime; a naive one
    is read as local time) and ``timezone`` is the IANA zone ``current_time`` answers in by default
    (the machine's zone when not given)."""
    if max_notes < 1:
        raise InvalidInput("max_notes must be at least 1")
    default_zone = zone(timezone) if timezone else None
    return [
        _current_time(clock or datetime.now, default_zone),
        _calculator(),
        _remember(max_notes),
        _recall(),
        _shell(),
    ]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; :class:`~aria.errors.InvalidInput` when there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from exc


# -- current_time -------------------------------------------------------------------------------------


def _current_time(clock: Callable[[], datetime], default_zone: ZoneInfo | None) -> Tool:
    def current_time(context: ToolContext, /, timezone: str | None = None) -> ToolOutput:
        now = clock()
        target = zone(timezone) if timezone else default_zone
        now = now.astimezone(target)  # None: the machine's zone (a naive time is taken as local)
        offset = now.strftime("%z")
        offset = f"{offset[:3]}:{offset[3:]}" if offset else "+00:00"
        name = getattr(now.tzinfo, "key", None) or now.tzname() or f"UTC{offset}"
        weekday, month = _WEEKDAYS[now.weekday()], _MONTHS[now.month - 1]
        data = {
            "iso": now.isoformat(timespec="seconds"),
            "date": now.date().isoformat(),
            "time": now.strftime("%H:%M:%S"),
            "weekday": weekday,
            "timezone": name,
            "utc_offset": offset,
        }
        content = f"{weekday}, {now.day} {month} {now.year}, {now:%H:%M} ({name}, UTC{offset})"
        return ToolOutput(content, data)

    return Tool(
        "current_time",
        "The current date, time and weekday. Give an IANA time zone (e.g. America/New_York) for the time "
        "somewhere else; without one it answers for the user's own time zone.",
        {
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 64,
                    "description": "IANA time zone name, e.g. Europe/Paris",
                }
            },
            "additionalProperties": False,
        },
        current_time,
        timeout_s=2.0,
    )


# -- calculator ---------------------------------------------------------------------------------------


def _calculator() -> Tool:
    def calculate(context: ToolContext, /, expression: str) -> ToolOutput:
        value = evaluate(expression)
        shown = format_number(value)
        return ToolOutput(f"{expression.strip()} = {shown}", {"expression": expression, "result": value})

    return Tool(
        "calculator",
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and parentheses, the "
        "functions sqrt sin cos tan log exp abs round min max (radians; log(x, base)), and pi and e.",
        {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "description": "e.g. (17 * 3) / sqrt(2)",
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
        calculate,
        timeout_s=2.0,
    )


# -- remember / recall --------------------------------------------------------------------------------


def _key(key: str) -> str:
    normal = " ".join(key.split()).casefold()
    if not normal:
        raise InvalidInput("the key must not be blank")
    return normal


def _notes(context: ToolContext) -> dict[str, str]:
    notes: dict[str, str] = context.memory.setdefault(NOTES, {})
    return notes


def _remember(limit: int) -> Tool:
    def remember(context: ToolContext, /, key: str, value: str) -> ToolOutput:
        notes = _notes(context)
        name = _key(key)
        notes.pop(name, None)  # re-remembering makes it the newest
        dropped: list[str] = []
        while len(notes) >= limit:
            oldest = next(iter(notes))
            del notes[oldest]
            dropped.append(oldest)
        notes[name] = value
        content = f"Remembered {name!r}."
        if dropped:
            content += f" To make room, forgot the oldest note(s): {', '.join(map(repr, dropped))}."
        return ToolOutput(content, {"key": name, "value": value, "forgotten": dropped})

    return Tool(
        "remember",
        "Remember a short note for the rest of this conversation, under a key (e.g. key 'parking spot', "
        "value 'level 3, row F'). Remembering the same key again replaces the note.",
        {
            "type": "object",
            "properties": {
                "key": {"type": "string", "minLength": 1, "maxLength": 64},
                "value": {"type": "string", "minLength": 1, "maxLength": 1000},
            },
            "required": ["key", "value"],
            "additionalProperties": False,
        },
        remember,
        timeout_s=2.0,
    )


def _recall() -> Tool:
    def recall(context: ToolContext, /, key: str | None = None) -> ToolOutput:
        notes = _notes(context)
        if key is None:
            if not notes:
                return ToolOutput("Nothing has been remembered yet.", {"notes": {}})
            listing = "\n".join(f"{k}: {v}" for k, v in notes.items())
            return ToolOutput(f"Remembered notes:\n{listing}", {"notes": dict(notes)})
        name = _key(key)
        if name not in notes:
            known = ", ".join(map(repr, notes)) or "none"
            return ToolOutput(
                f"Nothing is remembered under {name!r} (keys: {known}).", {"key": name, "value": None}
            )
        return ToolOutput(f"{name}: {notes[name]}", {"key": name, "value": notes[name]})

    return Tool(
        "recall",
        "Recall a note remembered earlier in this conversation by its key, or every note when no key is "
        "given.",
        {
            "type": "object",
            "properties": {"key": {"type": "string", "minLength": 1, "maxLength": 64}},
            "additionalProperties": False,
        },
        recall,
        timeout_s=2.0,
    )


# -- shell --------------------------------------------------------------------------------------------


def _describe_shell(arguments: Mapping[str, Any]) -> str:
    return f"Run the shell command: {arguments.get('command', '')}"


def _shell() -> Tool:
    async def shell(context: ToolContext, /, command: str) -> ToolOutput:
        # A little under the tool's timeout, so the output so far comes back instead of a bare timeout.
        result = await run_program(command, timeout_s=SHELL_TIMEOUT_S - 1.0)
        data = {
            "returncode": result.returncode,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "timed_out": result.timed_out,
            "truncated": result.truncated,
        }
        return ToolOutput(result.summary(), data)

    return Tool(
        "shell",
        "Run a shell command on the user's computer (the user must approve each command). Output is "
        "truncated; the command gets a clean environment and no input.",
        {
            "type": "object",
            "properties": {"command": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["command"],
            "additionalProperties": False,
        },
        shell,
        confirm=True,
        timeout_s=SHELL_TIMEOUT_S,
        runs_external_program=True,
        enabled=False,
        describe=_describe_shell,
    )
