"""``llm:openai``: any OpenAI-compatible chat completions server (vLLM, llama.cpp's ``llama-server``,
LM Studio, Ollama's ``/v1``, hosted APIs), streamed over Server-Sent Events with httpx.

``POST {base_url}/chat/completions`` with ``stream: true``; each ``data: {...}`` event's content delta
becomes a :class:`~aria.types.GeneratedToken` (with its log-probability when the server sends one), streamed
tool call pieces are assembled into :class:`~aria.types.ToolCall` objects (see
:mod:`aria.engines.llm.messages`), and ``data: [DONE]`` ends the answer.

HTTP goes through :class:`~aria.engines.http.HTTPClient` (also importable from here as ``ChatHTTP``),
which translates transport failures (its module docstring has the table): a refused connection is
``EngineUnavailable`` (retryable) naming the URL, an HTTP error status an ``EngineError`` with the server's
message (retryable for 5xx, 408, 409, 425 and 429), no data for ``timeout_s`` ``EngineTimeout``, and a
connection closed before the answer finished ``EngineError("stream ended early")`` (retryable), after the
tokens that did arrive.

The API key is sent as ``Authorization: Bearer ...`` and never logged or put in an error message.
httpx is imported only when a client is made, so this module imports without the ``llm`` extra.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from pydantic import Field, SecretStr

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
from aria.engines.http import (
    HTTPClient,
    HttpURL,
    bearer_headers,
    httpx_missing,
    is_loopback,
    probe_json,
)
from aria.engines.http import StatusHandler as StatusHandler  # re-exported: it used to live here
from aria.engines.llm.messages import (
    ChunkAssembler,
    GenerationStats,
    complete_text,
    openai_messages,
    openai_request,
)
from aria.errors import EngineError, EngineUnavailable
from aria.types import GeneratedToken

__all__ = ["ChatHTTP", "OpenAILLM", "SSEDecoder", "is_loopback", "probe_json"]

log = logging.getLogger(__name__)

#: The HTTP layer shared with ``llm:ollama`` and the other HTTP engines (:mod:`aria.engines.http`).
ChatHTTP = HTTPClient


class SSEDecoder:
    """Server-Sent Events, sans I/O: feed lines, get each event's ``data`` when its blank line arrives.
    Comments and other fields are ignored; an event cut off by the end of the stream is dropped."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data.clear()
            return data
        field_name, _, value = line.partition(":")
        if field_name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


