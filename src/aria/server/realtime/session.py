"""One Realtime session over Aria's engines, transport-neutral: client event text in, server events out.

It carries out the protocol's actions: the input audio goes to the :class:`Listener` (turn detection),
committed audio to the STT, a response to :func:`generate` (language model, then TTS), a cancel stops the
response's task. Every server event is queued in the order the protocol made it; ``events`` is that
queue, which the transport drains (the WebSocket shell sends each one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from aria.core.config import Settings
from aria.engines.base import LLM, STT, TTS, VAD, TurnDetector
from aria.engines.factory import create_engine
from aria.engines.registry import EngineRegistry
from aria.errors import AriaError
from aria.server.realtime import protocol as p
from aria.server.realtime.events import ResponseParams
from aria.server.realtime.listening import Listener, Pause, Started, Stopped, Timeout
from aria.server.realtime.responses import generate
from aria.server.realtime.state import Spoken, tool_specs
from aria.types import AudioChunk, ToolCall

__all__ = ["Engines", "RealtimeSession"]

log = logging.getLogger(__name__)
Json = dict[str, Any]


class Engines:
    """What a session uses: the conversation's engines, a registry and settings to build its own VAD."""

    def __init__(
        self,
        settings: Settings,
        *,
        llm: LLM | None,
        stt: STT | None,
        tts: TTS | None,
        turn_detector: TurnDetector | None = None,
        registry: EngineRegistry | None = None,
    ) -> None:
        self.settings, self.registry = settings, registry
        self.llm, self.stt, self.tts, self.turn_detector = llm, stt, tts, turn_detector

    async def vad(self, turn_detection: Json | None) -> VAD | None:
        """A VAD for the session's turn detection (``server_vad``'s threshold and silence)."""
        if turn_detection is None:
            return None
        update: Json = {}
        if turn_detection["type"] == "server_vad":
            update = {
                "threshold": turn_detection["threshold"],
                "min_silence_ms": turn_detection["silence_duration_ms"],
            }
        settings = self.settings.model_copy(update={"vad": self.settings.vad.model_copy(update=update)})
        try:
            vad = create_engine("vad", settings, self.registry)
            if vad is None:
                return None
            await vad.start()
        except AriaError as exc:
            log.warning("no VAD for a realtime session: %s", exc)
            return None
        assert isinstance(vad, VAD)
        return vad


