"""Running tool calls safely: :class:`ToolRunner` and :func:`run_program`.

:meth:`ToolRunner.run` never raises for a failing tool: every failure becomes a :class:`ToolResult` with
``ok=False`` whose ``content`` tells the model what went wrong, so it can correct itself or explain. The
steps, in order:

1. the tool must exist and be enabled;
2. the arguments must be a JSON object that satisfies the tool's schema (errors name the argument);
3. a ``confirm`` tool runs only if ``ask_confirm`` answers ``True`` within ``confirm_timeout_s`` (no
   ``ask_confirm``, a refusal, a timeout or an error all mean "not confirmed");
4. the handler runs under the tool's ``timeout_s`` (a plain function runs in a worker thread, which a
   timeout stops waiting for but cannot stop);
5. its return value becomes ``content`` (for the model, truncated to ``max_content_chars``) and ``data``
   (JSON-safe, for the client).

Cancelling :meth:`ToolRunner.run` (the user interrupted) cancels the handler and is not swallowed.

:func:`run_program` is how tools start processes: a clean environment, no stdin, bounded output, and the
whole process group killed when it finishes or runs out of time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aria.errors import AriaError, InvalidInput
from aria.tools.registry import Tool, ToolContext, ToolOutput, ToolRegistry
from aria.tools.schema import json_type, validate
from aria.types import Message, ToolCall

__all__ = [
    "CLEAN_PATH",
    "MAX_OUTPUT_BYTES",
    "AskConfirm",
    "ConfirmRequest",
    "FailureKind",
    "ProgramResult",
    "ToolResult",
    "ToolRunner",
    "run_program",
]

log = logging.getLogger(__name__)

FailureKind = Literal["unknown_tool", "disabled", "invalid_arguments", "not_confirmed", "timeout", "failed"]

#: The only ``PATH`` a tool's process sees.
CLEAN_PATH = "/usr/bin:/bin"
#: How much of each of a process's output streams is kept.
MAX_OUTPUT_BYTES = 8192


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    """What the user is asked to approve (the server sends it in a ``control_signal``)."""

    call_id: str
    tool: str
    arguments: Mapping[str, Any]
    #: One sentence for the user: "Run the shell command: ls -l".
    prompt: str
    #: How long the runner waits for the answer.
    timeout_s: float


AskConfirm = Callable[[ConfirmRequest], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one call: ``content`` goes back to the model, ``data`` (JSON-safe) to the client;
    ``error`` says which step failed when ``ok`` is false."""

    call_id: str
    name: str
    ok: bool
    content: str
    data: Any = None
    error: FailureKind | None = None

    def to_message(self) -> Message:
        """The ``tool`` message answering the call, for the conversation history."""
        return Message("tool", self.content, metadata={"tool_call_id": self.call_id, "tool_name": self.name})


