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
keeps the remainder for the next chunk. :class:`ChunkSegmenter` puts the two together for such an adapter:
chunks of any length in (checked), each frame scored by the adapter's model, events out in order.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from aria.engines.base import VADEvent, VADEventType
from aria.errors import InvalidInput
from aria.types import AudioChunk

__all__ = ["ChunkSegmenter", "FrameBuffer", "FrameVAD", "SpeechSegmenter"]

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


class ChunkSegmenter:
    """Chunks of any length in, speech events out, for an adapter whose model scores fixed-size frames.

    :meth:`process` checks a chunk (its rate, finite samples), cuts it into frames with a
    :class:`FrameBuffer`, scores each frame with ``score`` and feeds the probabilities to a
    :class:`SpeechSegmenter`. When one chunk decides two events (only possible for chunks longer than
    ``min_speech_ms`` or ``min_silence_ms``), the first is returned and the others are queued and returned,
    in order, by the next calls; :meth:`process_all` returns them all at once. An event's ``timestamp`` is
    the time of the first sample of the frame that decided it.
    """

    __slots__ = ("_frame_s", "_frames", "_label", "_pending", "_rates", "_score", "segmenter")

    def __init__(
        self,
        segmenter: SpeechSegmenter,
        *,
        frame_size: int,
        sample_rate: int,
        score: Callable[[npt.NDArray[np.float32]], float],
        label: str,
        rates: str,
    ) -> None:
        self.segmenter = segmenter
        self._frames = FrameBuffer(frame_size, sample_rate)
        self._frame_s = frame_size / sample_rate
        self._score = score
        #: For messages: the VAD's name (``"Silero VAD"``) and the rates it takes (``"16000 or 8000"``).
        self._label = label
        self._rates = rates
        self._pending: deque[VADEvent] = deque()

    @property
    def in_speech(self) -> bool:
        return self.segmenter.in_speech

    def reset(self) -> None:
        """Back to silence: clears the segmenter, the buffered samples and the queued events."""
        self.segmenter.reset()
        self._frames.clear()
        self._pending.clear()

    def process(self, chunk: AudioChunk) -> VADEvent | None:
        """Feed a chunk of any length; return the next event not returned yet."""
        self._consume(chunk)
        return self._pending.popleft() if self._pending else None

    def process_all(self, chunk: AudioChunk) -> list[VADEvent]:
        """Feed a chunk of any length; return every event not returned yet, oldest first."""
        self._consume(chunk)
        events = list(self._pending)
        self._pending.clear()
        return events

    def _consume(self, chunk: AudioChunk) -> None:
        rate = self._frames.sample_rate
        if chunk.sample_rate != rate:
            raise InvalidInput(
                f"{self._label} expects {rate} Hz audio, got {chunk.sample_rate} Hz; "
                f"resample first or set the VAD's sample_rate option ({self._rates})"
            )
        if chunk.frames == 0:
            return
        samples = chunk.to_mono().as_float32()
        if not np.all(np.isfinite(samples)):
            raise InvalidInput("audio contains NaN or infinite samples")
        for frame, start in self._frames.push(samples, chunk.timestamp):
            event = self.segmenter.update(self._score(frame), self._frame_s, start)
            if event is not None:
                self._pending.append(event)


class FrameVAD:
    """The streaming side shared by the VADs whose model scores fixed frames through a
    :class:`ChunkSegmenter` (``_stream``): :attr:`in_speech`, :meth:`process` and :meth:`process_all`, each
    after the adapter's ``_require_ready`` (which raises while its model is not loaded)."""

    _stream: ChunkSegmenter

    def _require_ready(self) -> None:
        raise NotImplementedError

    @property
    def in_speech(self) -> bool:
        return self._stream.in_speech

    def process(self, chunk: AudioChunk) -> VADEvent | None:
        """Feed a chunk of any length; return the next event (see :class:`ChunkSegmenter` for queuing)."""
        self._require_ready()
        return self._stream.process(chunk)

    def process_all(self, chunk: AudioChunk) -> list[VADEvent]:
        """Feed a chunk of any length; return every event not returned yet, oldest first."""
        self._require_ready()
        return self._stream.process_all(chunk)
