"""How few steps of the event loop the pipeline takes: a token wakes one task, and stopping an answer
stops the model's stream in the very next step (not after a chain of tasks each cancelling the next)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from aria.engines.base import LLMChunk, LLMRequest
from aria.pipeline.interruptions import InterruptionMode, InterruptionPolicy
from aria.pipeline.outputs import AudioOut, Output, ResponseDone, StageOut, StateOut, TextOut
from aria.pipeline.turn import Turn
from aria.pipeline.voice import VoicePipeline
from aria.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from aria.types import AudioChunk, GeneratedToken


class GatedLLM(FakeLLM):
    """Streams the tokens the test hands it, one per ``feed``; records when its stream is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: asyncio.Queue[str] = asyncio.Queue()
        self.streaming = asyncio.Event()
        self.cancelled = False

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.calls += 1
        self.streaming.set()
        try:
            while True:
                yield GeneratedToken(await self.tokens.get())
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def steps_until(predicate: object, limit: int = 20) -> int:
    """Event-loop steps (``sleep(0)``) until ``predicate()`` holds."""
    for step in range(limit):
        if predicate():  # type: ignore[operator]
            return step
        await asyncio.sleep(0)
    raise AssertionError("never happened")


def pipeline_with(llm: GatedLLM, **kw: object) -> VoicePipeline:
    return VoicePipeline(llm=llm, stt=FakeSTT(), vad=FakeVAD(), tts=FakeTTS(), **kw)  # type: ignore[arg-type]


async def drain(pipeline: VoicePipeline, into: list[Output]) -> None:
    async for out in pipeline.outputs:
        into.append(out)


@contextlib.asynccontextmanager
async def telling_a_story(llm: GatedLLM) -> AsyncIterator[tuple[VoicePipeline, list[Output], Turn]]:
    """A pipeline that stops an answer at once for speech over it, answering "tell me a story" (the model
    is streaming), its outputs drained into a list as a transport would."""
    immediate = InterruptionPolicy(mode=InterruptionMode.IMMEDIATE)
    async with pipeline_with(llm, interruption=immediate) as pipeline:
        outs: list[Output] = []
        consumer = asyncio.create_task(drain(pipeline, outs))
        turn = pipeline.push_text("tell me a story")
        await asyncio.wait_for(llm.streaming.wait(), 5)
        yield pipeline, outs, turn
    await consumer


@pytest.mark.parametrize("how", ["interrupt", "new_text", "barge_in"])
async def test_stopping_an_answer_cancels_the_model_stream_in_the_next_step(how: str) -> None:
    llm = GatedLLM()
    async with telling_a_story(llm) as (pipeline, outs, turn):
        for token in ("Once", " upon", " a", " time", ","):
            llm.tokens.put_nowait(token)
        await steps_until(lambda: sum(isinstance(o, TextOut) for o in outs) == 5)
        if how == "interrupt":
            assert await pipeline.interrupt("stop")
        elif how == "new_text":
            pipeline.push_text("something else")
        else:
            pipeline.push_audio(AudioChunk(np.full(320, 8000, dtype=np.int16), 16000))
        assert turn.interrupted
        assert not llm.cancelled
        assert await steps_until(lambda: llm.cancelled) == 1
        await steps_until(lambda: any(isinstance(o, ResponseDone) and o.turn_id == turn.id for o in outs))
        done = [o for o in outs if isinstance(o, ResponseDone) and o.turn_id == turn.id]
        assert done[0].interrupted


async def test_each_token_is_shown_in_the_step_it_arrives_and_clauses_reach_speech() -> None:
    """The answering task reads the model itself: a token is on the screen in the step after the model
    gave it (no relay task), and the first clause is spoken while the model is still writing."""
    llm = GatedLLM()
    async with pipeline_with(llm) as pipeline:
        outs: list[Output] = []
        consumer = asyncio.create_task(drain(pipeline, outs))
        pipeline.push_text("hello")
        await asyncio.wait_for(llm.streaming.wait(), 5)
        tokens = ("Sure", ",", " here", " is", " the", " answer", ".", " More", " words")
        for shown, token in enumerate(tokens, 1):
            llm.tokens.put_nowait(token)

            def on_screen(shown: int = shown) -> bool:
                return sum(isinstance(o, TextOut) for o in outs) == shown

            # one step: the stream resumes, the text goes out; one more: the consumer takes it
            assert await steps_until(on_screen) <= 2
        await steps_until(lambda: any(isinstance(o, AudioOut) for o in outs), limit=50)
        audio = [o for o in outs if isinstance(o, AudioOut)]
        assert {o.clause for o in audio} == {0}  # "Sure, here is the answer." while "More words" waits
        assert not llm.cancelled
        await pipeline.interrupt()
    await consumer


