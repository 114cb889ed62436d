"""Limits that keep one client from exhausting the server.

* :class:`BodyLimit` (ASGI middleware): a request body over ``server.max_body_bytes`` is refused with
  **413** before it is read: at once when its ``Content-Length`` says so, else as soon as the bytes
  streamed in pass the limit (chunked bodies). Nothing over the limit is ever held in memory.
* :class:`Admission`: WebSocket seats, at most ``server.max_connections`` in all and
  ``server.max_connections_per_client`` from one client address. When either is full, the seat idle
  longest (no turn for ``server.idle_evict_s``) is given up to the newcomer (that client gets an
  ``error`` ``idle_evicted`` and close code 4408); when none is idle, the newcomer is refused with an
  ``error`` ``too_many_connections`` and close code 1013 (try again later), its reason naming the limit.
* :func:`watch_idle`: a connection with no turn-related message (text, image, control, audio) for
  ``server.idle_timeout_s`` is closed (close code 4408, ``error`` ``idle_timeout``). Pings, answered or
  not, do not count: they keep a connection alive only for that long.
* :func:`http_protocol`: uvicorn's HTTP protocol with a deadline for a request's headers
  (``server.header_timeout_s``, counted from the connection's first byte or from the start of the next
  request on a kept-alive connection, never extended by more bytes): a client trickling half its headers
  (slowloris) is answered 408 and disconnected. uvicorn itself has no such deadline: its
  ``timeout_keep_alive`` runs only between requests and is cancelled by the first byte of the next.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Admission",
    "BodyLimit",
    "MalformedCounter",
    "MalformedFrameLog",
    "Refused",
    "Seat",
    "admission_for",
    "http_protocol",
    "uvicorn_options",
    "watch_idle",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Close code for a connection closed for idleness (private range: 4000 + HTTP 408).
IDLE_CLOSE = 4408


# -- request bodies -------------------------------------------------------------------------------


class _TooLarge(Exception):
    """A streamed body passed the limit (internal)."""


class BodyLimit:
    """ASGI middleware: refuse HTTP request bodies over ``limit()`` bytes with 413 before reading them."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            log.warning("refused a %d-byte body for %s (limit %d)", declared, scope.get("path"), limit)
            await _refuse(send, limit)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except* _TooLarge:  # also when a task group (BaseHTTPMiddleware's) wrapped it
            log.warning("refused a streamed body over %d bytes for %s", limit, scope.get("path"))
            if not started:
                await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = (
        b'{"code":"body_too_large","message":"request body over the limit of %d bytes '
        b'(server.max_body_bytes)"}' % limit
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the rest of the body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- WebSocket admission and idleness -------------------------------------------------------------


@dataclass(eq=False)
class Seat:
    """One admitted WebSocket connection: its client address, when it last did something, and how to
    close it from outside (set by the connection once it can be closed: :attr:`kick`)."""

    address: str
    clock: Callable[[], float] = time.monotonic
    opened: float = 0.0
    last_active: float = 0.0
    #: The session it serves, once known (a takeover finds the seat by it).
    session_id: str | None = None
    #: Close the connection: ``kick(code, message, close_code)``; ``None`` until the connection sets it.
    kick: Callable[[str, str, int], Coroutine[Any, Any, None]] | None = None
    #: Set when the connection has finished (its session saved, its engines released).
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.opened = self.last_active = self.clock()

    def touch(self) -> None:
        """Something happened on the connection that counts as use (not a ping)."""
        self.last_active = self.clock()

    def idle_for(self) -> float:
        return self.clock() - self.last_active


class Refused(Exception):
    """No seat: ``reason`` says which limit (for the close frame and the ``error`` message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Admission:
    """Seats for WebSocket connections; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        max_total: Callable[[], int],
        max_per_client: Callable[[], int],
        evict_idle_s: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.evict_idle_s = evict_idle_s
        self.clock = clock
        self.seats: set[Seat] = set()
        self._kicks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.seats)

    def from_client(self, address: str) -> list[Seat]:
        return [seat for seat in self.seats if seat.address == address]

    def admit(self, address: str) -> Seat:
        """A seat for a new connection from ``address``, giving up an idle one if a limit is reached;
        :class:`Refused` when none can be had."""
        mine = self.from_client(address)
        if len(mine) >= self.max_per_client():
            self._evict_idlest(mine, f"{len(mine)} connections from {address} (max_connections_per_client)")
        if len(self.seats) >= self.max_total():
            self._evict_idlest(list(self.seats), f"{len(self.seats)} connections (max_connections)")
        seat = Seat(address, self.clock)
        self.seats.add(seat)
        return seat

    def release(self, seat: Seat) -> None:
        self.seats.discard(seat)
        seat.done.set()

    def _evict_idlest(self, seats: list[Seat], limit: str) -> None:
        idle = [s for s in seats if s.kick is not None and s.idle_for() >= self.evict_idle_s()]
        if not idle:
            raise Refused(f"too many connections: {limit}, none idle; try again later")
        victim = min(idle, key=lambda s: s.last_active)
        self.seats.discard(victim)  # counted out now; it closes in the background
        log.info(
            "closing an idle connection from %s (idle %.0f s) to admit a new one: %s",
            victim.address,
            victim.idle_for(),
            limit,
        )
        assert victim.kick is not None
        message = f"closed after {victim.idle_for():.0f} s without a turn to make room for a new connection"
        task = asyncio.get_running_loop().create_task(victim.kick("idle_evicted", message, IDLE_CLOSE))
        self._kicks.add(task)
        task.add_done_callback(self._kicks.discard)


