"""A Realtime session over the transport-neutral conversation core: client event text in, GA events out.

The :class:`~aria.server.conversation.Conversation` does the listening (VAD, end-of-turn model,
barge-in), the answers (language model, tools, TTS) and keeps the history; this bridge turns the
protocol's actions into calls on it (items, ``respond``, ``interrupt``, ``tool_output``, ``truncate``,
``reconfigure``) and its events into the protocol's (``speech_started`` ... ``response.done``). Where the
Realtime API wants what the core does not do by itself, the bridge does it: a client that commits its
own audio (``turn_detection: null``) or that does not want answers to turns (``create_response: false``)
is listened to with the bridge's own :class:`Listener`; ``idle_timeout_ms``; speech ``speed``; answer
audio in the session's format. ``events`` is the ordered queue of server events the transport sends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from aria.core.config import Settings
from aria.errors import AriaError, InvalidInput
from aria.pipeline.outputs import (
    AudioOut,
    ErrorOut,
    PlaybackOut,
    ResponseDone,
    StageOut,
    TextOut,
    TranscriptOut,
)
from aria.server.conversation import ConfirmOut, Conversation, ToolCallOut
from aria.server.realtime import protocol as p
from aria.server.realtime.codecs import Encoder
from aria.server.realtime.events import ResponseParams
from aria.server.realtime.listening import Listener, Started, Stopped, Timeout, session_vad
from aria.server.realtime.speaking import AnswerAudio, aria_settings
from aria.server.realtime.state import Item, Spoken, tool_specs
from aria.server.runtime import Runtime
from aria.session.store import Session
from aria.types import AudioChunk, Message

__all__ = ["RealtimeBridge"]

log = logging.getLogger(__name__)
Json = dict[str, Any]
RATE = 16000


class RealtimeBridge:
    def __init__(self, runtime: Runtime, session: Session, protocol: p.RealtimeProtocol) -> None:
        self.runtime, self.protocol = runtime, protocol
        self.conv = Conversation(runtime, session, settings=self.settings(), client_tools=())
        self.events: asyncio.Queue[Json] = asyncio.Queue()
        #: The bridge's own listening: manual commits, and turns that are not answered.
        self.listener = Listener(None, None)
        self._samples = 0  # input audio given to the core (its clock, for speech_started/stopped)
        self._answer: AnswerAudio | None = None
        self._cancelling: str | None = None
        self._user_items: dict[str, str] = {}  # core turn -> the user item it committed
        self._answer_items: dict[str, str] = {}  # item -> the core turn that spoke it
        self._heard: dict[str, int] = {}  # core turn -> speech_started ms
        self._idle_at: int | None = None
        #: A turn whose function call got its output: its answer goes on in the next response.create.
        self._continuing: str | None = None
        self._waiting_tool: str | None = None
        self._held: list[Any] = []
        #: When speech over an answer was announced (before the core's turn for it starts).
        self._announced: int | None = None
        self._forward: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def detection(self) -> Json | None:
        return self.protocol.session.turn_detection

    @property
    def core_listens(self) -> bool:
        """The core's VAD takes the turns (turn detection on, answering them)."""
        td = self.detection
        return td is not None and bool(td.get("create_response", True))

    async def start(self) -> None:
        self._forward = asyncio.get_running_loop().create_task(self._pump(), name="realtime-core")
        await self.conv.start()
        await self._listen()
        self._emit(self.protocol.created())

    def _emit(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, dict):
                self.events.put_nowait(event)

    def _spawn(self, coro: Any, name: str = "realtime-transcribe") -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- settings --------------------------------------------------------------------------------------

    def settings(self) -> Settings:
        return aria_settings(self.runtime.settings, self.protocol.session)

    async def _configure(self) -> None:
        cfg = self.protocol.session.config
        tools = () if cfg["tool_choice"] == "none" else tool_specs(cfg["tools"])
        await self.conv.reconfigure(self.settings(), client_tools=tools)
        await self._listen()

    async def _listen(self) -> None:
        """The bridge's own listener: on when the client commits, or turns are not to be answered."""
        wanted = None if self.core_listens else self.detection
        if wanted != self.listener.turn_detection:
            old = self.listener.vad
            hangover = int((wanted or {}).get("silence_duration_ms") or 0)
            vad = await session_vad(self.runtime.settings, self.runtime.registry, wanted)
            self.listener.configure(vad, wanted, hangover_ms=hangover)
            if old is not None:
                await old.aclose()

    # -- client events ---------------------------------------------------------------------------------

    async def receive(self, text: str) -> None:
        for out in self.protocol.receive(text):
            await self._act(out)

    async def _act(self, out: Any) -> None:
        if isinstance(out, dict):
            self.events.put_nowait(out)
        elif isinstance(out, p.AudioIn):
            await self._audio(out.samples)
        elif isinstance(out, p.Commit):
            self._spawn(self._transcribe(out.item_id, self.listener.take(), respond=False))
        elif isinstance(out, p.ClearInput):
            self.listener.clear()
        elif isinstance(out, p.TranscribeItem):
            self._spawn(self._transcribe(out.item_id, out.samples, respond=False))
        elif isinstance(out, p.AddItem):
            self._add(out.item)
        elif isinstance(out, p.DeleteItem):
            self._delete(out.item)
        elif isinstance(out, p.TruncateItem):
            turn = self._answer_items.get(out.item_id)
            if turn is not None:
                try:
                    self.conv.items.truncate(turn, out.audio_end_ms)
                except InvalidInput as exc:
                    log.info("the core kept the whole answer %s: %s", turn, exc)
        elif isinstance(out, p.Configure):
            await self._configure()
        elif isinstance(out, p.Respond):
            await self._respond(out)
        elif isinstance(out, p.Cancel):
            self._cancelling = out.reason
            await self.conv.interrupt("client cancelled")

    async def _audio(self, samples: np.ndarray) -> None:
        if self.core_listens:
            self._samples += samples.size
            self.conv.push_audio(AudioChunk(samples, RATE))
            if self._idle_at is not None and self._samples >= self._idle_at:
                self._idle_at = None
                start = self._samples * 1000 // RATE
                self._emit(self.protocol.timeout_triggered(start, start))
                await self._commit(np.zeros(0, np.float32), respond=True)
            return
        for signal in self.listener.push(samples):
            if isinstance(signal, Started):
                self._emit(self.protocol.speech_started(signal.audio_start_ms))
            elif isinstance(signal, Stopped):
                self._emit(self.protocol.speech_stopped(signal.audio_end_ms))
                await self._commit(self.listener.take(), respond=False)
            elif isinstance(signal, Timeout):
                self._emit(self.protocol.timeout_triggered(signal.audio_start_ms, signal.audio_end_ms))

    async def _commit(self, audio: np.ndarray, *, respond: bool) -> None:
        events = self.protocol.commit()
        self._emit(events)
        commit = events[-1]
        assert isinstance(commit, p.Commit)
        # A turn answered once transcribed starts its response itself: responses do not wait for it.
        name = "realtime-turn" if respond else "realtime-transcribe"
        self._spawn(self._transcribe(commit.item_id, audio, respond=respond), name)

    async def _transcribe(self, item_id: str, audio: np.ndarray, *, respond: bool) -> None:
        text = ""
        if audio.size:
            try:
                text = (await self.conv.transcribe(AudioChunk(audio.astype(np.float32), RATE))).strip()
            except Exception as exc:  # any engine failure: the item stays, untranscribed
                log.warning("transcribing %s failed: %s", item_id, exc)
                self._emit(self.protocol.transcription_failed(item_id, str(exc)))
                return
            self._emit(self.protocol.transcribed(item_id, text, audio.size / RATE))
        if text:
            self.conv.items.add(Message("user", text, "audio", metadata={"item_id": item_id}))
        if respond and self.protocol.session.kind == "realtime":
            for out in self.protocol.start_response(ResponseParams()):
                await self._act(out)

    def _add(self, item: Item) -> None:
        j = item.json
        if j["type"] == "function_call_output":
            if self.conv.tool_output(j["call_id"], j["output"]):
                self._continuing = self._waiting_tool
                return
            meta = {"tool_call_id": j["call_id"], "item_id": item.id}
            self.conv.items.add(Message("tool", j["output"], metadata=meta))
            return
        if j["type"] == "function_call":
            return  # the model's own calls are in the history already; a client's has no answer to give
        parts = [c.get("text") or c.get("transcript") or "" for c in j["content"]]
        text = " ".join(part for part in parts if part).strip()
        if text or item.images:
            self.conv.items.add(Message(j["role"], text, images=item.images, metadata={"item_id": item.id}))

    def _delete(self, item: Item) -> None:
        turn = self._answer_items.pop(item.id, None)
        try:
            if turn is not None:
                self.conv.items.delete(self.conv.items.answer_index(turn))
            else:
                said = " ".join(
                    c.get("transcript") or c.get("text") or "" for c in item.json.get("content", [])
                )
                self.conv.items.delete(
                    self.conv.items.find(
                        lambda m: (
                            m.metadata.get("item_id") == item.id or (m.role == "user" and m.content == said)
                        )
                    )
                )
        except InvalidInput:
            log.info("item %s has no message in the history", item.id)

    async def _respond(self, action: p.Respond) -> None:
        if self._continuing is not None:  # the answer that waited for a function's output goes on
            self._answer = AnswerAudio(
                self._continuing, action.modalities, Encoder(action.output_format), action.speed
            )
            self._continuing, held, self._held = None, self._held, []
            for event in held:
                self._on(event)
            return
        # Items still being transcribed belong in the answer's context (a created input_audio item, a
        # committed buffer): wait for them.
        pending = [t for t in self._tasks if t.get_name() == "realtime-transcribe"]
        await asyncio.gather(*pending, return_exceptions=True)
        session_instructions = self.protocol.session.config["instructions"]
        instructions = action.instructions if action.instructions != session_instructions else None
        try:
            speak = "audio" in action.modalities  # a text response is not synthesised at all
            turn = await self.conv.respond(instructions=instructions or None, speak=speak)
        except AriaError as exc:
            turn, why = None, str(exc)
        else:
            why = "no language model is available"
        if turn is None:
            error = {"type": "server_error", "code": "engine_unavailable", "message": why}
            self._emit(self.protocol.answers.finish("failed", error=error))
            return
        self._answer = AnswerAudio(turn, action.modalities, Encoder(action.output_format), action.speed)

    # -- the core's events -----------------------------------------------------------------------------

    async def _pump(self) -> None:
        async for event in self.conv:
            try:
                self._on(event)
            except Exception:
                log.exception("realtime bridge: %r", event)

    def _bound(self, turn_id: str) -> AnswerAudio:
        """The response ``turn_id`` writes; a turn the core answers by itself starts one."""
        answer = self._answer
        if answer is not None and answer.turn_id == turn_id:
            return answer
        if self.protocol.answers.response is None:
            self._emit(self.protocol.start_response(ResponseParams()))
        response = self.protocol.answers.response
        assert response is not None
        speed = float(self.protocol.session.config["audio"]["output"]["speed"])
        self._answer = AnswerAudio(turn_id, response.modalities, Encoder(response.output_format), speed)
        return self._answer

    def _on(self, event: Any) -> None:
        turn_id = getattr(event, "turn_id", None)
        if turn_id is not None and turn_id == self._continuing:
            self._held.append(event)  # until the client's response.create
            return
        if isinstance(event, StageOut):
            self._stage(event)
        elif isinstance(event, PlaybackOut):
            self._speech_over_answer(event)
        elif isinstance(event, TranscriptOut) and event.final:
            self._heard_turn(event)
        elif isinstance(event, TextOut):
            answer = self._bound(event.turn_id)
            answers = self.protocol.answers
            self._emit(answers.transcript(event.text) if answer.speaks else answers.text(event.text))
        elif isinstance(event, AudioOut):
            self._audio_out(event)
        elif isinstance(event, ToolCallOut):
            self._bound(event.turn_id)
            self._flush()
            self._emit(self.protocol.answers.function_call(event.call_id, event.name, event.arguments))
            self._emit(self.protocol.answers.finish("completed"))
            self._answer = None  # the answer goes on once the output comes: in the next response
            self._waiting_tool = event.turn_id
        elif isinstance(event, ResponseDone):
            self._done(event)
        elif isinstance(event, ErrorOut):
            self._emit([self.protocol.error(event.code, event.message, kind="server_error")])
        elif isinstance(event, ConfirmOut):
            self.conv.confirm(event.id, False)  # a Realtime client cannot confirm Aria's own tools

    def _speech_over_answer(self, event: PlaybackOut) -> None:
        """The core pauses an answer when speech starts over it (and decides later whether it is a
        barge-in): that is when the speech started."""
        if event.action == "pause" and self._announced is None:
            self._announced = self._samples * 1000 // RATE
            self._emit(self.protocol.speech_started(self._announced))
        elif event.action == "resume":  # a backchannel: no turn
            self._announced = None
            self.protocol.pending_item = None

    def _stage(self, event: StageOut) -> None:
        if event.stage == "speech_started":
            self._idle_at = None
            at, self._announced = self._announced, None
            if at is None:
                at = self._samples * 1000 // RATE
                self._emit(self.protocol.speech_started(at))
            self._heard[event.turn_id] = at
            if self._answer is not None and self._answer.turn_id != event.turn_id:
                self._cancelling = self._cancelling or "turn_detected"
        elif event.stage == "speech_ended":
            self._emit(self.protocol.speech_stopped(self._samples * 1000 // RATE))
        elif (
            event.stage == "tts_request"
            and self._answer is not None
            and self._answer.turn_id == event.turn_id
        ):
            self._answer.clauses.append(str(event.data.get("text", "")))

    def _heard_turn(self, event: TranscriptOut) -> None:
        if event.turn_id not in self._heard:
            return  # a typed or responded turn
        start = self._heard.pop(event.turn_id)
        events = self.protocol.commit()
        commit = events.pop()
        assert isinstance(commit, p.Commit)
        self._emit(events)
        seconds = max(0.0, (self._samples * 1000 // RATE - start) / 1000)
        self._user_items[event.turn_id] = commit.item_id
        self._emit(self.protocol.transcribed(commit.item_id, event.text, seconds))

    def _audio_out(self, event: AudioOut) -> None:
        answer = self._bound(event.turn_id)
        if answer.speaks:
            deltas, ended = answer.add(event)
            self._send(deltas, ended)

    def _send(self, deltas: list[tuple[str, float]], ended: Spoken | None) -> None:
        for delta, seconds in deltas:
            self._emit(self.protocol.answers.audio(delta, seconds))
        if ended is not None:
            self.protocol.answers.spoken(ended)

    def _flush(self) -> None:
        """The clause in progress is complete (the answer ends, or a function call comes)."""
        answer = self._answer
        ended = answer.end_clause() if answer is not None else None
        if answer is not None and ended is not None:
            self._send(*ended)

    def _done(self, event: ResponseDone) -> None:
        answer = self._answer
        if answer is None or answer.turn_id != event.turn_id:
            return
        self._flush()
        item = self.protocol.answers.response.open if self.protocol.answers.response else None
        if item is not None:
            self._answer_items[item.id] = event.turn_id
        if event.interrupted:
            reason = self._cancelling or "turn_detected"
            self._emit(self.protocol.answers.finish("cancelled", reason=reason))
        elif event.error:
            error = {"type": "server_error", "code": event.error, "message": event.text}
            self._emit(self.protocol.answers.finish("failed", error=error))
        else:
            self._emit(self.protocol.answers.finish("completed"))
        self._answer, self._cancelling = None, None
        td = self.detection or {}
        if td.get("idle_timeout_ms") and td.get("type") == "server_vad":
            self._idle_at = (
                self._samples + (round(answer.seconds * 1000) + int(td["idle_timeout_ms"])) * RATE // 1000
            )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.conv.aclose()
        if self._forward is not None:
            self._forward.cancel()
            await asyncio.gather(self._forward, return_exceptions=True)
        if self.listener.vad is not None:
            await self.listener.vad.aclose()
