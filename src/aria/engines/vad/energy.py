"""Energy VAD: a dependency-free voice activity detector based on frame loudness.

Each chunk's RMS level in dBFS (``20 * log10(rms)``, full scale = 1.0) is mapped to a speech probability
by a logistic curve centred on ``threshold_db`` (probability 0.5 there, about 0.95 six decibels above and
0.05 six below), and the probabilities go through :class:`~aria.engines.vad.segmenter.SpeechSegmenter`.

It cannot tell a voice from any other sound of the same loudness, so it suits quiet rooms, tests and
machines without the ``vad`` extra; Silero VAD is the better default wherever it is installed.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field

from aria.engines.base import Capabilities, EngineConfig, EngineHealth, EngineKind, VADEvent
from aria.engines.options import SampleRate
from aria.engines.vad.segmenter import SpeechSegmenter
from aria.errors import InvalidInput
from aria.types import AudioChunk

__all__ = ["EnergyVAD"]

#: Level reported for digital silence (an RMS of exactly zero has no logarithm).
_FLOOR_DB = -120.0


class EnergyVAD:
    """Voice activity detection from frame energy; see the module docstring."""

    kind: ClassVar[EngineKind] = "vad"
    name: str = "energy"
    capabilities: Capabilities = Capabilities(streaming=True, sample_rate=16000, local=True)

    class Config(EngineConfig):
        #: Frame RMS level, in dBFS, at which the speech probability reaches 0.5.
        threshold_db: float = Field(default=-40.0, le=0.0)
        #: Steepness of the logistic curve, per decibel.
        slope_per_db: float = Field(default=0.5, gt=0.0)
        min_speech_ms: int = Field(default=64, ge=0)
        min_silence_ms: int = Field(default=320, ge=0)
        sample_rate: SampleRate = 16000

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if self.config.sample_rate != self.capabilities.sample_rate:
            self.capabilities = Capabilities(streaming=True, sample_rate=self.config.sample_rate, local=True)
        self._segmenter = SpeechSegmenter(
            threshold=0.5,
            min_speech_ms=self.config.min_speech_ms,
            min_silence_ms=self.config.min_silence_ms,
        )

    async def start(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True, detail=f"energy threshold {self.config.threshold_db:g} dBFS")

    @property
    def in_speech(self) -> bool:
        return self._segmenter.in_speech

    def reset(self) -> None:
        """Back to silence, as at the start of a new stream."""
        self._segmenter.reset()

    def level_db(self, chunk: AudioChunk) -> float:
        """The chunk's RMS level in dBFS (``-120.0`` for digital silence or an empty chunk)."""
        self._check(chunk)
        if chunk.frames == 0:
            return _FLOOR_DB
        samples = chunk.as_float32().astype(np.float64, copy=False)
        rms = math.sqrt(float(np.mean(np.square(samples))))
        if rms <= 0.0:
            return _FLOOR_DB
        return max(_FLOOR_DB, 20.0 * math.log10(rms))

    def probability(self, chunk: AudioChunk) -> float:
        """Speech probability of one chunk, without changing any state."""
        return self._probability_of(self.level_db(chunk))

    def process(self, chunk: AudioChunk) -> VADEvent | None:
        """Score one chunk (of any length) as one frame; return a speech start or end event if it decides one.

        Empty chunks are ignored. The event's timestamp is the deciding chunk's ``timestamp``.
        """
        if chunk.frames == 0:
            self._check(chunk)
            return None
        probability = self.probability(chunk)
        return self._segmenter.update(probability, chunk.duration, chunk.timestamp)

    def _probability_of(self, level_db: float) -> float:
        x = self.config.slope_per_db * (level_db - self.config.threshold_db)
        # Written so that exp() never overflows for very loud or very quiet frames.
        if x >= 0:
            return 1.0 / (1.0 + math.exp(-x))
        z = math.exp(x)
        return z / (1.0 + z)

    def _check(self, chunk: AudioChunk) -> None:
        if chunk.sample_rate != self.config.sample_rate:
            raise InvalidInput(
                f"energy VAD expects {self.config.sample_rate} Hz audio, got {chunk.sample_rate} Hz; "
                "resample first or set the VAD's sample_rate option"
            )
        if chunk.channels != 1:
            raise InvalidInput(f"energy VAD expects mono audio, got {chunk.channels} channels")
