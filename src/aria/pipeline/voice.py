"""The turn pipeline behind every conversational mode.

::

    push_audio ─> VAD ─> STT (partials, final) ─┐
    push_text ──────────────────────────────┴─> LLM tokens ─ split ─┬─> TextOut (at once)
                                                                    └─> ClauseChunker ─> TTS ─> AudioOut

Everything the pipeline says goes, in order, to one output channel (``outputs``) that a transport
drains. The input path (:meth:`VoicePipeline.push_audio`) is synchronous and never waits: VAD runs
inline and speech frames go to the STT task through an unbounded channel (an utterance is bounded by
``max_utterance_s``), so audio is never dropped and never blocks on the answer.

What a mode changes: without an LLM the pipeline only transcribes (dictation: each final transcript is
recorded and the turn ends); with ``pictures`` the newest picture goes with each question as an image
part (visual chat); with a ``router`` a small model takes each turn first and either answers it, calls
tools (the main model then answers with their results) or hands it to the main model.

Barge-in: speech starting (or :meth:`interrupt`, or new text) during an answer cancels its LLM and TTS
work at once, withdraws its audio not yet taken from ``outputs``, and records the assistant turn with
what had actually gone out, marked interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aria.core.aio import closing_stream
from aria.core.channels import Channel, Overflow
from aria.core.config import Settings
from aria.core.events import EventBus, EventType
from aria.core.history import History
from aria.core.state import TurnState, TurnStateMachine
from aria.core.streams import buffer_until, split
from aria.core.text import ClauseChunker
from aria.engines.base import LLM, STT, TTS, VAD, LLMRequest, VADEventType
from aria.errors import AriaError, InvalidInput
from aria.pipeline.outputs import (
    AudioOut,
    ErrorOut,
    MetricsOut,
    NoticeOut,
    Output,
    ResponseDone,
    StateOut,
    TextOut,
    ToolResultOut,
    TranscriptOut,
)
from aria.pipeline.turn import Turn
from aria.types import AudioChunk, GeneratedToken, ImageFrame, Message, ToolCall, ToolSpec, Transcription

__all__ = [
    "APOLOGY_MID",
    "APOLOGY_NONE",
    "HAND_OFF",
    "MAX_TOOL_ROUNDS",
    "NOT_UNDERSTOOD",
    "ContextBuilder",
    "PipelineConfig",
    "Playback",
    "ToolExecutor",
    "ToolOutcome",
    "VoicePipeline",
]

log = logging.getLogger(__name__)
SOURCE = "pipeline"
MAX_TOOL_ROUNDS = 4
#: The router's way of handing a turn to the main model.
HAND_OFF = ToolSpec(
    "hand_off",
    "Hand this turn to the main, stronger model: for questions that need knowledge, reasoning or a "
    "longer answer. Call it instead of answering when unsure.",
)
#: Said after an answer the model could not finish, and instead of one it could not start.
APOLOGY_MID = "Sorry, I lost my train of thought there. Please ask me again."
APOLOGY_NONE = "Sorry, I can't answer right now: the language model is not responding. Please try again."
#: Said when speech recognition fails: the person is asked to repeat (typing still works).
NOT_UNDERSTOOD = "Sorry, I could not make that out. Please say it again, or type it."
ROUTER_PROMPT = (
    "You are a fast router. For small talk and simple questions, answer directly in one or two short "
    "sentences. When a tool can answer, call the tool. For anything else, call hand_off."
)


class Playback(Protocol):
    """What a transport that plays answer audio to a person tells the pipeline on barge-in."""

    def heard_seconds(self, turn_id: str) -> float | None:
        """How much of the turn's answer audio the person has heard (None: unknown)."""
        ...

    def cancel(self, turn_id: str) -> None:
        """Stop that turn's audio now: nothing not yet played may reach the person."""
        ...

    async def wait_sent(self, turn_id: str, blocks: int) -> None:
        """Until that many audio blocks of the turn have gone out to the person (or it was cancelled)."""
        ...


