"""WhisperSTT on the real faster-whisper code with a tiny random Whisper (tests/fixtures/tiny-whisper).

The fixture has Whisper's architecture, tokenizer and feature extractor but random weights, so the text
is gibberish: these tests check the decode path (partials, exactly one final, timing, confidence,
language) and model loading (local folders, the models folder, failing fast offline), not accuracy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aria.core.aio import closing_stream
from aria.engines.base import STT
from aria.engines.registry import EngineRegistry
from aria.engines.stt.streaming import StablePrefix, whisper_confidence
from aria.engines.stt.whisper import WhisperSTT
from aria.errors import EngineUnavailable, InvalidInput
from aria.testing.speech import say
from aria.types import AudioChunk, Transcription

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "tiny-whisper"
RATE = 16000
# Greedy, no temperature fallback: the random model always "fails" the fallback checks, and each
# fallback is a whole extra decode.
FAST = {"beam_size": 1, "temperatures": (0.0,)}


@pytest.fixture(scope="module")
def speech() -> npt.NDArray[np.float32]:
    return say("hello there, what time is it in paris today")


async def started(**options: object) -> WhisperSTT:
    engine = WhisperSTT(WhisperSTT.Config.model_validate({"model": str(FIXTURE), **FAST, **options}))
    await engine.start()
    return engine


async def paced(
    samples: npt.NDArray[np.float32],
    *,
    chunk_ms: int = 20,
    speed: float = 1.0,
    marks: dict[str, float],
    hold_at_s: float | None = None,
    until: asyncio.Event | None = None,
) -> AsyncIterator[AudioChunk]:
    """``samples`` in ``chunk_ms`` chunks, ``speed`` times faster than real time (0: no waiting).

    With ``hold_at_s`` and ``until``, the rest of the audio is held back after ``hold_at_s`` seconds of
    it until ``until`` is set (at most 10 s), so that a slow machine cannot end the audio before the
    first partial. ``marks["end"]`` is when the last chunk was handed over."""
    step = RATE * chunk_ms // 1000
    for start in range(0, samples.size, step):
        if until is not None and hold_at_s is not None and start == round(hold_at_s * RATE / step) * step:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), 10)
        if speed:
            await asyncio.sleep(chunk_ms / 1000 / speed)
        yield AudioChunk(samples[start : start + step], RATE)
    marks["end"] = time.monotonic()


def assert_one_final_last(items: list[Transcription]) -> None:
    assert items, "the stream produced nothing"
    assert [item.is_final for item in items].count(True) == 1
    assert items[-1].is_final
    for item in items:
        assert 0.0 <= item.confidence <= 1.0


async def test_transcribe_decodes_real_speech_with_confidence_and_language(
    speech: npt.NDArray[np.float32],
) -> None:
    engine = await started()
    try:
        assert isinstance(engine, STT)
        assert (await engine.health()).ok
        result = await engine.transcribe(AudioChunk(speech, RATE))
        again = await engine.transcribe(AudioChunk((speech * 32767).astype(np.int16), RATE))
    finally:
        await engine.aclose()
    assert result.is_final
    assert result.text  # gibberish, but the real decoder produced it
    assert 0.0 <= result.confidence <= 1.0
    assert result.language is not None
    assert 2 <= len(result.language) <= 3
    assert again.is_final
    assert again.language == result.language
    assert not (await engine.health()).ok


async def test_configured_language_is_reported(speech: npt.NDArray[np.float32]) -> None:
    engine = await started(language="de")
    try:
        result = await engine.transcribe(AudioChunk(speech, RATE))
    finally:
        await engine.aclose()
    assert result.language == "de"


async def test_stream_yields_partials_while_audio_arrives_then_exactly_one_final(
    speech: npt.NDArray[np.float32],
) -> None:
    engine = await started(partial_interval_s=0.3)
    marks: dict[str, float] = {}
    arrivals: list[tuple[float, Transcription]] = []
    first = asyncio.Event()
    audio = paced(speech, speed=2.0, marks=marks, hold_at_s=1.0, until=first)
    try:
        async with closing_stream(engine.stream(audio)) as stream:
            async for item in stream:
                arrivals.append((time.monotonic(), item))
                first.set()
    finally:
        await engine.aclose()
    items = [item for _, item in arrivals]
    assert_one_final_last(items)
    partials = items[:-1]
    assert partials, "no partial while the audio was arriving"
    assert arrivals[0][0] < marks["end"], "the first partial came only after the audio ended"
    assert all(item.text for item in partials)
    assert all(a.text != b.text for a, b in itertools.pairwise(partials))  # no repeats
    final_at = arrivals[-1][0]
    assert final_at >= marks["end"]
    assert final_at - marks["end"] < 5.0, "the final took too long after the audio ended"
    assert items[-1].language is not None


async def test_forced_prefix_is_kept_in_the_answer(speech: npt.NDArray[np.float32]) -> None:
    """The committed words go to Whisper as its prefix; the decode must answer with them first
    (checked on the worker thread exactly as stream() does it)."""
    engine = await started()
    try:
        result = await engine._worker.run(engine._decode, speech, True, "hello there")
    finally:
        await engine.aclose()
    assert result.is_final
    assert result.text.startswith("hello there")


async def test_stream_skips_intervals_while_a_decode_is_running(speech: npt.NDArray[np.float32]) -> None:
    """Audio much faster than decoding: at most one decode in flight, so far fewer partials than
    intervals, and still exactly one final."""
    engine = await started(partial_interval_s=0.05)
    intervals = speech.size / RATE / 0.05
    try:
        items = [item async for item in engine.stream(paced(speech, speed=0, marks={}))]
    finally:
        await engine.aclose()
    assert_one_final_last(items)
    assert len(items) - 1 < intervals / 3


async def test_stream_without_partials_and_empty_stream() -> None:
    engine = await started(partial_interval_s=0)
    assert not engine.capabilities.partials
    try:
        items = [item async for item in engine.stream(paced(say("yes"), speed=0, marks={}))]
        empty = [item async for item in engine.stream(paced(np.zeros(0, np.float32), marks={}))]
    finally:
        await engine.aclose()
    assert len(items) == 1
    assert items[0].is_final
    assert len(empty) == 1
    assert empty[0].is_final
    assert empty[0].text == ""
    assert empty[0].confidence == 0.0


async def test_consumer_stopping_early_leaves_the_engine_usable(speech: npt.NDArray[np.float32]) -> None:
    engine = await started(partial_interval_s=0.2)
    never = asyncio.Event()  # the audio stops arriving after 1 s: the consumer leaves mid-utterance
    try:
        audio = paced(speech, speed=4.0, marks={}, hold_at_s=1.0, until=never)
        async with closing_stream(engine.stream(audio)) as stream:
            async for item in stream:
                assert not item.is_final
                break
        result = await asyncio.wait_for(engine.transcribe(AudioChunk(speech, RATE)), 10)
    finally:
        await engine.aclose()
    assert result.is_final


async def test_other_rates_are_rejected(speech: npt.NDArray[np.float32]) -> None:
    engine = await started()
    try:
        with pytest.raises(InvalidInput, match="16000 Hz"):
            await engine.transcribe(AudioChunk(speech, 8000))

        async def wrong_rate() -> AsyncIterator[AudioChunk]:
            yield AudioChunk(np.zeros(480, np.float32), 48000)

        with pytest.raises(InvalidInput, match="48000 Hz"):
            await asyncio.wait_for(anext(engine.stream(wrong_rate())), 5)
    finally:
        await engine.aclose()


async def test_not_started_is_unavailable(speech: npt.NDArray[np.float32]) -> None:
    engine = WhisperSTT(WhisperSTT.Config(model=str(FIXTURE)))
    with pytest.raises(EngineUnavailable, match="not started"):
        await engine.transcribe(AudioChunk(speech, RATE))


async def test_missing_model_offline_fails_fast_with_the_pull_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = WhisperSTT.Config(model="base.en", data_dir=tmp_path)
    check = WhisperSTT.check(config)
    assert not check.available
    assert "aria models pull whisper-base.en" in check.fix
    engine = WhisperSTT(config)
    began = time.monotonic()
    with pytest.raises(EngineUnavailable) as caught:
        await engine.start()
    assert time.monotonic() - began < 5.0
    message = str(caught.value)
    assert "'base.en' is not downloaded" in message
    assert "hub cannot be reached" in message
    assert "aria models pull whisper-base.en" in message
    assert caught.value.engine == "stt:whisper"
    assert not caught.value.retryable


async def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    engine = WhisperSTT(WhisperSTT.Config(model="small", data_dir=tmp_path))
    began = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"hub cannot be reached.*aria models pull whisper-small"):
        await engine.start()
    assert time.monotonic() - began < 5.0


async def test_model_is_found_in_the_models_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(FIXTURE, tmp_path / "models" / "whisper" / "tiny")
    config = WhisperSTT.Config.model_validate(
        {"model": "tiny", "data_dir": tmp_path, "local_files_only": True, **FAST}
    )
    assert WhisperSTT.check(config).available
    engine = WhisperSTT(config)
    await engine.start()
    try:
        assert "tiny" in (await engine.health()).detail
        assert (await engine.transcribe(AudioChunk(say("yes"), RATE))).is_final
    finally:
        await engine.aclose()


async def test_folder_without_a_model_is_unavailable(tmp_path: Path) -> None:
    config = WhisperSTT.Config(model=str(tmp_path))
    assert not WhisperSTT.check(config).available
    with pytest.raises(EngineUnavailable, match="does not hold a converted model"):
        await WhisperSTT(config).start()


def test_registry_builds_it_with_validated_options() -> None:
    registry = EngineRegistry(discover=False)
    engine = registry.create("stt:whisper", {"model": "small.en", "beam_size": 2})
    assert isinstance(engine, WhisperSTT)
    assert engine.capabilities.partials
    assert engine.capabilities.languages == ("en",)
    assert engine.capabilities.sample_rate == RATE


def test_stable_prefix_commits_only_what_two_hypotheses_agree_on() -> None:
    stable = StablePrefix()
    assert stable.update("hello") == "hello"
    assert stable.committed == []
    assert stable.update("hello there") == "hello there"
    assert stable.committed == ["hello"]
    # A later hypothesis that changed its mind about a committed word does not change it.
    assert stable.update("yellow there what") == "hello there what"
    assert stable.committed == ["hello", "there"]
    # Case and punctuation do not break agreement ("what" == "What").
    assert stable.update("Hello there, What time") == "hello there What time"
    assert stable.committed == ["hello", "there", "What"]
    # Disagreement on the tail commits nothing more, and the tail follows the newest hypothesis.
    assert stable.update("hello there what tame") == "hello there What tame"
    assert stable.committed_text == "hello there What"
    stable.reset()
    assert stable.committed == []
    assert stable.text == ""


def test_stable_prefix_keeps_committed_words_when_a_hypothesis_shrinks() -> None:
    stable = StablePrefix()
    for text in ("one two three", "one two three four"):
        stable.update(text)
    assert stable.committed == ["one", "two", "three"]
    assert stable.update("one") == "one two three"


def test_whisper_confidence() -> None:
    assert whisper_confidence([]) == 0.0
    assert whisper_confidence([(10, 0.0, 0.0)]) == 1.0
    assert whisper_confidence([(10, -0.5, 0.2)]) == pytest.approx(np.exp(-0.5) * 0.8)
    # token-weighted: the long segment dominates
    assert whisper_confidence([(9, 0.0, 0.0), (1, -10.0, 0.0)]) == pytest.approx(np.exp(-1.0))
    assert whisper_confidence([(1, float("nan"), 0.0)]) == 0.0
    assert whisper_confidence([(1, 0.3, -1.0)]) == 1.0  # clipped
