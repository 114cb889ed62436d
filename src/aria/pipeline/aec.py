"""WebRTC's echo canceller (AEC3) from the optional ``livekit`` wheel (``pip install 'aria-assistant[aec]'``),
behind a small NumPy interface for :class:`~aria.pipeline.echo.EchoGuard`.

The canceller takes 10 ms frames only; :class:`Canceller` buffers blocks of any length into them, so its
output lags its input by less than 10 ms (the first output block starts with that much silence).
``livekit`` is imported only when a canceller is opened; without it :func:`open_canceller` returns None.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.types import float32_samples, int16_samples

__all__ = ["Canceller", "open_canceller"]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]


class Canceller:
    """AEC3 on float32 mono blocks: :meth:`process` takes a microphone block and the reference block
    already aligned with it (same length), and returns the cancelled block (same length)."""

    def __init__(self, rtc: Any, sample_rate: int) -> None:
        self._rtc = rtc
        self._rate = sample_rate
        self._frame = sample_rate // 100
        self.reset()

    def reset(self) -> None:
        self._apm = self._rtc.AudioProcessingModule(
            echo_cancellation=True, noise_suppression=False, high_pass_filter=True, auto_gain_control=False
        )
        self._apm.set_stream_delay_ms(0)  # the reference arrives aligned by the guard's delay estimate
        self._mic = np.zeros(0, np.float32)
        self._ref = np.zeros(0, np.float32)
        self._out = np.zeros(self._frame, np.float32)  # the constant lag, filled with silence

    def process(self, mic: Float32Array, ref: Float32Array) -> Float32Array:
        self._mic = np.concatenate([self._mic, mic])
        self._ref = np.concatenate([self._ref, ref])
        whole = self._mic.size // self._frame * self._frame
        done = [self._out]
        for offset in range(0, whole, self._frame):
            far = self._rtc.AudioFrame(
                int16_samples(self._ref[offset : offset + self._frame]).tobytes(), self._rate, 1, self._frame
            )
            self._apm.process_reverse_stream(far)
            near = self._rtc.AudioFrame(
                int16_samples(self._mic[offset : offset + self._frame]).tobytes(), self._rate, 1, self._frame
            )
            self._apm.process_stream(near)
            done.append(float32_samples(np.frombuffer(bytes(near.data), dtype="<i2")))
        self._mic, self._ref = self._mic[whole:], self._ref[whole:]
        out = np.concatenate(done)
        self._out = out[mic.size :]
        return out[: mic.size]


def open_canceller(sample_rate: int) -> Canceller | None:
    """A canceller, or None when the ``livekit`` wheel is missing or the rate is not 8/16/32/48 kHz."""
    if sample_rate not in (8000, 16000, 32000, 48000):
        return None
    try:
        rtc = importlib.import_module("livekit.rtc")
        return Canceller(rtc, sample_rate)
    except Exception as exc:  # a missing wheel or one that fails to load its native library
        log.debug("WebRTC echo canceller unavailable: %s", exc)
        return None
