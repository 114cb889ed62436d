"""``WS /v1/realtime``: the WebSocket shell around :class:`RealtimeSession` (``docs/realtime.md``).

A thin shell: the session is a :class:`RealtimeBridge` over the conversation core (what ``/ws`` uses too).
The official SDKs connect with ``?model=`` and ``Authorization: Bearer <key>`` (browsers with the
``openai-insecure-api-key.<key>`` subprotocol); the key must be the server's token when one is set, and
may be anything when none is. ``?intent=transcription`` opens a transcription session. Two tasks: the
reader hands each text frame to the session, the writer sends the session's events in order.

A connection takes a seat in the server's WebSocket admission (:func:`~aria.server.limits.admission_for`,
shared with ``/ws``): the same per-client and server-wide caps and idle timeout. A refused client gets an
``error`` event (code ``too_many_connections``) and close code 1013; a connection with no client event for
``server.idle_timeout_s``, or given up to make room, gets ``idle_timeout`` / ``idle_evicted`` and 4408.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from aria.server.guards import host_allowed, origin_allowed, token_ok
from aria.server.limits import Refused, Seat, admission_for, watch_idle
from aria.server.realtime.bridge import RealtimeBridge
from aria.server.realtime.protocol import RealtimeProtocol
from aria.server.runtime import Runtime

__all__ = ["serve_realtime"]

log = logging.getLogger(__name__)
#: The mode whose engines a realtime session uses, and a transcription session's (no language model).
CHAT_MODE, TRANSCRIPTION_MODE = "voice_chat", "broadcast"
KEY_PROTOCOL = "openai-insecure-api-key."


def _subprotocols(ws: WebSocket) -> list[str]:
    header = ws.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def _authorised(ws: WebSocket, token: str | None) -> bool:
    if token_ok(ws.query_params, ws.headers, token):
        return True
    keys = [p[len(KEY_PROTOCOL) :] for p in _subprotocols(ws) if p.startswith(KEY_PROTOCOL)]
    return any(hmac.compare_digest(key.encode(), (token or "").encode()) for key in keys)


async def serve_realtime(ws: WebSocket, runtime: Runtime) -> None:
    server = runtime.settings.server
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), server.allowed_origins):
        await ws.close(code=1008)
        return
    if not host_allowed(ws.headers.get("host"), server.host, server.allowed_hosts):
        await ws.close(code=1008)
        return
    if not _authorised(ws, server.token):
        log.warning("refused a realtime WebSocket with a missing or wrong key")
        await ws.close(code=1008)
        return
    await ws.accept(subprotocol="realtime" if "realtime" in _subprotocols(ws) else None)
    admission = admission_for(runtime)
    address = ws.client.host if ws.client is not None else "unknown"
    try:
        seat = admission.admit(address)
    except Refused as exc:
        log.warning("refused a realtime WebSocket from %s: %s", address, exc.reason)
        await _close_with_error(ws, "too_many_connections", exc.reason, 1013)
        return
    runtime.connections += 1
    runtime.connections_gauge.set(runtime.connections)
    transcription = ws.query_params.get("intent") == "transcription"
    session: RealtimeBridge | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        session = await _open(ws, runtime, transcription)
        if session is None:
            return
        wire = _Wire(ws, session)
        seat.kick = wire.kick
        tasks = [
            asyncio.create_task(wire.write(), name="realtime-write"),
            asyncio.create_task(
                watch_idle(seat, lambda: runtime.settings.server.idle_timeout_s), name="realtime-idle"
            ),
        ]
        await _read(ws, session, seat)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("realtime connection failed")
    finally:
        if session is not None:
            await session.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        runtime.connections -= 1
        runtime.connections_gauge.set(runtime.connections)
        admission.release(seat)


async def _open(ws: WebSocket, runtime: Runtime, transcription: bool) -> RealtimeBridge | None:
    """The session over the conversation core; None (after an ``error`` event and a close) when its
    engines cannot start."""
    await runtime.ready.wait()
    mode = TRANSCRIPTION_MODE if transcription and TRANSCRIPTION_MODE in runtime.modes else CHAT_MODE
    if mode not in runtime.modes:
        mode = runtime.settings.mode
    session, _resumed = runtime.sessions.open(None, mode=mode)
    engines = runtime.engines
    voices = tuple(engines.tts.capabilities.voices) if engines is not None and engines.tts is not None else ()
    protocol = RealtimeProtocol(
        model=ws.query_params.get("model") or ("aria-transcribe" if transcription else "aria"),
        kind="transcription" if transcription else "realtime",
        voices=voices,
        default_voice=runtime.settings.tts.voice,
    )
    bridge = RealtimeBridge(runtime, session, protocol)
    await bridge.start()
    if await bridge.conv.ready() is None:
        await bridge.aclose()
        message = "the engines could not start: see the server's log and GET /health"
        await _close_with_error(ws, "engine_unavailable", message, 1011)
        return None
    return bridge


async def _close_with_error(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    """A connection with no session (yet) that may not go on: an ``error`` event, then the close."""
    error = {"type": "server_error", "code": code, "message": message, "param": None, "event_id": None}
    with contextlib.suppress(Exception):  # the client may be gone already
        await ws.send_text(json.dumps({"type": "error", "event_id": "event_0", "error": error}))
        await ws.close(code=close_code, reason=code)


class _Wire:
    """The sending side of one connection: the session's events in order, and the close from outside
    (idle, evicted) as an ``error`` event after them, never interleaved."""

    def __init__(self, ws: WebSocket, session: RealtimeBridge) -> None:
        self.ws = ws
        self.session = session
        self.lock = asyncio.Lock()
        self.closed = False

    async def write(self) -> None:
        while True:
            event = await self.session.events.get()
            async with self.lock:
                if self.closed:
                    return
                with contextlib.suppress(Exception):  # the client left: the reader sees the disconnect
                    await self.ws.send_text(json.dumps(event, separators=(",", ":")))

    async def kick(self, code: str, message: str, close_code: int) -> None:
        """Tell the client why in an ``error`` event, then close (see the module docstring)."""
        event = self.session.protocol.error(code, message, kind="server_error")
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(Exception):  # already closing: nothing to do
                await self.ws.send_text(json.dumps(event, separators=(",", ":")))
                await self.ws.close(code=close_code, reason=code)


async def _read(ws: WebSocket, session: RealtimeBridge, seat: Seat) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        seat.touch()  # any client event is use (the Realtime API has no pings)
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            error = session.protocol.error("invalid_event", "send events as JSON text frames, not binary")
            session.events.put_nowait(error)
            continue
        if text is not None:
            await session.receive(text)
