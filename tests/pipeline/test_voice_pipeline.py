"""Turn-level tests of the voice pipeline with scripted fakes: order, states, clauses, barge-in, faults."""

from __future__ import annotations

import asyncio
import logging
import re

import numpy as np
import pytest

from aria.core.events import Event, EventBus, EventType
from aria.core.metrics import STAGES
from aria.engines.chain import FallbackLLM
from aria.errors import InvalidInput
from aria.pipeline.answer import APOLOGY_MID, APOLOGY_NONE
from aria.pipeline.interruptions import InterruptionMode, InterruptionPolicy
from aria.pipeline.outputs import (
    AudioOut,
    ErrorOut,
    MetricsOut,
    ResponseDone,
    StateOut,
    TextOut,
    TranscriptOut,
)
from aria.pipeline.voice import NOT_UNDERSTOOD, PipelineConfig, VoicePipeline
from aria.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD, Fault, TurnHarness, silence, tone
from aria.types import AudioChunk

LONG_REPLY = (
    "Sure, here is the answer. The first sentence is short. The second one is a little longer than that. "
    "And a third sentence closes the answer for good."
)


def states(h: TurnHarness, turn_id: str | None = None) -> list[str]:
    return [o.state for o in h.outputs(StateOut, turn_id)]


async def test_voice_turn_emits_outputs_and_events_in_order() -> None:
    async with TurnHarness.with_fakes(stt=FakeSTT.Config(texts=("what is the time",), partial_every=5)) as h:
        await h.speak(speech_ms=400, silence_ms=300)
        done = await h.wait_for(ResponseDone)
        await h.wait_for(MetricsOut)
        await h.pipeline.bus.drained()
        tid = done.turn_id

        kinds = h.kinds(tid)
        assert kinds[:6] == [
            "StateOut",  # listening
            "TranscriptOut",  # partials while speaking
            "StateOut",  # processing
            "TranscriptOut",  # final
            "StateOut",  # responding
            "TextOut",  # tokens and audio interleave as they are produced
        ]
        assert kinds[-3:] == ["ResponseDone", "StateOut", "MetricsOut"]  # then idle and the waterfall
        assert set(kinds[6:-3]) <= {"TextOut", "AudioOut"}
        assert "AudioOut" in kinds[6:-3]
        assert states(h, tid) == ["listening", "processing", "responding", "idle"]
        transcripts = h.outputs(TranscriptOut, tid)
        assert [t.final for t in transcripts][-1] is True
        assert transcripts[-1].text == "what is the time"
        assert all(not t.final for t in transcripts[:-1])
        assert transcripts[0].text == "what"  # partials grow word by word
        assert h.texts(tid) == "Sure, here is the answer. It has two sentences."
        assert done.text == "Sure, here is the answer. It has two sentences."
        assert not done.interrupted

        event_types = [
            e.type for e in h.events if e.correlation_id == tid and e.type != EventType.STATE_CHANGED
        ]
        # Every partial transcript comes after the speech starts and before the final one, one event each.
        partials = [i for i, t in enumerate(event_types) if t == "transcript_partial"]
        assert event_types[0] == "speech_started"
        assert partials
        assert all(0 < i < event_types.index("transcript_final") for i in partials)
        assert len(partials) == len(transcripts) - 1
        ordered = [t for t in event_types if t != "transcript_partial"]
        assert ordered == [
            "speech_started",
            "speech_ended",
            "transcript_final",
            "llm_request",
            "llm_first_token",
            "tts_request",
            "first_audio",
            "turn_metrics",
            "response_done",
        ]
        changes = [
            (e.payload["from"], e.payload["to"]) for e in h.events if e.type == EventType.STATE_CHANGED
        ]
        assert changes == [
            ("idle", "listening"),
            ("listening", "processing"),
            ("processing", "responding"),
            ("responding", "idle"),
        ]


