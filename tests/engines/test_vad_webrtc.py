"""WebRTCVAD on real speech (espeak-ng sentences with known boundaries), run on the real webrtcvad."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from aria.engines.base import VAD, VADEvent, VADEventType
from aria.engines.registry import default_registry
from aria.engines.vad.webrtc import WebRTCVAD
from aria.errors import EngineError, InvalidInput
from aria.testing.speech import conversation
from aria.types import AudioChunk

RATE = 16000
START, END = VADEventType.SPEECH_START, VADEventType.SPEECH_END
TEXTS = ["Hello there, how are you today?", "What time is it", "Please turn off the kitchen lights"]
TOLERANCE_S = 0.15
#: The detector keeps calling speech for a few frames after the voice stops (its "hangover"): ends came
#: 60-160 ms after the true end plus the minimum silence, depending on the aggressiveness.
END_TOLERANCE_S = 0.2

Audio = npt.NDArray[np.float32]
Segments = list[tuple[float, float]]


@pytest.fixture(scope="module")
def speech() -> tuple[Audio, Segments]:
    return conversation(TEXTS, gap_s=1.0)


def white_noise(n: int, dbfs: float, seed: int = 0) -> Audio:
    return (np.random.default_rng(seed).standard_normal(n) * 10 ** (dbfs / 20)).astype(np.float32)


def to_int16(audio: Audio) -> npt.NDArray[np.int16]:
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)


def feed(
    vad: WebRTCVAD, audio: npt.NDArray[np.float32 | np.int16], chunk_ms: int, rate: int = RATE
) -> list[VADEvent]:
    """Stream ``audio`` in ``chunk_ms`` chunks timestamped by their first sample (the last may be short)."""
    size = rate * chunk_ms // 1000
    events = []
    for offset in range(0, len(audio), size):
        event = vad.process(AudioChunk(audio[offset : offset + size], rate, timestamp=offset / rate))
        if event is not None:
            events.append(event)
    return events


def pair(events: list[VADEvent]) -> Segments:
    kinds = [event.type for event in events]
    assert kinds == [START, END] * (len(events) // 2), kinds
    return [(events[i].timestamp, events[i + 1].timestamp) for i in range(0, len(events), 2)]


def assert_segments(
    found: Segments, truth: Segments, *, min_speech_ms: int = 150, min_silence_ms: int = 320
) -> None:
    assert len(found) == len(truth), (found, truth)
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert start == pytest.approx(true_start + min_speech_ms / 1000, abs=TOLERANCE_S), (found, truth)
        assert end == pytest.approx(true_end + min_silence_ms / 1000, abs=END_TOLERANCE_S), (found, truth)


async def started(**options: object) -> WebRTCVAD:
    vad = WebRTCVAD(WebRTCVAD.Config.model_validate(options))
    await vad.start()
    return vad


def test_implements_the_vad_protocol() -> None:
    vad = WebRTCVAD()
    assert isinstance(vad, VAD)
    assert (vad.kind, vad.name) == ("vad", "webrtc")
    assert vad.capabilities.sample_rate == 16000
    assert vad.frame_size == 480
    assert WebRTCVAD(WebRTCVAD.Config(sample_rate=48000, frame_ms=10)).frame_size == 480


def test_config_defaults_and_validation() -> None:
    config = WebRTCVAD.Config()
    assert (config.aggressiveness, config.frame_ms, config.sample_rate) == (2, 30, 16000)
    assert (config.min_speech_ms, config.min_silence_ms) == (150, 320)
    for bad in ({"aggressiveness": 4}, {"frame_ms": 25}, {"sample_rate": 44100}, {"threshold": 0.5}):
        with pytest.raises(ValidationError):
            WebRTCVAD.Config.model_validate(bad)


def test_check_and_registry() -> None:
    availability = WebRTCVAD.check(WebRTCVAD.Config())
    assert availability.available
    assert "aggressiveness 2" in availability.reason
    registry = default_registry()
    assert registry.availability("vad:webrtc", {"aggressiveness": 3}).available
    engine = registry.create("vad:webrtc", {"aggressiveness": 3, "frame_ms": 10})
    assert isinstance(engine, WebRTCVAD)
    assert engine.frame_size == 160


async def test_lifecycle_and_health() -> None:
    vad = WebRTCVAD()
    assert not (await vad.health()).ok
    with pytest.raises(EngineError, match="await start"):
        vad.process(AudioChunk(np.zeros(480, np.float32), RATE))
    await vad.start()
    health = await vad.health()
    assert health.ok
    assert "30 ms frames at 16000 Hz" in health.detail
    await vad.aclose()
    assert not (await vad.health()).ok


async def test_wrong_sample_rate_and_bad_samples_are_invalid_input() -> None:
    vad = await started()
    with pytest.raises(InvalidInput, match="expects 16000 Hz audio, got 8000 Hz"):
        vad.process(AudioChunk(np.zeros(240, np.float32), 8000))
    samples = np.zeros(480, np.float32)
    samples[3] = np.inf
    with pytest.raises(InvalidInput, match="infinite"):
        vad.process(AudioChunk(samples, RATE))


@pytest.mark.parametrize("chunk_ms", [20, 32])
@pytest.mark.parametrize("dtype", ["float32", "int16"])
async def test_finds_each_utterance(speech: tuple[Audio, Segments], chunk_ms: int, dtype: str) -> None:
    audio, truth = speech
    vad = await started()
    events = feed(vad, to_int16(audio) if dtype == "int16" else audio, chunk_ms)
    assert_segments(pair(events), truth)
    assert [e.probability for e in events] == [1.0, 0.0] * len(truth)
    assert not vad.in_speech


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
async def test_every_mode_and_frame_length(
    speech: tuple[Audio, Segments], aggressiveness: int, frame_ms: int
) -> None:
    audio, truth = speech
    vad = await started(aggressiveness=aggressiveness, frame_ms=frame_ms)
    assert_segments(pair(feed(vad, audio, 20)), truth)


@pytest.mark.parametrize("rate", [8000, 32000, 48000])
async def test_other_sample_rates(rate: int) -> None:
    audio, truth = conversation(TEXTS[:2], gap_s=1.0, sample_rate=rate)
    vad = await started(sample_rate=rate)
    assert_segments(pair(feed(vad, audio, 20, rate=rate)), truth)


async def test_any_chunk_length_gives_the_same_events(speech: tuple[Audio, Segments]) -> None:
    audio, _ = speech
    reference = feed(await started(), audio, 30)
    vad = await started()
    rng = np.random.default_rng(4)
    events, offset = [], 0
    while offset < audio.size:
        size = int(rng.integers(1, 2500))
        event = vad.process(AudioChunk(audio[offset : offset + size], RATE, timestamp=offset / RATE))
        if event is not None:
            events.append(event)
        offset += size
    assert [e.type for e in events] == [e.type for e in reference]
    assert [e.timestamp for e in events] == pytest.approx([e.timestamp for e in reference], abs=1e-6)


async def test_events_of_one_long_chunk_are_queued_in_order(speech: tuple[Audio, Segments]) -> None:
    audio, _ = speech
    expected = feed(await started(), audio, 30)
    vad = await started()
    empty = AudioChunk(np.zeros(0, np.float32), RATE)
    returned = [vad.process(AudioChunk(audio, RATE, timestamp=0.0))]
    returned += [vad.process(empty) for _ in range(len(expected))]
    assert returned == [*expected, None]
    assert (await started()).process_all(AudioChunk(audio, RATE, timestamp=0.0)) == expected


async def test_silence_and_quiet_noise_are_never_speech() -> None:
    vad = await started()
    assert feed(vad, np.zeros(2 * RATE, np.float32), 20) == []
    assert feed(vad, white_noise(3 * RATE, -60.0), 20) == []
    vad.reset()
    assert feed(vad, white_noise(3 * RATE, -60.0, seed=9), 32) == []
    assert not vad.in_speech


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
async def test_why_min_speech_defaults_to_150_ms(aggressiveness: int) -> None:
    """When background noise sets in (here after a second of digital silence) webrtcvad calls its first
    90-120 ms speech; 64 ms of minimum speech would report that as a speech start, 150 ms does not."""
    onset = np.concatenate([np.zeros(RATE, np.float32), white_noise(2 * RATE, -50.0, seed=2)])
    quick = await started(aggressiveness=aggressiveness, min_speech_ms=64)
    assert [e.type for e in feed(quick, onset, 20)] == [START, END]
    assert feed(await started(aggressiveness=aggressiveness), onset, 20) == []


async def test_reset_forgets_everything(speech: tuple[Audio, Segments]) -> None:
    audio, _ = speech
    reference = feed(await started(), audio, 20)
    vad = await started()
    feed(vad, audio[: int(1.5 * RATE) + 100], 20)
    was_in_speech = vad.in_speech
    assert was_in_speech
    vad.reset()
    assert not vad.in_speech
    assert [(e.type, e.timestamp) for e in feed(vad, audio, 20)] == [(e.type, e.timestamp) for e in reference]
    vad.process(AudioChunk(audio, RATE, timestamp=0.0))  # leaves events queued
    vad.reset()
    assert vad.process(AudioChunk(np.zeros(0, np.float32), RATE)) is None


async def test_frames_are_cheap(speech: tuple[Audio, Segments]) -> None:
    """Measured here: 0.005-0.03 ms per 30 ms frame, conversion to PCM bytes included."""
    audio, _ = speech
    vad = await started()
    began = time.perf_counter()
    vad.process_all(AudioChunk(audio, RATE))
    per_frame_ms = 1000 * (time.perf_counter() - began) / (audio.size // vad.frame_size)
    assert per_frame_ms < 0.5
