r"""The chat side of ``llm:llamacpp`` as pure code (no llama.cpp): prompts from a GGUF's chat template, and
answers parsed back into spoken text and tool calls.

* :func:`render_prompt` renders a request with the model's Jinja chat template (``tokenizer.chat_template``
  in the GGUF metadata; :data:`CHATML_TEMPLATE` when the file has none) the way Hugging Face's
  ``apply_chat_template`` does: ``messages``, ``tools`` (OpenAI format), ``add_generation_prompt``,
  ``bos_token``/``eos_token`` and ``enable_thinking``. Tools go into the template; a template that ignores
  them gets Hermes-style instructions in the system prompt instead.
* Thinking is off for voice: for a model that thinks (Qwen3: its template knows ``enable_thinking``, or its
  name says so) the system prompt gets ``/no_think`` and the template ``enable_thinking=False``.
* :class:`ReplyParser` turns the streamed answer into text to speak and :class:`~aria.types.ToolCall`\\ s:
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Qwen2.5/Qwen3, Hermes) become calls,
  ``<think>...</think>`` is dropped, and a tag split across tokens is held back until it is whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aria.engines.base import LLMChunk, LLMRequest
from aria.engines.llm.messages import openai_messages, openai_tools
from aria.errors import EngineError
from aria.types import GeneratedToken, ToolCall, ToolSpec

__all__ = [
    "CHATML_TEMPLATE",
    "NO_THINK",
    "ReplyParser",
    "render_prompt",
    "template_messages",
    "thinks",
    "tool_instructions",
]

log = logging.getLogger(__name__)

#: Appended to the system prompt of a model that thinks unless told not to (Qwen3's soft switch).
NO_THINK = "/no_think"

#: ChatML with Qwen2.5's tool format: the template used when a GGUF has none (and the test model's).
CHATML_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
        + "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        + "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first)
          or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != "tool" %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != "tool" %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def thinks(template: str, model_name: str = "") -> bool:
    """Whether the model reasons in ``<think>`` unless told not to (Qwen3 and its kin)."""
    return "enable_thinking" in template or "qwen3" in model_name.lower().replace("-", "").replace(" ", "")


def tool_instructions(tools: Sequence[ToolSpec]) -> str:
    """Hermes-style tool instructions for the system prompt of a template that does not render tools."""
    listed = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in openai_tools(tools))
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{listed}\n"
        "</tools>\n\nFor each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call>"
    )


def template_messages(request: LLMRequest, *, no_think: bool = False, extra_system: str = "") -> list[Any]:
    """The request as chat-template messages: OpenAI-style, text only, tool call arguments as objects
    (what Hugging Face templates expect), ``/no_think`` and ``extra_system`` added to the system prompt."""
    messages = openai_messages(request)
    system = "\n\n".join(part for part in (extra_system, NO_THINK if no_think else "") if part)
    if system:
        if messages and messages[0]["role"] == "system":
            first = messages[0]["content"] or ""
            messages[0]["content"] = f"{first}\n\n{system}" if first else system
        else:
            messages.insert(0, {"role": "system", "content": system})
    for message in messages:
        if isinstance(message.get("content"), list):  # images: the text parts only (no projector here)
            message["content"] = "".join(
                p.get("text", "") for p in message["content"] if p.get("type") == "text"
            )
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                with contextlib.suppress(json.JSONDecodeError):  # else rendered as the text it is
                    function["arguments"] = json.loads(arguments) if arguments.strip() else {}
    return messages


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def render_prompt(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[ToolSpec] = (),
    bos_token: str = "",
    eos_token: str = "",
    enable_thinking: bool = False,
) -> str:
    """The prompt text for ``messages`` (see :func:`template_messages`), ending with the assistant's
    generation prompt. Raises :class:`~aria.errors.EngineError` for a template that does not render."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    def tojson(value: Any, indent: int | None = None, **_: Any) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.filters["tojson"] = tojson
    environment.globals.update(raise_exception=raise_exception, strftime_now=_strftime_now)
    try:
        return environment.from_string(template).render(
            messages=list(messages),
            tools=openai_tools(tools) or None,
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
            enable_thinking=enable_thinking,
        )
    except jinja2.TemplateError as exc:
        raise EngineError(f"the model's chat template failed: {exc}", retryable=False) from exc


_THINK, _END_THINK = "<think>", "</think>"
_CALL, _END_CALL = "<tool_call>", "</tool_call>"


class ReplyParser:
    """Streamed answer text in, text to speak and tool calls out (sans I/O; see the module docstring).

    :meth:`feed` returns the tokens that are safe to speak now; :meth:`finish` the held-back rest and every
    tool call, in order. ``in_think``: the prompt already opened a ``<think>`` block."""

    def __init__(self, engine: str = "", *, in_think: bool = False) -> None:
        self.engine = engine
        self._buffer = ""
        self._mode = _THINK if in_think else ""
        self._calls: list[ToolCall] = []
        self._after_think = False

    def feed(self, text: str) -> list[GeneratedToken]:
        self._buffer += text
        out: list[str] = []
        while True:
            if self._mode == "":
                starts = [(i, tag) for tag in (_THINK, _CALL) if (i := self._buffer.find(tag)) >= 0]
                if not starts:
                    keep = _partial_tag(self._buffer, (_THINK, _CALL))
                    out.append(self._buffer[: len(self._buffer) - keep])
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    break
                index, tag = min(starts)
                out.append(self._buffer[:index])
                self._buffer = self._buffer[index + len(tag) :]
                self._mode = tag
                continue
            end = _END_THINK if self._mode == _THINK else _END_CALL
            index = self._buffer.find(end)
            if index < 0:
                break
            if self._mode == _CALL:
                self._calls.append(self._call(self._buffer[:index]))
            else:
                self._after_think = True
            self._buffer = self._buffer[index + len(end) :]
            self._mode = ""
        return self._tokens(out)

    def finish(self) -> list[LLMChunk]:
        """The rest of the text, then the tool calls. A tool call cut off by ``max_tokens`` is an error."""
        rest: list[LLMChunk] = []
        if self._mode == "":
            rest.extend(self._tokens([self._buffer]))
        elif self._mode == _CALL:
            raise EngineError(
                "the answer ended in the middle of a tool call; raise max_tokens",
                engine=self.engine,
                retryable=False,
            )
        self._buffer = ""
        calls, self._calls = self._calls, []
        return [*rest, *calls]

    def _tokens(self, pieces: list[str]) -> list[GeneratedToken]:
        text = "".join(pieces)
        if self._after_think and text:
            text = text.lstrip()  # the blank lines after </think>
            self._after_think = not text
        return [GeneratedToken(text=text)] if text else []

    def _call(self, body: str) -> ToolCall:
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:
            raise EngineError(
                f"the model wrote a tool call that is not JSON: {body.strip()[:120]!r}", engine=self.engine
            ) from exc
        if not isinstance(parsed, Mapping) or not isinstance(parsed.get("name"), str):
            raise EngineError(
                f"the model wrote a tool call without a name: {body.strip()[:120]!r}", engine=self.engine
            )
        arguments = parsed.get("arguments", parsed.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        return ToolCall(f"call_{len(self._calls)}", parsed["name"], text)


def _partial_tag(text: str, tags: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could be the start of one of ``tags``."""
    for size in range(min(len(text), max(map(len, tags)) - 1), 0, -1):
        if any(tag.startswith(text[-size:]) for tag in tags):
            return size
    return 0