async def watch_idle(seat: Seat, timeout_s: Callable[[], float], sleep: Any = asyncio.sleep) -> None:
    """Close ``seat``'s connection once it has been idle for ``timeout_s()`` (0: never); run it as a task
    beside the connection and cancel it when the connection ends."""
    while True:
        limit = timeout_s()
        if limit <= 0:
            await sleep(60.0)
            continue
        left = limit - seat.idle_for()
        if left > 0:
            await sleep(left)
            continue
        if seat.kick is not None:
            log.info("closing a connection from %s: no turn for %.0f s", seat.address, seat.idle_for())
            await seat.kick("idle_timeout", f"closed after {limit:g} s without a turn", IDLE_CLOSE)
        return


# -- HTTP header deadline (slowloris) -------------------------------------------------------------


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools HTTP protocol with a deadline of ``header_timeout_s`` for each request's
    headers (see the module docstring). Pass it as ``uvicorn.Config(http=...)``."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.warning("closing %s: no complete request headers within %g s", client, header_timeout_s)
            body = b"request headers not complete in time\n"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()

    return HeaderDeadlineProtocol


def uvicorn_options(header_timeout_s: float) -> dict[str, Any]:
    """The uvicorn settings ``aria serve`` runs with (tests that start a server use them too)."""
    return {
        "http": http_protocol(header_timeout_s),
        "ws": "websockets-sansio",
        "ws_max_size": 4 * 1024 * 1024,
        "timeout_keep_alive": 5,
        "log_config": None,
    }


# -- malformed frames in uvicorn's log -------------------------------------------------------------


class MalformedFrameLog(logging.Filter):
    """uvicorn logs a text frame that is not valid UTF-8 as an ERROR with a traceback; it is the client's
    fault and the connection is closed (1007) as the standard asks: one WARNING line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Invalid UTF-8 sequence received"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = (
                "malformed WebSocket frame: a text frame that is not valid UTF-8 (closed with code 1007)",
                None,
            )
            record.exc_info = record.exc_text = None
        return True

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


# -- one admission per server ----------------------------------------------------------------------

_ADMISSIONS: weakref.WeakKeyDictionary[Any, Admission] = weakref.WeakKeyDictionary()


def admission_for(runtime: Any) -> Admission:
    """The server's WebSocket admission (one per runtime), reading its limits from the live settings."""
    found = _ADMISSIONS.get(runtime)
    if found is None:
        found = _ADMISSIONS[runtime] = Admission(  # the settings are read each time: they may be reloaded
            max_total=lambda: int(runtime.settings.server.max_connections),
            max_per_client=lambda: int(runtime.settings.server.max_connections_per_client),
            evict_idle_s=lambda: float(runtime.settings.server.idle_evict_s),
        )
    return found


class MalformedCounter:
    """Logs a connection's malformed messages at WARNING, one line each, the first few and then every
    hundredth (a client sending garbage cannot flood the log)."""

    FIRST = 3

    def __init__(self, who: str) -> None:
        self.who = who
        self.count = 0

    def __call__(self, code: str, message: str) -> None:
        self.count += 1
        if self.count <= self.FIRST or self.count % 100 == 0:
            text = " ".join(message.split())[:200]
            log.warning("malformed message #%d from %s: %s: %s", self.count, self.who, code, text)
