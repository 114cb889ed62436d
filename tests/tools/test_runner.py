"""ToolRunner: every failure path becomes a result, confirmations, timeouts; run_program's sandboxing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aria.errors import InvalidInput
from aria.tools.registry import Tool, ToolContext, ToolOutput, ToolRegistry, no_parameters
from aria.tools.runner import (
    CLEAN_PATH,
    ConfirmRequest,
    ToolResult,
    ToolRunner,
    run_program,
)
from aria.types import Message, ToolCall

ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "minimum": 0}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


def add(context: ToolContext, /, a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


async def add_async(context: ToolContext, /, a: int, b: int) -> ToolOutput:
    await asyncio.sleep(0)
    return ToolOutput(f"{a} + {b} = {a + b}", {"sum": a + b, "turn": context.turn_id})


def tool(name: str, handler: Callable[..., Any], parameters: Any = None, **kw: Any) -> Tool:
    return Tool(name, f"the {name} tool", parameters or no_parameters(), handler, **kw)


def runner_for(*tools: Tool, **kw: Any) -> ToolRunner:
    return ToolRunner(ToolRegistry(tools), **kw)


async def call(runner: ToolRunner, name: str, arguments: Any = None, *, raw: str | None = None) -> ToolResult:
    text = raw if raw is not None else json.dumps(arguments or {})
    return await runner.run(ToolCall("call-1", name, text), ToolContext(session_id="s", turn_id="t7"))


# -- the happy paths ----------------------------------------------------------------------------------


async def test_a_sync_handler_returning_json_data() -> None:
    result = await call(runner_for(tool("add", add, ADD)), "add", {"a": 2, "b": 3})
    assert result == ToolResult("call-1", "add", True, '{"sum": 5}', {"sum": 5})
    assert result.error is None


async def test_an_async_handler_returning_tool_output_sees_the_context() -> None:
    result = await call(runner_for(tool("add", add_async, ADD)), "add", {"a": 2, "b": 3})
    assert result == ToolResult("call-1", "add", True, "2 + 3 = 5", {"sum": 5, "turn": "t7"})


async def test_strings_and_none() -> None:
    runner = runner_for(tool("say", lambda ctx: "hi there"), tool("noop", lambda ctx: None))
    assert await call(runner, "say") == ToolResult("call-1", "say", True, "hi there", "hi there")
    assert await call(runner, "noop") == ToolResult("call-1", "noop", True, "done", None)


async def test_empty_argument_text_means_no_arguments() -> None:
    runner = runner_for(tool("say", lambda ctx: "hi"))
    assert (await call(runner, "say", raw="")).ok
    assert (await call(runner, "say", raw="  ")).ok


async def test_long_content_is_truncated_for_the_model() -> None:
    runner = runner_for(tool("long", lambda ctx: ToolOutput("x" * 500, {"n": 500})), max_content_chars=100)
    result = await call(runner, "long")
    assert result.ok
    assert result.content == "x" * 100 + "\n[truncated: 400 more characters]"
    assert result.data == {"n": 500}


def test_a_result_becomes_a_tool_message() -> None:
    message = ToolResult("call-9", "add", True, "5", 5).to_message()
    assert message == Message(
        "tool", "5", timestamp=message.timestamp, metadata={"tool_call_id": "call-9", "tool_name": "add"}
    )


def test_runner_settings_are_checked() -> None:
    with pytest.raises(InvalidInput):
        ToolRunner(ToolRegistry(), confirm_timeout_s=0)
    with pytest.raises(InvalidInput):
        ToolRunner(ToolRegistry(), max_content_chars=10)


# -- refusals before the handler runs -----------------------------------------------------------------


async def test_an_unknown_tool_lists_the_available_ones() -> None:
    runner = runner_for(tool("add", add, ADD), tool("off", add, ADD, enabled=False))
    result = await call(runner, "multiply", {"a": 1})
    assert result == ToolResult(
        "call-1",
        "multiply",
        False,
        "error: unknown tool 'multiply' (available tools: add)",
        None,
        "unknown_tool",
    )


async def test_a_disabled_tool_does_not_run() -> None:
    ran: list[bool] = []
    runner = runner_for(tool("off", lambda ctx: ran.append(True), enabled=False))
    result = await call(runner, "off")
    assert (result.ok, result.error, result.content) == (
        False,
        "disabled",
        "error: the tool 'off' is disabled",
    )
    assert ran == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "error: the arguments are not valid JSON (Expecting property name"),
        ('{"a": 1', "error: the arguments are not valid JSON (Expecting ',' delimiter"),
        ("[1, 2]", "error: the arguments must be a JSON object, got array"),
        ('"text"', "error: the arguments must be a JSON object, got string"),
        ('{"a": NaN, "b": 1}', "error: the arguments are not valid JSON (NaN is not a JSON number)"),
    ],
)
async def test_arguments_that_are_not_a_json_object(raw: str, message: str) -> None:
    result = await call(runner_for(tool("add", add, ADD)), "add", raw=raw)
    assert not result.ok
    assert result.error == "invalid_arguments"
    assert result.content.startswith(message), result.content


async def test_schema_errors_name_the_argument() -> None:
    runner = runner_for(tool("add", add, ADD))
    result = await call(runner, "add", {"a": "two", "b": -1, "c": 0})
    assert result == ToolResult(
        "call-1",
        "add",
        False,
        "error: invalid arguments for add: a: expected integer, got string 'two'; b: must be >= 0, got -1; "
        "c: is not an accepted argument (accepted: a, b)",
        None,
        "invalid_arguments",
    )
    missing = await call(runner, "add", {"a": 1})
    assert missing.content == "error: invalid arguments for add: b: is required"


# -- confirmation -------------------------------------------------------------------------------------


class Confirmer:
    """A scripted user: answers ``answer`` after ``delay`` seconds (never, with ``None``)."""

    def __init__(self, answer: Any = True, delay: float | None = 0.0, error: Exception | None = None) -> None:
        self.answer, self.delay, self.error = answer, delay, error
        self.requests: list[ConfirmRequest] = []

    async def __call__(self, request: ConfirmRequest) -> bool:
        self.requests.append(request)
        if self.delay is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay or 0)
        if self.error is not None:
            raise self.error
        return self.answer  # type: ignore[no-any-return]


def guarded(ran: list[dict[str, Any]], **kw: Any) -> Tool:
    def handler(context: ToolContext, /, **arguments: Any) -> str:
        ran.append(arguments)
        return "deleted"

    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    return tool("delete", handler, schema, confirm=True, **kw)


async def test_an_approved_call_runs_and_the_user_sees_what_it_does() -> None:
    ran: list[dict[str, Any]] = []
    confirmer = Confirmer(True)
    runner = runner_for(guarded(ran), ask_confirm=confirmer, confirm_timeout_s=5)
    result = await call(runner, "delete", {"path": "/tmp/x"})
    assert result.ok
    assert ran == [{"path": "/tmp/x"}]
    assert confirmer.requests == [
        ConfirmRequest("call-1", "delete", {"path": "/tmp/x"}, 'Run delete with {"path": "/tmp/x"}', 5)
    ]


async def test_the_tool_describes_the_call_for_the_user() -> None:
    confirmer = Confirmer(True)
    describe: Callable[[Any], str] = lambda args: f"Delete {args['path']}?"  # noqa: E731
    runner = runner_for(guarded([], describe=describe), ask_confirm=confirmer)
    await call(runner, "delete", {"path": "notes.txt"})
    assert confirmer.requests[0].prompt == "Delete notes.txt?"


async def test_a_failing_describe_falls_back_to_the_plain_prompt() -> None:
    confirmer = Confirmer(True)
    runner = runner_for(guarded([], describe=lambda args: args["nope"]), ask_confirm=confirmer)
    assert (await call(runner, "delete", {})).ok
    assert confirmer.requests[0].prompt == "Run delete with {}"


@pytest.mark.parametrize(
    ("confirmer", "reason"),
    [
        (Confirmer(False), "the user declined"),
        (Confirmer("yes"), "the user declined"),  # only True approves
        (Confirmer(delay=None), "no answer within 0.05 s"),
        (Confirmer(error=RuntimeError("socket closed")), "the confirmation could not be asked"),
    ],
)
async def test_refused_timed_out_or_failed_confirmations_do_not_run(
    confirmer: Confirmer, reason: str
) -> None:
    ran: list[dict[str, Any]] = []
    runner = runner_for(guarded(ran), ask_confirm=confirmer, confirm_timeout_s=0.05)
    result = await call(runner, "delete", {"path": "x"})
    assert result == ToolResult(
        "call-1",
        "delete",
        False,
        f"error: not confirmed ({reason}); delete did not run",
        None,
        "not_confirmed",
    )
    assert ran == []
    assert len(confirmer.requests) == 1


async def test_without_a_way_to_ask_a_confirm_tool_is_refused() -> None:
    ran: list[dict[str, Any]] = []
    result = await call(runner_for(guarded(ran)), "delete", {})
    assert result.error == "not_confirmed"
    assert "needs the user's approval and none can be asked for here" in result.content
    assert ran == []


async def test_confirmation_time_does_not_count_against_the_tool_timeout() -> None:
    ran: list[dict[str, Any]] = []
    runner = runner_for(guarded(ran, timeout_s=0.05), ask_confirm=Confirmer(True, delay=0.15))
    assert (await call(runner, "delete", {})).ok


async def test_a_bad_call_is_refused_before_asking() -> None:
    confirmer = Confirmer(True)
    runner = runner_for(guarded([]), ask_confirm=confirmer)
    assert (await call(runner, "delete", {"path": 3})).error == "invalid_arguments"
    assert confirmer.requests == []


# -- the handler failing ------------------------------------------------------------------------------


async def test_an_async_handler_past_its_timeout() -> None:
    async def slow(context: ToolContext, /) -> str:
        await asyncio.sleep(30)
        return "late"

    started = time.monotonic()
    result = await call(runner_for(tool("slow", slow, timeout_s=0.05)), "slow")
    assert time.monotonic() - started < 5
    assert result == ToolResult(
        "call-1", "slow", False, "error: slow did not finish within 0.05 s", None, "timeout"
    )


async def test_a_sync_handler_past_its_timeout() -> None:
    def blocking(context: ToolContext, /) -> str:
        time.sleep(0.3)
        return "late"

    result = await call(runner_for(tool("blocking", blocking, timeout_s=0.05)), "blocking")
    assert (result.ok, result.error) == (False, "timeout")


async def test_a_handler_raising_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(context: ToolContext, /) -> str:
        raise ValueError("boom")

    with caplog.at_level(logging.INFO, logger="aria.tools.runner"):
        result = await call(runner_for(tool("broken", broken)), "broken")
    assert result == ToolResult(
        "call-1", "broken", False, "error: broken failed: ValueError: boom", None, "failed"
    )
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "broken" in errors[0].getMessage()


async def test_an_aria_error_is_shown_as_it_is() -> None:
    async def picky(context: ToolContext, /) -> str:
        raise InvalidInput("unknown time zone 'Mars/Base'")

    result = await call(runner_for(tool("picky", picky)), "picky")
    assert result.content == "error: picky failed: unknown time zone 'Mars/Base'"
    assert result.error == "failed"


async def test_a_handler_raising_timeout_error_itself_is_a_failure_not_a_timeout() -> None:
    async def upstream(context: ToolContext, /) -> str:
        raise TimeoutError("upstream API")

    result = await call(runner_for(tool("upstream", upstream, timeout_s=5)), "upstream")
    assert (result.error, result.content) == ("failed", "error: upstream failed: TimeoutError: upstream API")


async def test_data_that_is_not_json_is_a_failure() -> None:
    runner = runner_for(
        tool("sets", lambda ctx: {1, 2}), tool("nan", lambda ctx: ToolOutput("x", float("nan")))
    )
    for name in ("sets", "nan"):
        result = await call(runner, name)
        assert result.error == "failed"
        assert "not JSON-serialisable" in result.content


async def test_cancelling_the_run_cancels_the_handler() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waits(context: ToolContext, /) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    task = asyncio.create_task(call(runner_for(tool("waits", waits)), "waits"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


# -- run_program --------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting for its reaper is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


async def gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_the_child_sees_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIA_TEST_SECRET", "hunter2")
    result = await run_program(["/usr/bin/env"], timeout_s=10)
    assert result.returncode == 0
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(env) == {"PATH", "LANG", "HOME"}
    assert env["PATH"] == CLEAN_PATH == "/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"
    assert "hunter2" not in result.stdout
    assert not await asyncio.to_thread(Path(env["HOME"]).exists)  # the temporary home is removed afterwards


async def test_a_shell_string_runs_in_the_temporary_home_with_no_stdin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARIA_TEST_SECRET", "hunter2")
    result = await run_program('echo "[$ARIA_TEST_SECRET]"; pwd; echo "$HOME"; cat; echo err >&2; exit 3', 10)
    lines = result.stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == lines[2]
    assert "aria-tool-" in lines[1]
    assert (result.returncode, result.stderr, result.timed_out, result.truncated) == (
        3,
        "err\n",
        False,
        False,
    )
    assert result.summary() == f"exit code 3\nstdout:\n{result.stdout}\nstderr:\nerr\n"


async def test_cwd_can_be_given(tmp_path: Path) -> None:
    result = await run_program(["pwd"], 10, cwd=tmp_path)
    assert result.stdout.strip() == str(await asyncio.to_thread(tmp_path.resolve))


async def test_a_timeout_kills_the_whole_process_group() -> None:
    started = time.monotonic()
    result = await run_program("sleep 30 & echo $!; wait", timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert result.timed_out
    assert result.returncode == -9
    assert result.summary().startswith("timed out and was killed")
    child = int(result.stdout.split()[0])
    assert await gone(child)


async def test_background_children_do_not_outlive_the_program() -> None:
    started = time.monotonic()
    result = await run_program("sleep 30 & echo $!", timeout_s=10)
    assert time.monotonic() - started < 5  # it does not wait for the background child's pipe
    assert (result.returncode, result.timed_out) == (0, False)
    assert await gone(int(result.stdout.split()[0]))


async def test_cancelling_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(run_program(f"sleep 30 & echo $! > {pid_file}; wait", 30))
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(int(pid_file.read_text()))


async def test_output_is_truncated() -> None:
    result = await run_program("head -c 100000 /dev/zero | tr '\\0' a; echo tail >&2", 10, max_output=1000)
    assert result.truncated
    assert result.stdout == "a" * 1000 + "\n[output truncated: 99000 more bytes]"
    assert result.stderr == "tail\n"
    default = await run_program("head -c 20000 /dev/zero | tr '\\0' b", 10)
    assert default.stdout.startswith("b" * 8192 + "\n[output truncated: 11808 more bytes]")


async def test_a_program_that_cannot_start() -> None:
    result = await run_program(["/nonexistent/program", "x"], 10)
    assert result.returncode == 127
    assert result.stderr.startswith("cannot run /nonexistent/program: No such file")
    with pytest.raises(InvalidInput, match="needs a command"):
        await run_program([], 10)
    with pytest.raises(InvalidInput, match="needs a command"):
        await run_program("   ", 10)
