"""``WS /v1/realtime``: the WebSocket shell around :class:`RealtimeSession` (``docs/realtime.md``).

A thin shell: the session is a :class:`RealtimeBridge` over the conversation core (what ``/ws`` uses too).
The official SDKs connect with ``?model=`` and ``Authorization: Bearer <key>`` (browsers with the
``openai-insecure-api-key.<key>`` subprotocol); the key must be the server's token when one is set, and
may be anything when none is. ``?intent=transcription`` opens a transcription session. Two tasks: the
reader hands each text frame to the session, the writer sends the session's events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from aria.server.guards import host_allowed, origin_allowed, token_ok
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
    if runtime.connections >= server.max_connections:
        await ws.close(code=1013)
        return
    await ws.accept(subprotocol="realtime" if "realtime" in _subprotocols(ws) else None)
    runtime.connections += 1
    runtime.connections_gauge.set(runtime.connections)
    transcription = ws.query_params.get("intent") == "transcription"
    session: RealtimeBridge | None = None
    writer: asyncio.Task[None] | None = None
    try:
        session = await _open(ws, runtime, transcription)
        if session is None:
            return
        writer = asyncio.create_task(_write(ws, session), name="realtime-write")
        await _read(ws, session)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("realtime connection failed")
    finally:
        if session is not None:
            await session.aclose()
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        runtime.connections -= 1
        runtime.connections_gauge.set(runtime.connections)


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
        message = "the engines could not start: see the server's log and GET /health"
        error = {"type": "server_error", "code": "engine_unavailable", "message": message, "param": None}
        await ws.send_text(json.dumps({"type": "error", "event_id": "event_0", "error": error}))
        await bridge.aclose()
        await ws.close(code=1011)
        return None
    return bridge


async def _read(ws: WebSocket, session: RealtimeBridge) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            error = session.protocol.error("invalid_event", "send events as JSON text frames, not binary")
            session.events.put_nowait(error)
            continue
        if text is not None:
            await session.receive(text)


async def _write(ws: WebSocket, session: RealtimeBridge) -> None:
    while True:
        event = await session.events.get()
        with contextlib.suppress(Exception):  # the client left: the reader sees the disconnect
            await ws.send_text(json.dumps(event, separators=(",", ":")))
