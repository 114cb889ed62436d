"""Answer generation: the model's text for one turn, with the router, tool rounds and the vision retry.

:class:`Answerer` turns a request into the answer's text pieces. What the person should know on the way
(a tool's result, a degraded answer, an error) goes out through ``put``; a model that fails does not end
the turn in silence: what it said stays, the error is reported, and an apology follows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from aria.core.aio import aclose_quietly
from aria.core.history import History
from aria.engines.base import LLM, LLMRequest
from aria.errors import AriaError
from aria.pipeline.config import ContextBuilder, PipelineConfig
from aria.pipeline.outputs import ErrorOut, NoticeOut, Output, StageOut, ToolResultOut
from aria.pipeline.turn import Turn
from aria.types import GeneratedToken, Message, ToolCall, ToolSpec

__all__ = [
    "APOLOGY_MID",
    "APOLOGY_NONE",
    "HAND_OFF",
    "MAX_TOOL_ROUNDS",
    "ROUTER_PROMPT",
    "Answerer",
    "ToolExecutor",
    "ToolOutcome",
    "build_request",
    "router_request",
    "strip_pictures",
]

log = logging.getLogger(__name__)
MAX_TOOL_ROUNDS = 4
#: The router's way of handing a turn to the main model.
HAND_OFF = ToolSpec(
    "hand_off",
    "Hand this turn to the main, stronger model: for questions that need knowledge, reasoning or a "
    "longer answer. Call it instead of answering when unsure.",
)
#: Said after an answer the model could not finish, and instead of one it could not start.
APOLOGY_MID = "Sorry, I lost my train of thought there. Please ask me again."
APOLOGY_NONE = "Sorry, I can't answer right now: the language model is not responding. Please try again."
ROUTER_PROMPT = (
    "You are a fast router. For small talk and simple questions, answer directly in one or two short "
    "sentences. When a tool can answer, call the tool. For anything else, call hand_off."
)


class ToolOutcome(Protocol):
    """What running a tool gave: ``content`` goes back to the model, ``data`` to the client."""

    @property
    def ok(self) -> bool: ...

    @property
    def content(self) -> str: ...

    @property
    def data(self) -> Any: ...


class ToolExecutor(Protocol):
    """Runs the tools the model may call (validation, timeouts and confirmation are its business)."""

    def specs(self) -> tuple[ToolSpec, ...]: ...

    async def run_tool(self, call: ToolCall, turn_id: str) -> ToolOutcome: ...


class Answerer:
    """The answer's text for a turn. ``put(turn, output)`` sends what the person should see besides it;
    ``before_tools(turn)`` is awaited before any tool runs (a held, preemptive answer runs none until the
    turn is confirmed)."""

    def __init__(
        self,
        llm: LLM,
        *,
        put: Callable[[Turn, Output], None],
        router: LLM | None = None,
        tools: ToolExecutor | None = None,
        commands: Callable[[str], str | None] | None = None,
        before_tools: Callable[[Turn], Awaitable[None]] | None = None,
    ) -> None:
        self.llm, self.router, self.tools, self.commands = llm, router, tools, commands
        self._put, self._before_tools = put, before_tools

    @property
    def parts(self) -> tuple[object, ...]:
        """What it answers with: the model, the router, the tools, the commands."""
        return (self.llm, self.router, self.tools, self.commands)

    async def answer(self, turn: Turn, request: LLMRequest) -> AsyncIterator[str]:
        """The model's answer; on failure, what it said, the error, then an apology."""
        turn.waterfall.mark("llm_request")
        try:
            try:
                async for text in self._generate(turn, request):
                    yield text
            except Exception as exc:
                if turn.generated or not any(m.images for m in request.messages):
                    raise
                # Vision down: answer from the words alone, and say the picture was not seen.
                log.warning("turn %s: the model failed with a picture (%s); asking without it", turn.id, exc)
                self._put(
                    turn,
                    NoticeOut(
                        f"I could not look at the picture ({exc}), so this answer is from your words only.",
                        data={"kind": "degraded", "lost": "vision", "turn_id": turn.id},
                    ),
                )
                stripped = replace(request, messages=strip_pictures(request.messages, keep_latest=False))
                async for text in self._generate(turn, stripped):
                    yield text
        except Exception as exc:  # CancelledError is not an Exception: a barge-in passes through
            code = exc.code if isinstance(exc, AriaError) else "llm_failed"
            log.error("turn %s: the model failed: %s", turn.id, exc, exc_info=exc, extra={"turn_id": turn.id})
            turn.error = code
            self._put(turn, ErrorOut(code, str(exc), turn.id, bool(getattr(exc, "retryable", False))))
            if not turn.generated:
                yield APOLOGY_NONE
            else:  # after a cut-off sentence, a pause before the apology
                finished = turn.generated_text.endswith((".", "!", "?"))
                yield (" " if finished else "... ") + APOLOGY_MID

    async def _generate(self, turn: Turn, request: LLMRequest) -> AsyncIterator[str]:
        """The answer's text. When the model calls tools, run them, report each result, feed the
        results back and let the model go on (at most ``MAX_TOOL_ROUNDS`` rounds)."""
        reply = self.commands(turn.user_text) if self.commands is not None else None
        if reply is not None:
            yield reply
            return
        messages: list[Message] = []  # with the tool rounds, when the model calls tools
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            calls: list[ToolCall] = []
            said: list[str] = []
            model, asked = self.llm, replace(request, messages=tuple(messages)) if messages else request
            if round_ == 0 and self.router is not None:
                model, asked = self.router, router_request(asked)
            try:
                chunks = model.stream(asked)
                try:  # (not ``closing_stream``: nothing more than needed before the model is asked)
                    async for chunk in chunks:
                        if isinstance(chunk, GeneratedToken):
                            if chunk.text:
                                said.append(chunk.text)
                                yield chunk.text
                        elif isinstance(chunk, ToolCall):
                            calls.append(chunk)
                finally:
                    await aclose_quietly(chunks)
            except Exception as exc:
                if model is self.llm or said or calls:
                    raise
                # A router that fails before saying anything hands the turn to the main model.
                log.warning("turn %s: the router failed (%s); the main model answers", turn.id, exc)
                calls = [ToolCall("router_failed", HAND_OFF.name, "{}")]
            if round_ == 0 and self.router is not None:
                turn.route = "tool" if calls else "answer"
                if any(call.name == HAND_OFF.name for call in calls):
                    turn.route = "hand_off"
                    calls = [call for call in calls if call.name != HAND_OFF.name]
                self._put(turn, StageOut(turn.id, "routed", {"route": turn.route}))
                if turn.route == "hand_off" and not calls:
                    continue  # the main model answers the same messages
            if not calls:
                return
            if self.tools is None:
                log.warning("the model called %s but this pipeline has no tools", [c.name for c in calls])
                return
            if round_ == MAX_TOOL_ROUNDS:
                break  # the model would never see these results
            if self._before_tools is not None:
                await self._before_tools(turn)
            if not messages:
                messages.extend(request.messages)
            messages.append(Message("assistant", "".join(said), metadata={"tool_calls": tuple(calls)}))
            for call in calls:
                result = await self.tools.run_tool(call, turn.id)
                turn.tool_results.append(result)
                self._put(
                    turn, ToolResultOut(turn.id, call.id, call.name, result.ok, result.content, result.data)
                )
                messages.append(
                    Message("tool", result.content, metadata={"tool_call_id": call.id, "name": call.name})
                )
        log.warning("turn %s stopped after %d rounds of tool calls", turn.id, MAX_TOOL_ROUNDS)


