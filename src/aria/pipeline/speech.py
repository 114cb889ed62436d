"""Speech output: the answer's text in clauses, each clause to TTS, the audio out with its word timings.

The first clause goes to TTS as soon as it is long enough (``first_clause_min_chars``), while the model is
still writing; later ones in whole sentences. The task that answers the turn reads the model's stream
itself, shows each piece and cuts the clauses as it goes; only whole clauses cross to the speaking task.
So a piece of text wakes one task, and cancelling the turn's task stops the model's stream at once.

Each audio block is recorded on the turn (its clause, its duration, the word timings its engine gave)
before it goes out, so what the person heard can be told word by word when the answer is interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Protocol

from aria.core.aio import aclose_quietly, start_now
from aria.core.channels import Channel
from aria.core.text import ClauseChunker
from aria.engines.base import TTS
from aria.pipeline.outputs import AudioOut, ErrorOut, Output, StageOut, TextOut
from aria.pipeline.turn import Turn

__all__ = ["Speaker", "deliver"]

log = logging.getLogger(__name__)


class Speaker:
    """Speaks one turn's answer. ``send`` puts an output in order behind the answer's text and audio
    (it may wait: backpressure); ``put`` queues a small control output at once; ``responding(turn)`` is
    called before the first audio of the turn goes out."""

    def __init__(
        self,
        tts: TTS,
        *,
        send: Callable[[Output], Awaitable[object]],
        put: Callable[[Output], None],
        responding: Callable[[Turn], None],
        first_min_chars: int = 12,
        min_chars: int = 24,
        max_chars: int = 220,
        voice: str | None = None,
    ) -> None:
        self.tts = tts
        self._send, self._put, self._responding = send, put, responding
        self.first_min_chars, self.min_chars, self.max_chars = first_min_chars, min_chars, max_chars
        self.voice = voice

    def chunker(self) -> ClauseChunker:
        """Cuts the answer's text into the clauses :meth:`speak` takes."""
        return ClauseChunker(
            first_min_chars=self.first_min_chars, min_chars=self.min_chars, max_chars=self.max_chars
        )

    async def speak(self, turn: Turn, clauses: AsyncIterable[str]) -> None:
        """Speak each clause in turn (see :meth:`chunker`), until ``clauses`` ends or the turn stops."""
        seq = 0
        async for clause in clauses:
            if turn.stopped():
                return
            index = turn.add_clause(clause)
            if index == 0:
                self._responding(turn)
                if turn.waterfall.mark("first_tts_request"):
                    self._put(StageOut(turn.id, "tts_request", {"text": clause}))
            try:
                first = True
                audio = self.tts.synthesize(clause, voice=self.voice)
                try:
                    async for chunk in audio:
                        if turn.paused:  # held for speech over it
                            await turn.until_resumed()
                        if turn.stopped():
                            return
                        if first and turn.waterfall.mark("first_audio_out"):
                            self._put(StageOut(turn.id, "first_audio"))
                        turn.add_audio(index, chunk)
                        await self._send(AudioOut(turn.id, chunk, index, seq))
                        seq += 1
                        if first:
                            # A fast engine must not fill the channel before the transport gets the
                            # clause's first block: let the consumer run. Later blocks go in a batch
                            # (a full channel makes ``send`` wait anyway): one loop step, not one each.
                            first = False
                            await asyncio.sleep(0)
                finally:
                    await aclose_quietly(audio)
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


class _Sent(Protocol):
    async def wait_sent(self, turn_id: str, blocks: int) -> None: ...


async def deliver(
    turn: Turn,
    said: AsyncIterator[str],
    speaker: Speaker | None,
    *,
    send: Callable[[Output], Awaitable[object]],
    responding: Callable[[Turn], None],
    playback: _Sent | None = None,
) -> None:
    """The answer's text to the screen as it comes and, with a ``speaker``, to speech beside it. With a
    ``playback`` tracker the answer lasts until its audio has gone out: a barge-in until then still
    interrupts it, and ``response_done`` comes as the last audio plays."""

    speech: _Speech | None = None  # made with the first piece: the model is asked before anything else
    generated, turn_id, first = turn.generated, turn.id, True
    try:
        try:  # (not ``closing_stream``: nothing more than needed between the input and the model)
            async for text in said:
                if turn.stopped():
                    return
                if first:
                    responding(turn)
                    first = False
                    if speaker is not None:
                        speech = _Speech(speaker, turn)
                generated.append(text)
                clauses = speech.chunker.push(text) if speech is not None else None
                await send(TextOut(turn_id, text))
                # A clause this piece completes is spoken from this step on: the piece is shown first,
                # then TTS is asked. Only where its task could not start at once (a loop other than
                # asyncio's own) does it get a step before the model's stream is read on.
                if clauses and speech is not None and not speech.add(clauses):
                    await asyncio.sleep(0)
        finally:
            await aclose_quietly(said)
        if speech is None:
            return
        speech.add(speech.chunker.flush())
        await speech.finish()
        if playback is not None:
            await playback.wait_sent(turn.id, sum(turn.clause_audio))
    finally:
        if speech is not None:
            await speech.cancel()


class _Speech:
    """The speaking side of one answer: the clauses cut from its text go to a task (started with the
    first clause) that speaks them one after another. The channel is unbounded: the display never
    waits for speech."""

    def __init__(self, speaker: Speaker, turn: Turn) -> None:
        self.speaker, self.turn = speaker, turn
        self.chunker = speaker.chunker()
        self.clauses: Channel[str] = Channel(None, name="clauses")
        self.task: asyncio.Task[None] | None = None

    def add(self, clauses: list[str]) -> bool:
        """Queue ``clauses`` for speech. The first clause starts the speaking task, which asks TTS in
        this call (see :func:`start_now`). False when that task is waiting for its first step."""
        for clause in clauses:
            self.clauses.send_nowait(clause)
        if clauses and self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self.speaker.speak(self.turn, self.clauses), name="pipeline-speak"
            )
            return start_now(self.task)
        return True

    async def finish(self) -> None:
        """Until every clause has been spoken."""
        self.clauses.close()
        if self.task is not None:
            await self.task

    async def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
