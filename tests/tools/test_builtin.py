"""The built-in tools, run the way the model runs them: through a ToolRunner with JSON arguments."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aria.errors import InvalidInput
from aria.tools.builtin import MAX_NOTES, NOTES, SHELL_TIMEOUT_S, builtin_tools, zone
from aria.tools.registry import ToolContext, ToolRegistry
from aria.tools.runner import ConfirmRequest, ToolResult, ToolRunner
from aria.types import ToolCall

FIXED = datetime(2024, 3, 5, 14, 7, 30, tzinfo=UTC)  # a Tuesday


def runner(**kw: Any) -> ToolRunner:
    ask = kw.pop("ask_confirm", None)
    registry = ToolRegistry(builtin_tools(clock=lambda: FIXED, **kw))
    return ToolRunner(registry, ask_confirm=ask)


async def run(
    tools: ToolRunner, name: str, context: ToolContext | None = None, **arguments: Any
) -> ToolResult:
    return await tools.run(ToolCall("c1", name, json.dumps(arguments)), context or ToolContext())


def test_the_built_in_set() -> None:
    tools = {tool.name: tool for tool in builtin_tools()}
    assert list(tools) == ["current_time", "calculator", "remember", "recall", "shell"]
    assert [name for name, tool in tools.items() if tool.enabled] == [
        "current_time",
        "calculator",
        "remember",
        "recall",
    ]
    assert [name for name, tool in tools.items() if tool.confirm or tool.runs_external_program] == ["shell"]
    registry = ToolRegistry(builtin_tools())
    assert [spec.name for spec in registry.specs()] == ["calculator", "current_time", "recall", "remember"]


def test_builtin_tools_checks_its_settings() -> None:
    with pytest.raises(InvalidInput, match="unknown time zone 'Mars/Olympus'"):
        builtin_tools(timezone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="max_notes"):
        builtin_tools(max_notes=0)


def test_zone() -> None:
    assert zone("Europe/Paris").key == "Europe/Paris"
    for bad in ("Nowhere/Special", "../../etc/passwd", "/abs"):
        with pytest.raises(InvalidInput, match="use an IANA name such as Europe/Paris"):
            zone(bad)


# -- current_time -------------------------------------------------------------------------------------


async def test_current_time_in_the_configured_zone() -> None:
    result = await run(runner(timezone="UTC"), "current_time")
    assert result.ok
    assert result.content == "Tuesday, 5 March 2024, 14:07 (UTC, UTC+00:00)"
    assert result.data == {
        "iso": "2024-03-05T14:07:30+00:00",
        "date": "2024-03-05",
        "time": "14:07:30",
        "weekday": "Tuesday",
        "timezone": "UTC",
        "utc_offset": "+00:00",
    }


async def test_current_time_in_an_asked_for_zone() -> None:
    tools = runner(timezone="UTC")
    paris = await run(tools, "current_time", timezone="Europe/Paris")
    assert paris.content == "Tuesday, 5 March 2024, 15:07 (Europe/Paris, UTC+01:00)"
    tokyo = await run(tools, "current_time", timezone="Asia/Tokyo")
    assert tokyo.content == "Tuesday, 5 March 2024, 23:07 (Asia/Tokyo, UTC+09:00)"
    samoa = await run(tools, "current_time", timezone="Pacific/Pago_Pago")
    assert samoa.data["weekday"] == "Tuesday"
    assert samoa.data["date"] == "2024-03-05"
    assert samoa.data["time"] == "03:07:30"
    kolkata = await run(tools, "current_time", timezone="Asia/Kolkata")
    assert kolkata.data["utc_offset"] == "+05:30"


async def test_current_time_refuses_an_unknown_zone() -> None:
    result = await run(runner(), "current_time", timezone="Mars/Olympus")
    assert result.error == "failed"
    assert result.content == (
        "error: current_time failed: unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Paris"
    )
    assert (await run(runner(), "current_time", timezone="")).error == "invalid_arguments"


async def test_current_time_without_a_configured_zone_uses_the_clocks_zone() -> None:
    offset = timezone(timedelta(hours=-5), "EST")
    tools = ToolRunner(ToolRegistry(builtin_tools(clock=lambda: FIXED.astimezone(offset))))
    # Without a zone, an aware clock time is shown in the machine's zone; with the clock's own fixed
    # offset we can at least check the fields agree with each other.
    result = await run(tools, "current_time")
    assert result.ok
    shown = datetime.fromisoformat(result.data["iso"])
    assert shown == FIXED
    assert result.data["utc_offset"] == shown.strftime("%z")[:3] + ":" + shown.strftime("%z")[3:]


# -- calculator ---------------------------------------------------------------------------------------


async def test_calculator() -> None:
    result = await run(runner(), "calculator", expression=" (17 * 3) / 2 ")
    assert result == ToolResult(
        "c1", "calculator", True, "(17 * 3) / 2 = 25.5", {"expression": " (17 * 3) / 2 ", "result": 25.5}
    )
    third = await run(runner(), "calculator", expression="1/3")
    assert third.content == "1/3 = 0.333333333333"


async def test_calculator_errors_reach_the_model() -> None:
    result = await run(runner(), "calculator", expression="__import__('os')")
    assert result.error == "failed"
    assert result.content.startswith("error: calculator failed: calling __import__ is not allowed")
    assert (await run(runner(), "calculator")).content == (
        "error: invalid arguments for calculator: expression: is required"
    )


# -- remember / recall --------------------------------------------------------------------------------


async def test_remember_and_recall() -> None:
    tools, context = runner(), ToolContext()
    saved = await run(tools, "remember", context, key="  Parking   Spot ", value="level 3, row F")
    assert saved.content == "Remembered 'parking spot'."
    assert saved.data == {"key": "parking spot", "value": "level 3, row F", "forgotten": []}
    assert context.memory == {NOTES: {"parking spot": "level 3, row F"}}

    found = await run(tools, "recall", context, key="PARKING SPOT")
    assert found == ToolResult(
        "c1",
        "recall",
        True,
        "parking spot: level 3, row F",
        {"key": "parking spot", "value": "level 3, row F"},
    )


async def test_recall_everything_or_nothing() -> None:
    tools, context = runner(), ToolContext()
    empty = await run(tools, "recall", context)
    assert (empty.content, empty.data) == ("Nothing has been remembered yet.", {"notes": {}})
    await run(tools, "remember", context, key="a", value="1")
    await run(tools, "remember", context, key="b", value="2")
    everything = await run(tools, "recall", context)
    assert everything.content == "Remembered notes:\na: 1\nb: 2"
    assert everything.data == {"notes": {"a": "1", "b": "2"}}
    missing = await run(tools, "recall", context, key="c")
    assert missing.ok
    assert missing.content == "Nothing is remembered under 'c' (keys: 'a', 'b')."
    assert missing.data == {"key": "c", "value": None}


async def test_remembering_again_replaces() -> None:
    tools, context = runner(), ToolContext()
    await run(tools, "remember", context, key="a", value="1")
    await run(tools, "remember", context, key="b", value="2")
    await run(tools, "remember", context, key="A", value="3")
    assert context.memory[NOTES] == {"b": "2", "a": "3"}


async def test_memory_is_bounded_forgetting_the_oldest() -> None:
    assert MAX_NOTES == 100
    tools, context = runner(max_notes=2), ToolContext()
    await run(tools, "remember", context, key="a", value="1")
    await run(tools, "remember", context, key="b", value="2")
    await run(tools, "remember", context, key="a", value="1 again")  # now the newest
    third = await run(tools, "remember", context, key="c", value="3")
    assert third.content == "Remembered 'c'. To make room, forgot the oldest note(s): 'b'."
    assert third.data["forgotten"] == ["b"]
    assert context.memory[NOTES] == {"a": "1 again", "c": "3"}


async def test_memory_limits_on_keys_and_values() -> None:
    tools = runner()
    blank = await run(tools, "remember", key="   ", value="x")
    assert (blank.error, blank.content) == ("failed", "error: remember failed: the key must not be blank")
    long_value = await run(tools, "remember", key="k", value="x" * 1001)
    assert long_value.error == "invalid_arguments"
    assert "value: must be at most 1000 characters long" in long_value.content
    assert (await run(tools, "remember", key="k" * 65, value="x")).error == "invalid_arguments"


async def test_sessions_do_not_share_memory() -> None:
    tools, mine, yours = runner(), ToolContext(session_id="1"), ToolContext(session_id="2")
    await run(tools, "remember", mine, key="secret", value="42")
    assert (await run(tools, "recall", yours, key="secret")).data == {"key": "secret", "value": None}


# -- shell --------------------------------------------------------------------------------------------


def test_shell_flags() -> None:
    shell = {tool.name: tool for tool in builtin_tools()}["shell"]
    assert (shell.enabled, shell.confirm, shell.runs_external_program) == (False, True, True)
    assert shell.timeout_s == SHELL_TIMEOUT_S == 10.0


async def test_shell_is_disabled_by_default() -> None:
    result = await run(runner(), "shell", command="echo hi")
    assert (result.error, result.content) == ("disabled", "error: the tool 'shell' is disabled")


async def test_enabled_shell_still_needs_confirmation() -> None:
    tools = runner()
    tools.registry.set_enabled("shell")
    result = await run(tools, "shell", command="echo hi")
    assert result.error == "not_confirmed"


async def test_an_approved_shell_command_runs() -> None:
    asked: list[ConfirmRequest] = []

    async def approve(request: ConfirmRequest) -> bool:
        asked.append(request)
        return True

    tools = runner(ask_confirm=approve)
    tools.registry.set_enabled("shell")
    result = await run(tools, "shell", command="echo hi; echo oops >&2; exit 2")
    assert result.ok
    assert result.content == "exit code 2\nstdout:\nhi\n\nstderr:\noops\n"
    assert result.data == {
        "returncode": 2,
        "stdout": "hi\n",
        "stderr": "oops\n",
        "timed_out": False,
        "truncated": False,
    }
    assert [r.prompt for r in asked] == ["Run the shell command: echo hi; echo oops >&2; exit 2"]


async def test_a_refused_shell_command_does_not_run(tmp_path: Path) -> None:
    async def refuse(request: ConfirmRequest) -> bool:
        return False

    marker = tmp_path / "ran"
    tools = runner(ask_confirm=refuse)
    tools.registry.set_enabled("shell")
    result = await run(tools, "shell", command=f"touch {marker}")
    assert result.error == "not_confirmed"
    assert not await asyncio.to_thread(marker.exists)
