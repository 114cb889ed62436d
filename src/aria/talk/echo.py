"""Barge-in on laptop speakers: WebRTC's echo canceller (AEC3) on the microphone, and push-to-talk.

Here the reference is exact: :class:`EchoCanceller` is given every block the speaker played (silence
included) as the reverse stream, and cleans each microphone block before it is sent, so the server hears
the person and not the answer's own audio. The server's echo guard still runs on what arrives (it is
always on for ``/ws`` clients), so what the canceller leaves is caught there.

The canceller is WebRTC's audio processing module from the optional ``livekit`` wheel
(``livekit.rtc.AudioProcessingModule``), fed 10 ms frames at 16 kHz; the stream delay hint is the
sum of the two streams' latencies (AEC3 refines the delay itself). Without the wheel there is no
canceller (:func:`open_echo_canceller` returns None) and the echo guard alone decides.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.core.audio import resample

__all__ = ["EchoCanceller", "PushToTalk", "open_echo_canceller"]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
RATE = 16000
FRAME = RATE // 100


def _pcm16(samples: Float32Array) -> bytes:
    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


class EchoCanceller:
    """AEC3 with the played audio as the reverse stream. Call :meth:`played` with what the speaker
    played (at its rate) before :meth:`capture` with the microphone block recorded after it."""

    def __init__(self, rtc: Any, *, delay_ms: int = 0, noise_suppression: bool = False) -> None:
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=noise_suppression,
            high_pass_filter=True,
            auto_gain_control=False,
        )
        self._apm.set_stream_delay_ms(max(0, min(500, delay_ms)))
        self._far = np.zeros(0, np.float32)
        self._near = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)
        self.frames = 0

    def set_delay_ms(self, delay_ms: float) -> None:
        self._apm.set_stream_delay_ms(int(max(0, min(500, delay_ms))))

    def played(self, blocks: list[Float32Array], rate: int) -> None:
        if not blocks:
            return
        audio = np.concatenate(blocks)
        self._far = np.concatenate([self._far, resample(audio, rate, RATE)])
        whole = self._far.size // FRAME * FRAME
        for offset in range(0, whole, FRAME):
            frame = self._rtc.AudioFrame(_pcm16(self._far[offset : offset + FRAME]), RATE, 1, FRAME)
            self._apm.process_reverse_stream(frame)
        self._far = self._far[whole:]

    def capture(self, block: Float32Array) -> Float32Array:
        """The block with the echo removed: same length, up to 10 ms later (the first call starts with
        that much silence)."""
        self._near = np.concatenate([self._near, block])
        whole = self._near.size // FRAME * FRAME
        done = [self._out]
        for offset in range(0, whole, FRAME):
            frame = self._rtc.AudioFrame(_pcm16(self._near[offset : offset + FRAME]), RATE, 1, FRAME)
            self._apm.process_stream(frame)
            done.append(np.frombuffer(bytes(frame.data), dtype="<i2").astype(np.float32) / 32768.0)
            self.frames += 1
        self._near = self._near[whole:]
        out = np.concatenate(done)
        if out.size < block.size:
            out = np.concatenate([np.zeros(block.size - out.size, np.float32), out])
        self._out = out[block.size :]
        return out[: block.size]


def open_echo_canceller(delay_ms: int = 0) -> EchoCanceller | None:
    """A canceller, or None when the ``livekit`` wheel is missing (``pip install 'aria-assistant[aec]'``)."""
    try:
        rtc = importlib.import_module("livekit.rtc")
        return EchoCanceller(rtc, delay_ms=delay_ms)
    except Exception as exc:  # a missing wheel or one that fails to load its native library
        log.info("WebRTC echo canceller unavailable: %s", exc)
        return None


class PushToTalk:
    """The microphone is open only while talking is on. A terminal sees key presses, not releases, so
    the key toggles: press to talk, press again to send. Closed, the microphone sends silence, so the
    server hears the end of the turn at once."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.talking = not enabled

    def toggle(self) -> bool:
        if self.enabled:
            self.talking = not self.talking
        return self.talking

    def gate(self, block: Float32Array) -> Float32Array:
        return block if self.talking else np.zeros_like(block)
