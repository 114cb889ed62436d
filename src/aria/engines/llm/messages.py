"""The chat wire formats shared by the language model adapters, as pure functions (no I/O).

Requests go out as chat messages:

* :func:`openai_messages` / :func:`openai_tools`: the OpenAI chat completions format (also what vLLM,
  llama.cpp's server, LM Studio and llama-cpp-python take); images become ``image_url`` content parts
  holding a ``data:`` URL;
* :func:`ollama_messages`: Ollama's native ``/api/chat`` format; images become base64 strings in the
  message's ``images`` list.

The request's ``system_prompt`` comes first, then the history in order. Tool results are ``tool`` messages
whose ``metadata["tool_call_id"]`` names the call they answer; an assistant message that called tools
carries them in ``metadata["tool_calls"]`` (:class:`~aria.types.ToolCall` objects or OpenAI-style dicts).

Answers come back as OpenAI-style streamed chunks: :class:`ChunkAssembler` turns each chunk's content delta
into a :class:`~aria.types.GeneratedToken` and assembles the pieces of streamed tool calls (by index) into
complete :class:`~aria.types.ToolCall` objects once the model has finished.

Image arrays are encoded with Pillow, imported only when an array image is actually sent (JPEG, or PNG for
images with an alpha channel); encoded JPEG/PNG frames are sent as they are.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aria.core.aio import closing_stream
from aria.engines.base import LLMChunk, LLMRequest
from aria.engines.http import error_detail  # re-exported: it used to live here
from aria.errors import EngineError, EngineUnavailable, InvalidInput
from aria.types import GeneratedToken, ImageFrame, Message, ToolCall, ToolSpec

__all__ = [
    "ChunkAssembler",
    "GenerationStats",
    "complete_text",
    "encode_image",
    "error_detail",
    "image_data_url",
    "ollama_messages",
    "openai_messages",
    "openai_request",
    "openai_tools",
]

log = logging.getLogger(__name__)

#: JPEG quality for image arrays (a good size / detail trade-off for vision models).
_JPEG_QUALITY = 90


@dataclass(slots=True)
class GenerationStats:
    """Timing of one generation, for metrics and logs (monotonic seconds)."""

    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    finished_at: float | None = None
    #: Tokens generated: the server's count where it reports one, else the content deltas received.
    tokens: int = 0
    #: Decoding speed reported by the server (Ollama's eval_count / eval_duration), if any.
    server_tokens_per_s: float | None = None

    def token(self) -> None:
        self.tokens += 1
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    @property
    def time_to_first_token_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def tokens_per_s(self) -> float | None:
        """The server's figure when given, else measured from the first token to the end."""
        if self.server_tokens_per_s is not None:
            return self.server_tokens_per_s
        if self.first_token_at is None or self.finished_at is None or self.tokens < 2:
            return None
        elapsed = self.finished_at - self.first_token_at
        return (self.tokens - 1) / elapsed if elapsed > 0 else None


# -- images -------------------------------------------------------------------------------------------


def encode_image(frame: ImageFrame) -> tuple[str, bytes]:
    """``(mime type, encoded bytes)`` of a frame: encoded frames as they are, arrays as JPEG (PNG when
    they have an alpha channel). Blocking CPU work for arrays: call it off the event loop."""
    if isinstance(frame.data, bytes):
        return ("image/png" if frame.format == "PNG" else "image/jpeg"), frame.data
    try:
        from PIL import Image
    except ImportError as exc:
        raise EngineUnavailable(
            "sending image arrays to a language model needs Pillow; pip install 'aria-assistant[vision]'"
        ) from exc
    pixels = frame.data
    if frame.format == "BGR":
        pixels = np.ascontiguousarray(pixels[..., ::-1])
    image = Image.fromarray(pixels)  # L, RGB or RGBA from the array's shape
    buffer = io.BytesIO()
    if frame.format == "RGBA":
        image.save(buffer, format="PNG")
        return "image/png", buffer.getvalue()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return "image/jpeg", buffer.getvalue()


def image_data_url(frame: ImageFrame) -> str:
    """``data:image/jpeg;base64,...`` for an ``image_url`` content part."""
    mime, payload = encode_image(frame)
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


# -- requests -----------------------------------------------------------------------------------------


