"""Turn-taking with scripted fakes: a pause mid-sentence, the end-of-turn model, the preemptive answer,
speech over an answer (backchannels, words, the three policies), the echo guard and busy input."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.engines.base import Capabilities, EngineHealth, TurnPrediction
from aria.pipeline.interruptions import InterruptionMode, InterruptionPolicy, Verdict
from aria.pipeline.outputs import MetricsOut, PlaybackOut, ResponseDone, TextOut, ToolResultOut, TranscriptOut
from aria.pipeline.voice import PipelineConfig
from aria.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD, TurnHarness, silence, tone
from aria.types import AudioChunk, ToolCall, ToolSpec

QUESTION = ("I would like to know,", "the capital city of France.")


class ScriptedTurn:
    """An end-of-turn model that answers from a script (one verdict per pause), after ``delay_s``."""

    kind = "turn"
    name = "scripted"
    capabilities = Capabilities()

    def __init__(self, *verdicts: bool, delay_s: float = 0.02, unsure: float = 0.1) -> None:
        self.verdicts, self.delay_s, self.unsure = list(verdicts), delay_s, unsure
        self.calls: list[tuple[int, str | None]] = []

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def health(self) -> EngineHealth:
        return EngineHealth(True)

    async def predict(self, audio: npt.NDArray[np.float32], text: str | None = None) -> TurnPrediction:
        self.calls.append((len(audio), text))
        await asyncio.sleep(self.delay_s)
        complete = self.verdicts.pop(0) if self.verdicts else True
        return TurnPrediction(complete, 0.9 if complete else self.unsure)


def harness(
    *,
    texts: tuple[str, ...] = QUESTION,
    detector: ScriptedTurn | None = None,
    llm: FakeLLM.Config | None = None,
    tts: FakeTTS.Config | None = None,
    config: PipelineConfig | None = None,
    **kw: Any,
) -> TurnHarness:
    return TurnHarness.with_fakes(
        vad=FakeVAD.Config(start_frames=2, end_frames=5),
        stt=FakeSTT.Config(texts=texts, partial_every=3),
        llm=llm,
        tts=tts,
        config=config or PipelineConfig(max_wait_ms=400),
        turn_detector=detector,
        **kw,
    )


def user_turns(h: TurnHarness) -> list[str]:
    return [m.content for m in h.pipeline.history if m.role == "user"]


async def test_a_pause_mid_sentence_is_one_turn_and_one_answer() -> None:
    detector = ScriptedTurn(False, True)
    async with harness(detector=detector) as h:
        await h.feed([*tone(300), *silence(200)])  # "I would like to know," then a pause
        await asyncio.sleep(0.15)  # the model says incomplete: still listening
        assert h.outputs(ResponseDone) == []
        await h.feed([*tone(300), *silence(200)])  # "the capital city of France."
        done = await h.wait_for(ResponseDone)
        await h.wait_for(MetricsOut)
        assert user_turns(h) == ["I would like to know, the capital city of France."]
        finals = [t for t in h.outputs(TranscriptOut) if t.final]
        assert [t.text for t in finals] == ["I would like to know, the capital city of France."]
        assert {t.turn_id for t in h.outputs(TranscriptOut)} == {done.turn_id}  # one turn throughout
        assert len(h.outputs(ResponseDone)) == 1
        # The model saw the audio so far and the words so far at each pause.
        assert next(text for _, text in detector.calls).startswith("I would")
        assert detector.calls[1][0] > detector.calls[0][0]
        llm = h.pipeline.llm
        asked = [r.messages[-1].content for r in llm.requests]  # type: ignore[union-attr]
        assert asked[-1] == "I would like to know, the capital city of France."


async def test_an_incomplete_turn_ends_after_max_wait() -> None:
    async with harness(texts=("I would like to know,",), detector=ScriptedTurn(False)) as h:
        await h.feed([*tone(300), *silence(120)])
        paused = asyncio.get_running_loop().time()
        done = await h.wait_for(ResponseDone, within=3)
        waited = asyncio.get_running_loop().time() - paused
        assert 0.3 <= waited < 1.5  # max_wait_ms = 400 after the pause
        assert done.text
        assert user_turns(h) == ["I would like to know,"]


async def test_the_surer_the_model_that_the_turn_goes_on_the_longer_it_waits() -> None:
    config = PipelineConfig(max_wait_ms=1500, min_wait_ms=200)
    waits = []
    for unsure in (0.0, 0.45):  # threshold 0.5: surely unfinished, then nearly complete
        detector = ScriptedTurn(False, unsure=unsure)
        async with harness(texts=("I would like to know,",), detector=detector, config=config) as h:
            await h.feed([*tone(300), *silence(120)])
            paused = asyncio.get_running_loop().time()
            await h.wait_for(ResponseDone, within=4)
            waits.append(asyncio.get_running_loop().time() - paused)
    assert waits[0] > 1.2  # ~1.5 s of silence
    assert waits[1] < 0.6  # ~0.33 s


async def test_the_answer_is_prepared_at_the_pause_and_released_when_complete() -> None:
    llm = FakeLLM.Config(ttft_s=0.2)
    async with harness(texts=("what time is it",), detector=ScriptedTurn(True, delay_s=0.1), llm=llm) as h:
        await h.speak(300, 200)
        await h.wait_for(ResponseDone)
        metrics = await h.wait_for(MetricsOut)
        marks = metrics.waterfall
        assert marks["llm_request"] is not None
        assert marks["end_of_turn"] is not None
        assert marks["llm_request"] < marks["end_of_turn"]  # asked before the turn was confirmed
        first_token_after_eot = marks["first_token"] - marks["end_of_turn"]  # type: ignore[operator]
        assert first_token_after_eot < 150  # 200 ms to first token, ~100 ms of it hidden in the decision
    async with harness(
        texts=("what time is it",),
        detector=ScriptedTurn(True, delay_s=0.1),
        llm=llm,
        config=PipelineConfig(max_wait_ms=400, preemptive=False),
    ) as h:
        await h.speak(300, 200)
        metrics = await h.wait_for(MetricsOut)
        marks = metrics.waterfall
        assert marks["llm_request"] >= marks["end_of_turn"]  # type: ignore[operator]
        assert marks["first_token"] - marks["end_of_turn"] >= 190  # type: ignore[operator]


async def test_a_prepared_answer_is_dropped_silently_when_the_person_goes_on() -> None:
    llm = FakeLLM.Config(replies=("Answer to the first half.", "Answer to the whole question."))
    async with harness(detector=ScriptedTurn(False, True), llm=llm) as h:
        await h.feed([*tone(300), *silence(200)])
        await asyncio.sleep(0.12)  # the held answer has been generating
        await h.feed([*tone(300), *silence(200)])
        done = await h.wait_for(ResponseDone)
        texts = "".join(o.text for o in h.outputs(TextOut))
        assert "first half" not in texts  # never shown, never spoken
        assert done.text.startswith("Answer to")
        assert len(h.outputs(ResponseDone)) == 1


class RecordingTools:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def specs(self) -> tuple[ToolSpec, ...]:
        return (ToolSpec("lookup", "look something up"),)

    async def run_tool(self, call: ToolCall, turn_id: str) -> Any:
        self.ran.append(call.name)

        @dataclass
        class Outcome:
            ok: bool = True
            content: str = "looked up"
            data: Any = None

        return Outcome()


async def test_a_held_answer_runs_no_tool_until_the_turn_is_confirmed() -> None:
    tools = RecordingTools()
    call = 'TOOL:lookup:{"q": 1}'
    llm = FakeLLM.Config(replies=(call, call, "Done."))  # the held answer's call, then the confirmed one's
    async with harness(detector=ScriptedTurn(False, True), llm=llm, tools=tools) as h:
        await h.feed([*tone(300), *silence(200)])
        await asyncio.sleep(0.15)
        assert tools.ran == []  # the model asked for it at the pause: it waits for the confirmation
        assert h.outputs(ToolResultOut) == []
        await h.feed([*tone(300), *silence(200)])
        await h.wait_for(ResponseDone)
        assert tools.ran == ["lookup"]  # once, for the confirmed turn


LONG = "Sure, here is a long answer. " * 6


async def answer_playing(h: TurnHarness) -> str:
    await h.speak(300, 200)
    first = await h.wait_for(TextOut)
    await asyncio.sleep(0.05)
    return first.turn_id


def slow_speech() -> dict[str, Any]:
    return {
        "llm": FakeLLM.Config(replies=(LONG, "Second answer.")),
        "tts": FakeTTS.Config(chunk_interval_s=0.01, ms_per_char=40),
    }


async def test_a_backchannel_over_the_answer_pauses_it_and_it_goes_on() -> None:
    async with harness(texts=("what is new", "mm-hm"), **slow_speech()) as h:
        answer = await answer_playing(h)
        await h.feed([*tone(200), *silence(200)])  # "mm-hm"
        done = await h.wait_for(ResponseDone, within=10)
        controls = [(c.turn_id, c.action) for c in h.outputs(PlaybackOut)]
        assert controls == [(answer, "pause"), (answer, "resume")]
        assert done.turn_id == answer
        assert not done.interrupted
        assert done.text == LONG.strip()
        assert user_turns(h) == ["what is new"]  # the backchannel is no turn
        assert all(t.turn_id == answer or not t.final for t in h.outputs(TranscriptOut)[1:])


async def test_words_over_the_answer_take_the_floor_with_the_answer_stored_as_heard() -> None:
    async with harness(texts=("what is new", "wait what about tomorrow"), **slow_speech()) as h:
        answer = await answer_playing(h)
        await h.feed([*tone(300), *silence(200)])
        done2 = await h.wait_for(ResponseDone, lambda d: d.turn_id != answer, within=10)
        done1 = next(d for d in h.outputs(ResponseDone) if d.turn_id == answer)
        assert done1.interrupted
        assert LONG.startswith(done1.text)  # word-exact: what had gone out when it paused
        assert h.outputs(PlaybackOut)[0].action == "pause"
        assert user_turns(h) == ["what is new", "wait what about tomorrow"]
        assert done2.text == "Second answer."
        roles = [m.role for m in h.pipeline.history]
        assert roles == ["user", "assistant", "user", "assistant"]


async def test_noise_with_no_words_lets_the_answer_go_on() -> None:
    async with harness(texts=("what is new", ""), **slow_speech()) as h:
        answer = await answer_playing(h)
        await h.feed([*tone(100), *silence(200)])  # a cough: nothing recognised
        done = await h.wait_for(ResponseDone, within=10)
        assert done.turn_id == answer
        assert not done.interrupted
        assert [c.action for c in h.outputs(PlaybackOut)] == ["pause", "resume"]


async def test_immediate_policy_stops_at_speech_start_and_off_lets_it_finish() -> None:
    immediate = InterruptionPolicy(InterruptionMode.IMMEDIATE)
    async with harness(texts=("what is new", "mm-hm"), interruption=immediate, **slow_speech()) as h:
        answer = await answer_playing(h)
        await h.feed(tone(60))
        done = await h.wait_for(ResponseDone)
        assert done.turn_id == answer
        assert done.interrupted
    off = InterruptionPolicy(InterruptionMode.OFF)
    async with harness(texts=("what is new", "and tomorrow then"), interruption=off, **slow_speech()) as h:
        answer = await answer_playing(h)
        await h.feed([*tone(300), *silence(200)])
        first = await h.wait_for(ResponseDone, within=10)
        assert first.turn_id == answer
        assert not first.interrupted
        second = await h.wait_for(ResponseDone, lambda d: d.turn_id != answer, within=10)
        assert second.text == "Second answer."  # heard once the answer was over
        assert user_turns(h) == ["what is new", "and tomorrow then"]


@dataclass(frozen=True)
class Judged:
    audio: AudioChunk
    echo: bool


class EchoEverything:
    """An echo guard that finds every block explained by the answer's own audio."""

    active = True

    def process(self, chunk: AudioChunk) -> Judged:
        return Judged(chunk, True)