class ToolOutcome(Protocol):
    """What running a tool gave: ``content`` goes back to the model, ``data`` to the client."""

    @property
    def ok(self) -> bool: ...

    @property
    def content(self) -> str: ...

    @property
    def data(self) -> Any: ...


class ToolExecutor(Protocol):
    """Runs the tools the model may call (validation, timeouts and confirmation are its business)."""

    def specs(self) -> tuple[ToolSpec, ...]: ...

    async def run_tool(self, call: ToolCall, turn_id: str) -> ToolOutcome: ...


class ContextBuilder(Protocol):
    """Builds what a request carries from the history (a token window, a summary, profile facts)."""

    def build(self, history: History, system_prompt: str | None) -> tuple[tuple[Message, ...], str | None]:
        """The messages and the system prompt for the next request."""
        ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    sample_rate: int = 16000
    first_clause_min_chars: int = 12
    sentence_min_chars: int = 24
    max_chunk_chars: int = 220
    history_turns: int = 20
    preroll_ms: int = 200
    max_utterance_s: float = 60.0
    system_prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    voice: str | None = None
    speak: bool = True
    mode: str = "voice_chat"
    output_maxsize: int = 256
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PipelineConfig:
        p, llm = settings.pipeline, settings.llm
        config = cls(
            first_clause_min_chars=p.first_clause_min_chars,
            sentence_min_chars=p.sentence_min_chars,
            max_chunk_chars=p.max_chunk_chars,
            history_turns=p.history_turns,
            preroll_ms=p.preroll_ms,
            max_utterance_s=p.max_utterance_s,
            system_prompt=llm.system_prompt,
            temperature=llm.temperature,
            max_tokens=llm.max_tokens,
            stop=tuple(llm.stop),
            voice=settings.tts.voice,
            speak=settings.tts.enabled,
            mode=settings.mode,
        )
        return replace(config, **overrides)


