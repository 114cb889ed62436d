"""WebRTC VAD: the Google WebRTC voice activity detector (``webrtcvad-wheels``), no model file needed.

The detector decides speech or not for frames of exactly 10, 20 or 30 ms of 16-bit PCM at 8, 16, 32 or
48 kHz. :meth:`WebRTCVAD.process` accepts chunks of any length: samples are buffered into ``frame_ms``
frames (30 ms by default), each frame is converted to int16 PCM bytes and scored 1.0 (speech) or 0.0, and
those probabilities go through :class:`~aria.engines.vad.segmenter.SpeechSegmenter` (by way of
:class:`~aria.engines.vad.segmenter.ChunkSegmenter`), like every VAD here.

A call returns the event decided within its chunk; when one chunk decides two events (only possible for
chunks longer than ``min_speech_ms`` or ``min_silence_ms``), the first is returned and the others are
queued and returned, in order, by the next calls; :meth:`WebRTCVAD.process_all` returns them all at once.
An event's ``timestamp`` is the time of the first sample of the frame that decided it.

It is very fast (microseconds a frame) but judges by spectrum and energy: loud steady noise is taken for
speech. ``aggressiveness`` (0-3) trades missed speech for fewer false alarms; Silero VAD is more robust.

``min_speech_ms`` defaults to 150 ms, not 64 ms as for the other VADs: whenever background noise sets in
(at the start of a stream, or after digital silence) the detector calls the first 90-120 ms speech while
its noise model adapts, at every aggressiveness and frame length (measured with white noise from -60 to
-40 dBFS), and 64 ms would turn that into a false speech start.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.engines.base import (
    Availability,
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
)
from aria.engines.vad.segmenter import ChunkSegmenter, FrameVAD, SpeechSegmenter
from aria.errors import EngineError, EngineUnavailable
from aria.types import int16_samples

__all__ = ["WebRTCVAD"]

log = logging.getLogger(__name__)

_ENGINE = "vad:webrtc"
_INSTALL_FIX = "pip install 'aria-assistant[vad]' (or pip install webrtcvad-wheels)"


class WebRTCVAD(FrameVAD):
    """WebRTC voice activity detection; see the module docstring."""

    kind: ClassVar[EngineKind] = "vad"
    name: str = "webrtc"
    capabilities: Capabilities = Capabilities(streaming=True, sample_rate=16000, local=True, memory_mb=1)

    class Config(EngineConfig):
        #: 0 (least aggressive about filtering out non-speech) to 3 (most).
        aggressiveness: int = Field(default=2, ge=0, le=3)
        #: Length of the frames the detector judges.
        frame_ms: Literal[10, 20, 30] = 30
        #: Longer than the other VADs' 64 ms: see the module docstring (onset of background noise).
        min_speech_ms: int = Field(default=150, ge=0)
        min_silence_ms: int = Field(default=320, ge=0)
        sample_rate: Literal[8000, 16000, 32000, 48000] = 16000

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        rate = self.config.sample_rate
        if rate != self.capabilities.sample_rate:
            self.capabilities = Capabilities(streaming=True, sample_rate=rate, local=True, memory_mb=1)
        self.frame_size = rate * self.config.frame_ms // 1000
        # Scores are exactly 0 or 1, so any threshold in (0, 1] behaves the same.
        segmenter = SpeechSegmenter(
            threshold=0.5,
            min_speech_ms=self.config.min_speech_ms,
            min_silence_ms=self.config.min_silence_ms,
        )
        self._stream = ChunkSegmenter(
            segmenter,
            frame_size=self.frame_size,
            sample_rate=rate,
            score=self._score,
            label="WebRTC VAD",
            rates="8000, 16000, 32000 or 48000",
        )
        self._vad: Any = None

    @classmethod
    def check(cls, config: Config) -> Availability:
        """Whether the webrtcvad module is installed (nothing is loaded)."""
        if importlib.util.find_spec("webrtcvad") is None:
            return Availability(False, "webrtcvad (webrtcvad-wheels) is not installed", _INSTALL_FIX)
        return Availability(True, f"aggressiveness {config.aggressiveness}, {config.frame_ms} ms frames")

    async def start(self) -> None:
        """Create the detector. Raises :class:`EngineUnavailable` when webrtcvad is not installed."""
        if self._vad is not None:
            return
        try:
            import webrtcvad
        except ImportError as exc:
            raise EngineUnavailable(f"webrtcvad is not installed; {_INSTALL_FIX}", engine=_ENGINE) from exc
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self.reset()

    async def aclose(self) -> None:
        self._vad = None
        self.reset()

    async def health(self) -> EngineHealth:
        if self._vad is None:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(
            ok=True,
            detail=f"aggressiveness {self.config.aggressiveness}, {self.config.frame_ms} ms frames "
            f"at {self.config.sample_rate} Hz",
        )

    def reset(self) -> None:
        """Back to silence, as at the start of a new stream: clears buffered samples and queued events."""
        self._stream.reset()

    def _require_ready(self) -> None:
        if self._vad is None:
            raise EngineError("not started; await start() first", engine=_ENGINE, retryable=False)

    def _score(self, frame: npt.NDArray[np.float32]) -> float:
        """1.0 for a frame the detector calls speech, else 0.0."""
        pcm = int16_samples(frame).tobytes()
        try:
            return 1.0 if self._vad.is_speech(pcm, self.config.sample_rate) else 0.0
        except Exception as exc:  # webrtcvad raises a bare Exception ("Error while processing frame")
            raise EngineError(f"frame rejected: {exc}", engine=_ENGINE, retryable=False) from exc
