"""The ``/ws`` endpoint: a thin shell between the sans-I/O protocol (:mod:`aria.server.protocol`) and a
transport-neutral :class:`~aria.server.conversation.Conversation`.

Per connection: the checks before accepting (origin, host, token, connection limit), the greeting, and
three tasks: the reader (frames -> protocol events -> the conversation), the writer (the conversation's
events -> wire messages; answer audio goes to the pacer) and the pacer (audio paced to real time, messages
that follow a turn's audio sent as it plays). Sends are serialised by one lock. Bad input gets an
``error`` and the connection stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.websockets import WebSocket, WebSocketDisconnect

from aria.core.modespec import ModeSpec
from aria.errors import AriaError, ChannelClosed, InvalidInput
from aria.pipeline.echo import EchoGuard
from aria.pipeline.observers import TurnMetricsRecorder
from aria.pipeline.outputs import AudioOut, MetricsOut, ResponseDone, StateOut
from aria.server import ownership
from aria.server import protocol as proto
from aria.server.conversation import CAMERA_FRESH_S, FALLBACK_NOTICE_S, Conversation
from aria.server.conversation.events import ConfirmOut, Event, ModeOut, ToolCallOut
from aria.server.guards import host_allowed, origin_allowed, token_ok
from aria.server.limits import MalformedCounter, Refused, Seat, admission_for, watch_idle
from aria.server.pacing import AudioPacer
from aria.server.resampler import TurnResampler
from aria.server.runtime import Runtime
from aria.session.store import Session
from aria.tools.runner import ToolRunner
from aria.types import AudioChunk

__all__ = [
    "CAMERA_FRESH_S",
    "FALLBACK_NOTICE_S",
    "Connection",
    "history_message",
    "host_allowed",
    "mode_details",
    "origin_allowed",
    "serve_connection",
    "token_ok",
]

log = logging.getLogger(__name__)
_AFTER_AUDIO = (ResponseDone, MetricsOut, StateOut)


class Connection:
    """One ``/ws`` client: its protocol state, its pacer and the conversation it speaks to."""

    def __init__(self, ws: WebSocket, runtime: Runtime, session: Session, seat: Seat | None = None) -> None:
        self.ws = ws
        self.runtime = runtime
        self.session = session
        #: This connection's place in the server's admission (idleness, takeover, eviction).
        self.seat = seat if seat is not None else Seat(_client(ws))
        self.malformed = MalformedCounter(f"{self.seat.address} (session {session.id})")
        self.protocol = proto.ServerProtocol(proto.Limits(), rate_limiter=proto.RateLimiter(20.0, 40))
        self._send_lock = asyncio.Lock()
        #: The client has gone (a send failed): nothing more is sent.
        self.gone = False
        self.out_rate = 16000
        #: The answer's audio to the client's rate and to the echo guard's, a resampling stream per turn.
        self._to_client = TurnResampler(self.out_rate)
        self._to_reference = TurnResampler(16000)
        lead_s = runtime.settings.server.audio_lead_ms / 1000
        #: The answer's own audio coming back through a client's microphone does not count as speech.
        self.echo = EchoGuard(16000, max_delay_s=min(2.0, lead_s + 0.5))
        self.pacer = AudioPacer(self._send_bytes, self._send_text, lead_s=lead_s, on_sent=self.echo.reference)
        self.conversation = Conversation(
            runtime, session, playback=self.pacer, echo=self.echo, tool_runner=ToolRunner
        )

    # -- sending -----------------------------------------------------------------------------------

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            if not self.gone:
                try:
                    await self.ws.send_text(text)
                except Exception as exc:  # any failure to send means the client left
                    self._left(exc)

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            if not self.gone:
                try:
                    await self.ws.send_bytes(data)
                except Exception as exc:
                    self._left(exc)

    async def kick(self, code: str, message: str, close_code: int) -> None:
        """Tell the client why, then close the connection (taken over, idle, evicted)."""
        await self.send(proto.ErrorMessage(code=code, message=message))
        async with self._send_lock:
            self.gone = True
            with contextlib.suppress(Exception):  # already closing: nothing to do
                await self.ws.close(code=close_code, reason=code)

    def _left(self, exc: BaseException) -> None:
        """The client is gone: sending stops, and reading goes on until the frames it sent before it
        left are all handled (a question sent just before closing the tab is still kept)."""
        self.gone = True
        log.info("client of session %s left (%s)", self.session.id, type(exc).__name__)

    async def send(self, message: Any) -> None:
        await self._send_text(proto.encode(message))

    # -- the conversation's events -> the wire -----------------------------------------------------

    async def write(self) -> None:
        async for event in self.conversation:
            if isinstance(event, AudioOut):
                self._audio(event)
                continue
            if isinstance(event, ResponseDone):
                self._end_audio(event)
            message = self.message(event)
            if message is None:
                continue
            text = proto.encode(message)
            turn_id = getattr(event, "turn_id", None)
            if isinstance(event, _AFTER_AUDIO) and turn_id and self.pacer.add_after_audio(turn_id, text):
                continue
            await self._send_text(text)

    def _audio(self, out: AudioOut) -> None:
        chunk, turn_id = out.chunk, out.turn_id
        if self._to_client.rate != self.out_rate:
            self._to_client = TurnResampler(self.out_rate)
        samples = chunk.as_float32()
        self._pace(
            turn_id,
            self._to_client.push(turn_id, samples, chunk.sample_rate),
            self._to_reference.push(turn_id, samples, chunk.sample_rate),
        )

    def _end_audio(self, done: ResponseDone) -> None:
        """The answer's audio is complete: what the resampling streams still hold goes out too."""
        if done.interrupted:
            self._to_client.drop(done.turn_id)
            self._to_reference.drop(done.turn_id)
            return
        tail, reference = self._to_client.finish(done.turn_id), self._to_reference.finish(done.turn_id)
        self._pace(done.turn_id, tail, reference)

    def _pace(
        self, turn_id: str, samples: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]
    ) -> None:
        if not samples.size:
            return
        pcm = AudioChunk(samples, self.out_rate).to_pcm16()
        self.pacer.add_audio(
            turn_id, proto.encode_audio(pcm), len(samples) / self.out_rate, reference=reference
        )

    def message(self, event: Event) -> proto.ServerMessage | None:
        if isinstance(event, ModeOut):
            return proto.ModeMessage(mode=event.mode, watch=event.watch, engines=dict(event.engines))
        if isinstance(event, ConfirmOut):
            payload = {"tool": event.tool, "arguments": dict(event.arguments), "prompt": event.prompt}
            return proto.ControlSignalMessage(id=event.id, signal="confirm_action", payload=payload)
        if isinstance(event, ToolCallOut):
            return None  # /ws clients define no tools
        message = proto.from_output(event, loading=sorted(self.conversation.notices.loading))
        if isinstance(event, ResponseDone) and message is not None:  # what went out, also when interrupted
            sent_ms = round(self.pacer.sent_seconds(event.turn_id) * 1000, 1)
            message = message.model_copy(update={"audio_ms": sent_ms})
        return message

    # -- the wire -> the conversation --------------------------------------------------------------

    async def read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                event = self.protocol.receive_text(message["text"])
            elif message.get("bytes") is not None:
                event = self.protocol.receive_bytes(message["bytes"])
            else:
                continue
            try:
                await self.handle(event)
            except AriaError as exc:
                await self.send(proto.error_from_exception(exc))

    async def handle(self, event: Any) -> None:
        conv = self.conversation
        if isinstance(event, proto.ProtocolError):
            message = event.to_message()
            if message.code != "rate_limited":
                self.malformed(message.code, message.message)
            await self.send(message)
            return
        if getattr(event, "type", None) not in ("ping", "playback"):
            self.seat.touch()  # a turn-related message: not idle (pings keep it only until idle_timeout_s)
        if isinstance(event, proto.AudioIn):
            conv.push_audio(AudioChunk.from_pcm16(event.pcm, proto.AUDIO_IN_RATE))
        elif isinstance(event, proto.VideoIn):
            conv.push_camera(event.jpeg)
        elif event.type == "ping":
            await self.send(proto.PongMessage(id=event.id))
        elif event.type == "playback":
            self.pacer.report(event.turn_id, event.played_ms)
        elif event.type == "text":
            await conv.push_text(event.text)
        elif event.type == "image":
            await conv.push_image(event.image, event.format, event.text)
        elif event.type == "control":
            await self.control(event)

    async def control(self, event: Any) -> None:
        conv = self.conversation
        await conv.ready()
        action = event.action
        if action == "interrupt":
            await conv.interrupt("client interrupt")
        elif action == "switch_mode":
            await conv.switch_mode(event.mode, watch=event.watch)
        elif action == "set_watch":
            await conv.set_watch(event.watch)
        elif action == "update_config":
            await conv.update_config(event.config)
        elif action == "confirm_action":
            conv.confirm(event.id, bool(event.accept))
        # "start" needs nothing: audio may simply flow.


