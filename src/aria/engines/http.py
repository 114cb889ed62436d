"""HTTP plumbing shared by the engines that talk to a server (``llm:openai``, ``llm:ollama``,
``stt:openai``, ``tts:openai``): client creation, Bearer auth, ``check()`` probes, and the translation of
every httpx failure into Aria's errors at the adapter boundary.

:class:`HTTPClient` makes one ``httpx.AsyncClient`` per engine (a loopback server is always reached
directly, never through a proxy from the environment) and raises:

==============================================  =================================================
what happened                                   raised
==============================================  =================================================
connection refused / connect timeout            ``EngineUnavailable`` (retryable), naming the URL;
                                                the ``refused`` error class where one is given
HTTP 4xx (except 408, 409, 425, 429)            ``EngineError`` (not retryable), the server's message
HTTP 5xx, 408, 409, 425, 429                    ``EngineError`` (retryable)
a status listed in ``hints``                    ``EngineUnavailable`` with the hint (API key, URL)
no data for ``timeout_s`` (first byte or gap)   ``EngineTimeout``
connection closed before the answer finished    ``EngineError("stream ended early")`` (retryable),
                                                after the data that did arrive
==============================================  =================================================

The API key is sent as ``Authorization: Bearer ...`` and never logged or put in an error message.
httpx is imported only when a client is made or a probe sent, so this module imports without it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from ipaddress import ip_address
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, SecretStr

from aria.engines.base import Availability, EngineHealth
from aria.errors import EngineError, EngineTimeout, EngineUnavailable

if TYPE_CHECKING:
    import httpx

__all__ = [
    "HTTPX_FIX",
    "HTTPClient",
    "HTTPEngine",
    "HttpURL",
    "StatusHandler",
    "bearer_headers",
    "error_detail",
    "httpx_missing",
    "is_local",
    "is_loopback",
    "openai_hints",
    "probe",
    "probe_availability",
    "probe_json",
    "require_httpx",
    "status_error",
    "transport_error",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Turns an HTTP error status and the server's message into an adapter-specific error (or None: default).
StatusHandler = Callable[[int, str], EngineError | None]
#: How to install httpx, which every HTTP engine needs.
HTTPX_FIX = "pip install 'aria-assistant[llm]'"
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
    return value.rstrip("/")


#: A server's base URL option: ``http(s)://`` only, without a trailing slash.
HttpURL = Annotated[str, AfterValidator(_http_url)]


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (such requests never go through a proxy)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def is_local(url: str) -> bool:
    """Whether ``url`` points at this machine or at a host on the local network (``*.local``)."""
    return is_loopback(url) or (urlsplit(url).hostname or "").endswith(".local")


def bearer_headers(api_key: SecretStr | None) -> dict[str, str]:
    """``Authorization: Bearer ...`` for an API key, or no header without one."""
    return {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key is not None else {}


def httpx_missing() -> Availability | None:
    """What ``check()`` answers when httpx is not installed; None when it is."""
    if importlib.util.find_spec("httpx") is None:
        return Availability(False, "httpx is not installed", HTTPX_FIX)
    return None


def require_httpx(engine: str) -> None:
    """Raise :class:`EngineUnavailable` naming the extra to install when httpx is missing."""
    if importlib.util.find_spec("httpx") is None:
        raise EngineUnavailable(f"httpx is not installed; {HTTPX_FIX}", engine=engine)


def error_detail(payload: Any, *, limit: int = 300) -> str:
    """The human message in an error body: ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"detail": ...}`` or plain text, on one line (shortened to ``limit`` characters)."""
    if isinstance(payload, bytes | bytearray):
        text = bytes(payload).decode("utf-8", "replace")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            return _one_line(text)[:limit]
    if isinstance(payload, Mapping):
        error = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(error, Mapping):
            error = error.get("message", error)
        if error is not None:
            return _one_line(str(error))[:limit]
    return _one_line(str(payload))[:limit]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def openai_hints(key_option: str) -> dict[int, str]:
    """What to check when an OpenAI-style server refuses the key or does not know the path."""
    key = f"check {key_option}"
    return {401: key, 403: key, 404: "is base_url right (it usually ends in /v1)?"}


def status_error(
    status: int,
    body: Any,
    url: str,
    *,
    engine: str = "",
    on_status: StatusHandler | None = None,
    hints: Mapping[int, str] | None = None,
) -> EngineError:
    """The error for an HTTP error status: ``on_status``'s when it has one, ``EngineUnavailable`` with the
    hint for a status in ``hints``, else an ``EngineError`` that is retryable for 5xx, 408, 409, 425, 429."""
    detail = error_detail(body)
    custom = on_status(status, detail) if on_status is not None else None
    if custom is not None:
        return custom
    message = f"{url} answered HTTP {status}: {detail}" if detail else f"{url} answered HTTP {status}"
    hint = (hints or {}).get(status)
    if hint is not None:
        return EngineUnavailable(f"{message}; {hint}", engine=engine)
    retryable = status >= 500 or status in _RETRYABLE_STATUSES
    return EngineError(message, engine=engine, retryable=retryable)


def transport_error(
    exc: Exception,
    url: str,
    *,
    engine: str = "",
    timeout_s: float,
    answering: bool = False,
    refused: type[EngineError] = EngineUnavailable,
) -> EngineError:
    """The error for a failed request: ``refused`` (retryable) when nothing accepts the connection,
    ``EngineTimeout`` when no data came for ``timeout_s``, a retryable ``EngineError`` otherwise."""
    import httpx

    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return refused(
            f"cannot connect to {url} ({what}); is the server running?", engine=engine, retryable=True
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        if answering:
            return EngineTimeout(
                f"{url} stopped sending: no data for {timeout_s:g} s ({what})", engine=engine
            )
        return EngineTimeout(f"no answer from {url} within {timeout_s:g} s ({what})", engine=engine)
    if answering:
        return EngineError(f"stream ended early: {url} broke off ({what})", engine=engine, retryable=True)
    return EngineError(f"request to {url} failed ({what})", engine=engine, retryable=True)


def probe(url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 0.5) -> httpx.Response:
    """One quick synchronous GET for ``check()``: the response, whatever its status, or an
    ``EngineError`` saying why none came."""
    import httpx

    try:
        return httpx.get(url, headers=dict(headers or {}), timeout=timeout_s, trust_env=not is_loopback(url))
    except httpx.HTTPError as exc:
        raise transport_error(exc, url, timeout_s=timeout_s) from exc


def probe_availability(
    url: str, *, api_key: SecretStr | None = None, unreachable: str, fix: str
) -> Availability:
    """``check()`` for a server whose answer does not matter: httpx is installed and something answers
    HTTP at ``url`` (any status; one probe, 0.5 s at most). ``unreachable`` starts the reason when not."""
    if (missing := httpx_missing()) is not None:
        return missing
    try:
        probe(url, headers=bearer_headers(api_key))
    except EngineError as exc:
        return Availability(False, f"{unreachable}: {exc}", fix)
    return Availability(True)


def probe_json(url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 0.5) -> Any:
    """One quick synchronous GET for ``check()``: the JSON body, or an ``EngineError`` saying why not."""
    response = probe(url, headers=headers, timeout_s=timeout_s)
    if response.status_code >= 400:
        raise status_error(response.status_code, response.content, url)
    try:
        return response.json()
    except ValueError as exc:
        raise EngineError(f"{url} did not answer JSON", retryable=False) from exc


class HTTPClient:
    """An httpx client for one server that translates every failure into Aria's errors (see the module
    docstring). ``connect_timeout_s`` defaults to ``timeout_s``."""

    def __init__(
        self,
        *,
        engine: str,
        base_url: str,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        api_key: SecretStr | None = None,
        on_status: StatusHandler | None = None,
        hints: Mapping[int, str] | None = None,
        refused: type[EngineError] = EngineUnavailable,
    ) -> None:
        import httpx

        self.engine = engine
        self.timeout_s = timeout_s
        self._on_status = on_status
        self._hints = dict(hints or {})
        self._refused = refused
        connect = timeout_s if connect_timeout_s is None else connect_timeout_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect),
            headers={**bearer_headers(api_key), **(headers or {})},
            trust_env=not is_loopback(base_url),
        )

    @classmethod
    def open(cls, engine: str, config: Any, **options: Any) -> HTTPClient:
        """A client for an engine's ``config``: its ``base_url``, ``timeout_s`` and ``connect_timeout_s``
        (when it has one), plus ``options``; :class:`EngineUnavailable` naming the extra without httpx."""
        require_httpx(engine)
        return cls(
            engine=engine,
            base_url=config.base_url,
            timeout_s=config.timeout_s,
            connect_timeout_s=getattr(config, "connect_timeout_s", None),
            **options,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(self, url: str, *, timeout_s: float | None = None) -> Any:
        body = await self._send("GET", url, timeout=timeout_s or self.timeout_s)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EngineError(f"{url} did not answer JSON", engine=self.engine, retryable=False) from exc

    async def post(self, url: str, *, deadline_s: float | None = None, **request: Any) -> bytes:
        """POST (``json=``, ``data=``, ``files=`` ...) and return the whole body; ``deadline_s`` bounds the
        whole exchange, not just each wait for data."""
        return await self._send("POST", url, deadline_s=deadline_s, **request)

    def post_lines(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[str]:
        """POST ``body`` as JSON and stream the answer's lines. Closing the iterator closes the response."""
        return self._stream(url, body, lambda response: response.aiter_lines())

    def post_bytes(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """POST ``body`` as JSON and stream the answer's bytes as they arrive. Closing the iterator closes
        the response."""
        return self._stream(url, body, lambda response: response.aiter_bytes())

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

    async def _send(self, method: str, url: str, *, deadline_s: float | None = None, **request: Any) -> bytes:
        import httpx

        try:
            async with asyncio.timeout(deadline_s):
                response = await self._client.request(method, url, **request)
        except (TimeoutError, httpx.HTTPError) as exc:
            wait = deadline_s or request.get("timeout") or self.timeout_s
            raise self._transport_error(exc, url, answering=False, timeout_s=wait) from exc
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, url)
        return response.content

    async def _stream(
        self, url: str, body: Mapping[str, Any], read: Callable[[httpx.Response], AsyncIterator[_T]]
    ) -> AsyncIterator[_T]:
        import httpx

        answering = False
        try:
            async with self._client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    raise self._status_error(response.status_code, await response.aread(), url)
                answering = True
                async for piece in read(response):
                    yield piece
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, answering=answering, timeout_s=self.timeout_s) from exc

    def _status_error(self, status: int, body: bytes, url: str) -> EngineError:
        return status_error(
            status, body, url, engine=self.engine, on_status=self._on_status, hints=self._hints
        )

    def _transport_error(self, exc: Exception, url: str, *, answering: bool, timeout_s: float) -> EngineError:
        return transport_error(
            exc, url, engine=self.engine, timeout_s=timeout_s, answering=answering, refused=self._refused
        )


class HTTPEngine:
    """``aclose`` and ``health`` of an engine whose one resource is the :class:`HTTPClient` its ``start``
    opens as ``_client``, for the ``model`` its ``config`` names at ``config.base_url``."""

    _client: HTTPClient | None
    config: Any

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def health(self) -> EngineHealth:
        if self._client is None:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(ok=True, detail=f"{self.config.model} at {self.config.base_url}")
