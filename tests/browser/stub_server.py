"""A stand-in for ``aria serve`` that the test drives: the page's static files over HTTP and a ``/ws`` that
sends what the test tells it to and records what the page sends.

Written with the ``websockets`` library (its ``process_request`` hook serves the files), in a thread of its
own so the synchronous Playwright API can drive the page meanwhile. Every message either way is checked
against the real wire models in :mod:`aria.server.messages`, so the stub speaks the protocol the server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from aria.server import messages as wire

STATIC = Path(__file__).resolve().parents[2] / "src" / "aria" / "server" / "static"
SERVER_MESSAGE: TypeAdapter[Any] = TypeAdapter(wire.ServerMessage)
CLIENT_MESSAGE: TypeAdapter[Any] = TypeAdapter(wire.ClientMessage)

MODES: list[dict[str, Any]] = [
    {
        "name": "voice_chat",
        "label": "Voice chat",
        "description": "Talk or type; the answers are spoken.",
        "inputs": ["audio", "text"],
        "outputs": ["transcript", "text", "audio"],
        "watches": False,
    },
    {
        "name": "broadcast",
        "label": "Dictation",
        "description": "Speech to text only: transcripts, no answers.",
        "inputs": ["audio"],
        "outputs": ["transcript"],
        "watches": False,
    },
    {
        "name": "visual_chat",
        "label": "Visual chat",
        "description": "Ask about what the camera sees, or about an image.",
        "inputs": ["audio", "text", "image", "video"],
        "outputs": ["transcript", "text", "audio"],
        "watches": False,
    },
    {
        "name": "active_monitor",
        "label": "Active monitor",
        "description": "Watches the camera for a condition and alerts you.",
        "inputs": ["audio", "text", "video"],
        "outputs": ["transcript", "text", "audio", "notification"],
        "watches": True,
    },
    {
        "name": "deep_dive",
        "label": "Deep dive",
        "description": "A heavier model for harder questions.",
        "inputs": ["audio", "text"],
        "outputs": ["transcript", "text", "audio"],
        "watches": False,
    },
    {
        "name": "typed_notes",
        "label": "Typed notes",
        "description": "A custom mode from the configuration: text in, text out.",
        "inputs": ["text"],
        "outputs": ["text"],
        "watches": False,
    },
]


def session_message(mode: str = "voice_chat", modes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``session`` message describing ``modes`` (all of :data:`MODES` by default)."""
    details = MODES if modes is None else modes
    return wire.SessionMessage(
        session_id="s_stub",
        mode=mode,
        modes=[m["name"] for m in details],
        audio_out=wire.AudioFormat(sample_rate=24000),
        mode_details=[wire.ModeInfo(**m) for m in details],
    ).model_dump(mode="json")


class StubAria:
    """The stub server; ``with StubAria(session) as stub:`` runs it, ``stub.url`` is the page's address."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session
        self.url = ""
        self.received: list[dict[str, Any]] = []  # JSON messages from the page, every connection
        self.invalid: list[str] = []  # messages either way that the wire models refuse
        self.connections = 0
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ws: ServerConnection | None = None

    def __enter__(self) -> StubAria:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stub server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, process_request=self._http) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            return None
        if path == "/models":
            return _response(200, b"{}", "application/json")
        if path == "/models/llm":  # the model picker: one model, nothing to switch to
            body = b'{"current": "builtin", "label": "Built-in", "switched_at": null, "models": []}'
            return _response(200, body, "application/json")
        if path == "/models/llm/current":
            return _response(200, b'{"current": "builtin", "switched_at": null}', "application/json")
        if path == "/health":  # the page polls it for breaker states
            return _response(200, b'{"status": "ok", "breakers": {}}', "application/json")
        if path == "/sessions":  # the page's conversation list
            return _response(200, b'{"sessions": []}', "application/json")
        file = (STATIC / (path.lstrip("/") or "index.html")).resolve()
        if not file.is_relative_to(STATIC) or not file.is_file():
            return _response(404, b"not found", "text/plain")
        kind = "text/javascript" if file.suffix == ".js" else mimetypes.guess_type(file.name)[0]
        return _response(200, file.read_bytes(), kind or "application/octet-stream")

    async def _handle(self, ws: ServerConnection) -> None:
        self._ws = ws
        self.connections += 1
        await ws.send(self._checked(self.session))
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                if isinstance(frame, bytes):
                    continue  # microphone and camera frames: not needed here
                try:
                    CLIENT_MESSAGE.validate_json(frame)
                except ValidationError as exc:
                    self.invalid.append(f"from the page: {frame}: {exc}")
                msg = json.loads(frame)
                if msg.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "id": msg.get("id")}))
                with self._cond:
                    self.received.append(msg)
                    self._cond.notify_all()

    def _checked(self, msg: dict[str, Any]) -> str:
        try:
            SERVER_MESSAGE.validate_python(msg)
        except ValidationError as exc:
            self.invalid.append(f"to the page: {msg}: {exc}")
        return json.dumps(msg)

    def send(self, msg: dict[str, Any]) -> None:
        """Send ``msg`` to the page on its latest connection (and wait until it is written)."""
        loop, ws = self._loop, self._ws
        if loop is None or ws is None:
            raise RuntimeError("no page is connected to the stub")
        asyncio.run_coroutine_threadsafe(ws.send(self._checked(msg)), loop).result(5)

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout_s: float, what: str, *, after: int = 0
    ) -> dict[str, Any]:
        """The first message from the page that ``match`` accepts, from the ``after``-th on (``after=
        len(stub.received)`` taken before an action: a message that action caused), waiting up to
        ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = next((m for m in self.received[after:] if match(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [m for m in self.received if m.get("type") != "ping"]
                    raise AssertionError(f"the stub got no {what} within {timeout_s} s; it got {seen}")
                self._cond.wait(left)


def _response(status: int, body: bytes, kind: str) -> Response:
    reason = "OK" if status == 200 else "Not Found"
    headers = Headers(
        [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status, reason, headers, body)