def mode_details(
    modes: dict[str, ModeSpec], availability: Mapping[str, tuple[bool, str]] | None = None
) -> list[proto.ModeInfo]:
    """The modes for a picker; ``availability`` (mode -> whether it can work, why not) marks those that
    cannot work with the engines at hand."""
    known = availability or {}
    return [
        proto.ModeInfo(
            name=name,
            label=spec.label or name.replace("_", " ").capitalize(),
            description=spec.description,
            inputs=list(spec.inputs),
            outputs=list(spec.outputs),
            watches=spec.watches,
            available=known.get(name, (True, ""))[0],
            reason=known.get(name, (True, ""))[1],
        )
        for name, spec in modes.items()
    ]


def history_message(session: Session) -> proto.HistoryMessage:
    entries = [
        proto.HistoryEntry(
            role=m.role,
            content=m.content,
            modality=m.modality,
            interrupted=m.interrupted,
            mode=m.mode,
            timestamp=m.timestamp,
            generated=m.metadata.get("generated") if m.interrupted else None,
        )
        for m in session.history
    ]
    return proto.HistoryMessage(session_id=session.id, messages=entries)


async def serve_connection(ws: WebSocket, runtime: Runtime) -> None:
    settings = runtime.settings.server
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), settings.allowed_origins):
        log.warning("refused a WebSocket from origin %s", ws.headers.get("origin"))
        await ws.close(code=1008)  # before accept: the client gets HTTP 403
        return
    if not host_allowed(ws.headers.get("host"), settings.host, settings.allowed_hosts):
        log.warning("refused a WebSocket for host %s", ws.headers.get("host"))
        await ws.close(code=1008)
        return
    if not token_ok(ws.query_params, ws.headers, settings.token):
        log.warning("refused a WebSocket with a missing or wrong token")
        await ws.close(code=1008)
        return
    await ws.accept()
    admission = admission_for(runtime)
    try:
        seat = admission.admit(_client(ws))
    except Refused as exc:
        log.warning("refused a WebSocket from %s: %s", _client(ws), exc.reason)
        await _refuse(ws, "too_many_connections", exc.reason, 1013)
        return
    try:
        opened = ownership.open_owned(
            runtime.sessions,
            wanted=ws.query_params.get("session_id"),
            keys=ownership.keys_from(ws.headers, ws.query_params),
            admin=ownership.is_admin(ws.query_params, ws.headers, settings.token),
            resume_id=runtime.resume_id,
            mode=runtime.settings.mode,
        )
        session, resumed = opened.session, opened.resumed
        if session.mode not in runtime.modes:  # a mode removed from the configuration since
            session.mode = runtime.settings.mode
        await ownership.take_over(admission.seats, seat, session.id)
    except InvalidInput as exc:
        admission.release(seat)
        await _refuse(ws, "invalid_session", str(exc), 1008)
        return
    except ownership.Locked as exc:
        admission.release(seat)
        log.warning("refused a WebSocket from %s: %s", seat.address, exc)
        await _refuse(ws, "session_locked", str(exc), ownership.LOCKED_CLOSE)
        return
    runtime.connections += 1
    runtime.connections_gauge.set(runtime.connections)
    session.connections += 1
    conn = Connection(ws, runtime, session, seat)
    seat.kick = conn.kick
    conv = conn.conversation
    recorder = TurnMetricsRecorder(runtime.metrics).attach(conv.bus)
    tasks: list[asyncio.Task[None]] = []
    try:
        # The output rate comes from the TTS: give a loading server a moment to know it, without
        # holding up the page (it shows what is still loading from the session message).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(runtime.ready.wait()), 5.0)
        engines = runtime.engines
        if engines is not None and engines.tts is not None and engines.tts.capabilities.sample_rate:
            conn.out_rate = engines.tts.capabilities.sample_rate
        await conn.send(
            proto.session_message(
                session_id=session.id,
                resumed=resumed,
                mode=conv.mode,
                modes=list(runtime.modes),
                mode_details=mode_details(runtime.modes, runtime.mode_availability()),
                audio_out_rate=conn.out_rate,
                engines=runtime.engine_states(),
                limits=conn.protocol.limits,
                private=not runtime.sessions.persist,
            ).model_copy(update={"key": opened.key})  # the resume key: given once
        )
        if resumed and len(session.history):
            await conn.send(history_message(session))
        tasks = [
            asyncio.create_task(conv.start(), name="ws-start"),
            asyncio.create_task(conn.write(), name="ws-write"),
            asyncio.create_task(conn.pacer.run(), name="ws-pacer"),
            asyncio.create_task(
                watch_idle(seat, lambda: runtime.settings.server.idle_timeout_s), name="ws-idle"
            ),
        ]
        await conn.read()
    except (WebSocketDisconnect, ChannelClosed):
        pass
    except Exception:
        log.exception("connection for session %s failed", session.id)
    finally:
        await conv.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await recorder.aclose()
        session.connections -= 1
        runtime.connections -= 1
        runtime.connections_gauge.set(runtime.connections)
        admission.release(seat)  # last: a takeover waits for this, the session saved
        log.info("connection from %s for session %s closed", seat.address, session.id)


def _client(ws: WebSocket) -> str:
    return ws.client.host if ws.client is not None else "unknown"


async def _refuse(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    """An accepted connection that may not go on: the error, then the close (its reason: the code)."""
    with contextlib.suppress(Exception):  # the client may be gone already
        await ws.send_text(proto.encode(proto.ErrorMessage(code=code, message=message)))
        await ws.close(code=close_code, reason=code)
