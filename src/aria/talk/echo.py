"""Barge-in on laptop speakers: echo cancellation and the echo guard on the microphone, and push-to-talk.

Here the reference is exact: the speaker hands over every block it played (silence included) with the
time it was handed to PortAudio. :class:`EchoCanceller` runs two things on it, on this side of the
connection:

* WebRTC's AEC3 (the ``livekit`` wheel's ``AudioProcessingModule``) with the played audio as its reverse
  stream, fed as it is played; AEC3 finds and follows the delay itself. Its output is what is sent.
* The turn-taking echo guard (:class:`aria.pipeline.echo.EchoGuard`) on the raw microphone, with the
  reference on the streams' sample clocks: it finds the delay by correlation and tells, block by block,
  the answer's echo from the person's voice.

A block is sent as silence when the guard calls it echo, or when AEC3 took most of it (more than
:data:`GATE_DB`) while the answer plays, or when it is no louder than the answer's echo can be (a
double-talk detector in the manner of Geigel's): AEC3 alone leaves a faint residual while it converges
that a VAD takes for speech, and lets echo through for a moment when the delay moves (a stream stalls
under load); the guard alone needs a few hundred milliseconds to find a delay and can settle on a wrong
one. How loud the echo can be: as loud as the answer until AEC3 has cancelled :data:`CONVERGED_BLOCKS`
blocks (the first second or so of the first answer: half duplex), then as loud as learnt from the
blocks AEC3 took, plus :data:`DOUBLE_TALK_DB`. A person talking over the answer is louder than its echo
and not explained by the reference: barge-in passes, echo-cancelled. The server's own guard then sees a
client that cancels its echo and stands aside.

Without the ``livekit`` wheel the guard runs alone (:func:`open_echo_canceller` says which).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.pipeline.echo import EchoGuard
from aria.types import AudioChunk, float32_samples, int16_samples

__all__ = ["EchoCanceller", "PushToTalk", "open_echo_canceller"]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
RATE = 16000
#: Longest speaker-to-microphone delay looked for (PortAudio and PulseAudio buffers included).
MAX_DELAY_S = 0.5
FRAME = RATE // 100
#: Reference louder than this (dBFS) counts as the answer playing.
FAR_AUDIBLE_DB = -50.0
#: A block AEC3 lowered by more than this (dB) while the answer plays was echo.
GATE_DB = 20.0
#: Blocks AEC3 must have cancelled before the start-up half duplex ends (see ``_under_echo``).
CONVERGED_BLOCKS = 50
#: A voice over the answer must be this much louder than the answer's learnt echo to get through.
DOUBLE_TALK_DB = 6.0
#: How much earlier than its stamp the reference is placed (see :meth:`EchoCanceller.played`).
REFERENCE_LEAD_S = 0.1
#: How long after a loud reference block was taken its echo may still arrive (processing time).
ECHO_WINDOW_S = 1.0
#: Played blocks starting within this of where the previous one ended continue it.
CONTINUOUS_S = 0.1


class EchoCanceller:
    """AEC3 and the echo guard on the microphone, the played audio as their reference."""

    def __init__(self, rtc: Any | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.guard = EchoGuard(RATE, max_delay_s=MAX_DELAY_S)
        self._rtc: Any = rtc
        self._apm = None
        if rtc is not None:
            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=True,
                noise_suppression=False,
                high_pass_filter=True,
                auto_gain_control=False,
            )
        #: Blocks sent as silence (judged echo) and blocks in all.
        self.echo_blocks = 0
        self.blocks = 0
        self._guard_rate: _Linear | None = None
        self._next_at: float | None = None
        self._far = np.zeros(0, np.float32)
        self._near = np.zeros(0, np.float32)
        self._out = np.zeros(0, np.float32)
        self._far_loud_until = 0.0
        #: Recent reference levels (time, dB) for the half-duplex rule while AEC3 converges.
        self._far_levels: list[tuple[float, float]] = []
        #: Blocks on which AEC3 took more than GATE_DB of the echo: past CONVERGED_BLOCKS it has
        #: learnt this room, and the half-duplex rule ends.
        self.converged = 0
        #: How much quieter than the answer its echo comes back (dB), learnt; None until then.
        self._echo_gain_db: float | None = None

    @property
    def aec(self) -> bool:
        return self._apm is not None

    def played(self, blocks: list[tuple[float, Float32Array]], rate: int) -> None:
        """What the speaker played: (monotonic time it was handed over, samples at ``rate``)."""
        for at, block in blocks:
            if self._guard_rate is None or self._guard_rate.src != rate:
                self._guard_rate, self._next_at = _Linear(rate, RATE), None
            # Blocks played back to back are one stream: callback jitter does not move them.
            if self._next_at is not None and abs(at - self._next_at) < CONTINUOUS_S:
                at = self._next_at
            self._next_at = at + block.size / rate
            samples = self._guard_rate(block)
            if not samples.size:
                continue
            level = _db(samples)
            if level > FAR_AUDIBLE_DB:
                self._far_loud_until = self._clock() + ECHO_WINDOW_S
            self._far_levels.append((self._clock(), level))
            # Earlier than stamped: the two streams' clocks differ by an unknown constant, and the
            # guard looks for the echo after its reference only.
            self.guard.reference(samples, at=at - REFERENCE_LEAD_S)
            if self._apm is not None:
                self._reverse(samples)

    def _reverse(self, samples: Float32Array) -> None:
        assert self._apm is not None
        self._far = np.concatenate([self._far, samples])
        whole = self._far.size // FRAME * FRAME
        for offset in range(0, whole, FRAME):
            frame = self._rtc.AudioFrame(
                int16_samples(self._far[offset : offset + FRAME]).tobytes(), RATE, 1, FRAME
            )
            self._apm.process_reverse_stream(frame)
        self._far = self._far[whole:]

    def _cancel(self, block: Float32Array) -> Float32Array:
        """AEC3's output for the block: same length, up to 10 ms later."""
        assert self._apm is not None
        self._near = np.concatenate([self._near, block])
        whole = self._near.size // FRAME * FRAME
        done = [self._out]
        for offset in range(0, whole, FRAME):
            frame = self._rtc.AudioFrame(
                int16_samples(self._near[offset : offset + FRAME]).tobytes(), RATE, 1, FRAME
            )
            self._apm.process_stream(frame)
            done.append(float32_samples(np.frombuffer(bytes(frame.data), dtype="<i2")))
        self._near = self._near[whole:]
        out = np.concatenate(done)
        if out.size < block.size:
            out = np.concatenate([np.zeros(block.size - out.size, np.float32), out])
        self._out = out[block.size :]
        return out[: block.size]

    def capture(self, block: Float32Array, at: float) -> Float32Array:
        """The microphone block captured at monotonic time ``at``: echo-cancelled, or silence when it is
        the answer's echo."""
        self.blocks += 1
        verdict = self.guard.process(AudioChunk(block, RATE, timestamp=at))
        out = self._cancel(block) if self._apm is not None else block
        # On the processing clock, not the streams' (which can drift apart under load): the reference
        # and the microphone are taken together, so "just played" means the echo may be in this block.
        playing = self._clock() < self._far_loud_until
        taken = playing and self._apm is not None and _db(out) < _db(block) - GATE_DB
        level = _db(block)
        loudest = self._loudest() if playing else -120.0
        if taken:  # an echo-only block: learn how loud the answer comes back
            self.converged += 1
            gain = level - loudest
            self._echo_gain_db = gain if self._echo_gain_db is None else 0.9 * self._echo_gain_db + 0.1 * gain
        if verdict.echo or taken or (playing and self._under_echo(level, loudest)):
            self.echo_blocks += 1
            return np.zeros_like(block)
        return out

    def _loudest(self) -> float:
        """The loudest reference (dBFS) whose echo may be in the block at hand."""
        since = self._clock() - ECHO_WINDOW_S
        self._far_levels = [(t, db) for t, db in self._far_levels if t > since]
        return max((db for _, db in self._far_levels), default=-120.0)

    def _under_echo(self, level: float, loudest: float) -> bool:
        """While the answer plays, a block no louder than its echo can be is not let through.

        Until AEC3 has learnt the room (:data:`CONVERGED_BLOCKS`), the echo can be as loud as the answer
        itself (half duplex: only a voice louder than the answer gets through); then it is as loud as
        learnt from the blocks AEC3 took, plus :data:`DOUBLE_TALK_DB` (a double-talk detector in the
        manner of Geigel's): a person talking over the answer is louder than its echo."""
        if self.converged < CONVERGED_BLOCKS or self._echo_gain_db is None:
            return level < loudest
        return level < loudest + self._echo_gain_db + DOUBLE_TALK_DB


