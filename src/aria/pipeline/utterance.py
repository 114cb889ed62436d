"""An utterance: the person's whole turn while it is being listened to: its stretches of speech, their
transcripts, its audio for the end-of-turn model, and the decision in progress."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aria.core.channels import Channel
from aria.engines.base import TurnPrediction
from aria.pipeline.held import Held
from aria.pipeline.turn import Turn
from aria.types import AudioChunk, Transcription, float32_samples

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MODEL_WINDOW_S", "Utterance"]

#: The end-of-turn model sees at most this much of the utterance.
MODEL_WINDOW_S = 8.0


@dataclass(eq=False)
class Utterance:
    turn: Turn
    #: The answer this speech started over (it has not taken the floor yet), or None.
    over: Turn | None
    started: float
    frames: deque[np.ndarray] = field(default_factory=deque)
    frames_s: float = 0.0
    total_s: float = 0.0
    segment: Channel[AudioChunk] | None = None
    listen: asyncio.Task[None] | None = None
    decide: asyncio.Task[None] | None = None
    texts: list[str] = field(default_factory=list)
    partial: str = ""
    final: Transcription | None = None
    failed: BaseException | None = None
    held: Held | None = None
    paused_at: float = 0.0
    forced: bool = False
    #: It took the floor because typed input superseded the answer, not by its own words.
    by_default: bool = False
    #: It was spoken over an answer and took the floor from it.
    barged_in: bool = False
    prediction: TurnPrediction | None = None

    @property
    def text(self) -> str:
        return " ".join(t for t in (*self.texts, self.partial) if t).strip()

    def add(self, samples: np.ndarray, sample_rate: int) -> None:
        self.frames.append(samples)
        seconds = len(samples) / sample_rate
        self.frames_s += seconds
        self.total_s += seconds
        while self.frames and self.frames_s - len(self.frames[0]) / sample_rate >= MODEL_WINDOW_S:
            self.frames_s -= len(self.frames.popleft()) / sample_rate

    def audio(self) -> np.ndarray:
        import numpy as np  # loaded when audio is first judged, not when the pipeline is imported

        if not self.frames:
            return np.zeros(0, np.float32)
        # Kept as they came (int16 or float32): converted once here, not on every block.
        return np.concatenate([float32_samples(frame) for frame in self.frames])
