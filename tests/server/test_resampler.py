"""TurnResampler: a turn's chunks resampled as one stream (no seams), its tail last, one turn at a time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from aria.core.audio import resample
from aria.server.resampler import TurnResampler


def _tone(rate: int, seconds: float, hz: float = 440.0) -> npt.NDArray[np.float32]:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _chunks(samples: npt.NDArray[np.float32], size: int) -> list[npt.NDArray[np.float32]]:
    return [samples[i : i + size] for i in range(0, samples.size, size)]


def _worst_step(samples: npt.NDArray[np.float32]) -> float:
    return float(np.max(np.abs(np.diff(samples))))


def test_small_chunks_come_out_as_one_smooth_stream_with_every_sample() -> None:
    tone = _tone(24000, 1.0)
    r = TurnResampler(16000)
    out = [r.push("t1", c, 24000) for c in _chunks(tone, 240)]  # 10 ms frames
    out.append(r.finish("t1"))
    whole = np.concatenate(out)
    assert whole.size == 16000  # nothing lost: the tail the filter held back came out at the end
    ideal = _tone(16000, 1.0)
    # A 440 Hz tone at 16 kHz never steps more than 2*pi*440/16000*0.5 = 0.086 between samples.
    assert _worst_step(whole) < 0.1
    assert np.max(np.abs(whole[400:-400] - ideal[400:-400])) < 0.02


def test_the_per_chunk_fft_resampler_leaves_seams_the_stream_does_not() -> None:
    tone = _tone(24000, 0.5)
    seamed = np.concatenate([resample(c, 24000, 16000) for c in _chunks(tone, 240)])
    r = TurnResampler(16000)
    streamed = np.concatenate([*(r.push("t", c, 24000) for c in _chunks(tone, 240)), r.finish("t")])
    assert _worst_step(seamed) > 2 * _worst_step(streamed)  # why the writer streams


def test_same_rate_passes_through_and_finish_has_nothing() -> None:
    r = TurnResampler(24000)
    chunk = _tone(24000, 0.01)
    assert np.array_equal(r.push("t", chunk, 24000), chunk)
    assert r.finish("t").size == 0


def test_a_new_turn_starts_fresh_and_an_old_turn_has_no_tail() -> None:
    r = TurnResampler(16000)
    r.push("t1", _tone(24000, 0.1), 24000)
    r.push("t2", _tone(24000, 0.1), 24000)
    assert r.finish("t1").size == 0  # t1's stream went when t2 spoke
    assert r.finish("t2").size > 0
    assert r.finish("t2").size == 0  # finished: forgotten


def test_drop_forgets_without_a_tail() -> None:
    r = TurnResampler(16000)
    r.push("t", _tone(24000, 0.1), 24000)
    r.drop("t")
    assert r.finish("t").size == 0


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TurnResampler(0)
