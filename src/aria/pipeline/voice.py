"""The turn pipeline behind every conversational mode: one turn at a time, in order.

::

    push_audio ─> echo guard ─> VAD ─> utterance (STT per stretch of speech, end-of-turn model) ─┐
    push_text ───────────────────────────────────────────────────────────────────────────────┴─> answer
    answer: Answerer (router, tools, vision retry) ─ split ─┬─> TextOut (at once)
                                                            └─> Speaker (clauses ─> TTS ─> AudioOut)

Everything the pipeline says goes, in order, to one output channel (``outputs``) that a transport
drains; an observer (:class:`~aria.pipeline.feed.BusFeed`) feeds the event bus from it. The input path
is synchronous and never waits. Listening (end of turn, speech over an answer) is
:class:`~aria.pipeline.listening.Listener`'s business; this module schedules turns.

**Scheduling.** One turn has the floor at a time (``turn``). New input while a turn is active supersedes
it: typed text, an image with a question, and speech that the interruption policy accepts as a barge-in
stop the answer at once (recorded with the words that had been heard, marked interrupted), then the new
turn starts. With ``busy_input = "queue"`` typed input waits for the answer instead; typed input that
arrives while the person is still speaking (or their turn's end is being decided) waits for that turn.
Work of a superseded turn can no longer change the state or send anything: every state change names its
turn and only the turn with the floor moves the state machine, so a client never sees an impossible
transition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from aria.core.aio import start_now
from aria.core.channels import Channel, Overflow
from aria.core.events import EventBus
from aria.core.history import History
from aria.core.state import TurnState, TurnStateMachine
from aria.engines.base import LLM, STT, TTS, VAD, LLMRequest, TurnDetector
from aria.errors import AriaError, InvalidInput
from aria.pipeline.answer import Answerer, ToolExecutor, build_request
from aria.pipeline.config import ContextBuilder, PipelineConfig, Playback
from aria.pipeline.feed import BusFeed
from aria.pipeline.interruptions import InterruptionPolicy
from aria.pipeline.later import Later
from aria.pipeline.listening import EchoFilter, Held, Listener
from aria.pipeline.outputs import (
    AudioOut,
    ErrorOut,
    MetricsOut,
    Output,
    ResponseDone,
    StageOut,
    StateOut,
)
from aria.pipeline.speech import Speaker, deliver
from aria.pipeline.turn import Turn
from aria.types import ImageFrame, Message

__all__ = ["NOT_UNDERSTOOD", "ContextBuilder", "PipelineConfig", "Playback", "VoicePipeline"]

log = logging.getLogger(__name__)
SOURCE = "pipeline"
#: Said when speech recognition fails: the person is asked to repeat (typing still works).
NOT_UNDERSTOOD = "Sorry, I could not make that out. Please say it again, or type it."


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
        playback: Playback | None = None,
        context: ContextBuilder | None = None,
        tools: ToolExecutor | None = None,
        router: LLM | None = None,
        pictures: Callable[[], ImageFrame | None] | None = None,
        commands: Callable[[str], str | None] | None = None,
        turn_detector: TurnDetector | None = None,
        interruption: InterruptionPolicy | None = None,
        echo: EchoFilter | None = None,
    ) -> None:
        self.llm, self.stt, self.vad, self.tts = llm, stt, vad, tts
        self.bus = bus or EventBus()
        self.history = history if history is not None else History()
        self.config = config or PipelineConfig()
        self.outputs: Channel[Output] = Channel(
            self.config.output_maxsize, Overflow.BLOCK, name="pipeline-out"
        )
        self._observe = BusFeed(self.bus)
        self.state = TurnStateMachine(self.bus, source=SOURCE)
        #: The turn with the floor: being listened to, or being answered.
        self.turn: Turn | None = None
        #: The transport's playback tracker, when it paces audio to the listener (see :class:`Playback`).
        self.playback = playback
        #: Builds each request's context; without one, the last ``history_turns`` turns are sent.
        self.context = context
        #: The tools the model may call; without it, requests carry no tools.
        self.tools = tools
        #: The small model that takes each turn first (it answers, calls tools, or hands off).
        self.router = router
        #: The newest picture for the next question (an uploaded image, a camera frame), or None.
        self.pictures = pictures
        #: Requests the transport handles itself (the monitor's "tell me when ..."): returns the reply
        #: to give instead of the model's, or None to ask the model.
        self.commands = commands
        self.listener = Listener(
            self, detector=turn_detector, policy=interruption or InterruptionPolicy(), echo=echo
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._response_task: asyncio.Task[None] | None = None
        self._queued: deque[tuple[Turn, str]] = deque()
        #: Bookkeeping left for the next loop step (see :meth:`later`).
        self._later = Later()
        self._after = self._later.work  # tested on every output: settled first when not empty
        self._answerer: Answerer | None = None
        self._speaker: tuple[TTS, PipelineConfig, Speaker] | None = None
        self._closed = False

    async def __aenter__(self) -> VoicePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel all work and close the output channel (consumers see its end)."""
        if self._closed:
            return
        self.settle()
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

    def answer_in_progress(self) -> Turn | None:
        """The turn whose answer is being generated or played, if any."""
        if self._after:
            self.settle()
        turn = self.turn
        return turn if turn is not None and self._response_task is not None and not turn.finished else None

    # -- input -------------------------------------------------------------------------------------

    def push_audio(self, chunk: Any) -> None:
        """Feed one block of microphone audio. Never waits; raises InvalidInput for a wrong format."""
        if self._after:
            self.settle()
        self.listener.push(chunk)

    def push_text(self, text: str) -> Turn:
        """Start a turn from typed text (skipping VAD and STT). An answer in progress is stopped first
        (``busy_input = "supersede"``) or finishes first (``"queue"``); a spoken turn still being
        listened to is answered first (it came first)."""
        if self._after:
            self.settle()
        text = text.strip()
        if not text:
            raise InvalidInput("text message is empty")
        if not self.answering:
            raise InvalidInput(f"the {self.config.mode} mode only transcribes speech; switch modes to ask")
        turn = Turn(source="text")
        if self.listener.hearing:  # the person's spoken turn came first: it is answered first
            self.listener.stalled()  # audio that stopped mid-sentence ends as a pause: no wait forever
            self.listener.take_floor()
            self._queued.append((turn, text))
            return turn
        if self.config.busy_input == "queue" and self.answer_in_progress() is not None:
            self._queued.append((turn, text))
            return turn
        self._abort("new text input")
        self.turn = turn
        self._start_response(turn, text, modality="text", begin="text input")
        return turn

    def respond(self, *, speak: bool = True) -> Turn:
        """Answer the conversation as it stands, with no new input (a client asked for a response): an
        answer in progress is stopped first; the answer is recorded like any other. ``speak`` False:
        this answer in text only."""
        if not self.answering:
            raise InvalidInput(f"the {self.config.mode} mode only transcribes speech; switch modes to ask")
        self.settle()
        turn = Turn(source="text", silent=not speak)
        last = next((m.content for m in reversed(list(self.history)) if m.role == "user"), "")
        turn.user_text = last or " "  # not empty: the answer is recorded (and no command is heard)
        self._abort("response requested")
        self._begin(turn, TurnState.PROCESSING, "response requested")
        said = self.answerer().answer(turn, self.request())
        self._response_task = self._spawn(self._respond(turn, said), "respond")
        self._asked(turn, len(self.history), None)
        return turn

    async def interrupt(self, reason: str = "interrupted") -> bool:
        """Stop the answer in progress. Speech being listened to is kept (it is the person's next turn),
        and so is typed input waiting for its turn: it starts now. Returns whether anything stopped."""
        self.settle()
        stopped = self._abort(reason)
        self._next()
        return stopped

    async def conclude(self, reason: str) -> list[str]:
        """Before this pipeline is retired (a mode switch, a closed connection): speech being listened
        to is kept as the person's turn (transcribed, in the history, ended unanswered), and the answer
        in progress is stopped as heard. Returns the typed inputs that were waiting, not yet started,
        for the next pipeline to take."""
        self.settle()
        waiting = [text for _turn, text in self._queued]
        self._queued.clear()  # none of it may start on this pipeline while the speech is concluded
        await self.listener.conclude(reason)
        waiting += [text for _turn, text in self._queued]  # typed meanwhile: kept too
        self._queued.clear()
        self._abort(reason)
        return waiting

    # -- scheduling --------------------------------------------------------------------------------

    def _begin(self, turn: Turn, state: TurnState, reason: str) -> None:
        """Give ``turn`` the floor in ``state`` (the state machine starts from idle for it)."""
        self.turn = turn
        self.state.reset("new turn", turn_id=turn.id)
        self._set_state(state, reason, turn)

    def _question(self, text: str, modality: str) -> Message:
        """The person's message for ``text``, with the newest picture when the mode sees."""
        picture = self.pictures() if self.pictures is not None else None
        images = (picture,) if picture is not None else ()
        return Message(
            "user", text, "audio" if modality == "audio" else "text", mode=self.config.mode, images=images
        )

    def _start_response(
        self, turn: Turn, text: str, *, modality: str, held: Held | None = None, begin: str | None = None
    ) -> None:
        """Ask the model about ``text`` for ``turn``, now: the answering task's first step runs in this
        call, up to the model's first wait. Its state (``begin``: the turn starts processing, for a reason)
        and the ``llm_request`` stage reach observers in the same loop step, just after (see :meth:`later`),
        and always before anything of the answer."""
        turn.user_text = text
        # A held answer was asked with its question (and picture) already: the history records that one.
        self.history.append(held.question if held is not None else self._question(text, modality))
        said = held.release(self._put) if held is not None else self.answerer().answer(turn, self.request())
        self.later(lambda: self._asked(turn, len(self.history), begin))
        self._response_task = task = self._spawn(self._respond(turn, said), "respond")
        start_now(task)  # recorded first: the answer may end, and the next input start, in this step

    def _asked(self, turn: Turn, messages: int, begin: str | None) -> None:
        if begin is not None and turn is self.turn:
            self._begin(turn, TurnState.PROCESSING, begin)
        self._put(StageOut(turn.id, "llm_request", {"messages": messages}))

    def answerer(self, *, hold: Held | None = None) -> Answerer:
        assert self.llm is not None
        if hold is None:  # the same one turn after turn, until a model, the tools or the commands change
            cached = self._answerer
            parts = (self.llm, self.router, self.tools, self.commands)
            if cached is not None and cached.parts == parts:
                return cached
        answerer = Answerer(
            self.llm,
            put=hold.put if hold is not None else lambda _turn, out: self._put(out),
            router=self.router,
            tools=self.tools,
            commands=self.commands,
            before_tools=hold.confirmed if hold is not None else None,
        )
        if hold is None:
            self._answerer = answerer
        return answerer

    def preempt(self, turn: Turn, text: str) -> Held:
        """Start answering ``text`` before the turn is confirmed; the answer is held (see :class:`Held`)."""
        turn.user_text = text
        held = Held(turn, self._question(text, "audio"))
        held.start(self.answerer(hold=held).answer(turn, self.request(pending=held.question)), self._spawn)
        return held

    def request(self, *, pending: Message | None = None) -> LLMRequest:
        """The next request from the history (plus ``pending``, a question not yet in it)."""
        history = self.history if pending is None else History([*self.history, pending])
        return build_request(history, self.config, self.context, self.tools)

    async def _respond(self, turn: Turn, said: AsyncIterator[str]) -> None:
        """Answer the turn: show and speak the model's answer (or ``said``, a fixed reply)."""
        speaker = self.speaker() if self._spoke(turn) else None
        try:
            await deliver(
                turn, said, speaker, send=self._send, responding=self._responding, playback=self.playback
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(turn, "llm_failed" if not isinstance(exc, AriaError) else exc.code, exc)
            return
        self._finish(turn)

    def speaker(self) -> Speaker:
        """What speaks the answers: the same one turn after turn, until the voice or its settings change."""
        assert self.tts is not None
        cached, cfg = self._speaker, self.config
        if cached is not None and cached[0] is self.tts and cached[1] is cfg:
            return cached[2]
        speaker = Speaker(
            self.tts,
            send=self._send,
            put=self._put,
            responding=self._responding,
            first_min_chars=cfg.first_clause_min_chars,
            min_chars=cfg.sentence_min_chars,
            max_chars=cfg.max_chunk_chars,
            voice=cfg.voice,
        )
        self._speaker = (self.tts, cfg, speaker)
        return speaker

    def _responding(self, turn: Turn) -> None:
        """The first text of the answer: whichever of display and speech sees it first says so, so
        ``responding`` always comes before the answer's first text or audio."""
        if turn.waterfall.mark("first_token"):
            self._put(StageOut(turn.id, "llm_first_token"))
            self._set_state(TurnState.RESPONDING, "first token", turn)

    # -- endings -----------------------------------------------------------------------------------

    def _settled(self, turn: Turn) -> bool:
        """Whether the turn already ended (interrupted or superseded): late work of it changes nothing.
        Otherwise it is ending now: it lets go of the response slot."""
        if turn.finished or turn.interrupted:
            return True
        if self.turn is turn:
            self._response_task = None
        return False

    def _finish(self, turn: Turn) -> None:
        if self._settled(turn):
            return
        text = turn.output_text(spoken=self._spoke(turn))
        if turn.user_text:  # a reply to nothing the person said (see not_understood) is not history
            self._record_answer(turn, text)
        turn.waterfall.mark("done")
        self._put(ResponseDone(turn.id, text, error=turn.error))
        self.close_turn(turn, "response done")
        self._next()

    def _next(self) -> None:
        """Start the input that waited for the answer (``busy_input = "queue"``, or speech heard while
        the interruption policy let the answer finish)."""
        if self._queued and self.answer_in_progress() is None and not self.listener.listening:
            turn, text = self._queued.popleft()
            self._begin(turn, TurnState.PROCESSING, "queued input")
            self._start_response(turn, text, modality="audio" if turn.source == "voice" else "text")

    def queue(self, turn: Turn, text: str) -> None:
        self._queued.append((turn, text))
        self._next()

    def not_understood(self, turn: Turn, exc: BaseException) -> None:
        """Speech recognition failed: say so, and ask the person to repeat (shown, and spoken when
        speech works); nothing enters the history and listening goes on."""
        log.error(
            "turn %s: speech recognition failed: %s", turn.id, exc, exc_info=exc, extra={"turn_id": turn.id}
        )
        turn.error = "stt_failed"
        self._put(ErrorOut("stt_failed", f"{NOT_UNDERSTOOD} ({exc})", turn.id, True))
        if not self.answering or turn is not self.turn:
            self.close_turn(turn, "error: stt_failed")
            return
        self._set_state(TurnState.PROCESSING, "speech not recognised", turn)
        self._response_task = self._spawn(self._respond(turn, _once(NOT_UNDERSTOOD)), "respond")
        self._asked(turn, len(self.history), None)

    def _abort(self, reason: str, *, defer: bool = False) -> bool:
        """Synchronously stop the answer in progress; nothing of it leaves the pipeline afterwards. It is
        recorded with the words the person heard (when it paused for speech over it: by then). With
        ``defer``, the turn's closing outputs (its idle state, its metrics) wait for the next loop step
        (:meth:`later`): the transport hears ``response_done`` first."""
        turn, task = self.turn, self._response_task
        if task is None or turn is None or turn.finished:
            return False
        self._response_task = None
        turn.interrupted = True
        withdrawn = self.outputs.discard(lambda o: isinstance(o, AudioOut) and o.turn_id == turn.id)
        for out in withdrawn:
            assert isinstance(out, AudioOut)
            turn.withdraw_audio(out.clause, out.chunk)
        heard_s = turn.paused_heard_s
        if self.playback is not None:
            if heard_s is None:
                heard_s = self.playback.heard_seconds(turn.id)
            self.playback.cancel(turn.id)
        elif heard_s is None:  # no playback tracker: what was handed out is what was heard
            heard_s = turn.audio_seconds
        heard = turn.output_text(spoken=self._spoke(turn), heard_s=heard_s)
        turn.waterfall.mark("done")
        self._put(StageOut(turn.id, "turn_interrupted", {"reason": reason, "heard": heard}))
        self._put(ResponseDone(turn.id, heard, interrupted=True))
        # After the transport is woken: the answer's tasks unwind in the loop step after it has the news.
        task.cancel()
        self._record_answer(turn, heard)
        if defer:
            self.later(lambda: self.close_turn(turn, reason))
        else:
            self.close_turn(turn, reason)
        return True

    def later(self, work: Callable[[], None]) -> None:
        """Follow-up work for the next loop step, or for whatever comes first (see :class:`Later`)."""
        self._later.add(work)

    def settle(self) -> None:
        self._later.settle()

    def _fail(self, turn: Turn, code: str, exc: BaseException) -> None:
        if self._settled(turn):
            return
        log.error("turn %s failed: %s", turn.id, exc, exc_info=exc, extra={"turn_id": turn.id})
        turn.error = code
        self._put(ErrorOut(code, str(exc), turn.id, bool(getattr(exc, "retryable", False))))
        if turn.user_text:
            partial = turn.output_text(spoken=self._spoke(turn))
            self._record_answer(turn, partial)
            turn.waterfall.mark("done")
            self._put(ResponseDone(turn.id, partial, error=code))
        self.close_turn(turn, f"error: {code}")
        self._next()

    def _record_answer(self, turn: Turn, text: str) -> None:
        meta: dict[str, Any] = {"turn_id": turn.id}
        if turn.interrupted or turn.error:
            meta["generated"] = turn.generated_text
        if turn.error:
            meta["error"] = turn.error
        self.history.append(
            Message("assistant", text, interrupted=turn.interrupted, mode=self.config.mode, metadata=meta)
        )

    def close_turn(self, turn: Turn, reason: str) -> None:
        turn.finished = True
        if turn is self.turn and self.state.state is not TurnState.IDLE:
            self.state.reset(reason, turn_id=turn.id)
            self._put(StateOut(TurnState.IDLE.value, reason, turn.id))
        extra = {"route": turn.route} if turn.route else {}
        self._put(MetricsOut(turn.id, turn.waterfall.as_dict(), extra))

    def _spoke(self, turn: Turn) -> bool:
        return self.speaking and not turn.speech_failed and not turn.silent

    def _set_state(self, target: TurnState, reason: str, turn: Turn) -> None:
        """Move the state machine for ``turn``: only the turn with the floor may (work of a superseded
        turn that is still unwinding changes nothing)."""
        if self._after:
            self.settle()
        if turn is not self.turn or self.state.state is target:
            return
        if not self.state.can(target):
            self.state.reset(reason, turn_id=turn.id)
            if not self.state.can(target):  # responding comes after processing
                self.state.transition(TurnState.PROCESSING, reason, turn_id=turn.id)
        self.state.transition(target, reason, turn_id=turn.id)
        self._put(StateOut(target.value, reason, turn.id))

    def _put(self, out: Output) -> None:
        """Queue a small control output past backpressure (never dropped, never waits)."""
        if self._after:
            self.settle()
        if not self.outputs.closed:
            self._observe(out)
            self.outputs.force(out)

    async def _send(self, out: Output) -> None:
        if self._after:
            self.settle()
        self._observe(out)
        await self.outputs.send(out)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=f"pipeline-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _once(text: str) -> AsyncIterator[str]:
    yield text
