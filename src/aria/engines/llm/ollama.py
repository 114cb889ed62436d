"""``llm:ollama``: a local Ollama server through its native API.

``POST {base_url}/api/chat`` streams newline-delimited JSON: one ``{"message": {"content": ...},
"done": false}`` line per piece of the answer, then a final ``"done": true`` line with ``eval_count`` and
``eval_duration`` (recorded as the decoding speed in :attr:`OllamaLLM.last_stats`). Images travel as base64
strings in the message's ``images`` list, sampling settings in ``options`` (``temperature``, ``num_predict``,
``stop``), tools in the OpenAI format; tool calls come back complete in a message's ``tool_calls``.

Errors are translated as for ``llm:openai`` (see :class:`~aria.engines.http.HTTPClient`); a model that is
not pulled (HTTP 404) becomes ``EngineUnavailable`` saying which ``ollama pull`` to run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import Field, field_validator

from aria.core.aio import closing_stream
from aria.engines.base import (
    Availability,
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
    LLMChunk,
    LLMRequest,
)
from aria.engines.http import HTTPClient, HttpURL, error_detail, httpx_missing, probe_json
from aria.engines.llm.messages import GenerationStats, complete_text, ollama_messages, openai_tools
from aria.errors import EngineError, EngineUnavailable
from aria.types import GeneratedToken, ToolCall

__all__ = ["OllamaLLM", "has_model"]

log = logging.getLogger(__name__)


def has_model(names: Iterable[str], model: str) -> bool:
    """Whether Ollama's model list holds ``model`` (``llama3.2`` means ``llama3.2:latest``)."""
    wanted = {model} if ":" in model else {model, f"{model}:latest"}
    return any(name in wanted for name in names)


def _not_pulled(model: str, engine: str) -> EngineUnavailable:
    return EngineUnavailable(f"model {model} is not pulled; run `ollama pull {model}`", engine=engine)


def _tool_call(call: dict[str, Any], number: int) -> ToolCall:
    function = call.get("function") or {}
    name = function.get("name")
    if not name:
        raise EngineError("Ollama sent a tool call without a function name", engine="llm:ollama")
    arguments = function.get("arguments", {})
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(str(call.get("id") or f"call_{number}"), str(name), text)


def _tag_name(tag: dict[str, Any]) -> str:
    """A pulled model's name in ``/api/tags``."""
    return str(tag.get("name") or tag.get("model"))