async def test_history_records_both_sides_and_feeds_the_next_request() -> None:
    llm = FakeLLM.Config(replies=("First answer here.", "Second answer here."))
    async with TurnHarness.with_fakes(llm=llm, stt=FakeSTT.Config(texts=("one", "two"))) as h:
        await h.speak()
        await h.wait_for(ResponseDone)
        mark = len(h.received)
        await h.speak()
        await h.wait_for(ResponseDone, after=mark)
        history = list(h.pipeline.history)
        assert [(m.role, m.content, m.modality) for m in history] == [
            ("user", "one", "audio"),
            ("assistant", "First answer here.", "text"),
            ("user", "two", "audio"),
            ("assistant", "Second answer here.", "text"),
        ]
        fake = h.pipeline.llm
        assert isinstance(fake, FakeLLM)
        assert [m.content for m in fake.requests[1].messages] == ["one", "First answer here.", "two"]


async def test_first_tts_request_goes_out_at_the_first_clause_not_at_the_end() -> None:
    llm = FakeLLM.Config(replies=(LONG_REPLY,), token_interval_s=0.01)
    async with TurnHarness.with_fakes(llm=llm) as h:
        turn = h.pipeline.push_text("tell me")
        await h.wait_for(ResponseDone)
        tts = h.pipeline.tts
        assert isinstance(tts, FakeTTS)
        first_text, _, first_at = tts.requests[0]
        assert first_text == "Sure, here is the answer."
        texts = h.outputs(TextOut, turn.id)
        last_token_at = h.arrival(lambda o: o is texts[-1])
        assert last_token_at is not None
        # The answer has ~25 tokens 10 ms apart: the first clause is spoken long before the last token.
        assert last_token_at - first_at > 0.1
        assert [r[0] for r in tts.requests] == [
            "Sure, here is the answer.",
            "The first sentence is short.",
            "The second one is a little longer than that.",
            "And a third sentence closes the answer for good.",
        ]
        first_audio = h.arrival(lambda o: isinstance(o, AudioOut))
        assert first_audio is not None
        assert first_audio < last_token_at


async def test_text_input_skips_vad_and_stt() -> None:
    async with TurnHarness.with_fakes() as h:
        turn = h.pipeline.push_text("  hello  ")
        await h.wait_for(ResponseDone)
        stt = h.pipeline.stt
        assert isinstance(stt, FakeSTT)
        assert stt.calls == 0
        assert h.outputs(TranscriptOut) == []
        assert states(h, turn.id) == ["processing", "responding", "idle"]
        assert h.pipeline.history[0].content == "hello"
        assert h.pipeline.history[0].modality == "text"
        with pytest.raises(InvalidInput):
            h.pipeline.push_text("   ")


async def test_text_only_pipeline_without_tts_streams_text() -> None:
    pipeline = VoicePipeline(llm=FakeLLM(), config=PipelineConfig(speak=False))
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("hi")
        done = await h.wait_for(ResponseDone)
        assert h.outputs(AudioOut) == []
        assert [o.text for o in h.outputs(TextOut, turn.id)][:3] == ["Sure,", " here", " is"]
        assert done.text == "Sure, here is the answer. It has two sentences."
        with pytest.raises(InvalidInput, match="text only"):
            pipeline.push_audio(tone(20)[0])


def _word_mid(clause: str, index: int, ms_per_char: float = 40) -> float:
    """Where word ``index`` of ``clause`` is half spoken by the fake TTS (it spreads words by characters)."""
    word = list(re.finditer(r"\S+", clause))[index]
    return (word.start() + word.end()) / 2 * ms_per_char / 1000