class VoicePipeline:
    def __init__(
        self,
        *,
        llm: LLM | None,
        stt: STT | None = None,
        vad: VAD | None = None,
        tts: TTS | None = None,
        bus: EventBus | None = None,
        history: History | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        self.llm, self.stt, self.vad, self.tts = llm, stt, vad, tts
        self.bus = bus or EventBus()
        self.history = history if history is not None else History()
        self.config = config or PipelineConfig()
        self.outputs: Channel[Output] = Channel(
            self.config.output_maxsize, Overflow.BLOCK, name="pipeline-out"
        )
        self.state = TurnStateMachine(self.bus, source=SOURCE)
        self.turn: Turn | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listen_task: asyncio.Task[None] | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._speech_in: Channel[AudioChunk] | None = None
        self._utterance_frames = 0
        self._preroll: deque[AudioChunk] = deque()
        self._preroll_s = 0.0
        self._closed = False
        #: The transport's playback tracker, when it paces audio to the listener (see :class:`Playback`).
        self.playback: Playback | None = None
        #: Builds each request's context; without one, the last ``history_turns`` turns are sent.
        self.context: ContextBuilder | None = None
        #: The tools the model may call; without it, requests carry no tools.
        self.tools: ToolExecutor | None = None
        #: The small model that takes each turn first (see the module docstring).
        self.router: LLM | None = None
        #: The newest picture for the next question (an uploaded image, a camera frame), or None.
        self.pictures: Callable[[], ImageFrame | None] | None = None
        #: Requests the transport handles itself (the monitor's "tell me when ..."): returns the reply
        #: to give instead of the model's, or None to ask the model.
        self.commands: Callable[[str], str | None] | None = None

    async def __aenter__(self) -> VoicePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel all work and close the output channel (consumers see its end)."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.outputs.close()

    @property
    def speaking(self) -> bool:
        return self.config.speak and self.tts is not None and self.llm is not None

    @property
    def answering(self) -> bool:
        """False for a dictation pipeline (no LLM): speech is transcribed and recorded, not answered."""
        return self.llm is not None

    # -- input: audio ------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk) -> None:
        """Feed one block of microphone audio. Never waits; raises InvalidInput for a wrong format."""
        if self.vad is None or self.stt is None:
            raise InvalidInput("this pipeline has no VAD/STT: it takes text only")
        if chunk.sample_rate != self.config.sample_rate:
            raise InvalidInput(f"audio must be {self.config.sample_rate} Hz, got {chunk.sample_rate} Hz")
        chunk = chunk.to_mono()
        event = self.vad.process(chunk)
        if event is not None and event.type is VADEventType.SPEECH_START and self._speech_in is None:
            self._on_speech_start(event.timestamp)
        if self._speech_in is not None:
            self._speech_in.send_nowait(chunk)
            self._utterance_frames += chunk.frames
            too_long = self._utterance_frames >= self.config.max_utterance_s * self.config.sample_rate
            if (event is not None and event.type is VADEventType.SPEECH_END) or too_long:
                if too_long:
                    log.warning(
                        "utterance reached max_utterance_s=%s; ending it", self.config.max_utterance_s
                    )
                    self.vad.reset()
                self._on_speech_end()
        else:
            self._remember_preroll(chunk)

    def _remember_preroll(self, chunk: AudioChunk) -> None:
        self._preroll.append(chunk)
        self._preroll_s += chunk.duration
        while self._preroll and self._preroll_s - self._preroll[0].duration >= self.config.preroll_ms / 1000:
            self._preroll_s -= self._preroll.popleft().duration

    def _on_speech_start(self, at: float) -> None:
        if self._response_task is not None or self._listen_task is not None:
            self._abort("user started speaking")
        turn = Turn(source="voice")
        self.turn = turn
        self._set_state(TurnState.LISTENING, "speech started", turn)
        self.bus.emit(EventType.SPEECH_STARTED, {"at": at}, source=SOURCE, correlation_id=turn.id)
        speech_in: Channel[AudioChunk] = Channel(None, name="stt-in")
        for frame in self._preroll:
            speech_in.send_nowait(frame)
        self._preroll.clear()
        self._preroll_s = 0.0
        self._speech_in = speech_in
        self._utterance_frames = 0
        self._listen_task = self._spawn(self._listen(turn, speech_in), "listen")

    def _on_speech_end(self) -> None:
        turn, speech_in = self.turn, self._speech_in
        assert turn is not None
        assert speech_in is not None
        turn.waterfall.mark("speech_end")
        speech_in.close()
        self._speech_in = None
        self._set_state(TurnState.PROCESSING, "speech ended", turn)
        self.bus.emit(EventType.SPEECH_ENDED, {}, source=SOURCE, correlation_id=turn.id)

    async def _listen(self, turn: Turn, speech_in: Channel[AudioChunk]) -> None:
        assert self.stt is not None
        final: Transcription | None = None
        try:
            async with closing_stream(self.stt.stream(speech_in)) as transcripts:
                shown = ""
                async for tr in transcripts:
                    if tr.is_final:
                        final = tr
                        break
                    if tr.text == shown:
                        continue
                    shown = tr.text
                    await self.outputs.send(
                        TranscriptOut(turn.id, tr.text, False, tr.confidence, tr.language)
                    )
                    self.bus.emit(
                        EventType.TRANSCRIPT_PARTIAL, {"text": tr.text}, source=SOURCE, correlation_id=turn.id
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._listen_task = None
            self._not_understood(turn, exc)
            return
        self._listen_task = None
        turn.waterfall.mark("final_transcript")
        text = final.text.strip() if final is not None else ""
        if final is not None:
            await self.outputs.send(TranscriptOut(turn.id, text, True, final.confidence, final.language))
        self.bus.emit(EventType.TRANSCRIPT_FINAL, {"text": text}, source=SOURCE, correlation_id=turn.id)
        if not text:
            self._close_turn(turn, "nothing recognised")
            return
        if not self.answering:
            turn.user_text = text
            self.history.append(Message("user", text, "audio", mode=self.config.mode))
            turn.waterfall.mark("done")
            self._put(ResponseDone(turn.id, ""))
            self._close_turn(turn, "transcribed")
            return
        self._start_response(turn, text, modality="audio")

    # -- input: text -------------------------------------------------------------------------------

    def push_text(self, text: str) -> Turn:
        """Start a turn from typed text (skipping VAD and STT); interrupts an answer in progress."""
        text = text.strip()
        if not text:
            raise InvalidInput("text message is empty")
        if not self.answering:
            raise InvalidInput(f"the {self.config.mode} mode only transcribes speech; switch modes to ask")
        self._abort("new text input")
        if self._speech_in is not None:
            self._speech_in.close()
            self._speech_in = None
            if self.vad is not None:
                self.vad.reset()
        turn = Turn(source="text")
        self.turn = turn
        self._set_state(TurnState.PROCESSING, "text input", turn)
        self._start_response(turn, text, modality="text")
        return turn

    async def interrupt(self, reason: str = "interrupted") -> bool:
        """Stop the current answer (or utterance). Returns whether there was anything to stop."""
        return self._abort(reason)

    # -- the answer --------------------------------------------------------------------------------

    def _start_response(self, turn: Turn, text: str, *, modality: str) -> None:
        turn.user_text = text
        picture = self.pictures() if self.pictures is not None else None
        self.history.append(
            Message(
                "user",
                text,
                "audio" if modality == "audio" else "text",
                mode=self.config.mode,
                images=(picture,) if picture is not None else (),
            )
        )
        self._response_task = self._spawn(self._respond(turn), "respond")

    async def _respond(self, turn: Turn, said: AsyncIterator[str] | None = None) -> None:
        """Answer the turn: show and speak the model's answer (or ``said``, a fixed reply)."""
        if said is None:
            said = self._answer(turn, self._request())
        try:
            async with closing_stream(said) as tokens:
                if self.speaking:
                    async with split(tokens, 2) as (display, speech):
                        speaker = self._spawn(self._speak(turn, speech), "speak")
                        try:
                            await self._show(turn, display)
                            await speaker
                            if self.playback is not None:
                                # The answer lasts until its audio has gone out: a barge-in until then
                                # still interrupts it, and response_done comes as the last audio plays.
                                await self.playback.wait_sent(turn.id, sum(turn.clause_audio))
                        finally:
                            speaker.cancel()
                            await asyncio.gather(speaker, return_exceptions=True)
                else:
                    await self._show(turn, tokens)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(turn, "llm_failed" if not isinstance(exc, AriaError) else exc.code, exc)
            return
        self._finish(turn)

    def _request(self) -> LLMRequest:
        cfg = self.config
        messages, system_prompt = self.history.window(cfg.history_turns), cfg.system_prompt
        if self.context is not None:
            messages, system_prompt = self.context.build(self.history, cfg.system_prompt)
        messages = _strip_pictures(messages, keep_latest=True)
        return LLMRequest(
            messages=messages,
            system_prompt=system_prompt,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            stop=cfg.stop,
            tools=self.tools.specs() if self.tools is not None else (),
        )

    async def _answer(self, turn: Turn, request: LLMRequest) -> AsyncIterator[str]:
        """The model's answer. A model that fails does not end the turn in silence: what it said stays,
        the error is reported, and an apology follows (shown and spoken like the answer); the turn is
        marked with the error and the next turn tries the model again."""
        turn.waterfall.mark("llm_request")
        self.bus.emit(
            EventType.LLM_REQUEST, {"messages": len(request.messages)}, source=SOURCE, correlation_id=turn.id
        )
        try:
            try:
                async for text in self._generate(turn, request):
                    yield text
            except Exception as exc:
                if turn.generated or not any(m.images for m in request.messages):
                    raise
                # Vision down: answer from the words alone, and say the picture was not seen.
                log.warning("turn %s: the model failed with a picture (%s); asking without it", turn.id, exc)
                self._put(
                    NoticeOut(
                        f"I could not look at the picture ({exc}), so this answer is from your words only.",
                        data={"kind": "degraded", "lost": "vision", "turn_id": turn.id},
                    )
                )
                async for text in self._generate(
                    turn, replace(request, messages=_strip_pictures(request.messages, keep_latest=False))
                ):
                    yield text
        except Exception as exc:  # CancelledError is not an Exception: a barge-in passes through
            code = exc.code if isinstance(exc, AriaError) else "llm_failed"
            log.error("turn %s: the model failed: %s", turn.id, exc, exc_info=exc, extra={"turn_id": turn.id})
            turn.error = code
            self._put(ErrorOut(code, str(exc), turn.id, bool(getattr(exc, "retryable", False))))
            self.bus.emit(
                EventType.ERROR, {"code": code, "message": str(exc)}, source=SOURCE, correlation_id=turn.id
            )
            if not turn.generated:
                yield APOLOGY_NONE
            else:  # after a cut-off sentence, a pause before the apology
                finished = turn.generated_text.endswith((".", "!", "?"))
                yield (" " if finished else "... ") + APOLOGY_MID

    async def _generate(self, turn: Turn, request: LLMRequest) -> AsyncIterator[str]:
        """The answer's text. When the model calls tools, run them, report each result, feed the
        results back and let the model go on (at most ``MAX_TOOL_ROUNDS`` rounds)."""
        assert self.llm is not None
        reply = self.commands(turn.user_text) if self.commands is not None else None
        if reply is not None:
            yield reply
            return
        messages = list(request.messages)
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            calls: list[ToolCall] = []
            said: list[str] = []
            model, asked = self.llm, replace(request, messages=tuple(messages))
            if round_ == 0 and self.router is not None:
                model, asked = self.router, self._router_request(asked)
            try:
                async with closing_stream(model.stream(asked)) as chunks:
                    async for chunk in chunks:
                        if isinstance(chunk, GeneratedToken):
                            if chunk.text:
                                said.append(chunk.text)
                                yield chunk.text
                        elif isinstance(chunk, ToolCall):
                            calls.append(chunk)
            except Exception as exc:
                if model is self.llm or said or calls:
                    raise
                # A router that fails before saying anything hands the turn to the main model.
                log.warning("turn %s: the router failed (%s); the main model answers", turn.id, exc)
                calls = [ToolCall("router_failed", HAND_OFF.name, "{}")]
            if round_ == 0 and self.router is not None:
                turn.route = "tool" if calls else "answer"
                if any(call.name == HAND_OFF.name for call in calls):
                    turn.route = "hand_off"
                    calls = [call for call in calls if call.name != HAND_OFF.name]
                self.bus.emit(EventType.ROUTED, {"route": turn.route}, source=SOURCE, correlation_id=turn.id)
                if turn.route == "hand_off" and not calls:
                    continue  # the main model answers the same messages
            if not calls:
                return
            if self.tools is None:
                log.warning("the model called %s but this pipeline has no tools", [c.name for c in calls])
                return
            if round_ == MAX_TOOL_ROUNDS:
                break  # the model would never see these results
            messages.append(Message("assistant", "".join(said), metadata={"tool_calls": tuple(calls)}))
            for call in calls:
                result = await self.tools.run_tool(call, turn.id)
                turn.tool_results.append(result)
                self._put(ToolResultOut(turn.id, call.id, call.name, result.ok, result.content, result.data))
                self.bus.emit(
                    EventType.TOOL_RESULT,
                    {"tool": call.name, "ok": result.ok},
                    source=SOURCE,
                    correlation_id=turn.id,
                )
                messages.append(
                    Message("tool", result.content, metadata={"tool_call_id": call.id, "name": call.name})
                )
        log.warning("turn %s stopped after %d rounds of tool calls", turn.id, MAX_TOOL_ROUNDS)

    def _router_request(self, request: LLMRequest) -> LLMRequest:
        """The router sees the conversation and the tools plus ``hand_off``, under its own short brief;
        its direct answers are short."""
        system = ROUTER_PROMPT if not request.system_prompt else f"{request.system_prompt}\n\n{ROUTER_PROMPT}"
        return replace(
            request,
            system_prompt=system,
            tools=(*request.tools, HAND_OFF),
            max_tokens=min(request.max_tokens, 256),
        )

    async def _show(self, turn: Turn, tokens: AsyncIterator[str] | Channel[str]) -> None:
        async for text in tokens:
            if turn.stopped():
                return
            self._responding(turn)
            turn.generated.append(text)
            await self.outputs.send(TextOut(turn.id, text))

    def _responding(self, turn: Turn) -> None:
        """The first text of the answer: whichever of display and speech sees it first says so, so
        ``responding`` always comes before the answer's first text or audio."""
        if turn.waterfall.mark("first_token"):
            self._set_state(TurnState.RESPONDING, "first token", turn)
            self.bus.emit(EventType.LLM_FIRST_TOKEN, {}, source=SOURCE, correlation_id=turn.id)

    async def _speak(self, turn: Turn, tokens: Channel[str]) -> None:
        assert self.tts is not None
        cfg = self.config
        chunker = ClauseChunker(
            first_min_chars=cfg.first_clause_min_chars,
            min_chars=cfg.sentence_min_chars,
            max_chars=cfg.max_chunk_chars,
        )
        seq = 0
        async for clause in buffer_until(tokens, chunker):
            if turn.stopped():
                return
            self._responding(turn)
            index = len(turn.clauses)
            turn.clauses.append(clause)
            turn.clause_audio.append(0)
            turn.clause_seconds.append(0.0)
            if turn.waterfall.mark("first_tts_request"):
                self.bus.emit(EventType.TTS_REQUEST, {"text": clause}, source=SOURCE, correlation_id=turn.id)
            try:
                async with closing_stream(self.tts.synthesize(clause, voice=cfg.voice)) as audio:
                    async for chunk in audio:
                        if turn.stopped():
                            return
                        if turn.waterfall.mark("first_audio_out"):
                            self.bus.emit(EventType.FIRST_AUDIO, {}, source=SOURCE, correlation_id=turn.id)
                        turn.clause_audio[index] += 1
                        turn.clause_seconds[index] += chunk.duration
                        turn.audio_seconds += chunk.duration
                        await self.outputs.send(AudioOut(turn.id, chunk, index, seq))
                        seq += 1
                        # A fast engine must not fill the channel before the transport gets the first
                        # block: let the consumer run after each one.
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Speech failing must not take the answer with it: the text goes on without audio.
                log.error(
                    "TTS failed, answering in text only: %s", exc, exc_info=exc, extra={"turn_id": turn.id}
                )
                turn.speech_failed = True
                self._put(
                    ErrorOut("tts_failed", f"speech failed, answering in text only: {exc}", turn.id, True)
                )
                return

    # -- endings -----------------------------------------------------------------------------------

    def _finish(self, turn: Turn) -> None:
        self._response_task = None
        text = turn.output_text(spoken=self._spoke(turn))
        if turn.user_text:  # a reply to nothing the person said (see _not_understood) is not history
            self._record_answer(turn, text)
        turn.waterfall.mark("done")
        self._put(ResponseDone(turn.id, text, error=turn.error))
        self._close_turn(turn, "response done")

    def _not_understood(self, turn: Turn, exc: BaseException) -> None:
        """Speech recognition failed: say so, and ask the person to repeat (shown, and spoken when
        speech works); nothing enters the history and listening goes on."""
        log.error(
            "turn %s: speech recognition failed: %s", turn.id, exc, exc_info=exc, extra={"turn_id": turn.id}
        )
        turn.error = "stt_failed"
        self._put(ErrorOut("stt_failed", f"{NOT_UNDERSTOOD} ({exc})", turn.id, True))
        self.bus.emit(
            EventType.ERROR,
            {"code": "stt_failed", "message": str(exc)},
            source=SOURCE,
            correlation_id=turn.id,
        )
        if not self.answering:
            self._close_turn(turn, "error: stt_failed")
            return
        self._response_task = self._spawn(self._respond(turn, _once(NOT_UNDERSTOOD)), "respond")

    def _abort(self, reason: str) -> bool:
        """Synchronously stop the current turn's work; nothing of it leaves the pipeline afterwards."""
        turn = self.turn
        stopped = False
        if self._listen_task is not None:
            self._listen_task.cancel()
            self._listen_task = None
            stopped = True
        task, self._response_task = self._response_task, None
        if task is not None and turn is not None and not turn.finished:
            turn.interrupted = True
            task.cancel()
            withdrawn = self.outputs.discard(lambda o: isinstance(o, AudioOut) and o.turn_id == turn.id)
            for out in withdrawn:
                assert isinstance(out, AudioOut)
                turn.clause_audio[out.clause] -= 1
                turn.clause_seconds[out.clause] -= out.chunk.duration
                turn.audio_seconds -= out.chunk.duration
            heard_s = None
            if self.playback is not None:
                heard_s = self.playback.heard_seconds(turn.id)
                self.playback.cancel(turn.id)
            heard = turn.output_text(spoken=self._spoke(turn), heard_s=heard_s)
            self._record_answer(turn, heard)
            turn.waterfall.mark("done")
            self._put(ResponseDone(turn.id, heard, interrupted=True))
            self.bus.emit(
                EventType.TURN_INTERRUPTED,
                {"reason": reason, "heard": heard},
                source=SOURCE,
                correlation_id=turn.id,
            )
            stopped = True
        if turn is not None and not turn.finished and stopped:
            self._close_turn(turn, reason)
        return stopped

    def _fail(self, turn: Turn, code: str, exc: BaseException) -> None:
        log.error("turn %s failed: %s", turn.id, exc, exc_info=exc, extra={"turn_id": turn.id})
        self._response_task = None
        turn.error = code
        retryable = bool(getattr(exc, "retryable", False))
        self._put(ErrorOut(code, str(exc), turn.id, retryable))
        self.bus.emit(
            EventType.ERROR, {"code": code, "message": str(exc)}, source=SOURCE, correlation_id=turn.id
        )
        if turn.user_text:
            partial = turn.output_text(spoken=self._spoke(turn))
            self._record_answer(turn, partial)
            turn.waterfall.mark("done")
            self._put(ResponseDone(turn.id, partial, error=code))
        self._close_turn(turn, f"error: {code}")

    def _record_answer(self, turn: Turn, text: str) -> None:
        meta: dict[str, Any] = {"turn_id": turn.id}
        if turn.interrupted or turn.error:
            meta["generated"] = turn.generated_text
        if turn.error:
            meta["error"] = turn.error
        self.history.append(
            Message("assistant", text, interrupted=turn.interrupted, mode=self.config.mode, metadata=meta)
        )

    def _close_turn(self, turn: Turn, reason: str) -> None:
        turn.finished = True
        extra = {"route": turn.route} if turn.route else {}
        if self.state.state is not TurnState.IDLE:
            self.state.reset(reason, turn_id=turn.id)
            self._put(StateOut(TurnState.IDLE.value, reason, turn.id))
        marks = turn.waterfall.as_dict()
        self.bus.emit(EventType.TURN_METRICS, {"waterfall": marks}, source=SOURCE, correlation_id=turn.id)
        self.bus.emit(
            EventType.RESPONSE_DONE,
            {"interrupted": turn.interrupted, "error": turn.error},
            source=SOURCE,
            correlation_id=turn.id,
        )
        self._put(MetricsOut(turn.id, marks, extra))

    def _spoke(self, turn: Turn) -> bool:
        return self.speaking and not turn.speech_failed

    def _set_state(self, target: TurnState, reason: str, turn: Turn) -> None:
        self.state.transition(target, reason, turn_id=turn.id)
        self._put(StateOut(target.value, reason, turn.id))

    def _put(self, out: Output) -> None:
        """Queue a small control output past backpressure (never dropped, never waits)."""
        if not self.outputs.closed:
            self.outputs.force(out)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=f"pipeline-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _once(text: str) -> AsyncIterator[str]:
    yield text


def _strip_pictures(messages: tuple[Message, ...], *, keep_latest: bool) -> tuple[Message, ...]:
    """The messages without their pictures (each keeps ``image_count``); with ``keep_latest`` the
    newest message with pictures keeps them: older ones were answered already, and each costs hundreds
    of tokens and an upload on every turn. The text always stays."""
    with_pictures = [i for i, m in enumerate(messages) if m.images]
    if not with_pictures:
        return messages
    kept = with_pictures[-1] if keep_latest else -1
    return tuple(
        replace(m, images=(), metadata={**m.metadata, "image_count": len(m.images)})
        if m.images and i != kept
        else m
        for i, m in enumerate(messages)
    )