async def test_echo_flagged_by_the_guard_never_counts_as_speech() -> None:
    async with harness(texts=("what is new",), **slow_speech()) as h:
        answer = await answer_playing(h)
        h.pipeline.listener.echo = EchoEverything()
        await h.feed([*tone(400), *silence(200)])  # the answer's echo, loud
        done = await h.wait_for(ResponseDone, within=10)
        assert done.turn_id == answer
        assert not done.interrupted
        assert h.outputs(PlaybackOut) == []


async def test_typed_input_waits_for_the_answer_with_the_queue_policy() -> None:
    config = PipelineConfig(busy_input="queue")
    async with harness(config=config, **slow_speech()) as h:
        first = h.pipeline.push_text("tell me a story")
        await h.wait_for(TextOut)
        second = h.pipeline.push_text("and another one")
        done1 = await h.wait_for(ResponseDone, within=10)
        done2 = await h.wait_for(ResponseDone, lambda d: d.turn_id == second.id, within=10)
        assert done1.turn_id == first.id
        assert not done1.interrupted
        assert done2.text == "Second answer."
        assert user_turns(h) == ["tell me a story", "and another one"]


def test_the_policy_tells_backchannels_from_words() -> None:
    policy = InterruptionPolicy()
    assert policy.judge("mm-hm", final=True, elapsed_ms=300) is Verdict.RESUME
    assert policy.judge("yeah okay", final=True, elapsed_ms=300) is Verdict.RESUME
    assert policy.judge("Stop.", final=True, elapsed_ms=300) is Verdict.INTERRUPT
    assert policy.judge("wait", final=False, elapsed_ms=300) is Verdict.WAIT
    assert policy.judge("wait what", final=False, elapsed_ms=300) is Verdict.INTERRUPT
    assert policy.judge("", final=False, elapsed_ms=1300) is Verdict.RESUME
    assert policy.content_words("yeah okay so wait") == ["so", "wait"]
    assert policy.judge("ja genau", final=True, elapsed_ms=100, language="de") is Verdict.RESUME


async def test_typed_input_ends_speech_whose_audio_stopped_instead_of_waiting_for_it() -> None:
    """The microphone is turned off mid-sentence: no more audio, so no pause from the VAD. Typed input
    then ends that speech as a pause: the spoken words are the person's turn (answered first, they came
    first) and the typed text is answered next, instead of waiting forever for the speech to end."""
    now = [100.0]
    async with harness(texts=("I was saying",)) as h:
        h.pipeline.listener.clock = lambda: now[0]
        await h.feed(tone(300))  # speech, and then nothing at all
        assert h.pipeline.listener.hearing
        now[0] += 0.2  # a short gap: audio may still be on its way
        h.pipeline.push_text("what time is it")
        await asyncio.sleep(0.05)
        assert h.outputs(ResponseDone) == []
        assert h.pipeline.listener.hearing
        now[0] += 1.0  # no audio for 1.2 s: the microphone stopped
        h.pipeline.push_text("and the date")
        await h.wait_for(ResponseDone, lambda _: len(h.outputs(ResponseDone)) == 3)
        assert user_turns(h) == ["I was saying", "what time is it", "and the date"]
        assert [d.interrupted for d in h.outputs(ResponseDone)] == [False, False, False]