class OllamaLLM:
    """Streaming chat with a model served by Ollama; see the module docstring."""

    kind: ClassVar[EngineKind] = "llm"
    name: str = "ollama"
    capabilities: Capabilities = Capabilities(streaming=True, vision=True, tools=True, local=True)

    class Config(EngineConfig):
        #: Ollama's root URL (not its ``/v1`` OpenAI-compatible API: use ``llm:openai`` for that).
        base_url: HttpURL = "http://127.0.0.1:11434"
        model: str = "llama3.2"
        #: How long Ollama keeps the model loaded after a request (``"5m"``, ``-1`` forever, ``0`` unload).
        keep_alive: str | int | None = None
        #: Longest wait for the first byte and between two lines of an answer (loading a model counts).
        timeout_s: float = Field(default=120.0, gt=0)
        connect_timeout_s: float = Field(default=3.0, gt=0)
        #: Extra model options (``num_ctx``, ``top_p``, ``seed``, ...); they win over Aria's.
        options: dict[str, Any] = Field(default_factory=dict)
        #: Load the model into Ollama's memory at start (a mode switch then waits for the load, and
        #: says so, instead of the first answer taking the time).
        preload: bool = True
        #: Ask Ollama to unload the model when the engine closes (the residency manager unloading it
        #: for another mode's model frees the GPU memory, not only Aria's handle on it).
        unload_on_close: bool = True

        @field_validator("base_url")
        @classmethod
        def _root_url(cls, value: str) -> str:
            if value.endswith("/v1"):
                raise ValueError("give Ollama's root URL (without /v1), or use the openai backend for /v1")
            return value

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.engine = f"{self.kind}:{self.name}"
        self._http: HTTPClient | None = None
        self._loaded = False
        #: Timing of the latest generation, with Ollama's own decoding speed.
        self.last_stats: GenerationStats | None = None

    def _client(self) -> HTTPClient:
        if self._http is None:
            self._http = HTTPClient.open(self.engine, self.config, on_status=self._status_error)
        return self._http

    def _status_error(self, status: int, detail: str) -> EngineError | None:
        if status == 404 and ("not found" in detail or "pull" in detail):
            return _not_pulled(self.config.model, self.engine)
        return None

    async def start(self) -> None:
        """Check that Ollama answers and has the model, take its size as the memory estimate, and load
        it (``preload``)."""
        tag = next((m for m in await self._tags() if has_model([_tag_name(m)], self.config.model)), None)
        if tag is None:
            raise _not_pulled(self.config.model, self.engine)
        size = tag.get("size")
        if isinstance(size, int) and size > 0:
            self.capabilities = replace(type(self).capabilities, memory_mb=round(size / 2**20))
        if self.config.preload:
            body: dict[str, Any] = {"model": self.config.model, "stream": False}
            if self.config.keep_alive is not None:
                body["keep_alive"] = self.config.keep_alive
            await self._client().post(f"{self.config.base_url}/api/generate", json=body)
        self._loaded = True

    async def aclose(self) -> None:
        if self._http is None:
            return
        if self._loaded and self.config.unload_on_close:
            self._loaded = False
            body = {"model": self.config.model, "keep_alive": 0, "stream": False}
            try:
                await self._http.post(f"{self.config.base_url}/api/generate", json=body, deadline_s=2.0)
            except EngineError as exc:
                log.info("%s: could not ask Ollama to unload %s: %s", self.engine, self.config.model, exc)
        http, self._http = self._http, None
        await http.aclose()

    async def _tags(self) -> list[dict[str, Any]]:
        payload = await self._client().get_json(f"{self.config.base_url}/api/tags")
        models = payload.get("models") or () if isinstance(payload, dict) else ()
        return [m for m in models if isinstance(m, dict)]

    async def health(self) -> EngineHealth:
        try:
            payload = await self._client().get_json(f"{self.config.base_url}/api/tags", timeout_s=0.5)
        except EngineError as exc:
            return EngineHealth(ok=False, detail=str(exc))
        names = [str(m.get("name")) for m in payload.get("models") or ()] if isinstance(payload, dict) else []
        if not has_model(names, self.config.model):
            return EngineHealth(ok=False, detail=str(_not_pulled(self.config.model, self.engine)))
        return EngineHealth(ok=True, detail=f"Ollama at {self.config.base_url}, model {self.config.model}")

    async def list_models(self) -> list[str]:
        """Names of the pulled models, from ``GET /api/tags``."""
        return [_tag_name(m) for m in await self._tags()]

    @classmethod
    def check(cls, config: Config) -> Availability:
        if (missing := httpx_missing()) is not None:
            return missing
        try:
            payload = probe_json(f"{config.base_url}/api/tags")
        except EngineError as exc:
            return Availability(
                False,
                f"Ollama is not running at {config.base_url}: {exc}",
                "install Ollama from https://ollama.com and run `ollama serve`",
            )
        names = [str(m.get("name")) for m in payload.get("models") or ()] if isinstance(payload, dict) else []
        if not has_model(names, config.model):
            return Availability(
                False, f"model {config.model} is not pulled in Ollama", f"ollama pull {config.model}"
            )
        return Availability(True, f"Ollama at {config.base_url} with {config.model}")

    async def _body(self, request: LLMRequest) -> dict[str, Any]:
        if request.images:  # encoding image arrays is CPU work: keep it off the event loop
            messages = await asyncio.to_thread(ollama_messages, request)
        else:
            messages = ollama_messages(request)
        options: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
        if request.stop:
            options["stop"] = list(request.stop)
        options.update(self.config.options)
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "options": options,
        }
        if request.tools:
            body["tools"] = openai_tools(request.tools)
        if self.config.keep_alive is not None:
            body["keep_alive"] = self.config.keep_alive
        return body

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        """Tokens as they arrive; tool calls as Ollama sends them (each one complete)."""
        http = self._client()
        url = f"{self.config.base_url}/api/chat"
        body = await self._body(request)
        stats = self.last_stats = GenerationStats()
        calls = 0
        done = False
        async with closing_stream(http.post_lines(url, body)) as lines:
            async for line in lines:
                if not line.strip():
                    continue
                try:
                    chunk = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EngineError(
                        f"{url} sent a line that is not JSON: {line[:80]!r}", engine=self.engine
                    ) from exc
                if chunk.get("error"):
                    raise EngineError(f"Ollama failed mid-answer: {error_detail(chunk)}", engine=self.engine)
                message = chunk.get("message") or {}
                if message.get("content"):
                    stats.token()
                    yield GeneratedToken(text=str(message["content"]))
                for call in message.get("tool_calls") or ():
                    yield _tool_call(call, calls)
                    calls += 1
                if chunk.get("done"):
                    done = True
                    self._record(stats, chunk)
                    await http.drain(lines)
                    break
        stats.finished_at = time.monotonic()
        if not done:
            raise EngineError(f"stream ended early: {url} closed the answer before done", engine=self.engine)

    def _record(self, stats: GenerationStats, final: dict[str, Any]) -> None:
        count, duration_ns = final.get("eval_count"), final.get("eval_duration")
        if isinstance(count, int) and isinstance(duration_ns, int | float) and duration_ns > 0:
            stats.tokens = count
            stats.server_tokens_per_s = count / (duration_ns / 1e9)
        log.debug(
            "%s: %s tokens at %s tokens/s, first after %s s (%s)",
            self.engine,
            stats.tokens,
            stats.server_tokens_per_s,
            stats.time_to_first_token_s,
            final.get("done_reason"),
        )

    async def complete(self, request: LLMRequest) -> str:
        """The whole answer's text (tool calls, if any, are logged and left out)."""
        return await complete_text(self.stream(request), self.engine)
