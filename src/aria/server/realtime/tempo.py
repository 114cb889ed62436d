"""Speech at another speed with its pitch kept: WSOLA (waveform-similarity overlap-add), numpy only.

Frames of 30 ms are taken from the input every ``hop * speed`` samples and overlap-added every ``hop``; each
frame is shifted (within a quarter frame) to where it best continues the output's last frame, so voiced
speech stays periodic across joins.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["stretch"]

Float32 = npt.NDArray[np.float32]


def stretch(samples: Float32, rate: int, speed: float) -> Float32:
    """``samples`` played ``speed`` times as fast (0.25-4), same pitch; about ``len / speed`` samples."""
    if speed == 1.0 or samples.size == 0:
        return samples.astype(np.float32)
    frame = max(16, int(0.03 * rate))
    hop = frame // 2
    tolerance = frame // 4
    window = np.hanning(frame).astype(np.float32)
    padded = np.concatenate([samples.astype(np.float32), np.zeros(frame + tolerance, np.float32)])
    n_out = int(samples.size / speed)
    out = np.zeros(n_out + frame, np.float32)
    norm = np.zeros(n_out + frame, np.float32)
    previous_end = 0  # where the natural continuation of the last frame starts in the input
    for out_pos in range(0, n_out, hop):
        target = int(out_pos * speed)
        if out_pos == 0:
            best = 0
        else:
            low, high = max(0, target - tolerance), min(samples.size, target + tolerance)
            natural = padded[previous_end : previous_end + frame]
            candidates = np.lib.stride_tricks.sliding_window_view(padded[low : high + frame], frame)
            best = low + int(np.argmax(candidates @ natural)) if candidates.size else target
        out[out_pos : out_pos + frame] += padded[best : best + frame] * window
        norm[out_pos : out_pos + frame] += window
        previous_end = best + hop
    norm[norm < 1e-3] = 1.0
    return (out / norm)[:n_out].astype(np.float32)
