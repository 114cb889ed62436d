"""The tools a conversation's model may call: the configured ones (run here, against the session's
memory, those flagged ``confirm`` only after the person says yes) and tools a client defined (run by the
client, whose output comes back through the conversation)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aria.errors import AriaError
from aria.server.conversation.events import ConfirmOut, Event, ToolCallOut
from aria.session.store import Session
from aria.tools.builtin import builtin_tools
from aria.tools.registry import ToolContext, ToolRegistry
from aria.tools.runner import ConfirmRequest, ToolResult, ToolRunner
from aria.types import ToolCall, ToolSpec

__all__ = ["ClientTools", "Confirmations", "Refused", "SessionTools", "ToolOutput", "Toolbox"]

Emit = Callable[[Event], None]


class Refused(AriaError):
    """A request the conversation turns down, with the wire code that says why (``unknown_action``,
    ``unknown_mode``, ``engine_unavailable``, ``bad_image``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Confirmations:
    """Tool calls waiting for the person's yes or no, by id (``confirm_<call id>``)."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._waiting: dict[str, asyncio.Future[bool]] = {}

    async def ask(self, request: ConfirmRequest) -> bool:
        """Emit a :class:`ConfirmOut` and wait for :meth:`answer`; no answer in time means no."""
        signal_id = f"confirm_{request.call_id}"
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[signal_id] = waiter
        try:
            self._emit(
                ConfirmOut(
                    signal_id, request.tool, dict(request.arguments), request.prompt, request.timeout_s
                )
            )
            return await asyncio.wait_for(waiter, request.timeout_s)
        except TimeoutError:
            return False
        finally:
            self._waiting.pop(signal_id, None)

    def answer(self, signal_id: str, accept: bool) -> None:
        waiter = self._waiting.get(signal_id)
        if waiter is None or waiter.done():
            raise Refused("unknown_action", f"no pending action {signal_id!r} to confirm")
        waiter.set_result(bool(accept))


class SessionTools:
    """The configured tools (``llm.tools``), run against the session's memory; tools flagged ``confirm``
    ask the person first (:class:`Confirmations`)."""

    def __init__(
        self,
        names: Iterable[str],
        session: Session,
        confirmations: Confirmations,
        *,
        runner: Callable[..., ToolRunner] = ToolRunner,
    ) -> None:
        self.session = session
        wanted = set(names)
        registry = ToolRegistry(builtin_tools(), discover=True)
        for tool in registry.tools():
            if tool.name in wanted and not tool.enabled:
                registry.set_enabled(tool.name)
            elif tool.name not in wanted and tool.enabled:
                registry.set_enabled(tool.name, False)
        self.runner = runner(registry, ask_confirm=confirmations.ask)

    def specs(self) -> tuple[ToolSpec, ...]:
        return self.runner.registry.specs()

    async def run_tool(self, call: ToolCall, turn_id: str) -> ToolResult:
        context = ToolContext(session_id=self.session.id, turn_id=turn_id, memory=self.session.memory)
        return await self.runner.run(call, context)


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A client's output for one call (``ok`` false when the client says it failed)."""

    call_id: str
    name: str
    content: str
    ok: bool = True
    data: Any = None


class ClientTools:
    """Tools a client defined: a call is emitted as :class:`ToolCallOut` and the answer waits for
    :meth:`deliver` with the client's output (``timeout_s``: then the call fails, and the model is told)."""

    def __init__(self, specs: Iterable[ToolSpec], emit: Emit, *, timeout_s: float = 120.0) -> None:
        self._specs = tuple(specs)
        self._emit = emit
        self.timeout_s = timeout_s
        self._waiting: dict[str, asyncio.Future[ToolOutput]] = {}

    def specs(self) -> tuple[ToolSpec, ...]:
        return self._specs

    def set_specs(self, specs: Iterable[ToolSpec]) -> None:
        """The client's tools from now on (calls already waiting still take their output)."""
        self._specs = tuple(specs)

    def names(self) -> set[str]:
        return {spec.name for spec in self._specs}

    def pending(self) -> list[str]:
        """The call ids waiting for the client's output."""
        return [call_id for call_id, waiter in self._waiting.items() if not waiter.done()]

    async def run_tool(self, call: ToolCall, turn_id: str) -> ToolOutput:
        waiter: asyncio.Future[ToolOutput] = asyncio.get_running_loop().create_future()
        self._waiting[call.id] = waiter
        try:
            self._emit(ToolCallOut(turn_id, call.id, call.name, call.arguments))
            return await asyncio.wait_for(waiter, self.timeout_s)
        except TimeoutError:
            content = f"the client did not return the output of {call.name} within {self.timeout_s:g} s"
            return ToolOutput(call.id, call.name, content, ok=False)
        finally:
            self._waiting.pop(call.id, None)

    def deliver(self, call_id: str, content: str, *, ok: bool = True, data: Any = None) -> bool:
        """The client's output for ``call_id``; False when no call waits for it (it came too late, or the
        answer was interrupted): the caller may keep it as a history item instead."""
        waiter = self._waiting.get(call_id)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(ToolOutput(call_id, "", content, ok, data))
        return True


class Toolbox:
    """The session's tools and the client's, as one executor (a client tool of the same name wins)."""

    def __init__(self, session: SessionTools | None, client: ClientTools | None) -> None:
        self.session, self.client = session, client

    def specs(self) -> tuple[ToolSpec, ...]:
        client = self.client.specs() if self.client is not None else ()
        taken = {spec.name for spec in client}
        own = self.session.specs() if self.session is not None else ()
        return (*client, *(spec for spec in own if spec.name not in taken))

    async def run_tool(self, call: ToolCall, turn_id: str) -> ToolResult | ToolOutput:
        if self.client is not None and call.name in self.client.names():
            return await self.client.run_tool(call, turn_id)
        if self.session is None:
            return ToolOutput(call.id, call.name, f"unknown tool {call.name!r}", ok=False)
        return await self.session.run_tool(call, turn_id)