async def test_barge_in_by_speech_stops_audio_and_records_what_was_heard() -> None:
    slow_tts = FakeTTS.Config(chunk_interval_s=0.005, ms_per_char=40)
    llm = FakeLLM.Config(replies=(LONG_REPLY, "Second answer."))
    immediate = InterruptionPolicy(InterruptionMode.IMMEDIATE)
    async with TurnHarness.with_fakes(
        tts=slow_tts, llm=llm, vad=FakeVAD.Config(start_frames=2), interruption=immediate
    ) as h:
        await h.speak()
        first = await h.wait_for(AudioOut)
        await h.wait_for(AudioOut, lambda a: a.seq >= 5)
        turn1 = first.turn_id

        # The user starts talking over the answer.
        cut = len(h.received)
        h.pipeline.push_audio(tone(20)[0])
        h.pipeline.push_audio(tone(20)[0])  # second loud frame: VAD says speech started
        cut_done = len(h.received)
        await h.feed([*tone(300), *silence(300)])
        done2 = await h.wait_for(ResponseDone, lambda d: d.turn_id != turn1, after=cut)

        done1 = next(o for o in h.outputs(ResponseDone, turn1))
        assert done1.interrupted
        # Nothing of the first answer's audio was delivered after the barge-in.
        later = [
            r for r in h.received[cut_done:] if isinstance(r.output, AudioOut) and r.output.turn_id == turn1
        ]
        assert later == []
        heard_clauses = {a.clause for a in h.audio_frames(turn1)}
        assert heard_clauses == {0}  # only the first clause had started playing
        # Word-exact: the words whose audio had gone out (the fake TTS marks words by characters).
        sent_s = sum(a.chunk.duration for a in h.audio_frames(turn1))
        clause = "Sure, here is the answer."
        expected = [w for i, w in enumerate(clause.split()) if _word_mid(clause, i) <= sent_s]
        assert done1.text == " ".join(expected)
        assert 0 < len(expected) < len(clause.split())
        assistant = h.pipeline.history[1]
        assert assistant.role == "assistant"
        assert assistant.interrupted
        assert assistant.content == done1.text
        assert LONG_REPLY.startswith(assistant.metadata["generated"])
        # The barge-in became the next turn, answered in full.
        assert done2.text == "Second answer."
        assert not done2.interrupted
        assert states(h, turn1)[-1] == "idle"
        assert [m.role for m in h.pipeline.history] == ["user", "assistant", "user", "assistant"]


async def test_interrupt_cancels_llm_and_tts_work() -> None:
    llm = FakeLLM.Config(replies=(LONG_REPLY,), token_interval_s=0.005)
    tts = FakeTTS.Config(chunk_interval_s=0.005)
    async with TurnHarness.with_fakes(llm=llm, tts=tts) as h:
        turn = h.pipeline.push_text("go")
        await h.wait_for(AudioOut)
        fake_tts, fake_llm = h.pipeline.tts, h.pipeline.llm
        assert isinstance(fake_tts, FakeTTS)
        assert isinstance(fake_llm, FakeLLM)
        assert await h.pipeline.interrupt("user pressed stop")
        index = len(h.received)
        requests = len(fake_tts.requests)
        await asyncio.sleep(0.1)
        assert len(fake_tts.requests) == requests  # no new synthesis
        assert not [r for r in h.received[index:] if isinstance(r.output, AudioOut | TextOut)]
        done = h.outputs(ResponseDone, turn.id)
        assert len(done) == 1
        assert done[0].interrupted
        assert h.pipeline.state.state == "idle"
        await h.pipeline.bus.drained()
        interrupted = [e for e in h.events if e.type == EventType.TURN_INTERRUPTED]
        assert interrupted[0].payload["reason"] == "user pressed stop"
        assert not await h.pipeline.interrupt()  # nothing left to stop


async def test_new_text_interrupts_the_answer_in_progress() -> None:
    llm = FakeLLM.Config(replies=(LONG_REPLY, "Okay."), token_interval_s=0.005)
    async with TurnHarness.with_fakes(llm=llm, config=PipelineConfig(speak=False)) as h:
        first = h.pipeline.push_text("long one")
        await h.wait_for(TextOut)
        second = h.pipeline.push_text("stop, short one")
        await h.wait_for(ResponseDone, lambda d: d.turn_id == second.id)
        done1 = h.outputs(ResponseDone, first.id)[0]
        assert done1.interrupted
        assert LONG_REPLY.startswith(done1.text)
        assert [(m.role, m.interrupted) for m in h.pipeline.history] == [
            ("user", False),
            ("assistant", True),
            ("user", False),
            ("assistant", False),
        ]


