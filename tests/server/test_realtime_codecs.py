"""G.711 µ-law/A-law against the standard's values, the streaming resamplers, and speed without pitch."""

from __future__ import annotations

import numpy as np
import pytest

from aria.errors import InvalidInput
from aria.server.realtime.codecs import (
    Decoder,
    Encoder,
    alaw_decode,
    alaw_encode,
    b64decode_audio,
    ulaw_decode,
    ulaw_encode,
)
from aria.server.realtime.tempo import stretch
from aria.testing.speech import say

# Values of the ITU-T G.711 tables (as the retired audioop module produced them).
ULAW = {0: 0xFF, -1: 0x7F, 1000: 0xCE, -1000: 0x4E, 32767: 0x80, -32768: 0x00}
ALAW = {0: 0xD5, -1: 0x55, 1000: 0xFA, -1000: 0x7A, 32767: 0xAA, -32768: 0x2A}


@pytest.mark.parametrize(("pcm", "code"), ULAW.items())
def test_ulaw_codes(pcm: int, code: int) -> None:
    assert ulaw_encode(np.array([pcm], np.int16)) == bytes([code])


@pytest.mark.parametrize(("pcm", "code"), ALAW.items())
def test_alaw_codes(pcm: int, code: int) -> None:
    assert alaw_encode(np.array([pcm], np.int16)) == bytes([code])


def test_decoding_gives_the_segment_midpoints() -> None:
    assert ulaw_decode(bytes([0xFF, 0x00, 0x80])).tolist() == [0, -32124, 32124]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_round_trip_error_stays_within_one_step(encode, decode) -> None:  # type: ignore[no-untyped-def]
    pcm = np.arange(-32768, 32768, 7, dtype=np.int32).astype(np.int16)
    back = decode(encode(pcm)).astype(np.float64)
    error = np.abs(back - pcm) / np.maximum(np.abs(pcm.astype(np.float64)), 128)
    assert error.max() < 0.07  # 4 bits of mantissa: about 3 % a step at worst
    codes = bytes(range(256))
    assert sum(a != b for a, b in zip(encode(decode(codes)), codes, strict=True)) <= 1  # µ-law has two zeros


@pytest.mark.parametrize(
    ("fmt", "bytes_per_second"), [("audio/pcm", 48000), ("audio/pcmu", 8000), ("audio/pcma", 8000)]
)
def test_an_answer_is_encoded_at_the_wire_rate(fmt: str, bytes_per_second: int) -> None:
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    encoder = Encoder(fmt)
    data = b"".join(encoder.encode(tone[i : i + 1600], 16000) for i in range(0, 16000, 1600))
    data += encoder.encode(np.zeros(0, np.float32), 16000, last=True)
    assert abs(len(data) - bytes_per_second) <= bytes_per_second * 0.01
    assert encoder.seconds(data) == pytest.approx(1.0, abs=0.01)
    decoder = Decoder(fmt, 16000)
    back = decoder.decode(data)
    # the tone survives: its level is kept (G.711 and the resamplers are transparent enough)
    assert np.sqrt(np.mean(back[4000:12000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)


def test_bad_audio_is_refused_clearly() -> None:
    with pytest.raises(InvalidInput, match="audio: not valid base64"):
        b64decode_audio("***")
    with pytest.raises(InvalidInput, match="even number of bytes"):
        Decoder("audio/pcm", 16000).decode(b"\x00\x01\x02")
    with pytest.raises(InvalidInput, match="unknown audio format"):
        Encoder("audio/opus")


@pytest.mark.parametrize("speed", [0.5, 1.5])
def test_speed_changes_the_length_and_keeps_the_pitch(speed: float) -> None:
    speech = say("the quick brown fox jumps over the lazy dog", sample_rate=24000)
    faster = stretch(speech, 24000, speed)
    assert faster.size == int(speech.size / speed)

    def pitch(audio: np.ndarray) -> float:
        block = audio[: 24000 // 5]
        corr = np.correlate(block, block, "full")[block.size - 1 :]
        low, high = 24000 // 400, 24000 // 70
        return 24000 / (low + int(np.argmax(corr[low:high])))

    assert pitch(faster[int(6000 / speed) :]) == pytest.approx(pitch(speech[6000:]), rel=0.1)
    assert stretch(speech, 24000, 1.0).size == speech.size
