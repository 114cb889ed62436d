"""EspeakTTS on the real libespeak-ng (espeakng-loader wheel): real synthesis, timing, voices, levels,
pauses, barge-in and concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from aria.core.aio import closing_stream
from aria.engines.base import TTS
from aria.engines.registry import default_registry
from aria.engines.tts.espeak import EspeakTTS
from aria.engines.tts.espeak_lib import EspeakLibrary
from aria.errors import ConfigError, InvalidInput
from aria.types import AudioChunk

pytest.importorskip("espeakng_loader")

RATE = 22050
LONG_TEXT = " ".join(f"This is sentence number {i}, which keeps going for a little while." for i in range(40))
Audio = npt.NDArray[np.float32]


@pytest.fixture
async def tts() -> AsyncIterator[EspeakTTS]:
    engine = EspeakTTS()
    await engine.start()
    yield engine
    await engine.aclose()


async def speak(engine: EspeakTTS, text: str, voice: str | None = None) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(text, voice=voice)]


def joined(chunks: list[AudioChunk]) -> Audio:
    return np.concatenate([c.data for c in chunks]) if chunks else np.zeros(0, np.float32)


def trailing_silence_s(audio: Audio, rate: int = RATE) -> float:
    loud = np.flatnonzero(np.abs(audio) > 10 ** (-50 / 20))
    return (audio.size - (int(loud[-1]) + 1)) / rate


def median_f0(audio: Audio, rate: int = RATE) -> float:
    """Median pitch of the voiced 40 ms frames, by autocorrelation (70-400 Hz)."""
    frame = int(0.04 * rate)
    lo, hi = int(rate / 400), int(rate / 70)
    pitches = []
    for start in range(0, audio.size - frame, frame):
        x = audio[start : start + frame].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < 0.05:
            continue
        x -= x.mean()
        ac = np.correlate(x, x, "full")[frame - 1 :]
        pitches.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(pitches))


def peak_dbfs(audio: Audio) -> float:
    return float(20 * np.log10(np.max(np.abs(audio))))


async def test_hello_there_is_real_speech_in_blocks(tts: EspeakTTS) -> None:
    assert isinstance(tts, TTS)
    assert tts.capabilities.sample_rate == RATE
    chunks = await speak(tts, "Hello there.")
    assert all(c.sample_rate == RATE and c.channels == 1 and c.data.dtype == np.float32 for c in chunks)
    assert all(c.frames == 441 for c in chunks[:-1])  # 20 ms blocks
    assert 0 < chunks[-1].frames <= 441
    duration = sum(c.duration for c in chunks)
    assert 0.6 < duration < 1.4  # about 0.7 s of speech and the 200 ms pause
    audio = joined(chunks)
    assert np.sqrt(np.mean(audio**2)) > 0.03  # speech, not silence


async def test_time_to_first_audio_and_real_time_factor(tts: EspeakTTS) -> None:
    started = time.monotonic()
    stream = tts.synthesize("What time is it in Paris right now?")
    await anext(stream)
    first = time.monotonic() - started
    _ = [chunk async for chunk in stream]
    stats = tts.last_stats
    assert stats is not None
    assert not stats.aborted
    assert first < 0.25
    assert stats.time_to_first_audio_s is not None
    assert stats.time_to_first_audio_s < 0.25
    assert 1.0 < stats.audio_s < 3.5
    assert stats.rtf < 0.1  # measured about 0.002-0.004 here


async def test_first_audio_arrives_before_a_long_sentence_is_synthesised(tts: EspeakTTS) -> None:
    received_first: float | None = None
    frames = 0
    async for chunk in tts.synthesize(LONG_TEXT):
        if received_first is None:
            received_first = time.monotonic()
        frames += chunk.frames
    stats = tts.last_stats
    assert stats is not None
    assert received_first is not None
    assert frames / RATE > 60  # over a minute of speech
    assert received_first < stats.finished_at
    assert stats.first_audio_at is not None
    assert stats.first_audio_at < stats.finished_at


async def test_voice_selection_changes_the_voice(tts: EspeakTTS) -> None:
    text = "Hello there, how are you doing today?"
    male = median_f0(joined(await speak(tts, text)))
    female = median_f0(joined(await speak(tts, text, voice="en-us+f3")))
    assert female > 1.3 * male
    german = joined(await speak(tts, text, voice="de"))
    assert german.size != joined(await speak(tts, text, voice="EN-US")).size
    assert "en-US" in tts.capabilities.voices
    assert "de" in tts.capabilities.voices


async def test_unknown_voice_is_invalid_input_with_suggestions(tts: EspeakTTS) -> None:
    with pytest.raises(InvalidInput, match=r"unknown espeak voice 'klingon'.*en-US"):
        await speak(tts, "Hello.", voice="klingon")
    with pytest.raises(InvalidInput, match=r"variant 'nobody'.*f1"):
        await speak(tts, "Hello.", voice="en-us+nobody")


async def test_pause_after_punctuation(tts: EspeakTTS) -> None:
    sentence = trailing_silence_s(joined(await speak(tts, "Hello there.")))
    question = trailing_silence_s(joined(await speak(tts, "Are you there?")))
    clause = trailing_silence_s(joined(await speak(tts, "Hello there,")))
    cut = trailing_silence_s(joined(await speak(tts, "Hello there")))
    assert 0.19 <= sentence <= 0.225
    assert 0.19 <= question <= 0.225
    assert 0.075 <= clause <= 0.1
    assert cut <= 0.02
    longer = EspeakTTS(EspeakTTS.Config(sentence_pause_ms=400))
    assert 0.39 <= trailing_silence_s(joined(await speak(longer, "Hello there."))) <= 0.425


async def test_levels_are_normalised_to_the_target_peak(tts: EspeakTTS) -> None:
    sentences = ["Hello there.", "What time is it?", "I am doing well, thank you.", "Wow!", LONG_TEXT[:300]]
    peaks, levels = [], []
    for text in sentences:
        audio = joined(await speak(tts, text))
        peaks.append(peak_dbfs(audio))
        speech = audio[np.abs(audio) > 0.003]
        levels.append(float(20 * np.log10(np.sqrt(np.mean(speech**2)))))
    assert max(peaks) <= -1.0 + 0.05  # never above -1 dBFS
    assert min(peaks) >= -7.0  # a fixed per-voice gain: near the target, never far below
    assert max(levels) - min(levels) < 4.0  # and consistent loudness
    quiet = EspeakTTS(EspeakTTS.Config(target_peak_dbfs=-12.0))
    assert peak_dbfs(joined(await speak(quiet, LONG_TEXT[:300]))) == pytest.approx(max(peaks) - 11.0, abs=1.5)


async def test_consumer_breaking_early_stops_synthesis(tts: EspeakTTS) -> None:
    full_started = time.monotonic()
    await speak(tts, LONG_TEXT)
    full_time = time.monotonic() - full_started
    async with closing_stream(tts.synthesize(LONG_TEXT)) as stream:
        async for _ in stream:
            break  # barge-in: leaving the block closes the stream
    stats = tts.last_stats
    assert stats is not None
    assert stats.aborted
    assert stats.finished_at - stats.requested_at < full_time
    # The library is free again at once.
    assert await speak(tts, "Yes.")


async def test_aclose_during_synthesis_stops_it(tts: EspeakTTS) -> None:
    frames = 0
    stream = tts.synthesize(LONG_TEXT)
    frames += (await anext(stream)).frames
    await tts.aclose()
    async for chunk in stream:
        frames += chunk.frames
    stats = tts.last_stats
    assert stats is not None
    assert stats.aborted
    assert frames / RATE < 60  # far less than the whole text


async def test_concurrent_calls_are_serialised_safely(tts: EspeakTTS) -> None:
    texts = ["The first task speaks this sentence.", "And the second task says this one, a bit longer."]
    solo = [sum(c.frames for c in await speak(tts, t)) for t in texts]
    together = await asyncio.gather(*(speak(tts, t) for t in texts), speak(tts, "Hi."))
    for frames, chunks in zip(solo, together, strict=False):
        assert sum(c.frames for c in chunks) == pytest.approx(frames, rel=0.05)


async def test_markdown_and_emoji_are_not_read_aloud(tts: EspeakTTS) -> None:
    plain = sum(c.frames for c in await speak(tts, "Hello world."))
    marked = sum(c.frames for c in await speak(tts, "**Hello** `world`. 😀"))
    assert marked == pytest.approx(plain, rel=0.1)


@pytest.mark.parametrize("text", ["", "   ", "\n", "🙂", "**"])
async def test_nothing_to_say_yields_nothing(tts: EspeakTTS, text: str) -> None:
    assert await speak(tts, text) == []


async def test_resampled_output_rate() -> None:
    engine = EspeakTTS(EspeakTTS.Config(sample_rate=16000))
    assert engine.capabilities.sample_rate == 16000
    chunks = await speak(engine, "Hello there.")
    assert {c.sample_rate for c in chunks} == {16000}
    assert all(c.frames == 320 for c in chunks[:-1])
    assert 0.6 < sum(c.duration for c in chunks) < 1.4
    assert peak_dbfs(joined(chunks)) <= -0.95


async def test_speaking_rate_changes_duration() -> None:
    slow = EspeakTTS(EspeakTTS.Config(rate_wpm=120, sentence_pause_ms=0))
    fast = EspeakTTS(EspeakTTS.Config(rate_wpm=300, sentence_pause_ms=0))
    text = "The quick brown fox jumps over the lazy dog."
    assert sum(c.duration for c in await speak(slow, text)) > 1.6 * sum(
        c.duration for c in await speak(fast, text)
    )


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="unsupported sample rate"):
        EspeakTTS.Config(sample_rate=12345)
    with pytest.raises(ValidationError):
        EspeakTTS.Config(rate_wpm=10)
    with pytest.raises(ValidationError):
        EspeakTTS.Config(pitch=200)
    with pytest.raises(ValidationError):
        EspeakTTS.Config(speed=2)  # type: ignore[call-arg]


def test_check_without_loading() -> None:
    assert EspeakTTS.check(EspeakTTS.Config()).available
    assert EspeakTTS.check(EspeakTTS.Config(voice="en+f2")).available
    missing = EspeakTTS.check(EspeakTTS.Config(voice="klingon"))
    assert not missing.available
    assert "klingon" in missing.reason
    assert "en-us" in missing.fix
    # The wheel lacks the Faroese dictionary: espeak would say nothing with that voice.
    assert not EspeakTTS.check(EspeakTTS.Config(voice="fo")).available


async def test_start_rejects_an_unknown_configured_voice() -> None:
    engine = EspeakTTS(EspeakTTS.Config(voice="klingon"))
    with pytest.raises(ConfigError, match="klingon"):
        await engine.start()
    assert not (await engine.health()).ok


async def test_registry_and_health() -> None:
    engine = default_registry().create("tts:espeak", {"voice": "en", "rate_wpm": 160})
    assert isinstance(engine, EspeakTTS)
    assert not (await engine.health()).ok
    await engine.start()
    assert (await engine.health()).ok
    assert len(engine.capabilities.voices) > 100
    await engine.aclose()


def test_library_reraises_callback_errors_and_stays_usable() -> None:
    lib = EspeakLibrary.get()
    assert lib.sample_rate == RATE

    def broken(block: npt.NDArray[np.int16]) -> bool:
        raise ValueError("sink failed")

    with pytest.raises(ValueError, match="sink failed"):
        lib.synthesize("Hello there.", broken)
    with pytest.raises(InvalidInput, match="no voice"):
        lib.synthesize("Hello.", lambda block: True, voice="zz-nope")
    blocks: list[npt.NDArray[np.int16]] = []

    def keep(block: npt.NDArray[np.int16]) -> bool:
        blocks.append(block)
        return True

    lib.synthesize("Hello.", keep)
    assert sum(b.size for b in blocks) > RATE // 4


def test_say_fresh_gives_the_same_samples_whatever_this_process_said_before() -> None:
    """espeak-ng's output drifts with what the process synthesised before; ``say_fresh`` does not."""
    from aria.testing.speech import say, say_fresh

    texts = ["What time is it?", "I would like to know,"]
    before = say_fresh(texts, voice="en", rate_wpm=175)
    in_process = []
    for rate in (120, 150, 200, 230):
        say("some other words first, " * 3, voice="en-us", rate_wpm=rate)
        in_process.append(say("What time is it?", voice="en", rate_wpm=175))
        after = say_fresh(texts, voice="en", rate_wpm=175)
        assert [a.tobytes() for a in after] == [b.tobytes() for b in before]
    assert before[0].dtype == np.float32
    assert 0.5 < before[0].size / 16000 < 2.0  # about a second of speech at 16 kHz
    # what say_fresh is for: in process, the same sentence came out different at least once
    assert len({audio.tobytes() for audio in in_process}) > 1
