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
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from aria.core.audio import resample
from aria.core.channels import Channel, Overflow
from aria.core.config import Settings, apply_update
from aria.core.events import EventBus
from aria.core.modes import ModeSpec
from aria.engines.base import LLM, VAD
from aria.engines.fallback import answered_by
from aria.errors import AriaError, ChannelClosed, InvalidInput
from aria.pipeline.echo import EchoGuard
from aria.pipeline.modes import Loadout, mode_pipeline, watch_command
from aria.pipeline.monitor import Alert, Monitor, MonitorConfig
from aria.pipeline.observers import TurnMetricsRecorder
from aria.pipeline.outputs import AudioOut, MetricsOut, ResponseDone, StateOut
from aria.pipeline.quality import LatencyGovernor
from aria.pipeline.residency import ResidencyError, ResidencyEvent
from aria.pipeline.voice import PipelineConfig, VoicePipeline
from aria.server import protocol as proto
from aria.server.pacing import AudioPacer
from aria.server.runtime import ModeUnavailable, Runtime
from aria.session.context import ContextWindow
from aria.session.store import Session
from aria.tools.builtin import builtin_tools
from aria.tools.registry import ToolContext, ToolRegistry
from aria.tools.runner import ConfirmRequest, ToolResult, ToolRunner
from aria.types import AudioChunk, ImageFrame, Message, ToolCall, ToolSpec

__all__ = [
    "CAMERA_FRESH_S",
    "FALLBACK_NOTICE_S",
    "Connection",
    "SessionTools",
    "history_message",
    "host_allowed",
    "mode_details",
    "origin_allowed",
    "serve_connection",
    "token_ok",
]

log = logging.getLogger(__name__)
#: How long a camera frame counts as what the camera sees now.
CAMERA_FRESH_S = 10.0
#: At most one "fallback took over" notice per engine per this many seconds.
FALLBACK_NOTICE_S = 60.0
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


_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def host_allowed(host: str | None, bound: str, allowed: list[str]) -> bool:
    """Against DNS rebinding: a server bound to loopback answers only requests addressed to a loopback
    name (or one of ``allowed``); a server bound elsewhere answers any ``Host`` unless ``allowed`` lists
    some (it is protected by its token)."""
    if host is None:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower()
    if name in _LOOPBACK_NAMES or name in (a.lower() for a in allowed) or "*" in allowed:
        return True
    if bound in _LOOPBACK_NAMES:
        return False
    return not allowed or name == bound.lower()


