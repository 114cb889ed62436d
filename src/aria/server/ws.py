"""The ``/ws`` endpoint: a thin shell around the sans-I/O protocol and one pipeline per connection.

Three tasks per connection: the reader (frames -> protocol events -> pipeline), the writer (pipeline
outputs -> wire messages; answer audio goes to the pacer) and the pacer (audio paced to real time).
Sends are serialised by one lock. Camera frames go to a two-slot ``drop_oldest`` channel, so a flood of
video never displaces audio or control. Bad input gets an ``error`` and the connection stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from aria.core.audio import resample
from aria.core.channels import Channel, Overflow
from aria.core.config import apply_update
from aria.core.events import EventBus
from aria.errors import AriaError, ChannelClosed, InvalidInput
from aria.pipeline.observers import TurnMetricsRecorder
from aria.pipeline.outputs import AudioOut, MetricsOut, ResponseDone, StateOut
from aria.pipeline.voice import PipelineConfig, VoicePipeline
from aria.server import protocol as proto
from aria.server.pacing import AudioPacer
from aria.server.runtime import Runtime
from aria.session.context import ContextWindow
from aria.session.store import Session
from aria.tools.builtin import builtin_tools
from aria.tools.registry import ToolContext, ToolRegistry
from aria.tools.runner import ConfirmRequest, ToolResult, ToolRunner
from aria.types import AudioChunk, ImageFrame, ToolCall, ToolSpec

__all__ = ["Connection", "SessionTools", "history_message", "origin_allowed", "serve_connection"]

log = logging.getLogger(__name__)
MODES = ("voice_chat",)
_AFTER_AUDIO = (ResponseDone, MetricsOut, StateOut)


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Browsers always send Origin: only the server's own origin or a configured one may connect.
    Non-browser clients (no Origin header) are allowed; the token protects non-loopback servers."""
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.netloc == host and parts.scheme in ("http", "https")


def _token_ok(ws: WebSocket, token: str | None) -> bool:
    if not token:
        return True
    offered = ws.query_params.get("token") or ""
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        offered = auth[7:].strip()
    return hmac.compare_digest(offered.encode(), token.encode())