async def test_failing_and_slow_subscribers_do_not_block_the_turn(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus(queue_size=4)

    def explode(event: Event) -> None:
        raise RuntimeError(f"subscriber bug on {event.type}")

    async def stuck(event: Event) -> None:
        await asyncio.Event().wait()

    failing = bus.subscribe(explode, name="exploding")
    slow = bus.subscribe(stuck, name="stuck")
    with caplog.at_level(logging.ERROR, logger="aria.core.events"):
        async with TurnHarness.with_fakes(bus=bus) as h:
            await h.speak()
            done = await asyncio.wait_for(h.wait_for(ResponseDone), 2.0)
            assert done.text
            await failing.drained()
            await slow.aclose(grace_s=0.01)
    assert failing.failed >= 5
    assert slow.dropped > 0
    assert any("subscriber bug" in r.exc_text for r in caplog.records if r.exc_text)


async def test_fallback_chain_answers_when_the_primary_llm_fails_and_its_breaker_opens() -> None:
    broken = FakeLLM(FakeLLM.Config(fault=Fault(always=True, retryable=False)))
    broken.name = "broken"
    backup = FakeLLM(FakeLLM.Config(replies=("From the backup.",)))
    backup.name = "backup"
    fallbacks: list[str] = []
    llm = FallbackLLM([broken, backup], on_fallback=lambda kind, name, exc: fallbacks.append(name))
    await llm.start()
    pipeline = VoicePipeline(llm=llm, tts=FakeTTS(), config=PipelineConfig())
    async with TurnHarness(pipeline) as h:
        for index in range(5):
            turn = pipeline.push_text(f"question {index}")
            done = await h.wait_for(ResponseDone, lambda d, tid=turn.id: d.turn_id == tid)
            assert done.text == "From the backup."
            assert done.error is None
    assert broken.calls == 3  # the breaker opened after 3 failures: not called again
    assert backup.calls == 5
    assert fallbacks == ["broken", "broken", "broken"]
    assert llm.chain.breakers["broken"].state == "open"


async def test_llm_failure_mid_answer_keeps_the_partial_and_the_next_turn_works() -> None:
    fault = Fault(calls=(1,), after=4, retryable=True, message="backend died")
    llm = FakeLLM.Config(replies=(LONG_REPLY, "Back again."), fault=fault)
    async with TurnHarness.with_fakes(llm=llm, config=PipelineConfig(speak=False)) as h:
        turn = h.pipeline.push_text("first")
        done = await h.wait_for(ResponseDone)
        error = h.outputs(ErrorOut, turn.id)[0]
        assert "backend died" in error.message
        assert error.retryable
        assert done.error == error.code
        # The partial answer stays and an apology follows it, shown like the answer.
        assert done.text == f"Sure, here is the... {APOLOGY_MID}"
        types = [type(r.output).__name__ for r in h.received if getattr(r.output, "turn_id", None) == turn.id]
        assert types.index("ErrorOut") < len(types) - 1 - types[::-1].index("TextOut")
        assistant = h.pipeline.history[1]
        assert assistant.content == done.text
        assert assistant.metadata["error"] == error.code
        assert h.pipeline.state.state == "idle"
        second = h.pipeline.push_text("again")
        done2 = await h.wait_for(ResponseDone, lambda d: d.turn_id == second.id)
        assert done2.text == "Back again."


async def test_tts_failure_degrades_to_text() -> None:
    tts = FakeTTS.Config(fault=Fault(always=True, message="voice crashed"))
    async with TurnHarness.with_fakes(tts=tts) as h:
        turn = h.pipeline.push_text("hi")
        done = await h.wait_for(ResponseDone)
        assert [e.code for e in h.outputs(ErrorOut, turn.id)] == ["tts_failed"]
        assert h.outputs(AudioOut) == []
        assert done.text == "Sure, here is the answer. It has two sentences."
        assert done.error is None


async def test_stt_failure_asks_to_repeat_and_listening_continues() -> None:
    stt = FakeSTT.Config(texts=("one", "two"), fault=Fault(calls=(1,), after=1))
    async with TurnHarness.with_fakes(stt=stt) as h:
        await h.speak()
        error = await h.wait_for(ErrorOut)
        assert error.code == "stt_failed"
        assert error.retryable
        said = await h.wait_for(ResponseDone)
        assert said.text == NOT_UNDERSTOOD  # shown and spoken
        assert said.error == "stt_failed"
        assert h.outputs(AudioOut, said.turn_id)
        await h.wait_for(StateOut, lambda s: s.state == "idle")
        assert len(h.pipeline.history) == 0  # nothing entered the conversation
        mark = len(h.received)
        await h.speak()
        done = await h.wait_for(ResponseDone, after=mark)
        assert done.text
        assert [m.content for m in h.pipeline.history if m.role == "user"] == ["two"]


async def test_an_llm_that_cannot_start_an_answer_is_apologised_for() -> None:
    llm = FakeLLM.Config(fault=Fault(always=True, message="connection refused"))
    async with TurnHarness.with_fakes(llm=llm) as h:
        turn = h.pipeline.push_text("hello?")
        done = await h.wait_for(ResponseDone)
        assert done.text == APOLOGY_NONE
        assert done.error == "engine_error"
        assert [e.code for e in h.outputs(ErrorOut, turn.id)] == ["engine_error"]
        assert h.outputs(AudioOut, turn.id), "the apology is spoken"
        assert h.pipeline.history[-1].metadata["error"] == "engine_error"


async def test_empty_transcript_gives_no_answer() -> None:
    async with TurnHarness.with_fakes(stt=FakeSTT.Config(texts=("",))) as h:
        await h.speak()
        await h.wait_for(StateOut, lambda s: s.state == "idle")
        assert h.outputs(ResponseDone) == []
        assert len(h.pipeline.history) == 0


async def test_bad_audio_is_rejected_and_the_pipeline_survives() -> None:
    async with TurnHarness.with_fakes() as h:
        with pytest.raises(InvalidInput, match="16000"):
            h.pipeline.push_audio(AudioChunk(np.zeros(480, dtype=np.float32), 48000))
        stereo = AudioChunk(np.full((320, 2), 0.2, dtype=np.float32), 16000, channels=2)
        h.pipeline.push_audio(stereo)  # downmixed, accepted
        await h.speak()
        assert (await h.wait_for(ResponseDone)).text


async def test_preroll_audio_reaches_stt() -> None:
    config = PipelineConfig(preroll_ms=100)
    async with TurnHarness.with_fakes(vad=FakeVAD.Config(start_frames=3, end_frames=5), config=config) as h:
        await h.feed([*silence(400), *tone(200), *silence(200)])
        await h.wait_for(ResponseDone)
        stt = h.pipeline.stt
        assert isinstance(stt, FakeSTT)
        # The VAD decides on the 3rd speech frame. STT still gets 100 ms of pre-roll before it (3 silent
        # frames and the 2 speech frames that led to the decision), the other 8 speech frames, and the
        # 5 silent frames up to the end decision: no word onset is lost.
        assert len(stt.arrivals) == 5 + 8 + 5


async def test_waterfall_marks_every_stage_in_order() -> None:
    stt = FakeSTT.Config(final_delay_s=0.01)
    llm = FakeLLM.Config(ttft_s=0.02)
    tts = FakeTTS.Config(first_chunk_delay_s=0.01)
    async with TurnHarness.with_fakes(stt=stt, llm=llm, tts=tts) as h:
        await h.speak()
        metrics = await h.wait_for(MetricsOut)
        marks = metrics.waterfall
        assert list(marks) == list(STAGES)
        values = [marks[s] for s in STAGES]
        assert all(v is not None for v in values)
        assert values == sorted(values)  # type: ignore[type-var]
        assert values[0] == 0.0
        assert marks["final_transcript"] >= 10.0  # type: ignore[operator]
        assert marks["first_token"] - marks["llm_request"] >= 20.0  # type: ignore[operator]
        assert marks["first_audio_out"] - marks["first_tts_request"] >= 10.0  # type: ignore[operator]


async def test_utterance_longer_than_the_limit_is_cut() -> None:
    config = PipelineConfig(max_utterance_s=0.5)
    async with TurnHarness.with_fakes(config=config, vad=FakeVAD.Config(end_frames=50)) as h:
        await h.feed([*tone(500), *silence(400)])  # the VAD alone would end it 1 s after the speech
        done = await h.wait_for(ResponseDone)
        assert not done.interrupted
        assert done.text
        stt = h.pipeline.stt
        assert isinstance(stt, FakeSTT)
        assert len(stt.arrivals) == 25  # cut at exactly 0.5 s of audio
