"""EnergyVAD on synthetic audio: silence, noise and sine bursts at known levels."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from aria.engines.base import VAD, VADEvent, VADEventType
from aria.engines.vad.energy import EnergyVAD
from aria.errors import InvalidInput
from aria.types import AudioChunk

RATE = 16000
START, END = VADEventType.SPEECH_START, VADEventType.SPEECH_END

# Segment lengths are multiples of 160 ms so 20 ms and 32 ms chunks both align with them.
SEGMENTS = [("quiet", 0.48), ("loud", 0.64), ("quiet", 0.64), ("loud", 0.32), ("quiet", 0.96)]


def db_to_amplitude(db: float) -> float:
    return float(10 ** (db / 20))


def sine(seconds: float, peak_db: float = -20.0, freq: float = 440.0) -> npt.NDArray[np.float32]:
    t = np.arange(round(seconds * RATE)) / RATE
    return (db_to_amplitude(peak_db) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def background(seconds: float, kind: str, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    n = round(seconds * RATE)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    return (rng.standard_normal(n) * db_to_amplitude(-60.0)).astype(np.float32)  # -60 dBFS RMS noise


def scene(kind: str) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(1234)
    parts = [sine(s) if what == "loud" else background(s, kind, rng) for what, s in SEGMENTS]
    return np.concatenate(parts)


def expected_events(
    chunk_ms: int, min_speech_ms: int = 64, min_silence_ms: int = 320
) -> list[tuple[int, str]]:
    """(chunk index, event) computed from the segment layout and the minimum durations."""
    events: list[tuple[int, str]] = []
    position = 0
    for what, seconds in SEGMENTS:
        first = position
        position += round(seconds * 1000) // chunk_ms
        if what == "loud":
            events.append((first + math.ceil(min_speech_ms / chunk_ms) - 1, START))
            events.append((position + math.ceil(min_silence_ms / chunk_ms) - 1, END))
    return events


def run(
    vad: EnergyVAD, audio: npt.NDArray[np.float32 | np.int16], chunk_ms: int
) -> list[tuple[int, VADEvent]]:
    size = RATE * chunk_ms // 1000
    found = []
    for index in range(len(audio) // size):
        chunk = AudioChunk(audio[index * size : (index + 1) * size], RATE, timestamp=index * chunk_ms / 1000)
        event = vad.process(chunk)
        if event is not None:
            found.append((index, event))
    return found


def to_int16(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    return np.round(audio * 32767).astype(np.int16)


def test_implements_the_vad_protocol() -> None:
    vad = EnergyVAD()
    assert isinstance(vad, VAD)
    assert vad.kind == "vad"
    assert vad.name == "energy"
    assert vad.capabilities.sample_rate == 16000
    assert vad.capabilities.local


async def test_lifecycle_and_health() -> None:
    vad = EnergyVAD()
    await vad.start()
    assert (await vad.health()).ok
    await vad.aclose()


@pytest.mark.parametrize("chunk_ms", [20, 32])
@pytest.mark.parametrize("dtype", ["float32", "int16"])
@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_detects_bursts(chunk_ms: int, dtype: str, kind: str) -> None:
    audio = scene(kind)
    vad = EnergyVAD()
    events = run(vad, to_int16(audio) if dtype == "int16" else audio, chunk_ms)
    assert [(index, event.type) for index, event in events] == expected_events(chunk_ms)
    for index, event in events:
        assert event.timestamp == pytest.approx(index * chunk_ms / 1000)
    assert not vad.in_speech


def test_expected_events_for_20_ms_chunks() -> None:
    # Spelled out once: speech from chunk 24 starts on its 4th chunk (80 ms >= 64 ms), silence from chunk
    # 56 ends it on its 16th chunk (320 ms).
    assert expected_events(20) == [(27, START), (71, END), (91, START), (119, END)]


def test_noise_alone_is_never_speech() -> None:
    rng = np.random.default_rng(7)
    vad = EnergyVAD()
    assert run(vad, background(3.0, "noise", rng), 20) == []
    assert not vad.in_speech


def test_probability_follows_the_level() -> None:
    vad = EnergyVAD()
    rng = np.random.default_rng(3)
    silence = AudioChunk(np.zeros(320, dtype=np.float32), RATE)
    noise = AudioChunk(background(0.02, "noise", rng), RATE)
    loud = AudioChunk(sine(0.02), RATE)
    # A sine with an RMS of exactly -40 dBFS sits on the default threshold.
    at_threshold = AudioChunk(sine(0.1, peak_db=-40.0 + 20 * math.log10(math.sqrt(2))), RATE)
    assert vad.probability(silence) < 1e-6
    assert vad.probability(noise) < 0.01
    assert vad.probability(loud) > 0.99
    assert vad.probability(at_threshold) == pytest.approx(0.5, abs=0.01)
    assert vad.level_db(at_threshold) == pytest.approx(-40.0, abs=0.05)
    assert vad.level_db(silence) == -120.0
    assert not vad.in_speech  # probability() changes no state


def test_int16_and_float32_agree() -> None:
    vad = EnergyVAD()
    audio = sine(0.032, peak_db=-30.0)
    p_float = vad.probability(AudioChunk(audio, RATE))
    p_int = vad.probability(AudioChunk(to_int16(audio), RATE))
    assert p_int == pytest.approx(p_float, abs=1e-3)


def test_threshold_db_is_configurable() -> None:
    rng = np.random.default_rng(5)
    noise = AudioChunk(background(0.02, "noise", rng), RATE)
    assert EnergyVAD(EnergyVAD.Config(threshold_db=-70.0)).probability(noise) > 0.99


def test_min_durations_are_configurable() -> None:
    vad = EnergyVAD(EnergyVAD.Config(min_speech_ms=200, min_silence_ms=100))
    events = run(vad, scene("silence"), 20)
    assert [(index, event.type) for index, event in events] == expected_events(20, 200, 100)


def test_chunks_of_any_length() -> None:
    vad = EnergyVAD()
    assert vad.process(AudioChunk(sine(0.005), RATE, timestamp=1.0)) is None
    event = vad.process(AudioChunk(sine(0.25), RATE, timestamp=1.005))
    assert event is not None
    assert event.type is START
    assert event.timestamp == 1.005
    assert vad.process(AudioChunk(np.zeros(0, dtype=np.float32), RATE)) is None
    event = vad.process(AudioChunk(np.zeros(RATE, dtype=np.int16), RATE, timestamp=2.0))
    assert event is not None
    assert (event.type, event.timestamp) == (END, 2.0)
    assert event.probability < 1e-6


def test_reset_returns_to_silence() -> None:
    vad = EnergyVAD()
    run(vad, sine(0.2), 20)
    assert vad.in_speech
    vad.reset()
    assert not vad.in_speech


def test_rejects_a_wrong_sample_rate() -> None:
    vad = EnergyVAD()
    chunk = AudioChunk(np.zeros(480, dtype=np.float32), 48000)
    with pytest.raises(InvalidInput, match="16000 Hz"):
        vad.process(chunk)
    with pytest.raises(InvalidInput, match="16000 Hz"):
        vad.probability(chunk)
    with pytest.raises(InvalidInput, match="16000 Hz"):
        vad.process(AudioChunk(np.zeros(0, dtype=np.float32), 48000))


def test_rejects_multichannel_audio() -> None:
    chunk = AudioChunk(np.zeros((320, 2), dtype=np.float32), RATE, channels=2)
    with pytest.raises(InvalidInput, match="mono"):
        EnergyVAD().process(chunk)


def test_other_configured_sample_rate() -> None:
    vad = EnergyVAD(EnergyVAD.Config(sample_rate=48000))
    assert vad.capabilities.sample_rate == 48000
    assert EnergyVAD.capabilities.sample_rate == 16000
    loud = np.tile(sine(0.01), 3)  # 30 ms at 48 kHz: the 16 kHz helper's samples, reused
    assert vad.probability(AudioChunk(loud, 48000)) > 0.99
    with pytest.raises(InvalidInput):
        vad.process(AudioChunk(np.zeros(320, dtype=np.float32), RATE))


@pytest.mark.parametrize(
    "options",
    [
        {"sample_rate": 12345},
        {"min_speech_ms": -1},
        {"threshold_db": 3.0},
        {"slope_per_db": 0},
        {"thresh": 1},
    ],
)
def test_invalid_config(options: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        EnergyVAD.Config.model_validate(options)