class Connection:
    def __init__(self, ws: WebSocket, runtime: Runtime, session: Session) -> None:
        self.ws = ws
        self.runtime = runtime
        self.session = session
        self.protocol = proto.ServerProtocol(proto.Limits(), rate_limiter=proto.RateLimiter(20.0, 40))
        self.bus = EventBus()
        self.pipeline: VoicePipeline | None = None
        self.frames: Channel[ImageFrame] = Channel(2, Overflow.DROP_OLDEST, name="camera")
        self.latest_image: ImageFrame | None = None
        self._send_lock = asyncio.Lock()
        #: Tool calls waiting for the person's ``confirm_action``, by control-signal id.
        self.confirmations: dict[str, asyncio.Future[bool]] = {}
        self._ready = asyncio.Event()
        self.out_rate = 16000
        self.pacer = AudioPacer(
            self._send_bytes, self._send_text, lead_s=runtime.settings.server.audio_lead_ms / 1000
        )

    # -- sending -----------------------------------------------------------------------------------

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_text(text)

    async def _send_bytes(self, data: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(data)

    async def send(self, message: Any) -> None:
        await self._send_text(proto.encode(message))

    async def error(self, code: str, message: str, *, retryable: bool = False) -> None:
        await self.send(proto.ErrorMessage(code=code, message=message, retryable=retryable))

    # -- set-up ------------------------------------------------------------------------------------

    async def build(self) -> None:
        """Wait for the shared engines, then build this connection's pipeline over the session."""
        rt = self.runtime
        await rt.ready.wait()
        engines = rt.engines
        if engines is None or engines.llm is None:
            await self.error("engine_unavailable", f"no language model is available: {rt.load_error}")
            return
        vad = await rt.new_vad() if engines.stt is not None else None
        settings = (
            apply_update(rt.settings, self.session.overrides) if self.session.overrides else rt.settings
        )
        speak = settings.tts.enabled and engines.tts is not None
        self.pipeline = VoicePipeline(
            llm=engines.llm,
            stt=engines.stt if vad is not None else None,
            vad=vad,
            tts=engines.tts,
            bus=self.bus,
            history=self.session.history,
            config=PipelineConfig.from_settings(settings, speak=speak, mode=self.session.mode),
        )
        self.pipeline.playback = self.pacer
        self.pipeline.context = ContextWindow(
            context_tokens=settings.llm.context_tokens,
            reserve_tokens=min(settings.llm.max_tokens, settings.llm.context_tokens // 2),
            profile=lambda: self.session.memory,
            summarizer=rt.summarizer,
        )
        if engines.llm.capabilities.tools and settings.llm.tools:
            self.pipeline.tools = SessionTools(self, settings.llm.tools)
        self._ready.set()

    async def pipeline_ready(self) -> VoicePipeline | None:
        await self._ready.wait()
        return self.pipeline

    # -- the three tasks ---------------------------------------------------------------------------

    async def write(self) -> None:
        pipeline = await self.pipeline_ready()
        if pipeline is None:
            return
        async for out in pipeline.outputs:
            if isinstance(out, AudioOut):
                chunk = out.chunk
                samples = chunk.as_float32()
                if chunk.sample_rate != self.out_rate:
                    samples = resample(samples, chunk.sample_rate, self.out_rate)
                pcm = AudioChunk(samples, self.out_rate).to_pcm16()
                self.pacer.add_audio(out.turn_id, proto.encode_audio(pcm), len(samples) / self.out_rate)
                continue
            message = proto.from_output(out)
            if message is None:
                continue
            if isinstance(out, ResponseDone):  # what actually went out, also for an interrupted turn
                sent_ms = round(self.pacer.sent_seconds(out.turn_id) * 1000, 1)
                message = message.model_copy(update={"audio_ms": sent_ms})
            text = proto.encode(message)
            turn_id = getattr(out, "turn_id", None)
            if isinstance(out, _AFTER_AUDIO) and turn_id and self.pacer.add_after_audio(turn_id, text):
                continue
            await self._send_text(text)
            if isinstance(out, ResponseDone):
                self.save()  # every completed or interrupted turn is on disk before the next one

    def save(self) -> None:
        try:
            self.runtime.sessions.save(self.session)
        except OSError as exc:  # a full disk must not end the conversation
            log.error("could not save session %s: %s", self.session.id, exc)

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
        if isinstance(event, proto.ProtocolError):
            await self.error(event.code, event.message)
            return
        if isinstance(event, proto.AudioIn):
            pipeline = self.pipeline if self._ready.is_set() else None
            if pipeline is None or pipeline.vad is None:
                if self._ready.is_set():
                    await self.error("engine_unavailable", "speech input is unavailable: no VAD/STT engine")
                return  # audio before the engines are ready is dropped, as a microphone would be
            pipeline.push_audio(AudioChunk.from_pcm16(event.pcm, 16000))
            return
        if isinstance(event, proto.VideoIn):
            frame = ImageFrame(event.jpeg, "JPEG")
            self.frames.send_nowait(frame)
            self.latest_image = frame
            return
        kind = getattr(event, "type", None)
        if kind == "ping":
            await self.send(proto.PongMessage(id=event.id))
        elif kind == "playback":
            self.pacer.report(event.turn_id, event.played_ms)
        elif kind == "text":
            pipeline = await self.pipeline_ready()
            if pipeline is not None:
                pipeline.push_text(event.text)
        elif kind == "image":
            await self.on_image(event)
        elif kind == "control":
            await self.on_control(event)

    async def on_image(self, event: Any) -> None:
        try:
            self.latest_image = ImageFrame(event.image, "PNG" if event.format == "png" else "JPEG")
        except InvalidInput as exc:
            await self.error("bad_image", str(exc))
            return
        if event.text:
            await self.send(
                proto.NotificationMessage(
                    text="No vision model is configured: answering without looking at the image.",
                    level="warning",
                    data={},
                )
            )
            pipeline = await self.pipeline_ready()
            if pipeline is not None:
                pipeline.push_text(event.text)

    async def on_control(self, event: Any) -> None:
        action = event.action
        pipeline = await self.pipeline_ready()
        if action == "interrupt":
            if pipeline is not None:
                await pipeline.interrupt("client interrupt")
        elif action == "switch_mode":
            if event.mode not in MODES:
                await self.error(
                    "unknown_mode", f"unknown mode {event.mode!r}; available: {', '.join(MODES)}"
                )
                return
            self.session.mode = event.mode
            if pipeline is not None:
                pipeline.config = PipelineConfig.from_settings(
                    self.runtime.settings, mode=event.mode, speak=pipeline.config.speak
                )
        elif action == "update_config":
            settings = self.session.update_overrides(event.config, self.runtime.settings)  # names a bad key
            if pipeline is not None:
                speak = settings.tts.enabled and pipeline.tts is not None
                pipeline.config = PipelineConfig.from_settings(settings, speak=speak, mode=self.session.mode)
        elif action == "confirm_action":
            waiter = self.confirmations.get(event.id)
            if waiter is None or waiter.done():
                await self.error("unknown_action", f"no pending action {event.id!r} to confirm")
                return
            waiter.set_result(bool(event.accept))
        # "start" needs nothing: audio may simply flow.


def history_message(session: Session) -> proto.HistoryMessage:
    entries = [
        proto.HistoryEntry(
            role=m.role,
            content=m.content,
            modality=m.modality,
            interrupted=m.interrupted,
            mode=m.mode,
            timestamp=m.timestamp,
        )
        for m in session.history
    ]
    return proto.HistoryMessage(session_id=session.id, messages=entries)


class SessionTools:
    """The pipeline's tool executor for one connection: the configured tools, run against the session's
    memory; tools flagged ``confirm`` ask the person through a ``control_signal`` first."""

    def __init__(self, conn: Connection, names: list[str]) -> None:
        self.conn = conn
        registry = ToolRegistry(builtin_tools(), discover=True)
        for tool in registry.tools():
            if tool.name in names and not tool.enabled:
                registry.set_enabled(tool.name)
            elif tool.name not in names and tool.enabled:
                registry.set_enabled(tool.name, False)
        self.runner = ToolRunner(registry, ask_confirm=self.ask)

    def specs(self) -> tuple[ToolSpec, ...]:
        return self.runner.registry.specs()

    async def run_tool(self, call: ToolCall, turn_id: str) -> ToolResult:
        context = ToolContext(
            session_id=self.conn.session.id, turn_id=turn_id, memory=self.conn.session.memory
        )
        return await self.runner.run(call, context)

    async def ask(self, request: ConfirmRequest) -> bool:
        signal_id = f"confirm_{request.call_id}"
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.conn.confirmations[signal_id] = waiter
        try:
            await self.conn.send(
                proto.ControlSignalMessage(
                    id=signal_id,
                    signal="confirm_action",
                    payload={"tool": request.tool, "arguments": request.arguments, "prompt": request.prompt},
                )
            )
            return await asyncio.wait_for(waiter, request.timeout_s)
        except TimeoutError:
            return False
        finally:
            self.conn.confirmations.pop(signal_id, None)


async def serve_connection(ws: WebSocket, runtime: Runtime) -> None:
    settings = runtime.settings.server
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), settings.allowed_origins):
        log.warning("refused a WebSocket from origin %s", ws.headers.get("origin"))
        await ws.close(code=1008)  # before accept: the client gets HTTP 403
        return
    if not _token_ok(ws, settings.token):
        log.warning("refused a WebSocket with a missing or wrong token")
        await ws.close(code=1008)
        return
    if runtime.connections >= settings.max_connections:
        await ws.close(code=1013)
        return
    await ws.accept()
    try:
        wanted = ws.query_params.get("session_id") or runtime.resume_id
        session, resumed = runtime.sessions.open(wanted, mode=runtime.settings.mode)
    except InvalidInput as exc:
        await ws.send_text(proto.encode(proto.ErrorMessage(code="invalid_session", message=str(exc))))
        await ws.close(code=1008)
        return
    runtime.connections += 1
    runtime.connections_gauge.set(runtime.connections)
    session.connections += 1
    conn = Connection(ws, runtime, session)
    recorder = TurnMetricsRecorder(runtime.metrics).attach(conn.bus)
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
                mode=session.mode,
                modes=list(MODES),
                audio_out_rate=conn.out_rate,
                engines=runtime.engine_states(),
                limits=conn.protocol.limits,
            )
        )
        if resumed and len(session.history):
            await conn.send(history_message(session))
        tasks = [
            asyncio.create_task(conn.build(), name="ws-build"),
            asyncio.create_task(conn.write(), name="ws-write"),
            asyncio.create_task(conn.pacer.run(), name="ws-pacer"),
        ]
        await conn.read()
    except (WebSocketDisconnect, ChannelClosed):
        pass
    except Exception:
        log.exception("connection for session %s failed", session.id)
    finally:
        if conn.pipeline is not None:
            await conn.pipeline.aclose()
            if isinstance(conn.pipeline.context, ContextWindow):
                await conn.pipeline.context.aclose()
            if conn.pipeline.vad is not None:
                await conn.pipeline.vad.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await recorder.aclose()
        conn.save()
        session.connections -= 1
        runtime.connections -= 1
        runtime.connections_gauge.set(runtime.connections)