def build_request(
    history: History, config: PipelineConfig, context: ContextBuilder | None, tools: ToolExecutor | None
) -> LLMRequest:
    """The request for the next answer: a token window of the history (``context``; else the last
    ``history_turns`` turns), only the newest picture kept, the tools the model may call."""
    messages, system_prompt = history.window(config.history_turns), config.system_prompt
    if context is not None:
        messages, system_prompt = context.build(history, config.system_prompt)
    if history.has_pictures:
        messages = strip_pictures(messages, keep_latest=True)
    return LLMRequest(
        messages=messages,
        system_prompt=system_prompt,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        stop=config.stop,
        tools=tools.specs() if tools is not None else (),
    )


def router_request(request: LLMRequest) -> LLMRequest:
    """The router sees the conversation and the tools plus ``hand_off``, under its own short brief; its
    direct answers are short."""
    system = ROUTER_PROMPT if not request.system_prompt else f"{request.system_prompt}\n\n{ROUTER_PROMPT}"
    return replace(
        request,
        system_prompt=system,
        tools=(*request.tools, HAND_OFF),
        max_tokens=min(request.max_tokens, 256),
    )


def strip_pictures(messages: tuple[Message, ...], *, keep_latest: bool) -> tuple[Message, ...]:
    """The messages without their pictures (each keeps ``image_count``); with ``keep_latest`` the
    newest message with pictures keeps them: older ones were answered already, and each costs hundreds
    of tokens and an upload on every turn. The text always stays."""
    with_pictures = [i for i, m in enumerate(messages) if m.images]
    if not with_pictures:
        return messages
    kept = with_pictures[-1] if keep_latest else -1
    return tuple(
        replace(m, images=(), metadata={**m.metadata, "image_count": len(m.images)})
        if m.images and i != kept
        else m
        for i, m in enumerate(messages)
    )
