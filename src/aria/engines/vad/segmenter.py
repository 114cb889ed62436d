"""Speech segmentation: per-frame speech probabilities in, speech start/end events out.

Pure logic shared by every VAD adapter (no I/O, no clock): an adapter computes a probability for each frame
and feeds it here together with the frame's duration and timestamp.

* Speech **starts** once ``min_speech_ms`` of consecutive frames scored ``>= threshold``.
* Speech **ends** once ``min_silence_ms`` of consecutive frames scored ``< neg_threshold``.
* Frames in between (``neg_threshold <= p < threshold``) are ambiguous: they keep the current state and
  neither add to nor clear the run being counted (hysteresis), so a voice that wavers around the threshold
  neither flickers on and off nor loses the speech it has already accumulated.

A short blip of speech shorter than ``min_speech_ms`` followed by silence is ignored, and so is a pause
shorter than ``min_silence_ms`` inside an utterance.

Model-based adapters score fixed-size windows (Silero: 512 samples at 16 kHz, WebRTC: 10/20/30 ms), while
callers send chunks of any length: :class:`FrameBuffer` cuts the incoming chunks into those windows and
keeps the remainder for the next chunk.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from aria.engines.base import VADEvent, VADEventType

__all__ = ["FrameBuffer", "SpeechSegmenter"]

# Frame durations are floats (0.02 s, 0.032 s ...); summing them drifts by a few ulps, so runs are compared
# with a tolerance far below any real frame length.
_EPSILON_S = 1e-6


class SpeechSegmenter:
    """Turns per-frame speech probabilities into :class:`VADEvent` speech start and end events.

    ``neg_threshold`` defaults to ``threshold - 0.15`` (as Silero VAD does), or to half the threshold when
    that would be lower than half of it (very low thresholds).
    """

    __slots__ = (
        "_in_speech",
        "_min_silence_s",
        "_min_speech_s",
        "_silence_run_s",
        "_speech_run_s",
        "min_silence_ms",
        "min_speech_ms",
        "neg_threshold",
        "threshold",
    )

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_speech_ms: int = 64,
        min_silence_ms: int = 320,
        neg_threshold: float | None = None,
    ) -> None:
        if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise ValueError(f"threshold must be within (0, 1], got {threshold}")
        if neg_threshold is None:
            neg_threshold = max(threshold - 0.15, threshold / 2)
        if not (math.isfinite(neg_threshold) and 0.0 < neg_threshold <= threshold):
            raise ValueError(f"neg_threshold must be within (0, threshold={threshold}], got {neg_threshold}")
        if min_speech_ms < 0:
            raise ValueError(f"min_speech_ms must not be negative, got {min_speech_ms}")
        if min_silence_ms < 0:
            raise ValueError(f"min_silence_ms must not be negative, got {min_silence_ms}")
        self.threshold = float(threshold)
        self.neg_threshold = float(neg_threshold)
        self.min_speech_ms = int(min_speech_ms)
        self.min_silence_ms = int(min_silence_ms)
        self._min_speech_s = self.min_speech_ms / 1000.0
        self._min_silence_s = self.min_silence_ms / 1000.0
        self._in_speech = False
        self._speech_run_s = 0.0
        self._silence_run_s = 0.0

    @property
    def in_speech(self) -> bool:
        """Whether the last event was a speech start (and no end has followed yet)."""
        return self._in_speech

    def reset(self) -> None:
        """Forget all state: back to silence, no run being counted."""
        self._in_speech = False
        self._speech_run_s = 0.0
        self._silence_run_s = 0.0

    def update(self, probability: float, duration_s: float, timestamp: float) -> VADEvent | None:
        """Feed one frame; return the event it decides, if any.

        ``timestamp`` is carried into the event unchanged, so the event reports the frame that decided it.
        """
        if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
            raise ValueError(f"probability must be within [0, 1], got {probability}")
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise ValueError(f"duration_s must be a finite, non-negative number, got {duration_s}")

        if not self._in_speech:
            if probability >= self.threshold:
                self._speech_run_s += duration_s
                if self._speech_run_s + _EPSILON_S >= self._min_speech_s:
                    self._in_speech = True
                    self._speech_run_s = 0.0
                    self._silence_run_s = 0.0
                    return VADEvent(VADEventType.SPEECH_START, timestamp, probability)
            elif probability < self.neg_threshold:
                self._speech_run_s = 0.0
            return None

        if probability < self.neg_threshold:
            self._silence_run_s += duration_s
            if self._silence_run_s + _EPSILON_S >= self._min_silence_s:
                self._in_speech = False
                self._speech_run_s = 0.0
                self._silence_run_s = 0.0
                return VADEvent(VADEventType.SPEECH_END, timestamp, probability)
        elif probability >= self.threshold:
            self._silence_run_s = 0.0
        return None


class FrameBuffer:
    """Cuts a stream of chunks of any length into frames of exactly ``frame_size`` samples.

    Samples that do not fill a frame wait for the next chunk. Each frame comes with the time of its first
    sample, derived from the timestamp of the chunk it completes: a frame that began in an earlier chunk
    starts ``buffered / sample_rate`` seconds before that chunk's timestamp.
    """

    __slots__ = ("_pending", "frame_size", "sample_rate")

    def __init__(self, frame_size: int, sample_rate: int) -> None:
        if frame_size <= 0:
            raise ValueError(f"frame_size must be positive, got {frame_size}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.frame_size = int(frame_size)
        self.sample_rate = int(sample_rate)
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    @property
    def buffered(self) -> int:
        """Samples waiting for the rest of their frame."""
        return int(self._pending.size)

    def clear(self) -> None:
        """Drop the samples waiting for a frame."""
        self._pending = np.zeros(0, dtype=np.float32)

    def push(
        self, samples: npt.NDArray[np.float32], timestamp: float
    ) -> list[tuple[npt.NDArray[np.float32], float]]:
        """Add a chunk (mono float32) whose first sample is at ``timestamp``; return the frames it
        completes as ``(frame, start time)`` pairs, oldest first. The remainder is kept before returning."""
        held = self._pending.size
        data = np.concatenate((self._pending, samples)) if held else samples
        count = data.size // self.frame_size
        used = count * self.frame_size
        self._pending = data[used:].copy()
        origin = timestamp - held / self.sample_rate
        return [
            (data[i : i + self.frame_size], origin + i / self.sample_rate)
            for i in range(0, used, self.frame_size)
        ]