class OpenAILLM:
    """Streaming chat completions from an OpenAI-compatible server; see the module docstring."""

    kind: ClassVar[EngineKind] = "llm"
    name: str = "openai"
    capabilities: Capabilities = Capabilities(streaming=True, vision=True, tools=True, local=True)

    class Config(EngineConfig):
        #: The API root, up to and including ``/v1``.
        base_url: HttpURL = "http://127.0.0.1:8080/v1"
        #: Model name; empty: the first model the server lists at ``GET /models``.
        model: str = ""
        api_key: SecretStr | None = None
        #: Longest wait for the first byte and between two chunks of an answer.
        timeout_s: float = Field(default=60.0, gt=0)
        connect_timeout_s: float = Field(default=3.0, gt=0)
        #: Extra top-level fields for the request body (``top_p``, ``seed``, ...); they win over Aria's.
        extra_body: dict[str, Any] = Field(default_factory=dict)
        #: Ask for per-token log-probabilities.
        logprobs: bool = False

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.engine = f"{self.kind}:{self.name}"
        if not is_loopback(self.config.base_url):
            self.capabilities = Capabilities(streaming=True, vision=True, tools=True, local=False)
        self._http: HTTPClient | None = None
        self._model = self.config.model
        #: Timing of the latest generation.
        self.last_stats: GenerationStats | None = None

    @property
    def model(self) -> str:
        """The model in use (resolved from the server's list when not configured)."""
        return self._model

    def _client(self) -> HTTPClient:
        if self._http is None:
            self._http = HTTPClient.open(self.engine, self.config, api_key=self.config.api_key)
        return self._http

    async def start(self) -> None:
        """Connect and check the server answers; pick its first model when none is configured."""
        models = await self.list_models()
        if not self._model:
            if not models:
                raise EngineUnavailable(
                    f"{self.config.base_url} lists no models; set llm.options.model", engine=self.engine
                )
            self._model = models[0]
            log.info("%s: using model %s from %s", self.engine, self._model, self.config.base_url)
        elif models and self._model not in models:
            log.warning("%s: model %s is not among the server's %s", self.engine, self._model, models)

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def health(self) -> EngineHealth:
        try:
            models = await self._client().get_json(f"{self.config.base_url}/models", timeout_s=0.5)
        except EngineError as exc:
            return EngineHealth(ok=False, detail=str(exc))
        count = len(models.get("data") or ()) if isinstance(models, dict) else 0
        return EngineHealth(
            ok=True, detail=f"{self.config.base_url}: {count} model(s), using {self._model!r}"
        )

    async def list_models(self) -> list[str]:
        """Model ids from ``GET {base_url}/models``."""
        payload = await self._client().get_json(f"{self.config.base_url}/models")
        entries = payload.get("data") or payload.get("models") or () if isinstance(payload, dict) else ()
        return [str(m.get("id") or m.get("name")) for m in entries if isinstance(m, dict)]

    @classmethod
    def check(cls, config: Config) -> Availability:
        if (missing := httpx_missing()) is not None:
            return missing
        try:
            probe_json(f"{config.base_url}/models", headers=bearer_headers(config.api_key))
        except EngineError as exc:
            fix = (
                "set llm.options.api_key"
                if "HTTP 401" in str(exc) or "HTTP 403" in str(exc)
                else "start the server (llama-server, vllm serve, LM Studio) or set llm.options.base_url"
            )
            return Availability(False, f"no usable OpenAI-compatible server: {exc}", fix)
        return Availability(True, f"OpenAI-compatible server at {config.base_url}")

    async def _body(self, request: LLMRequest, model: str) -> dict[str, Any]:
        # Encoding image arrays is CPU work: keep it off the event loop.
        if request.images:
            messages = await asyncio.to_thread(openai_messages, request)
        else:
            messages = openai_messages(request)
        body = {"model": model, **openai_request(request, messages)}
        if self.config.logprobs:
            body["logprobs"] = True
        body.update(self.config.extra_body)
        return body

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        """Tokens as they arrive, then any tool calls (once the model has finished)."""
        http = self._client()
        if not self._model:
            await self.start()
        url = f"{self.config.base_url}/chat/completions"
        body = await self._body(request, self._model)
        stats = self.last_stats = GenerationStats()
        assembler = ChunkAssembler(self.engine)
        decoder = SSEDecoder()
        done = False
        async with closing_stream(http.post_lines(url, body)) as lines:
            async for line in lines:
                data = decoder.feed(line)
                if data is None:
                    continue
                if data.strip() == "[DONE]":
                    done = True
                    await http.drain(lines)
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise EngineError(
                        f"{url} sent a chunk that is not JSON: {data[:80]!r}", engine=self.engine
                    ) from exc
                for item in assembler.feed(chunk):
                    if isinstance(item, GeneratedToken):
                        stats.token()
                    yield item
        stats.finished_at = time.monotonic()
        if not (done or assembler.finished):
            raise EngineError(
                f"stream ended early: {url} closed the answer without finishing it", engine=self.engine
            )
        for call in assembler.finish():  # servers that end with [DONE] but no finish reason
            yield call
        log.debug(
            "%s: %d tokens, first after %s s, %s tokens/s",
            self.engine,
            stats.tokens,
            stats.time_to_first_token_s,
            stats.tokens_per_s,
        )

    async def complete(self, request: LLMRequest) -> str:
        """The whole answer's text (tool calls, if any, are logged and left out)."""
        return await complete_text(self.stream(request), self.engine)