class ToolRunner:
    def __init__(
        self,
        registry: ToolRegistry,
        *,
        ask_confirm: AskConfirm | None = None,
        confirm_timeout_s: float = 30.0,
        max_content_chars: int = 8000,
    ) -> None:
        if confirm_timeout_s <= 0 or max_content_chars < 100:
            raise InvalidInput("confirm_timeout_s must be positive and max_content_chars at least 100")
        self.registry = registry
        self._ask_confirm = ask_confirm
        self._confirm_timeout_s = confirm_timeout_s
        self._max_content_chars = max_content_chars

    async def run(self, call: ToolCall, context: ToolContext) -> ToolResult:
        """Run one call. Never raises for a tool failure (it is in the result); cancellation propagates."""
        if call.name not in self.registry:
            known = ", ".join(self.registry.names(enabled_only=True)) or "none"
            return self._fail(call, "unknown_tool", f"unknown tool {call.name!r} (available tools: {known})")
        tool = self.registry.get(call.name)
        if not tool.enabled:
            return self._fail(call, "disabled", f"the tool {call.name!r} is disabled")
        arguments = _parse_arguments(call.arguments)
        if isinstance(arguments, str):
            return self._fail(call, "invalid_arguments", arguments)
        issues = validate(arguments, tool.parameters)
        if issues:
            detail = "; ".join(str(issue) for issue in issues)
            return self._fail(call, "invalid_arguments", f"invalid arguments for {tool.name}: {detail}")
        if tool.confirm:
            refusal = await self._confirm(tool, call, arguments)
            if refusal is not None:
                return self._fail(
                    call, "not_confirmed", f"not confirmed ({refusal}); {tool.name} did not run"
                )
        return await self._execute(tool, call, arguments, context)

    async def _confirm(self, tool: Tool, call: ToolCall, arguments: dict[str, Any]) -> str | None:
        """``None`` when the user approved, else why not."""
        if self._ask_confirm is None:
            return "this tool needs the user's approval and none can be asked for here"
        prompt = _prompt(tool, arguments)
        request = ConfirmRequest(call.id, tool.name, dict(arguments), prompt, self._confirm_timeout_s)
        try:
            async with asyncio.timeout(self._confirm_timeout_s):
                answer = await self._ask_confirm(request)
        except TimeoutError:
            return f"no answer within {self._confirm_timeout_s:g} s"
        except Exception:
            log.exception("asking to confirm %s (call %s) failed", tool.name, call.id)
            return "the confirmation could not be asked"
        return None if answer is True else "the user declined"

    async def _execute(
        self, tool: Tool, call: ToolCall, arguments: dict[str, Any], context: ToolContext
    ) -> ToolResult:
        started = time.monotonic()
        scope = asyncio.timeout(tool.timeout_s)
        try:
            async with scope:
                value = await _call(tool, arguments, context)
            output = _output(value)
        except TimeoutError as exc:
            if not scope.expired():
                return self._crashed(tool, call, exc)
            log.warning("tool %s (call %s) timed out after %g s", tool.name, call.id, tool.timeout_s)
            return self._fail(call, "timeout", f"{tool.name} did not finish within {tool.timeout_s:g} s")
        except Exception as exc:
            return self._crashed(tool, call, exc)
        log.info("tool %s (call %s) done in %.3f s", tool.name, call.id, time.monotonic() - started)
        return ToolResult(call.id, tool.name, True, self._clip(output.content), output.data)

    def _crashed(self, tool: Tool, call: ToolCall, exc: Exception) -> ToolResult:
        if isinstance(exc, AriaError):
            log.warning("tool %s (call %s) failed: %s", tool.name, call.id, exc)
            message = str(exc)
        else:
            log.error("tool %s (call %s) raised", tool.name, call.id, exc_info=exc)
            message = f"{type(exc).__name__}: {exc}"
        return self._fail(call, "failed", f"{tool.name} failed: {message}")

    def _fail(self, call: ToolCall, kind: FailureKind, message: str) -> ToolResult:
        if kind not in ("failed", "timeout"):
            log.info("tool call %s (%s) refused: %s", call.id, call.name, message)
        return ToolResult(call.id, call.name, False, self._clip(f"error: {message}"), None, kind)

    def _clip(self, content: str) -> str:
        if len(content) <= self._max_content_chars:
            return content
        cut = len(content) - self._max_content_chars
        return f"{content[: self._max_content_chars]}\n[truncated: {cut} more characters]"