class RealtimeSession:
    def __init__(self, engines: Engines, *, model: str, kind: str = "realtime") -> None:
        self.engines = engines
        voices = tuple(engines.tts.capabilities.voices) if engines.tts is not None else ()
        self.protocol = p.RealtimeProtocol(
            model=model, kind=kind, voices=voices, default_voice=engines.settings.tts.voice
        )
        self.listener = Listener(None, None)
        #: Server events in the order they were made, for the transport to send.
        self.events: asyncio.Queue[Json] = asyncio.Queue()
        self._response: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        await self._configure()
        self._emit(self.protocol.created())

    def _emit(self, events: list[Any]) -> None:
        for event in events:
            self.events.put_nowait(event)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"realtime-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- client events -----------------------------------------------------------------------------------

    async def receive(self, text: str) -> None:
        """Handle one client event (bad ones get an ``error`` event; the session goes on)."""
        for out in self.protocol.receive(text):
            await self._act(out)

    async def _act(self, out: Any) -> None:
        if isinstance(out, dict):
            self.events.put_nowait(out)
        elif isinstance(out, p.AudioIn):
            for signal in self.listener.push(out.samples):
                await self._signal(signal)
        elif isinstance(out, p.Commit):
            audio = self.listener.take()
            self._spawn(self._transcribe(out.item_id, audio, respond=False), "transcribe")
        elif isinstance(out, p.TranscribeItem):
            self._spawn(self._transcribe(out.item_id, out.samples, respond=False), "transcribe")
        elif isinstance(out, p.ClearInput):
            self.listener.clear()
        elif isinstance(out, p.Configure):
            await self._configure()
        elif isinstance(out, p.Respond):
            self._respond(out)
        elif isinstance(out, p.Cancel):
            await self.cancel(out.reason)

    async def _configure(self) -> None:
        wanted = self.protocol.session.turn_detection
        if wanted != self.listener.turn_detection:
            old = self.listener.vad
            hangover = self.engines.settings.vad.min_silence_ms
            if wanted is not None and wanted["type"] == "server_vad":
                hangover = int(wanted["silence_duration_ms"])
            self.listener.configure(await self.engines.vad(wanted), wanted, hangover_ms=hangover)
            if old is not None:
                await old.aclose()

    # -- turn detection ----------------------------------------------------------------------------------

    async def _signal(self, signal: Started | Stopped | Pause | Timeout) -> None:
        detection = self.protocol.session.turn_detection or {}
        if isinstance(signal, Started):
            self._emit(self.protocol.speech_started(signal.audio_start_ms))
            if self._response is not None and detection.get("interrupt_response", True):
                await self.cancel("turn_detected")
        elif isinstance(signal, Pause):
            self._spawn(self._judge(signal), "end-of-turn")
        elif isinstance(signal, Stopped):
            self._emit(self.protocol.speech_stopped(signal.audio_end_ms))
            self._end_turn(respond=bool(detection.get("create_response", True)))
        else:
            self._emit(self.protocol.timeout_triggered(signal.audio_start_ms, signal.audio_end_ms))
            self._end_turn(respond=True)

    def _end_turn(self, *, respond: bool) -> None:
        events = self.protocol.commit()
        commit = events.pop()
        assert isinstance(commit, p.Commit)
        self._emit(events)
        respond = respond and self.protocol.session.kind == "realtime"
        self._spawn(self._transcribe(commit.item_id, self.listener.take(), respond=respond), "transcribe")

    async def _judge(self, pause: Pause) -> None:
        """semantic_vad: ask the end-of-turn model whether the pause ends the turn."""
        detector = self.engines.turn_detector
        try:
            prediction = await detector.predict(pause.audio) if detector is not None else None
        except AriaError as exc:
            log.warning("the end-of-turn model failed (%s): the pause ends the turn", exc)
            prediction = None
        complete = prediction is None or prediction.complete
        probability = 1.0 if prediction is None else prediction.probability
        stopped = self.listener.decide(complete, probability, pause.at_ms)
        if stopped is not None:
            await self._signal(stopped)

    async def _transcribe(self, item_id: str, audio: np.ndarray, *, respond: bool) -> None:
        seconds = audio.size / 16000
        stt = self.engines.stt
        if audio.size and stt is not None:
            try:
                result = await stt.transcribe(AudioChunk(audio.astype(np.float32), 16000))
            except AriaError as exc:
                self._emit(self.protocol.transcription_failed(item_id, str(exc)))
                return
            self._emit(self.protocol.transcribed(item_id, result.text.strip(), seconds))
        elif audio.size:
            self._emit(self.protocol.transcription_failed(item_id, "no speech recognition engine is loaded"))
        if respond and self.protocol.answers.response is None:
            for out in self.protocol.start_response(ResponseParams()):
                await self._act(out)

    # -- responses ---------------------------------------------------------------------------------------

    def _respond(self, action: p.Respond) -> None:
        self._response = self._spawn(self._run(action), "response")

    async def _run(self, action: p.Respond) -> None:
        llm = self.engines.llm
        settings = self.engines.settings.llm
        messages, system = self.protocol.conversation.messages()
        prompt = "\n\n".join(
            text for text in (action.instructions or settings.system_prompt, *system) if text
        )
        try:
            if llm is None:
                raise AriaError("no language model is loaded")
            await generate(
                _Sink(self),
                llm,
                self.engines.tts,
                messages=messages,
                system_prompt=prompt,
                tools=tool_specs(action.tools),
                audio="audio" in action.modalities,
                voice=action.voice,
                speed=action.speed,
                output_format=action.output_format,
                temperature=settings.temperature,
                max_tokens=action.max_tokens or settings.max_tokens,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("realtime response %s failed: %s", action.response_id, exc, exc_info=exc)
            code = exc.code if isinstance(exc, AriaError) else "server_error"
            error = {"type": "server_error", "code": code, "message": str(exc)}
            self._response = None
            self._emit(self.protocol.answers.finish("failed", error=error))
            return
        self._response = None
        open_item = (
            self.protocol.answers.response.open if self.protocol.answers.response is not None else None
        )
        playing = open_item.audio_seconds() if open_item is not None else 0.0
        self._emit(self.protocol.answers.finish("completed"))
        self.listener.idle_after(round(playing * 1000))

    async def cancel(self, reason: str) -> None:
        """Stop the response in progress (``response.done`` with status ``cancelled``)."""
        task, self._response = self._response, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._emit(self.protocol.answers.finish("cancelled", reason=reason))

    async def aclose(self) -> None:
        await self.cancel("client_cancelled")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.listener.vad is not None:
            await self.listener.vad.aclose()


class _Sink:
    """Where :func:`generate` puts the answer: through the protocol, into the event queue."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.protocol = session.protocol.answers

    async def text(self, delta: str) -> None:
        self.session._emit(self.protocol.text(delta))

    async def transcript(self, delta: str) -> None:
        self.session._emit(self.protocol.transcript(delta))

    async def audio(self, b64: str, seconds: float) -> None:
        self.session._emit(self.protocol.audio(b64, seconds))
        await asyncio.sleep(0)  # let the transport send while a long answer is synthesised

    def spoken(self, clause: Spoken) -> None:
        self.protocol.spoken(clause)

    async def function_call(self, call: ToolCall) -> None:
        self.session._emit(self.protocol.function_call(call.id, call.name, call.arguments))