def _db(samples: Float32Array) -> float:
    return float(10 * np.log10(np.mean(np.square(samples, dtype=np.float64)) + 1e-12))


class _Linear:
    """Streaming linear-interpolation resampler: block boundaries leave no seams (an FFT resampler on
    20 ms blocks would put one every block into the reference)."""

    def __init__(self, src: int, dst: int) -> None:
        self.src = src
        self.step = src / dst
        self._prev = np.zeros(1, np.float32)
        self._t = 1.0  # the next output sample's position, where the previous block's last sample is 0

    def __call__(self, block: Float32Array) -> Float32Array:
        if self.step == 1.0:
            return block
        data = np.concatenate([self._prev, block])
        last = data.size - 1
        count = int(np.floor((last - self._t) / self.step)) + 1 if last >= self._t else 0
        positions = self._t + self.step * np.arange(count)
        out: Float32Array = np.interp(positions, np.arange(data.size), data).astype(np.float32)
        self._t += self.step * count - last
        self._prev = data[-1:]
        return out


def open_echo_canceller() -> EchoCanceller:
    """AEC3 and the guard, or the guard alone when the ``livekit`` wheel is missing."""
    try:
        return EchoCanceller(importlib.import_module("livekit.rtc"))
    except Exception as exc:  # a missing wheel or one that fails to load its native library
        log.info("WebRTC echo canceller unavailable (%s): the echo guard alone", exc)
        return EchoCanceller(None)


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