def _parse_arguments(text: str) -> dict[str, Any] | str:
    """The arguments object, or the reason it is not one. Empty text means no arguments."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        return f"the arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return f"the arguments must be a JSON object, got {json_type(value)}"
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _prompt(tool: Tool, arguments: Mapping[str, Any]) -> str:
    if tool.describe is not None:
        try:
            return tool.describe(arguments)
        except Exception:
            log.exception("describing a call of %s failed", tool.name)
    return f"Run {tool.name} with {json.dumps(arguments, ensure_ascii=False)}"


async def _call(tool: Tool, arguments: dict[str, Any], context: ToolContext) -> Any:
    if inspect.iscoroutinefunction(tool.handler):
        return await tool.handler(context, **arguments)
    value = await asyncio.to_thread(tool.handler, context, **arguments)
    return await value if inspect.isawaitable(value) else value


def _output(value: Any) -> ToolOutput:
    if isinstance(value, ToolOutput):
        output = value
    elif isinstance(value, str):
        output = ToolOutput(value, value)
    elif value is None:
        output = ToolOutput("done", None)
    else:
        output = ToolOutput(_json(value), value)
    _json(output.data)
    return output


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the tool returned data that is not JSON-serialisable ({exc})") from exc


# -- external programs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgramResult:
    """What a program did. ``returncode`` is negative when a signal ended it (``-9`` after a timeout)."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False

    def summary(self) -> str:
        """A short report for the model."""
        status = "timed out and was killed" if self.timed_out else f"exit code {self.returncode}"
        parts = [status]
        if self.stdout:
            parts.append(f"stdout:\n{self.stdout}")
        if self.stderr:
            parts.append(f"stderr:\n{self.stderr}")
        return "\n".join(parts)


class _Capture:
    """One output stream: its first ``limit`` bytes, and how many there were in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.truncated:
            text += f"\n[output truncated: {self.total - len(self.kept)} more bytes]"
        return text


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the output and says when the program exited and when its pipes closed. (In Python 3.11,
    ``Process.wait()`` waits for the pipes too, which a background child may hold open.)"""

    def __init__(self, limit: int) -> None:
        self.stdout, self.stderr = _Capture(limit), _Capture(limit)
        self.exited = asyncio.Event()
        self.finished = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.stdout if fd == 1 else self.stderr).add(chunk)

    def process_exited(self) -> None:
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finished.set()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_program(
    command: Sequence[str] | str,
    timeout_s: float,
    cwd: str | os.PathLike[str] | None = None,
    *,
    max_output: int = MAX_OUTPUT_BYTES,
) -> ProgramResult:
    """Run ``command`` (an argv list, or a string for ``/bin/sh -c``) and capture its output.

    The process gets a clean environment (only ``PATH`` = :data:`CLEAN_PATH`, ``LANG=C.UTF-8`` and
    ``HOME`` = a fresh temporary folder, also the working directory unless ``cwd`` is given), no stdin,
    and its own process group, which is killed when the program ends (so nothing it left in the
    background survives), when ``timeout_s`` runs out, or when the caller is cancelled. Each output stream
    keeps its first ``max_output`` bytes. A program that cannot be started gives return code 127.
    """
    if isinstance(command, str):
        argv = ["/bin/sh", "-c", command] if command.strip() else []
    else:
        argv = [os.fspath(arg) for arg in command]
    if not argv or not argv[0]:
        raise InvalidInput("run_program needs a command")
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="aria-tool-") as home:
        env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": home}
        try:
            transport, collector = await loop.subprocess_exec(
                lambda: _Collector(max_output),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=home if cwd is None else cwd,
                start_new_session=True,
            )
        except OSError as exc:
            return ProgramResult(127, "", f"cannot run {argv[0]}: {exc.strerror or exc}")
        pgid = transport.get_pid()
        timed_out = False
        try:
            async with asyncio.timeout(timeout_s):
                await collector.exited.wait()
                _kill_group(pgid)  # what it left in the background would hold the pipes open
                await collector.finished.wait()
        except TimeoutError:
            timed_out = not collector.exited.is_set()
        finally:
            _kill_group(pgid)
            transport.close()
            await collector.finished.wait()
        code = transport.get_returncode()
        assert code is not None  # it has exited: ``finished`` is set
        return ProgramResult(
            code,
            collector.stdout.text(),
            collector.stderr.text(),
            timed_out=timed_out,
            truncated=collector.stdout.truncated or collector.stderr.truncated,
        )
