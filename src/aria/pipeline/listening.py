"""Listening: microphone audio to the person's turns, with a semantic end of turn and barge-in policy.

::

    block ─> echo guard ─> VAD ─┬─ speech start: open a stretch (pre-roll included) ─> STT ─> partials
                                └─ pause (short VAD silence): close the stretch ─> STT final
                                                                ─> end-of-turn model ─> complete? answer
                                                                                       incomplete? wait

An utterance is the person's whole turn: one or more stretches of speech separated by pauses. Every frame
of it reaches STT (the pre-roll before each stretch included), and the stretches' transcripts join into
one user turn, so a pause mid-sentence neither splits the turn nor loses words. At each pause the
end-of-turn model (``turn:smart_turn``; ``turn:silence`` ends at every pause) judges the audio and the
words so far: complete ends the turn at once; incomplete keeps listening until ``max_wait_ms`` of silence.
Meanwhile the answer is prepared on the transcript so far (``preemptive``), held back, and released the
moment the turn is confirmed, or dropped silently if the person goes on.

Speech that starts over an answer goes to the interruption policy
(:mod:`aria.pipeline.interruptions`): the answer pauses; words take the floor (the answer is stored as
heard up to the pause); a backchannel, a cough or nothing recognised let the answer go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from aria.core.aio import closing_stream
from aria.core.channels import Channel
from aria.core.state import TurnState
from aria.engines.base import TurnDetector, TurnPrediction, VADEvent, VADEventType
from aria.errors import InvalidInput
from aria.pipeline.held import Held
from aria.pipeline.interruptions import InterruptionMode, InterruptionPolicy, Verdict
from aria.pipeline.outputs import PlaybackOut, ResponseDone, StageOut, TranscriptOut
from aria.pipeline.turn import Turn
from aria.pipeline.utterance import Utterance
from aria.types import AudioChunk, Message, Transcription

if TYPE_CHECKING:  # the owner, in the same layer
    from aria.pipeline.voice import VoicePipeline

__all__ = ["AUDIO_STALLED_S", "EchoFilter", "EchoJudgement", "Held", "Listener"]

log = logging.getLogger(__name__)

#: A microphone sends a block every 20-100 ms: this long without one while speech is heard means the audio
#: stopped mid-sentence (see :meth:`Listener.stalled`).
AUDIO_STALLED_S = 0.5


class EchoJudgement(Protocol):
    @property
    def audio(self) -> AudioChunk: ...

    @property
    def echo(self) -> bool: ...


class EchoFilter(Protocol):
    """The echo guard (:class:`aria.pipeline.echo.EchoGuard`): judges each microphone block against the
    answer audio that went out."""

    @property
    def active(self) -> bool: ...

    def process(self, chunk: AudioChunk) -> EchoJudgement: ...


@dataclass(frozen=True, slots=True)
class _Unjudged:
    audio: AudioChunk
    echo: bool = False


class Listener:
    """Turns microphone blocks into the person's turns for its pipeline (see the module docstring)."""

    def __init__(
        self,
        pipeline: VoicePipeline,
        *,
        detector: TurnDetector | None,
        policy: InterruptionPolicy,
        echo: EchoFilter | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.p = pipeline
        self.detector, self.policy, self.echo, self.clock = detector, policy, echo, clock
        self._last_audio: float | None = None  # when the last block of audio came (clock)
        self._utt: Utterance | None = None
        self._preroll: deque[AudioChunk] = deque()
        self._preroll_s = 0.0

    @property
    def listening(self) -> bool:
        """Speech with the floor is being listened to (its turn is not over)."""
        return self._utt is not None and self._utt.over is None

    @property
    def hearing(self) -> bool:
        """Any speech is being listened to, also speech over an answer not yet judged."""
        return self._utt is not None

    def take_floor(self) -> None:
        """Typed input arrived while speech over the answer is still being judged: the answer is
        superseded anyway, so the speech (which came first) becomes the person's turn."""
        utt = self._utt
        if utt is not None and utt.over is not None:
            utt.by_default = True
            self._take_floor(utt)

    # -- audio in ----------------------------------------------------------------------------------

    def push(self, chunk: AudioChunk) -> None:
        p = self.p
        if p.vad is None or p.stt is None:
            raise InvalidInput("this pipeline has no VAD/STT: it takes text only")
        rate = p.config.sample_rate
        if chunk.sample_rate != rate:
            raise InvalidInput(f"audio must be {rate} Hz, got {chunk.sample_rate} Hz")
        chunk = chunk.to_mono()
        self._last_audio = self.clock()
        heard = vad_in = chunk
        if self.echo is not None and self.echo.active:
            try:
                judged = self.echo.process(chunk)
            except Exception:  # the guard failing must not cost the person their microphone
                log.exception("echo guard failed; it is off for this connection")
                self.echo = None
                judged = _Unjudged(chunk)
            heard = judged.audio
            if judged.echo:
                log.debug("echo: a block of %d frames held back from the VAD", chunk.frames)
            vad_in = heard
            if judged.echo:
                import numpy as np  # an echo guard runs on audio: NumPy is loaded by then

                vad_in = AudioChunk(np.zeros(chunk.frames, np.float32), rate, timestamp=chunk.timestamp)
        event = p.vad.process(vad_in)
        utt = self._utt
        if event is not None and event.type is VADEventType.SPEECH_START:
            if utt is None and self._barge_in(event.timestamp, heard):
                return
            utt = self._speech_started(event.timestamp)
        self._hear(utt, heard, event)

    def _barge_in(self, at: float, heard: AudioChunk) -> bool:
        """Speech starts over an answer and the policy says stop at once: the answer stops now (the
        transport hears ``response_done`` in the next loop step); the new turn, its state and its
        speech-to-text start a step later (:meth:`VoicePipeline.later`), with this block."""
        p = self.p
        if self.policy.mode is not InterruptionMode.IMMEDIATE or p.answer_in_progress() is None:
            return False
        p._abort("user started speaking", defer=True)
        p.later(lambda: self._hear(self._speech_started(at), heard, None))
        return True

    def _hear(self, utt: Utterance | None, heard: AudioChunk, event: VADEvent | None) -> None:
        p, rate = self.p, self.p.config.sample_rate
        if utt is None:
            self._remember(heard)
            return
        utt.add(heard.data, rate)
        if utt.segment is None:
            self._remember(heard)  # a pause: the next stretch starts with it
            return
        utt.segment.send_nowait(heard)
        if utt.total_s >= p.config.max_utterance_s:
            log.warning("utterance reached max_utterance_s=%s; ending it", p.config.max_utterance_s)
            if p.vad is not None:
                p.vad.reset()
            utt.forced = True
            self._paused(utt)
        elif event is not None and event.type is VADEventType.SPEECH_END:
            self._paused(utt)

    def stalled(self, after_s: float = AUDIO_STALLED_S) -> bool:
        """Speech is being heard but no audio has come for ``after_s`` (the microphone was turned off
        mid-sentence, the client stopped sending): its stretch ends as a pause, as the VAD would have said
        had silence kept coming, so its turn can end. Returns whether it did."""
        utt = self._utt
        if utt is None or utt.segment is None or self._last_audio is None:
            return False
        if self.clock() - self._last_audio < after_s:
            return False
        if self.p.vad is not None:
            self.p.vad.reset()  # it still counts the speech as going on: the next audio starts afresh
        self._paused(utt)
        return True

    def _remember(self, chunk: AudioChunk) -> None:
        self._preroll.append(chunk)
        self._preroll_s += chunk.duration
        limit = self.p.config.preroll_ms / 1000
        while self._preroll and self._preroll_s - self._preroll[0].duration >= limit:
            self._preroll_s -= self._preroll.popleft().duration

    def _speech_started(self, at: float) -> Utterance | None:
        p, utt = self.p, self._utt
        if utt is not None:  # the person goes on after a pause: the same turn
            self._cancel_decision(utt)
            utt.turn.waterfall.clear("speech_end", "end_of_turn", "final_transcript", "llm_request")
            self._open(utt)
            return utt
        answer = p.answer_in_progress()
        over: Turn | None = None
        if answer is not None and self.policy.mode is InterruptionMode.IMMEDIATE:
            p._abort("user started speaking")  # first: the answer's model stream is cancelled at once
        elif answer is not None:
            over = answer
            if self.policy.mode is InterruptionMode.ADAPTIVE:
                self.pause_answer(answer)
        utt = self._utt = Utterance(Turn(source="voice"), over, self.clock())
        if over is None:
            self._take_floor(utt, at)
        elif self.policy.mode is InterruptionMode.ADAPTIVE:
            p._spawn(self._resume_unless_words(utt), "resume-timer")
        self._open(utt)
        return utt

    def _take_floor(self, utt: Utterance, at: float | None = None) -> None:
        """The utterance becomes the turn with the floor; an answer it was spoken over ends here."""
        p = self.p
        if utt.over is not None:
            over, utt.over = utt.over, None
            utt.barged_in = True
            if p.answer_in_progress() is over:
                p._abort("user started speaking")
        p._begin(utt.turn, TurnState.LISTENING, "speech started")
        p._put(StageOut(utt.turn.id, "speech_started", {"at": at if at is not None else self.clock()}))
        if utt.text:
            p._put(TranscriptOut(utt.turn.id, utt.text, False))

    def _open(self, utt: Utterance) -> None:
        segment: Channel[AudioChunk] = Channel(None, name="stt-in")
        for frame in self._preroll:
            segment.send_nowait(frame)
        self._preroll.clear()
        self._preroll_s = 0.0
        utt.segment = segment
        utt.listen = self.p._spawn(self._listen(utt, segment), "listen")

    def _paused(self, utt: Utterance) -> None:
        assert utt.segment is not None
        utt.segment.close()
        utt.segment = None
        utt.paused_at = self.clock()
        if utt.over is None:
            utt.turn.waterfall.mark("speech_end")
            self.p._put(StageOut(utt.turn.id, "speech_ended"))
        utt.decide = self.p._spawn(self._decide(utt), "end-of-turn")

    async def conclude(self, reason: str, *, within: float = 2.0) -> None:
        """The pipeline is going away (a mode switch, a closed connection) while speech is being
        listened to: let its words be transcribed (at most ``within`` seconds) and keep them as the
        person's turn, ended unanswered with ``response_done`` (interrupted)."""
        utt = self._utt
        if utt is None:
            return
        self._cancel_decision(utt)
        if utt.segment is not None:
            utt.segment.close()
            utt.segment = None
        if utt.listen is not None and not utt.listen.done():
            await asyncio.wait({utt.listen}, timeout=within)
        if self._utt is not utt:
            return  # something else ended it meanwhile
        self._utt = None
        p, turn, text = self.p, utt.turn, utt.text
        if utt.over is not None:
            if not self.policy.content_words(text):
                self.resume_answer(utt.over)
                return
            self._take_floor(utt)
        p._put(TranscriptOut(turn.id, text, True))
        if text and p.answering:
            turn.user_text, turn.interrupted = text, True
            p.history.append(Message("user", text, "audio", mode=p.config.mode))
            p._put(ResponseDone(turn.id, "", interrupted=True))
        p.close_turn(turn, reason)

    # -- transcripts -------------------------------------------------------------------------------

    async def _listen(self, utt: Utterance, segment: Channel[AudioChunk]) -> None:
        stt = self.p.stt
        assert stt is not None
        final: Transcription | None = None
        try:
            async with closing_stream(stt.stream(segment)) as transcripts:
                async for tr in transcripts:
                    if tr.is_final:
                        final = tr
                        break
                    if tr.text != utt.partial:
                        utt.partial = tr.text
                        self._progress(utt, tr.language)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            utt.failed = exc
            return
        utt.partial = ""
        if final is not None and final.text.strip():
            utt.texts.append(final.text.strip())
            utt.final = final
        if utt.over is None:
            utt.turn.waterfall.mark("final_transcript")

    def _progress(self, utt: Utterance, language: str | None) -> None:
        if utt.over is not None:
            elapsed = (self.clock() - utt.started) * 1000
            if (
                self.policy.judge(utt.text, final=False, elapsed_ms=elapsed, language=language)
                is Verdict.INTERRUPT
            ):
                self._take_floor(utt)
            return
        self.p._put(TranscriptOut(utt.turn.id, utt.text, False))

    async def _resume_unless_words(self, utt: Utterance) -> None:
        await asyncio.sleep(self.policy.resume_ms / 1000)
        if self._utt is utt and utt.over is not None and not self.policy.content_words(utt.text):
            self.resume_answer(utt.over)

    def pause_answer(self, turn: Turn) -> None:
        """Speech started over the answer: hold its playback where it is (the words heard so far are
        what counts if it turns out to be a barge-in)."""
        if turn.paused_heard_s is not None:
            return
        heard = self.p.playback.heard_seconds(turn.id) if self.p.playback is not None else None
        turn.paused_heard_s = heard if heard is not None else turn.audio_seconds
        turn.pause()
        self._tell_playback(turn, "pause")

    def resume_answer(self, turn: Turn) -> None:
        """It was a backchannel or a noise: the answer goes on from where it paused."""
        if turn.paused_heard_s is None or turn.finished:
            return
        turn.paused_heard_s = None
        turn.resume()
        self._tell_playback(turn, "resume")

    def _tell_playback(self, turn: Turn, action: Literal["pause", "resume"]) -> None:
        """The transport's playback tracker (when it can) and the transport's client hear ``action``."""
        method = getattr(self.p.playback, action, None)
        if callable(method):
            method(turn.id)
        self.p._put(PlaybackOut(turn.id, action))

    # -- end of turn -------------------------------------------------------------------------------

    def _cancel_decision(self, utt: Utterance) -> None:
        if utt.decide is not None:
            utt.decide.cancel()
            utt.decide = None
        if utt.held is not None:
            utt.held.cancel()
            utt.held = None

    async def _decide(self, utt: Utterance) -> None:
        p, turn = self.p, utt.turn
        if utt.listen is not None:
            await asyncio.wait({utt.listen})  # the stretch's final transcript (not cancelled with us)
        if utt.failed is not None:
            self._utt = None
            if utt.over is not None:
                self.resume_answer(utt.over)
                return
            p.not_understood(turn, utt.failed)
            return
        if utt.over is not None and not self._over_answer(utt):
            return
        text = utt.text
        if utt.by_default and not self.policy.content_words(text):
            text = ""  # a backchannel that only took the floor because the answer was superseded
        if not text:
            self._utt = None
            p._put(TranscriptOut(turn.id, "", True))
            p.close_turn(turn, "nothing recognised")
            p._next()
            return
        if self.detector is not None and not utt.forced and p.answering:
            if p.config.preemptive and utt.held is None:
                utt.held = p.preempt(turn, text)
            # The model hears the audio and reads the words: "I would like to know," sounds finished to an
            # audio model, and its trailing comma says it is not. A barge-in that took the floor is judged
            # too: "Wait," over an answer is the start of a turn, not all of it.
            utt.prediction = await self._prediction(self.detector.predict(utt.audio(), text))
            patience = 0.0
            if not utt.prediction.complete:
                patience = self._patience(utt.prediction)
            elif utt.barged_in:  # "Stop ... please, that's enough": who cuts in often goes on
                patience = p.config.min_wait_ms
            waited = (self.clock() - utt.paused_at) * 1000
            if patience > waited:
                await asyncio.sleep((patience - waited) / 1000)
        self._end(utt, text)

    def _over_answer(self, utt: Utterance) -> bool:
        """Speech over an answer has ended: does it take the floor (True) or was it a backchannel?"""
        assert utt.over is not None
        final = utt.final
        language = final.language if final is not None else None
        elapsed = (self.clock() - utt.started) * 1000
        if (
            self.policy.judge(utt.text, final=True, elapsed_ms=elapsed, language=language)
            is Verdict.INTERRUPT
        ):
            self._take_floor(utt)
            return True
        self._utt = None
        over = utt.over
        if self.policy.mode is InterruptionMode.OFF and self.policy.content_words(utt.text, language):
            self.p.queue(utt.turn, utt.text)  # heard once the answer is over
            return False
        self.resume_answer(over)
        log.debug("speech over the answer was not a barge-in: %r", utt.text)
        return False

    def _patience(self, prediction: TurnPrediction) -> float:
        """How long (ms of silence) an incomplete turn is waited for: the surer the model that it is
        unfinished, the longer, up to ``max_wait_ms`` ("I would like to know," waits long; a question
        the model is unsure about only a little)."""
        threshold = self.p.config.turn_threshold
        unsure = min(1.0, max(0.0, prediction.probability / threshold)) if threshold > 0 else 0.0
        return self.p.config.max_wait_ms * (1.0 - unsure) + self.p.config.min_wait_ms * unsure

    async def _prediction(self, judging: Awaitable[TurnPrediction]) -> TurnPrediction:
        try:
            return await judging
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing model must not hold the turn: end it as silence would
            log.warning("end-of-turn model failed (%s); ending the turn at the pause", exc)
            return TurnPrediction(True, 1.0, "model failed")

    def _end(self, utt: Utterance, text: str) -> None:
        p, turn = self.p, utt.turn
        self._utt = None
        turn.waterfall.mark("end_of_turn")
        final = utt.final
        confidence = final.confidence if final is not None else 1.0
        language = final.language if final is not None else None
        p._set_state(TurnState.PROCESSING, "end of turn", turn)
        p._put(TranscriptOut(turn.id, text, True, confidence, language))
        if not p.answering:  # dictation: the words are the result
            turn.user_text = text
            p.history.append(Message("user", text, "audio", mode=p.config.mode))
            turn.waterfall.mark("done")
            p._put(ResponseDone(turn.id, ""))
            p.close_turn(turn, "transcribed")
            return
        p._start_response(turn, text, modality="audio", held=utt.held)