def token_ok(query: Mapping[str, str], headers: Mapping[str, str], token: str | None) -> bool:
    """Whether a request carries the server's token (``?token=`` or ``Authorization: Bearer``)."""
    if not token:
        return True
    offered = query.get("token") or ""
    auth = headers.get("authorization", "")
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
        self.mode = session.mode if session.mode in runtime.modes else runtime.settings.mode
        self.loadout: Loadout | None = None
        self.vad: VAD | None = None
        self.monitor: Monitor | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        #: Camera frames for the monitor (a watching mode only): two slots, the oldest dropped.
        self.frames: Channel[ImageFrame] | None = None
        #: The newest uploaded image and camera frame, with when they came.
        self.image: tuple[float, ImageFrame] | None = None
        self.camera: tuple[float, ImageFrame] | None = None
        self._send_lock = asyncio.Lock()
        #: The client has gone (a send failed): nothing more is sent.
        self.gone = False
        self._switch_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        #: Tool calls waiting for the person's ``confirm_action``, by control-signal id.
        self.confirmations: dict[str, asyncio.Future[bool]] = {}
        self._ready = asyncio.Event()
        self._loading: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._audio_refused = False
        self._fallback_said: dict[str, float] = {}
        res = runtime.settings.resilience
        self.governor = (
            LatencyGovernor(
                res.slow_first_token_ms, window=res.slow_turns, probe_every_s=res.recovery_probe_s
            )
            if res.slow_first_token_ms > 0 and res.fast_llm is not None
            else None
        )
        self._usual_llm: LLM | None = None
        self.tools: SessionTools | None = None
        self.out_rate = 16000
        #: The answer's own audio coming back through a client's microphone does not count as speech.
        self.echo = EchoGuard(16000, max_delay_s=min(2.0, runtime.settings.server.audio_lead_ms / 1000 + 0.5))
        self.pacer = AudioPacer(
            self._send_bytes,
            self._send_text,
            lead_s=runtime.settings.server.audio_lead_ms / 1000,
            on_sent=self.echo.reference,
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

    def _left(self, exc: BaseException) -> None:
        """The client is gone: sending stops, and reading goes on until the frames it sent before it
        left are all handled (a question sent just before closing the tab is still kept)."""
        self.gone = True
        log.info("client of session %s left (%s)", self.session.id, type(exc).__name__)

    async def send(self, message: Any) -> None:
        await self._send_text(proto.encode(message))

    async def error(self, code: str, message: str, *, retryable: bool = False) -> None:
        await self.send(proto.ErrorMessage(code=code, message=message, retryable=retryable))

    async def notify(self, text: str, *, level: Literal["info", "warning"] = "info", **data: Any) -> None:
        await self.send(proto.NotificationMessage(text=text, level=level, data=data))

    def _later(self, coro: Any) -> None:
        """Send from a synchronous callback (a residency event, a monitor alert)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- set-up and modes --------------------------------------------------------------------------

    async def build(self) -> None:
        """Wait for the engines, then build this connection's pipeline for the session's mode."""
        rt = self.runtime
        await rt.ready.wait()
        rt.listeners.add(self.on_residency)
        rt.restart_listeners.add(self.on_restart)
        rt.fallback_listeners.add(self.on_fallback)
        try:
            await self.switch(self.mode)
        except (ModeUnavailable, ResidencyError) as exc:
            if rt.load_error is not None:
                await self.error("engine_unavailable", f"no language model is available: {rt.load_error}")
            else:
                await self.send(proto.error_from_exception(exc))
        finally:
            self._ready.set()

    async def switch(self, mode: str, *, watch: str | None = None) -> None:
        """Rebuild the pipeline for ``mode`` over the same session (its history and settings survive).
        The new mode's engines are made resident first (``state`` messages say what loads); when they
        cannot be, the current mode stays and the error says why."""
        spec = self.runtime.modes[mode]  # callers pass a known mode (on_control checks the client's)
        if watch is None and self.monitor is not None and mode == self.mode:
            watch = self.monitor.condition  # a rebuild of the same mode keeps watching
        async with self._switch_lock:
            self.save()  # the session is on disk before anything is loaded or unloaded
            loadout = await self.runtime.acquire(self, mode)
            llm = loadout.llm
            if spec.watches and (llm is None or not llm.capabilities.vision):
                name = llm.name if llm is not None else "none"
                raise ModeUnavailable(
                    f"the {mode} mode needs a vision model, and {name} cannot see images; configure one "
                    '(e.g. [llm] backend = "ollama", options = { model = "llava" }) and try again'
                )
            old, waiting = self.pipeline, []
            if old is not None:
                waiting = await old.conclude("mode switch")
                await self._retire(old)
            await self._stop_monitor()
            if spec.listens and self.vad is None and loadout.stt is not None:
                self.vad = await self.runtime.new_vad()
            elif self.vad is not None:
                self.vad.reset()
            self.echo.reset()  # the old mode's answer was cut: none of its audio plays on
            self.mode, self.loadout = mode, loadout
            self.session.mode = mode
            if self.governor is not None and self.governor.degraded:
                self.governor.reset()  # the new mode starts on its own model
                self.runtime.drop_fast_llm(self)
            self.pipeline = self._pipeline(mode, spec, loadout)
            for text in waiting:  # typed while the old mode listened: the new mode answers it
                self._push_kept(self.pipeline, text)
            self._audio_refused = False
            if spec.watches:
                self._start_monitor(spec, watch if watch is not None else spec.watch)
            self._changed.set()
        if spec.sees and llm is not None and not llm.capabilities.vision:
            await self.notify(
                f"The language model ({llm.name}) cannot see images, so pictures are described to it "
                "as missing; configure a vision model (for example Ollama's llava) to ask about them.",
                level="warning",
            )
        for role, why in loadout.problems.items():
            await self.notify(f"This mode runs without its {role}: {why}", level="warning")
        await self.send_mode()
        self.save()

    def _pipeline(self, mode: str, spec: ModeSpec, loadout: Loadout) -> VoicePipeline:
        settings = self.settings()
        llm_settings = settings.with_llm(spec.llm).llm
        uses_tools = {"tools", "router"} & set(spec.steps)
        can_call = loadout.llm is not None and loadout.llm.capabilities.tools and settings.llm.tools
        if uses_tools and can_call and self.tools is None:  # tool discovery reads package metadata: once
            self.tools = SessionTools(self, settings.llm.tools)
        return mode_pipeline(
            mode,
            spec,
            settings,
            loadout,
            vad=self.vad,
            bus=self.bus,
            history=self.session.history,
            playback=self.pacer,
            context=ContextWindow(
                context_tokens=llm_settings.context_tokens,
                reserve_tokens=min(llm_settings.max_tokens, llm_settings.context_tokens // 2),
                profile=lambda: self.session.memory,
                summarizer=self.runtime.summarizer,
            ),
            tools=self.tools if uses_tools and can_call else None,
            pictures=self.picture if spec.sees else None,
            commands=self.watch_command if spec.watches else None,
            turn_detector=self.runtime.turn_detector,
            echo=self.echo,
        )

    def _push_kept(self, pipeline: VoicePipeline, text: str) -> None:
        try:
            pipeline.push_text(text)
        except InvalidInput:  # the new mode takes no text (dictation): keep the words in the history
            self.session.history.append(Message("user", text, "text", mode=self.mode))

    def settings(self) -> Settings:
        rt = self.runtime
        return apply_update(rt.settings, self.session.overrides) if self.session.overrides else rt.settings

    async def _retire(self, pipeline: VoicePipeline) -> None:
        await pipeline.aclose()
        if isinstance(pipeline.context, ContextWindow):
            await pipeline.context.aclose()

    async def send_mode(self) -> None:
        watch = self.monitor.condition if self.monitor is not None else None
        slots = dict(self.loadout.slots) if self.loadout is not None else {}
        await self.send(proto.ModeMessage(mode=self.mode, watch=watch, engines=slots))

    def on_residency(self, event: ResidencyEvent) -> None:
        if event.kind == "loading":
            self._loading.add(event.name)
        elif event.kind in ("loaded", "unloaded"):
            self._loading.discard(event.name)
        else:
            return
        what = {"loading": "loading", "loaded": "loaded", "unloaded": "unloaded"}[event.kind]
        reason = f"{what} {event.name}" + (f" {event.reason}" if event.reason and what != "loaded" else "")
        state = self.pipeline.state.state.value if self.pipeline is not None else "idle"
        message = proto.StateMessage.model_validate(
            {"state": state, "reason": reason, "loading": sorted(self._loading)}
        )
        self._later(self.send(message))

    # -- failures ----------------------------------------------------------------------------------

    def on_fallback(self, kind: str, engine: str, error: str) -> None:
        """An engine failed and the next in its chain took over: say so, at most once a minute each."""
        now = time.monotonic()
        if now - self._fallback_said.get(engine, -FALLBACK_NOTICE_S) < FALLBACK_NOTICE_S:
            return
        self._fallback_said[engine] = now
        text = f"The {kind.upper()} engine {engine} failed, so a fallback answered ({error})."
        data = {"kind": "fallback", "engine_kind": kind, "engine": engine, "error": error}
        self._later(self.send(proto.NotificationMessage(text=text, level="warning", data=data)))

    def on_restart(self, slot: str) -> None:
        """A slot was restarted after a crash: a pipeline using it gets the fresh engine."""
        if self.loadout is not None and slot in self.loadout.slots.values():
            self._later(self._rebuild_after_restart(slot))

    async def _rebuild_after_restart(self, slot: str) -> None:
        try:
            await self.switch(self.mode)
        except AriaError as exc:
            await self.send(proto.error_from_exception(exc))
            return
        await self.notify(
            f"The {slot} engine crashed and was restarted; the conversation goes on.",
            level="warning",
            kind="restarted",
            slot=slot,
        )

    def _watch_latency(self, out: MetricsOut) -> None:
        assert self.governor is not None
        asked, first = out.waterfall.get("llm_request"), out.waterfall.get("first_token")
        if self.governor.degraded:
            if self.governor.probe_due():
                self._later(self._probe_usual())
        elif asked is not None and first is not None and self.governor.observe(first - asked) == "degrade":
            self._later(self._degrade())

    async def _degrade(self) -> None:
        pipeline = self.pipeline
        fast = await self.runtime.fast_llm(self)
        if fast is None or pipeline is None or pipeline.llm is None or self.governor is None:
            if self.governor is not None:
                self.governor.reset()
            return
        self._usual_llm, pipeline.llm = pipeline.llm, fast
        bound_s = self.governor.bound_ms / 1000
        await self.notify(
            f"Answers are slow (the first words took over {bound_s:g} s), so I am switching to the faster "
            f"model {fast.name} until {self._usual_llm.name} is quick again.",
            level="warning",
            kind="quality",
            state="degraded",
            model=fast.name,
        )

    async def _probe_usual(self) -> None:
        usual, pipeline = self._usual_llm, self.pipeline
        if usual is None or pipeline is None or self.governor is None:
            return
        if await self.governor.probe(usual) != "recover":
            return
        pipeline.llm, self._usual_llm = usual, None
        self.runtime.drop_fast_llm(self)
        await self.notify(
            f"{usual.name} is quick again: switching back to it.",
            kind="quality",
            state="recovered",
            model=usual.name,
        )

    async def recover(self) -> None:
        """An engine crashed during a turn: the session is saved first, then broken engines restart."""
        self.save()
        restarted = await self.runtime.recover()
        log.info("after a crash, restarted: %s", restarted or "nothing (the engines report healthy)")

    # -- pictures and the monitor ------------------------------------------------------------------

    def picture(self) -> ImageFrame | None:
        """The picture for a question: the newer of the last uploaded image and the last camera frame
        (a camera frame only while fresh: the camera may have been turned off)."""
        now = time.monotonic()
        camera = self.camera if self.camera is not None and now - self.camera[0] <= CAMERA_FRESH_S else None
        candidates = [c for c in (self.image, camera) if c is not None]
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    def _start_monitor(self, spec: ModeSpec, condition: str | None) -> None:
        assert self.loadout is not None
        assert self.loadout.llm is not None
        config = MonitorConfig(
            every_frames=spec.every_frames,
            every_s=spec.every_s,
            change_gated=spec.change_gated,
            cooldown_s=spec.cooldown_s,
            dedup_s=spec.dedup_s,
            webhook_url=spec.webhook_url,
        )
        self.monitor = Monitor(
            self.loadout.llm,
            config,
            condition=condition,
            on_alert=self.on_alert,
            on_error=self.on_monitor_error,
            session_id=self.session.id,
        )
        frames: Channel[ImageFrame] = Channel(2, Overflow.DROP_OLDEST, name="camera")
        self.frames = frames
        self._monitor_task = asyncio.get_running_loop().create_task(self.monitor.run(frames))

    async def _stop_monitor(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        task, self._monitor_task = self._monitor_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.monitor is not None:
            await self.monitor.aclose()
            self.monitor = None

    def on_alert(self, alert: Alert) -> None:
        text = f"Seen: {alert.description}" if alert.description else f"Seen: {alert.condition}"
        meta = {"alert_id": alert.id, "watch": alert.condition}
        self.session.history.append(Message("assistant", text, mode=self.mode, metadata=meta))
        data = {
            "kind": "monitor",
            "alert_id": alert.id,
            "condition": alert.condition,
            "description": alert.description,
            "at": alert.at,
        }
        self._later(self.send(proto.NotificationMessage(text=text, level="info", data=data)))
        self.save()

    def on_monitor_error(self, exc: BaseException) -> None:
        log.warning("the monitor's check failed: %s", exc)

    async def set_watch(self, condition: str | None) -> None:
        if self.monitor is None:
            raise InvalidInput(f"the {self.mode} mode does not watch the camera; switch to a watching mode")
        self.monitor.set_condition(condition)
        await self.send_mode()

    def watch_command(self, text: str) -> str | None:
        """The monitor understands "tell me when ..." and "stop watching" itself."""
        command = watch_command(text)
        if command is None or self.monitor is None:
            return None
        verb, condition = command
        self.monitor.set_condition(condition)
        self._later(self.send_mode())
        if verb == "stop":
            return "Okay, I have stopped watching."
        return f"Okay, I will tell you when I see that {condition}."

    async def pipeline_ready(self) -> VoicePipeline | None:
        await self._ready.wait()
        return self.pipeline

    # -- the three tasks ---------------------------------------------------------------------------

    async def write(self) -> None:
        """Send each pipeline's outputs; after a mode switch, go on with the new pipeline's."""
        done: VoicePipeline | None = None
        while True:
            await self._changed.wait()
            self._changed.clear()
            pipeline = self.pipeline
            if pipeline is None or pipeline is done:
                continue
            done = pipeline
            await self._write(pipeline)

    async def _write(self, pipeline: VoicePipeline) -> None:
        async for out in pipeline.outputs:
            if isinstance(out, AudioOut):
                chunk = out.chunk
                samples = chunk.as_float32()
                if chunk.sample_rate != self.out_rate:
                    samples = resample(samples, chunk.sample_rate, self.out_rate)
                pcm = AudioChunk(samples, self.out_rate).to_pcm16()
                reference = samples if self.out_rate == 16000 else resample(samples, self.out_rate, 16000)
                self.pacer.add_audio(
                    out.turn_id, proto.encode_audio(pcm), len(samples) / self.out_rate, reference=reference
                )
                continue
            message = proto.from_output(out, loading=sorted(self._loading))
            if message is None:
                continue
            if isinstance(out, ResponseDone):  # what actually went out, also for an interrupted turn
                sent_ms = round(self.pacer.sent_seconds(out.turn_id) * 1000, 1)
                message = message.model_copy(update={"audio_ms": sent_ms})
            if isinstance(out, MetricsOut) and isinstance(message, proto.MetricsMessage):
                message = self._with_model(message, pipeline)
            text = proto.encode(message)
            if isinstance(out, MetricsOut) and self.governor is not None:
                self._watch_latency(out)
            if isinstance(out, ResponseDone):
                self.save()  # every completed or interrupted turn is on disk before the next one
                if out.error == "engine_crashed":  # the turn (and its apology) is over: restart
                    self._later(self.recover())
            turn_id = getattr(out, "turn_id", None)
            if isinstance(out, _AFTER_AUDIO) and turn_id and self.pacer.add_after_audio(turn_id, text):
                continue
            await self._send_text(text)

    @staticmethod
    def _with_model(message: proto.MetricsMessage, pipeline: VoicePipeline) -> proto.MetricsMessage:
        """A turn's metrics name the model that gave its answer (``extra.model``)."""
        if pipeline.llm is None or "model" in message.extra:
            return message
        return message.model_copy(update={"extra": {**message.extra, "model": answered_by(pipeline.llm)}})

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
            await self.send(event.to_message())
            return
        if isinstance(event, proto.AudioIn):
            pipeline = self.pipeline if self._ready.is_set() else None
            if pipeline is None or pipeline.vad is None:
                if self._ready.is_set() and not self._audio_refused:
                    self._audio_refused = True  # once per mode, not once per frame
                    await self.error(
                        "engine_unavailable", f"speech input is unavailable in the {self.mode} mode"
                    )
                return  # audio before the engines are ready is dropped, as a microphone would be
            pipeline.push_audio(AudioChunk.from_pcm16(event.pcm, 16000))
            return
        if isinstance(event, proto.VideoIn):
            frame = ImageFrame(event.jpeg, "JPEG")
            self.camera = (time.monotonic(), frame)
            if self.frames is not None:
                self.frames.send_nowait(frame)
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
            image = ImageFrame(event.image, "PNG" if event.format == "png" else "JPEG")
            self.image = (time.monotonic(), image)
        except InvalidInput as exc:
            await self.error("bad_image", str(exc))
            return
        if not event.text:
            return
        pipeline = await self.pipeline_ready()
        if pipeline is not None:
            pipeline.push_text(event.text)  # first: the question is kept even if the client is gone
        if not self.runtime.modes[self.mode].sees:
            await self.notify(
                f"The {self.mode.replace('_', ' ')} mode does not look at images: answering without it. "
                "Switch to visual chat to ask about a picture.",
                level="warning",
            )

    async def on_control(self, event: Any) -> None:
        action = event.action
        pipeline = await self.pipeline_ready()
        if action == "interrupt":
            if pipeline is not None:
                await pipeline.interrupt("client interrupt")
        elif action == "switch_mode":
            if event.mode not in self.runtime.modes:
                known = ", ".join(self.runtime.modes)
                await self.error("unknown_mode", f"unknown mode {event.mode!r}; available: {known}")
                return
            try:
                await self.switch(event.mode, watch=event.watch)
            except (ModeUnavailable, ResidencyError) as exc:
                await self.send(proto.error_from_exception(exc))
                await self.send_mode()  # the mode still in effect
        elif action == "set_watch":
            await self.set_watch(event.watch)
        elif action == "update_config":
            settings = self.session.update_overrides(event.config, self.runtime.settings)  # names a bad key
            if pipeline is not None:
                spec = self.runtime.modes[self.mode]
                speak = settings.tts.enabled and pipeline.tts is not None
                pipeline.config = PipelineConfig.from_settings(
                    settings.with_llm(spec.llm), speak=speak, mode=self.mode
                )
        elif action == "confirm_action":
            waiter = self.confirmations.get(event.id)
            if waiter is None or waiter.done():
                await self.error("unknown_action", f"no pending action {event.id!r} to confirm")
                return
            waiter.set_result(bool(event.accept))
        # "start" needs nothing: audio may simply flow.

    async def aclose(self) -> None:
        self.runtime.listeners.discard(self.on_residency)
        self.runtime.restart_listeners.discard(self.on_restart)
        self.runtime.fallback_listeners.discard(self.on_fallback)
        self.runtime.release(self)
        await self._stop_monitor()
        if self.pipeline is not None:
            # An answer cut off by the closed connection is kept, as heard so far, marked interrupted.
            for text in await self.pipeline.conclude("connection closed"):  # typed, never started
                self.session.history.append(Message("user", text, "text", mode=self.mode))
            await self._retire(self.pipeline)
        if self.vad is not None:
            await self.vad.aclose()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


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
    if not host_allowed(ws.headers.get("host"), settings.host, settings.allowed_hosts):
        log.warning("refused a WebSocket for host %s", ws.headers.get("host"))
        await ws.close(code=1008)
        return
    if not token_ok(ws.query_params, ws.headers, settings.token):
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
        if session.mode not in runtime.modes:  # a mode removed from the configuration since
            session.mode = runtime.settings.mode
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
                mode=conn.mode,
                modes=list(runtime.modes),
                mode_details=mode_details(runtime.modes, runtime.mode_availability()),
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
        await conn.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await recorder.aclose()
        conn.save()
        session.connections -= 1
        runtime.connections -= 1
        runtime.connections_gauge.set(runtime.connections)
