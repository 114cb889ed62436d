"""The ``/ws`` client of ``aria talk``: one connection at a time, token, reconnect with backoff, resume.

:meth:`TalkClient.run` connects, hands every server message to the ``on_message`` callback (JSON objects
as dicts, answer audio as the payload bytes of ``0x01`` frames to ``on_audio``) and, when the connection
drops, reconnects with exponential backoff, asking for the same session with ``?session_id=`` (and the
session's resume ``key`` when the server gave one), so the conversation and its history go on.

What is sent while no connection is open: typed text and controls wait (up to :data:`PENDING_MAX`) and go
out after the reconnect; microphone audio and camera frames are dropped, as a real microphone's would be.
A refused handshake (HTTP 401/403: a wrong or missing token) is not retried: :meth:`run` raises
:class:`TalkError` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from aria.errors import AriaError

__all__ = ["AUDIO_TAG", "VIDEO_TAG", "TalkClient", "TalkError"]

log = logging.getLogger(__name__)

AUDIO_TAG = 0x01
VIDEO_TAG = 0x02
#: Typed messages kept while disconnected; older ones are dropped beyond this.
PENDING_MAX = 64
MAX_FRAME_BYTES = 4 * 1024 * 1024


class TalkError(AriaError):
    """The server cannot be used: it refused the connection (token) or the URL is wrong."""


class TalkClient:
    """A reconnecting ``/ws`` client.

    ``on_message`` gets every JSON message, ``on_audio`` the payload of every answer audio frame and
    ``on_status`` a sentence whenever the connection is lost, retried or back. All are called in the event
    loop, in arrival order."""

    def __init__(
        self,
        url: str,
        *,
        on_message: Callable[[dict[str, Any]], None],
        on_audio: Callable[[bytes], None],
        on_status: Callable[[str], None] = lambda _: None,
        token: str | None = None,
        session_id: str | None = None,
        key: str | None = None,
        backoff_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise TalkError(f"not a WebSocket URL: {url!r} (expected ws://HOST:PORT or wss://HOST)")
        path = parts.path if parts.path not in ("", "/") else "/ws"
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self.token = token
        self.session_id = session_id
        #: The session's resume key, when the server gives one (``session.key``).
        self.key = key
        self.session: dict[str, Any] = {}
        self.on_message = on_message
        self.on_audio = on_audio
        self.on_status = on_status
        self.backoff_s = backoff_s
        self.connects = 0
        self._ws: websockets.ClientConnection | None = None
        self._pending: deque[str] = deque(maxlen=PENDING_MAX)
        self._closing = False
        self.connected = asyncio.Event()

    def _connect_url(self) -> str:
        query: dict[str, str] = {}
        if self.session_id:
            query["session_id"] = self.session_id
        if self.key:
            query["key"] = self.key
        if self.token:
            query["token"] = self.token
        return self.url + ("?" + urllib.parse.urlencode(query) if query else "")

    async def run(self) -> None:
        """Hold the conversation until :meth:`close`; reconnect whenever the connection drops."""
        delay = self.backoff_s[0]
        while not self._closing:
            try:
                async with websockets.connect(
                    self._connect_url(),
                    max_size=MAX_FRAME_BYTES,
                    additional_headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
                    open_timeout=10,
                ) as ws:
                    await self._serve(ws)
                    delay = self.backoff_s[0]
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise TalkError(
                        f"{self.url} refused the connection (HTTP {status}): check the token (--token)"
                    ) from exc
                self.on_status(f"server answered HTTP {status}; retrying in {delay:.1f} s")
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                if self.closing:
                    break
                self.on_status(f"connection lost ({_reason(exc)}); retrying in {delay:.1f} s")
            finally:
                self._ws = None
                self.connected.clear()
            if self.closing:
                break
            await asyncio.sleep(delay)
            delay = min(self.backoff_s[1], delay * 2)

    async def _serve(self, ws: websockets.ClientConnection) -> None:
        first = json.loads(await ws.recv())
        if first.get("type") != "session":
            # invalid_session and the like: the server closes the connection after it.
            self.on_message(first)
            raise TalkError(f"the server did not open a session: {first.get('message', first)}")
        self.session = first
        self.session_id = first["session_id"]
        key = first.get("key")
        if isinstance(key, str) and key:
            self.key = key
        self.connects += 1
        self._ws = ws
        self.connected.set()
        if self.connects > 1:
            self.on_status(f"reconnected (session {self.session_id}, resumed: {first.get('resumed')})")
        self.on_message(first)
        while self._pending:
            await ws.send(self._pending[0])
            self._pending.popleft()
        async for raw in ws:
            if isinstance(raw, bytes):
                if raw[:1] == bytes([AUDIO_TAG]):
                    self.on_audio(raw[1:])
            else:
                message = json.loads(raw)
                if isinstance(message, dict):
                    self.on_message(message)
        if not self.closing:
            code = ws.close_code
            raise OSError(f"the server closed the connection (code {code})")

    @property
    def pending(self) -> int:
        """Typed messages waiting for a connection."""
        return len(self._pending)

    @property
    def closing(self) -> bool:
        return self._closing

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send now, or after the reconnect when no connection is open."""
        text = json.dumps(message)
        ws = self._ws
        if ws is None:
            self._pending.append(text)
            return
        try:
            await ws.send(text)
        except ConnectionClosed:
            self._pending.append(text)

    async def _send_binary(self, tag: int, payload: bytes) -> bool:
        ws = self._ws
        if ws is None:
            return False
        with contextlib.suppress(ConnectionClosed):
            await ws.send(bytes([tag]) + payload)
            return True
        return False

    async def send_audio(self, pcm: bytes) -> bool:
        """One microphone frame (16 kHz s16le); False when it was dropped (no connection)."""
        return await self._send_binary(AUDIO_TAG, pcm)

    async def send_jpeg(self, jpeg: bytes) -> bool:
        """One camera frame; False when it was dropped."""
        return await self._send_binary(VIDEO_TAG, jpeg)

    async def drop_connection(self) -> None:
        """Close the current connection as a network failure would; :meth:`run` reconnects."""
        ws = self._ws
        if ws is not None:
            await ws.close(code=1001, reason="client dropped the connection")

    async def close(self) -> None:
        """End :meth:`run` for good."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            await ws.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return f"closed, code {exc.rcvd.code}" if exc.rcvd else "closed"
    return str(exc) or type(exc).__name__