def closed(turn: Turn) -> bool:
    return turn.finished


LOUD = AudioChunk(np.full(320, 8000, dtype=np.int16), 16000)


async def test_a_barge_in_reaches_the_transport_first_and_the_new_turn_follows_in_order() -> None:
    """Speech over an answer (stop at once): the transport is woken by the interrupted answer's
    ``response_done`` before anything else runs, the answer is in the history by the time it sees it (a
    transport saves the session then), and the new turn's outputs follow the old turn's, in order."""
    llm = GatedLLM()
    immediate = InterruptionPolicy(mode=InterruptionMode.IMMEDIATE)
    async with pipeline_with(llm, interruption=immediate) as pipeline:
        seen: list[tuple[Output, int]] = []
        closed_when_heard: list[bool] = []

        async def transport() -> None:
            async for out in pipeline.outputs:
                seen.append((out, len(pipeline.history)))
                if isinstance(out, ResponseDone):
                    closed_when_heard.append(old.finished)

        consumer = asyncio.create_task(transport())
        old = pipeline.push_text("tell me a story")
        await asyncio.wait_for(llm.streaming.wait(), 5)
        llm.tokens.put_nowait("Once upon a time,")
        await steps_until(lambda: any(isinstance(o, TextOut) for o, _ in seen))
        pipeline.push_audio(LOUD)
        await steps_until(lambda: any(isinstance(o, ResponseDone) for o, _ in seen))
        done, history_then = next((o, n) for o, n in seen if isinstance(o, ResponseDone))
        assert done.turn_id == old.id
        assert done.interrupted
        assert history_then == 2  # the question and the interrupted answer, before the transport saves
        assert closed_when_heard == [False]  # it ran before the turn's closing bookkeeping
        assert pipeline.history[-1].interrupted
        await steps_until(lambda: pipeline.turn is not old and pipeline.turn is not None)
        new = pipeline.turn
        assert new is not None
        assert new.source == "voice"
        await steps_until(lambda: any(getattr(o, "turn_id", None) == new.id for o, _ in seen))
        kinds = [(type(o).__name__, getattr(o, "turn_id", None)) for o, _ in seen]
        at_done = kinds.index(("ResponseDone", old.id))
        assert kinds[at_done + 1 : at_done + 3] == [("StateOut", old.id), ("MetricsOut", old.id)]
        assert ("StateOut", new.id) in kinds[at_done + 3 :]
        assert pipeline.state.state.value == "listening"
    await consumer


@pytest.mark.parametrize("then", ["audio", "text", "ask"])
async def test_input_before_the_barge_in_step_finishes_the_bookkeeping_first(then: str) -> None:
    """Whatever comes in the same loop step as a barge-in (more audio, typed text, a question about the
    turn) sees the barge-in's bookkeeping done: the new turn exists and nothing is out of order."""
    async with telling_a_story(GatedLLM()) as (pipeline, outs, old):
        pipeline.push_audio(LOUD)
        assert old.interrupted
        assert not closed(old)  # its closing outputs wait for the next step...
        if then == "audio":
            pipeline.push_audio(LOUD)  # ...or for the next input, whichever comes first
            assert pipeline.listener.listening
        elif then == "text":
            typed = pipeline.push_text("never mind")
            assert pipeline._queued[-1][0] is typed  # the speech came first: the text waits for it
        else:
            assert pipeline.answer_in_progress() is None
        assert closed(old)
        assert pipeline.turn is not old
        assert pipeline.state.state.value == "listening"
        await steps_until(lambda: sum(isinstance(o, ResponseDone) for o in outs) >= 1)
    ids = [getattr(o, "turn_id", None) for o in outs]
    last_old = max(i for i, t in enumerate(ids) if t == old.id)
    first_new = min(i for i, t in enumerate(ids) if t not in (old.id, None))
    assert last_old < first_new  # the old turn's outputs, then the new one's