def openai_tools(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """Tools in the OpenAI ``tools`` format (Ollama takes the same)."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]


def openai_request(request: LLMRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A streamed OpenAI chat completions request for ``request`` (no ``model``), ``messages`` being its
    :func:`openai_messages` (encoded by the caller, which may keep that work off the event loop)."""
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = openai_tools(request.tools)
    return body


def _history(request: LLMRequest) -> list[Message]:
    history = list(request.messages)
    if request.system_prompt:
        history.insert(0, Message("system", request.system_prompt))
    return history


def _tool_calls_of(message: Message) -> list[dict[str, Any]]:
    calls: Sequence[Any] = message.metadata.get("tool_calls") or ()
    out: list[dict[str, Any]] = []
    for call in calls:
        if isinstance(call, ToolCall):
            out.append(
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            )
        elif isinstance(call, Mapping):
            out.append(dict(call))
        else:
            raise InvalidInput(f"tool_calls metadata must hold ToolCall objects or dicts, got {type(call)}")
    return out


def openai_messages(request: LLMRequest) -> list[dict[str, Any]]:
    """The request as OpenAI chat messages. Encodes image arrays: call it off the event loop when the
    request holds images."""
    out: list[dict[str, Any]] = []
    for message in _history(request):
        entry: dict[str, Any] = {"role": message.role}
        if message.images:
            parts: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            parts += [
                {"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in message.images
            ]
            entry["content"] = parts
        else:
            entry["content"] = message.content
        if message.role == "tool":
            entry["tool_call_id"] = str(message.metadata.get("tool_call_id", ""))
        calls = _tool_calls_of(message) if message.role == "assistant" else []
        if calls:
            entry["tool_calls"] = calls
            if not message.content and not message.images:
                entry["content"] = None
        out.append(entry)
    return out


def _arguments_object(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"tool call arguments are not valid JSON: {arguments[:80]!r}") from exc


def ollama_messages(request: LLMRequest) -> list[dict[str, Any]]:
    """The request as Ollama ``/api/chat`` messages (images as base64 strings, tool call arguments as
    objects). Encodes image arrays: call it off the event loop when the request holds images."""
    out: list[dict[str, Any]] = []
    for message in _history(request):
        entry: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.images:
            entry["images"] = [
                base64.b64encode(encode_image(image)[1]).decode("ascii") for image in message.images
            ]
        if message.role == "tool" and message.metadata.get("tool_name"):
            entry["tool_name"] = str(message.metadata["tool_name"])
        if message.role == "assistant":
            calls = _tool_calls_of(message)
            if calls:
                entry["tool_calls"] = [
                    {
                        "function": {
                            "name": call.get("function", {}).get("name", ""),
                            "arguments": _arguments_object(call.get("function", {}).get("arguments", {})),
                        }
                    }
                    for call in calls
                ]
        out.append(entry)
    return out


# -- responses ----------------------------------------------------------------------------------------


def _logprob(choice: Mapping[str, Any]) -> float | None:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        return None
    content = logprobs.get("content")
    if isinstance(content, list):
        values = [item["logprob"] for item in content if isinstance(item, Mapping) and "logprob" in item]
    else:  # llama-cpp-python's completion-style logprobs
        values = [v for v in logprobs.get("token_logprobs") or () if v is not None]
    return float(sum(values)) if values else None


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChunkAssembler:
    """Turns OpenAI-style streamed chat chunks into tokens and complete tool calls (sans I/O)."""

    def __init__(self, engine: str = "") -> None:
        self.engine = engine
        self.finish_reason: str | None = None
        self._calls: dict[int, _PartialCall] = {}

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def feed(self, chunk: Mapping[str, Any]) -> list[LLMChunk]:
        """What one chunk adds: content tokens, and every tool call once a finish reason arrives."""
        if chunk.get("error") is not None:
            raise EngineError(f"server error mid-stream: {error_detail(chunk)}", engine=self.engine)
        out: list[LLMChunk] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                out.append(GeneratedToken(text=str(content), logprob=_logprob(choice)))
            for piece in delta.get("tool_calls") or ():
                self._add_call_piece(piece)
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = str(reason)
                if reason == "length" and self._calls:
                    raise EngineError(
                        "the answer reached max_tokens in the middle of a tool call; raise max_tokens",
                        engine=self.engine,
                        retryable=False,
                    )
                out.extend(self.finish())
        return out

    def finish(self) -> list[ToolCall]:
        """The tool calls assembled so far, in index order (then forgotten)."""
        calls: list[ToolCall] = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise EngineError(f"the model streamed tool call {index} without a name", engine=self.engine)
            calls.append(ToolCall(partial.id or f"call_{index}", partial.name, "".join(partial.arguments)))
        self._calls.clear()
        return calls

    def _add_call_piece(self, piece: Mapping[str, Any]) -> None:
        index = int(piece.get("index", len(self._calls)))
        partial = self._calls.setdefault(index, _PartialCall())
        if piece.get("id"):
            partial.id = str(piece["id"])
        function = piece.get("function") or {}
        if function.get("name") and not partial.name:  # some servers repeat the name in every piece
            partial.name = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            partial.arguments.append(arguments)
        elif arguments is not None:  # some servers send the arguments as an object in one piece
            partial.arguments.append(json.dumps(arguments))


async def complete_text(chunks: AsyncIterator[LLMChunk], engine: str) -> str:
    """The whole text of an answer stream, for ``complete()`` (tool calls, if any, are logged and left
    out). The stream is closed when it ends, or when this is cancelled."""
    parts: list[str] = []
    async with closing_stream(chunks) as items:
        async for item in items:
            if isinstance(item, GeneratedToken):
                parts.append(item.text)
            else:
                log.info("%s: complete() ignores tool call %s", engine, item.name)
    return "".join(parts)
