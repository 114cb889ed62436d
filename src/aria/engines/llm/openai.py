"""``llm:openai``: any OpenAI-compatible chat completions server (vLLM, llama.cpp's ``llama-server``,
LM Studio, Ollama's ``/v1``, hosted APIs), streamed over Server-Sent Events with httpx.

``POST {base_url}/chat/completions`` with ``stream: true``; each ``data: {...}`` event's content delta
becomes a :class:`~aria.types.GeneratedToken` (with its log-probability when the server sends one), streamed
tool call pieces are assembled into :class:`~aria.types.ToolCall` objects (see
:mod:`aria.engines.llm.messages`), and ``data: [DONE]`` ends the answer.

:class:`ChatHTTP` is the small HTTP layer shared with ``llm:ollama``; it translates transport failures:

==============================================  =================================================
what happened                                   raised
==============================================  =================================================
connection refused / connect timeout            ``EngineUnavailable`` (retryable), naming the URL
HTTP 4xx (except 408, 429)                      ``EngineError`` (not retryable), the server's message
HTTP 5xx, 408, 429                              ``EngineError`` (retryable)
no data for ``timeout_s`` (first byte or gap)   ``EngineTimeout``
connection closed before the answer finished    ``EngineError("stream ended early")`` (retryable),
                                                after the tokens that did arrive
==============================================  =================================================

The API key is sent as ``Authorization: Bearer ...`` and never logged or put in an error message.
httpx is imported only when a client is made, so this module imports without the ``llm`` extra.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from ipaddress import ip_address
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

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
from aria.engines.llm.messages import (
    ChunkAssembler,
    GenerationStats,
    error_detail,
    openai_messages,
    openai_tools,
)
from aria.errors import EngineError, EngineTimeout, EngineUnavailable
from aria.types import GeneratedToken

__all__ = ["ChatHTTP", "OpenAILLM", "SSEDecoder", "is_loopback", "probe_json"]

log = logging.getLogger(__name__)

#: Turns an HTTP error status and the server's message into an adapter-specific error (or None: default).
StatusHandler = Callable[[int, str], EngineError | None]
_INSTALL_FIX = "pip install 'aria-assistant[llm]'"


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (such requests never go through a proxy)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _status_error(
    status: int, body: Any, url: str, engine: str, on_status: StatusHandler | None
) -> EngineError:
    detail = error_detail(body) or "no details"
    custom = on_status(status, detail) if on_status is not None else None
    if custom is not None:
        return custom
    retryable = status >= 500 or status in (408, 429)
    return EngineError(f"{url} answered HTTP {status}: {detail}", engine=engine, retryable=retryable)


def probe_json(url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 0.5) -> Any:
    """One quick synchronous GET for ``check()``: the JSON body, or an ``EngineError`` saying why not."""
    import httpx

    try:
        response = httpx.get(
            url, headers=dict(headers or {}), timeout=timeout_s, trust_env=not is_loopback(url)
        )
    except httpx.TimeoutException as exc:
        raise EngineTimeout(f"{url} did not answer within {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise EngineUnavailable(f"nothing answers at {url} ({exc})", retryable=True) from exc
    if response.status_code >= 400:
        raise _status_error(response.status_code, response.content, url, "", None)
    try:
        return response.json()
    except ValueError as exc:
        raise EngineError(f"{url} did not answer JSON", retryable=False) from exc


class ChatHTTP:
    """An httpx client for one chat server that translates every failure into Aria's errors."""

    def __init__(
        self,
        *,
        engine: str,
        base_url: str,
        timeout_s: float,
        connect_timeout_s: float,
        headers: Mapping[str, str] | None = None,
        on_status: StatusHandler | None = None,
    ) -> None:
        import httpx

        self.engine = engine
        self.timeout_s = timeout_s
        self._on_status = on_status
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            headers=dict(headers or {}),
            trust_env=not is_loopback(base_url),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(self, url: str, *, timeout_s: float | None = None) -> Any:
        import httpx

        try:
            response = await self._client.get(url, timeout=timeout_s or self.timeout_s)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, answering=False, timeout_s=timeout_s) from exc
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.content, url, self.engine, self._on_status)
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"{url} did not answer JSON", engine=self.engine, retryable=False) from exc

    async def post_lines(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[str]:
        """POST ``body`` as JSON and stream the answer's lines. Closing the iterator closes the response."""
        import httpx

        answering = False
        try:
            async with self._client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    payload = await response.aread()
                    raise _status_error(response.status_code, payload, url, self.engine, self._on_status)
                answering = True
                async for line in response.aiter_lines():
                    yield line
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, answering=answering) from exc

    async def drain(self, lines: AsyncIterator[str], limit_s: float = 0.1) -> None:
        """Read what is left of an answer after its end marker (normally just the end of the body), so
        that the connection goes back to the pool instead of being dropped: a new TLS handshake costs far
        more. A server that keeps the body open is given up on after ``limit_s``."""
        try:
            async with asyncio.timeout(limit_s):
                async for line in lines:
                    if line.strip():
                        log.debug("%s: ignoring data after the end of the answer: %.80r", self.engine, line)
        except (TimeoutError, EngineError) as exc:
            log.debug("%s: dropping the connection after the answer (%s)", self.engine, type(exc).__name__)

    def _transport_error(
        self, exc: Exception, url: str, *, answering: bool, timeout_s: float | None = None
    ) -> EngineError:
        import httpx

        engine = self.engine
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return EngineUnavailable(
                f"cannot connect to {url} ({exc or type(exc).__name__}); is the server running?",
                engine=engine,
                retryable=True,
            )
        if isinstance(exc, httpx.TimeoutException):
            return EngineTimeout(f"no data from {url} for {timeout_s or self.timeout_s:g} s", engine=engine)
        if answering:
            return EngineError(f"stream ended early: {url} closed the connection ({exc})", engine=engine)
        return EngineError(f"{url} failed before answering ({type(exc).__name__}: {exc})", engine=engine)


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
        base_url: str = "http://127.0.0.1:8080/v1"
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

        @field_validator("base_url")
        @classmethod
        def _http_url(cls, value: str) -> str:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
            return value.rstrip("/")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.engine = f"{self.kind}:{self.name}"
        if not is_loopback(self.config.base_url):
            self.capabilities = Capabilities(streaming=True, vision=True, tools=True, local=False)
        self._http: ChatHTTP | None = None
        self._model = self.config.model
        #: Timing of the latest generation.
        self.last_stats: GenerationStats | None = None

    @property
    def model(self) -> str:
        """The model in use (resolved from the server's list when not configured)."""
        return self._model

    def _headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}

    def _client(self) -> ChatHTTP:
        if self._http is None:
            if importlib.util.find_spec("httpx") is None:
                raise EngineUnavailable(f"httpx is not installed; {_INSTALL_FIX}", engine=self.engine)
            self._http = ChatHTTP(
                engine=self.engine,
                base_url=self.config.base_url,
                timeout_s=self.config.timeout_s,
                connect_timeout_s=self.config.connect_timeout_s,
                headers=self._headers(),
            )
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
        if importlib.util.find_spec("httpx") is None:
            return Availability(False, "httpx is not installed", _INSTALL_FIX)
        key = config.api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
        try:
            probe_json(f"{config.base_url}/models", headers=headers)
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
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = openai_tools(request.tools)
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
        parts: list[str] = []
        async with closing_stream(self.stream(request)) as items:
            async for item in items:
                if isinstance(item, GeneratedToken):
                    parts.append(item.text)
                else:
                    log.info("%s: complete() ignores tool call %s", self.engine, item.name)
        return "".join(parts)