async def test_the_speaker_is_kept_until_the_voice_or_the_settings_change() -> None:
    import dataclasses

    pipeline = pipeline_with(GatedLLM())
    first = pipeline.speaker()
    assert pipeline.speaker() is first
    pipeline.config = dataclasses.replace(pipeline.config, voice="en-gb", first_clause_min_chars=30)
    changed = pipeline.speaker()
    assert changed is not first
    assert (changed.voice, changed.first_min_chars) == ("en-gb", 30)
    pipeline.tts = FakeTTS()
    assert pipeline.speaker() is not changed
    assert pipeline.speaker().tts is pipeline.tts
    await pipeline.aclose()


async def test_the_model_is_asked_before_push_text_returns() -> None:
    """The answering task's first step runs inside ``push_text``: the model's stream is open when the
    call returns. The turn's state and ``llm_request`` still come before anything of the answer."""
    llm = GatedLLM()
    async with pipeline_with(llm) as pipeline:
        outs: list[Output] = []
        consumer = asyncio.create_task(drain(pipeline, outs))
        turn = pipeline.push_text("hello")
        assert llm.streaming.is_set()
        assert pipeline.answer_in_progress() is turn
        llm.tokens.put_nowait("Hi.")
        await steps_until(lambda: any(isinstance(o, TextOut) for o in outs))
        kinds = [o.state if isinstance(o, StateOut) else getattr(o, "stage", type(o).__name__) for o in outs]
        assert kinds.index("processing") < kinds.index("llm_request") < kinds.index("TextOut")
        await pipeline.interrupt()
    await consumer


class TalkativeTTS(FakeTTS):
    """Records when it is asked, beside the model's tokens (into the same list)."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        self.log.append(f"tts:{text}")
        async for chunk in super().synthesize(text, voice=voice):
            yield chunk


async def test_a_clause_is_shown_then_spoken_before_the_model_is_read_on() -> None:
    """The piece that completes the first clause goes out as text, then TTS is asked for the clause,
    all in the step the piece arrived in: the model's next token is asked for only after."""
    log: list[str] = []

    class Scripted(FakeLLM):
        async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
            for token in ("Sure", ", here", " it is", ".", " More", " words."):
                log.append(f"llm:{token}")
                yield GeneratedToken(token)

    pipeline = VoicePipeline(llm=Scripted(), stt=FakeSTT(), vad=FakeVAD(), tts=TalkativeTTS(log))
    async with pipeline:
        outs: list[Output] = []
        consumer = asyncio.create_task(drain(pipeline, outs))
        turn = pipeline.push_text("hello")
        assert "tts:Sure, here it is." in log  # this model never waits: all of it ran in push_text
        await steps_until(lambda: turn.finished, limit=200)
    await consumer
    assert log.index("tts:Sure, here it is.") == log.index("llm:.") + 1  # before " More" was asked for
    kinds = [
        o.stage if isinstance(o, StageOut) else (o.text if isinstance(o, TextOut) else type(o).__name__)
        for o in outs
    ]
    assert (
        kinds.index(".") < kinds.index("tts_request") < kinds.index("AudioOut") < kinds.index("ResponseDone")
    )


async def test_an_answer_that_never_waits_ends_inside_push_text_and_the_next_one_follows_in_order() -> None:
    """A model that answers at once (no wait at all) in a text-only pipeline: the whole answer runs in
    ``push_text``. The pipeline's bookkeeping holds (nothing in progress after it), and a second question
    gets its own complete answer, after the first one's."""

    class Instant(FakeLLM):
        async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
            yield GeneratedToken(f"You said {request.messages[-1].content}.")

    pipeline = VoicePipeline(llm=Instant(), stt=FakeSTT(), vad=FakeVAD())
    async with pipeline:
        outs: list[Output] = []
        consumer = asyncio.create_task(drain(pipeline, outs))
        first = pipeline.push_text("one")
        assert first.finished
        assert pipeline.answer_in_progress() is None
        second = pipeline.push_text("two")
        assert second.finished
        await steps_until(lambda: sum(isinstance(o, ResponseDone) for o in outs) == 2)
    await consumer
    done = [(o.turn_id, o.text) for o in outs if isinstance(o, ResponseDone)]
    assert done == [(first.id, "You said one."), (second.id, "You said two.")]
    ids = [getattr(o, "turn_id", None) for o in outs]
    assert max(i for i, t in enumerate(ids) if t == first.id) < min(
        i for i, t in enumerate(ids) if t == second.id
    )
    assert [m.content for m in pipeline.history] == ["one", "You said one.", "two", "You said two."]
