"""Server-side turn detection for a Realtime session, on the input audio's own clock.

The listener keeps the input audio buffer (16 kHz, since the last commit or clear), runs the session's
VAD over it in 20 ms frames and says when speech starts and stops, in milliseconds of input audio (so the
times it reports, and ``idle_timeout_ms``, follow the audio the client sent, not the wall clock).

* ``server_vad``: the VAD is built with the session's ``threshold`` and ``silence_duration_ms`` (Aria's
  ``vad.threshold`` and ``vad.min_silence_ms``); its end of speech ends the turn.
* ``semantic_vad``: a pause the VAD reports is put to Aria's end-of-turn model (:class:`Pause`); the turn
  ends when the model finds it complete with the probability ``eagerness`` asks for, or when the pause has
  lasted the eagerness' longest wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.core.config import Settings
from aria.engines.base import VAD, VADEventType
from aria.engines.factory import start_vad
from aria.engines.registry import EngineRegistry
from aria.types import AudioChunk

__all__ = ["EAGERNESS", "FRAME", "Listener", "Pause", "Started", "Stopped", "Timeout", "session_vad"]

log = logging.getLogger(__name__)
RATE = 16000
#: 20 ms frames.
FRAME = 320
#: semantic_vad eagerness -> (end-of-turn probability that ends the turn, longest pause in ms).
EAGERNESS: dict[str, tuple[float, int]] = {
    "high": (0.3, 2000),
    "auto": (0.5, 4000),
    "medium": (0.5, 4000),
    "low": (0.8, 8000),
}
Float32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Started:
    audio_start_ms: int


@dataclass(frozen=True)
class Stopped:
    audio_end_ms: int


@dataclass(frozen=True)
class Pause:
    """semantic_vad: a pause at ``at_ms``; ask the end-of-turn model about ``audio`` (the turn so far)."""

    at_ms: int
    audio: Float32


@dataclass(frozen=True)
class Timeout:
    audio_start_ms: int
    audio_end_ms: int


def _ms(samples: int) -> int:
    return samples * 1000 // RATE


class Listener:
    def __init__(
        self, vad: VAD | None, turn_detection: dict[str, Any] | None, *, hangover_ms: int = 0
    ) -> None:
        self.vad = vad
        self.turn_detection = turn_detection
        #: How long after the speech ends the VAD reports it (its silence window).
        self.hangover = hangover_ms * RATE // 1000
        #: Where the speech of the turn ended (the VAD's report less its hangover).
        self._speech_end = 0
        #: Input samples received since the session started (the clock).
        self.samples = 0
        self._chunks: list[Float32] = []
        #: The clock at the buffer's first sample.
        self._buffer_start = 0
        self._frame = np.zeros(0, np.float32)
        self.speaking = False
        self._speech_start = 0
        #: semantic_vad: a pause is being judged since this sample (None: no pause).
        self._paused_at: int | None = None
        self._idle_at: int | None = None
        #: Where the turn was ended (the commit takes the buffer up to here).
        self._cut: int | None = None

    @property
    def now_ms(self) -> int:
        return _ms(self.samples)

    def configure(
        self, vad: VAD | None, turn_detection: dict[str, Any] | None, *, hangover_ms: int = 0
    ) -> None:
        self.vad, self.turn_detection = vad, turn_detection
        self.hangover = hangover_ms * RATE // 1000
        self.speaking, self._paused_at, self._idle_at = False, None, None

    def push(self, samples: Float32) -> list[Started | Stopped | Pause | Timeout]:
        """Buffer ``samples`` and run turn detection over them."""
        if samples.size == 0:
            return []
        self._chunks.append(samples)
        if self.turn_detection is None or self.vad is None:
            self.samples += samples.size
            return []
        frames = np.concatenate([self._frame, samples])
        usable = frames.size - frames.size % FRAME
        self._frame = frames[usable:]
        signals: list[Started | Stopped | Pause | Timeout] = []
        for offset in range(0, usable, FRAME):
            self.samples += FRAME
            signals += self._frame_signals(frames[offset : offset + FRAME])
        return signals

    def _frame_signals(self, frame: Float32) -> list[Started | Stopped | Pause | Timeout]:
        assert self.vad is not None and self.turn_detection is not None
        event = self.vad.process(AudioChunk(frame, RATE))
        semantic = self.turn_detection["type"] == "semantic_vad"
        if event is not None and event.type is VADEventType.SPEECH_START:
            self._idle_at = None
            if self._paused_at is not None:  # semantic_vad: speech went on after the pause
                self._paused_at = None
                return []
            if not self.speaking:
                self.speaking = True
                padding = int(self.turn_detection.get("prefix_padding_ms") or 300) * RATE // 1000
                self._speech_start = max(self._buffer_start, self.samples - FRAME - padding)
                return [Started(_ms(self.samples - FRAME))]
        if event is not None and event.type is VADEventType.SPEECH_END and self.speaking:
            self._speech_end = max(self._speech_start, self.samples - self.hangover)
            if semantic:
                self._paused_at = self.samples
                return [Pause(self.now_ms, self.turn_audio())]
            return [self._stop()]
        if semantic and self._paused_at is not None:
            _probability, longest = EAGERNESS[self.turn_detection.get("eagerness") or "auto"]
            if self.samples - self._paused_at >= longest * RATE // 1000:
                return [self._stop()]
        if self._idle_at is not None and self.samples >= self._idle_at and not self.speaking:
            start, self._idle_at = self.now_ms, None
            return [Timeout(start, self.now_ms)]
        return []

    def decide(self, complete: bool, probability: float, at_ms: int) -> Stopped | None:
        """semantic_vad: the end-of-turn model's answer about the pause at ``at_ms``."""
        if self._paused_at is None or _ms(self._paused_at) != at_ms or self.turn_detection is None:
            return None  # speech went on meanwhile, or the turn already ended
        needed, _longest = EAGERNESS[self.turn_detection.get("eagerness") or "auto"]
        return self._stop() if complete and probability >= needed else None

    def _stop(self) -> Stopped:
        self.speaking, self._paused_at = False, None
        self._cut = self.samples
        return Stopped(_ms(self._speech_end))

    def idle_after(self, playing_ms: int) -> None:
        """The answer ended, its audio playing ``playing_ms`` more: arm ``idle_timeout_ms``."""
        timeout = (self.turn_detection or {}).get("idle_timeout_ms")
        if timeout and self.turn_detection is not None and self.turn_detection["type"] == "server_vad":
            self._idle_at = self.samples + (playing_ms + int(timeout)) * RATE // 1000

    def turn_audio(self) -> Float32:
        """The buffered audio of the turn in progress (from its prefix padding on)."""
        audio = self.buffered()
        return audio[max(0, self._speech_start - self._buffer_start) :]

    def take(self) -> Float32:
        """Commit: the buffer's audio (under turn detection, from the speech's prefix padding to where the
        turn was ended); what came after stays in the buffer."""
        audio = self.buffered()
        if self.turn_detection is None or self._cut is None:
            self.clear()
            return audio
        start = max(0, self._speech_start - self._buffer_start)
        cut = max(start, self._cut - self._buffer_start)
        taken, rest = audio[start:cut], audio[cut:]
        self._chunks = [rest] if rest.size else []
        self._buffer_start, self._cut = self._cut, None
        self._speech_start = self._buffer_start
        return taken

    def buffered(self) -> Float32:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)

    def clear(self) -> None:
        self._chunks = []
        self._buffer_start = self.samples + self._frame.size
        self._speech_start = self._buffer_start
        self._cut = None
        self.speaking, self._paused_at = False, None
        if self.vad is not None:
            self.vad.reset()


async def session_vad(
    settings: Settings, registry: EngineRegistry | None, turn_detection: dict[str, Any] | None
) -> VAD | None:
    """A started VAD for a session's turn detection (``server_vad``'s threshold and silence as Aria's
    ``[vad] threshold`` and ``min_silence_ms``); None without turn detection or when none can start."""
    if turn_detection is None:
        return None
    update: dict[str, Any] = {}
    if turn_detection["type"] == "server_vad":
        update = {
            "threshold": turn_detection["threshold"],
            "min_silence_ms": turn_detection["silence_duration_ms"],
        }
    settings = settings.model_copy(update={"vad": settings.vad.model_copy(update=update)})
    return await start_vad(settings, registry, purpose="a realtime session")
