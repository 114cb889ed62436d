"""Echo guard: keep the assistant's own answer, played by a client without echo cancellation and heard
again by its microphone, from reaching the VAD as the person's speech.

The server knows what it sent. :meth:`EchoGuard.reference` takes the answer audio as it goes out, with
the monotonic time its first sample is due to play; :meth:`EchoGuard.process` takes each microphone block
(before the VAD) and says whether the block is explained by that audio's echo::

    guard.reference(samples, at=play_time)        # whenever answer audio is sent
    verdict = guard.process(mic_chunk)            # for every microphone block, before the VAD
    vad.process(silence if verdict.echo else verdict.audio)

How it decides, per block:

1. *Delay*: a few times a second (not every block) GCC-PHAT cross-correlates the last second of
   microphone audio with the reference over ``0..max_delay_s`` of lag (one FFT of about 2 s); a peak well
   above the rest sets the delay. Until one is found, and for a client whose echo never correlates,
   see 3.
2. *Gate*: the reference block at that delay is scaled by its least-squares gain and subtracted from the
   microphone block. When the residual is well below the microphone energy, or no louder than the
   microphone's noise floor (a sliding minimum), while the predicted echo is audible, the block is
   echo. A person talking over the echo leaves their own voice in the residual: not echo.
3. *Before a delay is known* (the first ~0.3 s of the first answer), a block is echo when it is no
   louder than the loudest reference block within the delay range times the learnt echo gain (+6 dB;
   -4 dB before any is learnt). When a second of loud reference finds no correlation, the client is
   taken to cancel its own echo and nothing is held back.

``aec=True`` also runs WebRTC's AEC3 from the ``livekit`` wheel (:mod:`aria.pipeline.aec`) on the
microphone, fed the reference 40 ms ahead of its echo (by the estimated delay); the verdict's ``audio``
is then its output (delayed by up to 10 ms). The gate decides either way. It is off by default (``None``
or ``False``): on the test corpus AEC3 removed 20-37 dB of echo, but in double talk its suppressor cut
into the person's voice and barge-in recall fell from 27/27 to 22/27.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aria.core.audio import resample
from aria.errors import InvalidInput
from aria.pipeline.aec import Canceller, open_canceller
from aria.types import AudioChunk

__all__ = ["EchoGuard", "EchoVerdict", "estimate_delay"]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

_WINDOW_S = 1.0  # microphone audio correlated per delay estimate
_EVERY_S = 0.25  # how often the delay is re-estimated once found (0.1 s until then)
_CONFIDENT = 12.0  # GCC-PHAT peak over the RMS of the other lags (noise alone gives 6-9)
_RESIDUAL = 0.2  # residual / microphone energy under which a block is echo (-7 dB)
#: Before any echo gain is learnt, a block this far below the loudest reference (-4 dB) may be echo: a
#: loudspeaker-to-microphone path loses at least that much, and a person as loud as the answer is not.
_UNLEARNT_GAIN = 0.4
_NOISE_MARGIN = 3.0  # residual no louder than the noise floor times this (+5 dB) is echo too
_FLOOR_MIN_BLOCKS = 25  # ~0.5 s of 20 ms blocks before the floor counts
_FLOOR_MAX = 1e-3  # -30 dBFS: quieter than any voice worth hearing, louder than a quiet room
_FLOOR_S = 2.0  # sliding window of the noise-floor minimum
_SILENT = 1e-9  # energy (mean square) treated as silence (-90 dBFS)
_NO_ECHO_AFTER = 4  # unconfident estimates over loud reference before the client counts as echo-free
_AEC_LEAD_MS = 40  # the reference goes to AEC3 this much before its echo
_KEEP_S = 120.0  # most reference audio kept (sent ahead of time included)


@dataclass(frozen=True, slots=True)
class EchoVerdict:
    """What :meth:`EchoGuard.process` decided about one microphone block."""

    #: The microphone block: echo-cancelled when a canceller runs, else the block as given.
    audio: AudioChunk
    #: True when the block is explained by the answer's echo: it must not count as the person's speech.
    echo: bool
    #: Energy left after subtracting the predicted echo, relative to the block's (dB); None when the
    #: guard is inactive or the delay is not known yet.
    residual_db: float | None = None
    #: Echo return loss enhancement of the canceller (block in over block out, dB); None without one.
    erle_db: float | None = None
    #: Current delay estimate between the reference and the microphone (seconds), None when unknown.
    delay_s: float | None = None


def estimate_delay(mic: Float32Array, ref: Float32Array, max_lag: int) -> tuple[int, float]:
    """GCC-PHAT: the lag ``d`` in ``0..max_lag`` for which ``mic[n]`` best matches ``ref[n + max_lag - d]``
    (``ref`` starts ``max_lag`` samples before ``mic`` and is ``max_lag`` longer), and its confidence
    (the peak over the RMS of the correlation at the other lags)."""
    size = mic.size + ref.size
    spec = np.conj(np.fft.rfft(mic, size)) * np.fft.rfft(ref, size)
    magnitude = np.abs(spec)
    spec /= magnitude + 1e-3 * float(magnitude.max()) + 1e-20
    corr = np.fft.irfft(spec, size)[: max_lag + 1]
    peak = int(np.argmax(corr))
    rest = np.concatenate([corr[: max(0, peak - 16)], corr[peak + 17 :]])
    spread = float(np.sqrt(np.mean(rest**2))) if rest.size else 0.0
    confidence = float(corr[peak]) / spread if spread > 0 else 0.0
    return max_lag - peak, confidence


class _Reference:
    """The answer audio on an absolute sample timeline (``round(monotonic time * rate)``)."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._parts: deque[tuple[int, Float32Array]] = deque()
        self.end = 0  # one past the last sample sent

    def add(self, start: int, samples: Float32Array) -> None:
        self._parts.append((start, samples))
        self.end = max(self.end, start + samples.size)
        total = sum(part.size for _, part in self._parts)
        while total > self._keep and len(self._parts) > 1:
            total -= self._parts.popleft()[1].size

    def forget_before(self, index: int) -> None:
        while self._parts and self._parts[0][0] + self._parts[0][1].size <= index:
            self._parts.popleft()

    def gather(self, start: int, count: int) -> Float32Array:
        """Samples ``start .. start + count`` (zeros where nothing was sent; later parts win)."""
        out = np.zeros(count, np.float32)
        stop = start + count
        for begin, part in self._parts:
            if begin >= stop:
                break
            lo, hi = max(begin, start), min(begin + part.size, stop)
            if lo < hi:
                out[lo - start : hi - start] = part[lo - begin : hi - begin]
        return out

    def clear(self) -> None:
        self._parts.clear()
        self.end = 0


class EchoGuard:
    """Tell the answer's echo from the person's voice, one microphone block at a time (synchronous, no
    I/O: call it inline before the VAD). See the module docstring for how it decides."""

    def __init__(
        self,
        sample_rate: int = 16000,
        max_delay_s: float = 0.5,
        *,
        aec: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sample_rate <= 0:
            raise InvalidInput(f"sample_rate must be positive, got {sample_rate}")
        if not 0.0 < max_delay_s <= 2.0:
            raise InvalidInput(f"max_delay_s must be in (0, 2] seconds, got {max_delay_s}")
        self.sample_rate = sample_rate
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._max_lag = round(max_delay_s * sample_rate)
        self._window = round(_WINDOW_S * sample_rate)
        self._ref = _Reference(round(_KEEP_S * sample_rate))
        self._canceller: Canceller | None = open_canceller(sample_rate) if aec else None
        if aec and self._canceller is None:
            raise InvalidInput("aec=True needs the WebRTC canceller: pip install 'aria-assistant[aec]'")
        self._floor: deque[float] = deque(maxlen=max(1, round(_FLOOR_S * 50)))
        self.reset()

    @property
    def aec(self) -> bool:
        """Whether the WebRTC canceller runs."""
        return self._canceller is not None

    @property
    def active(self) -> bool:
        """Whether answer audio was sent recently enough that its echo may still come back."""
        return self._ref.end > 0 and self._clock() * self.sample_rate < self._ref.end + self._max_lag

    @property
    def delay_s(self) -> float | None:
        return None if self._delay is None else self._delay / self.sample_rate

    def reset(self) -> None:
        """Forget the reference, the delay, the echo gain and the noise floor."""
        self._ref.clear()
        self._delay: int | None = None
        self._candidate: int | None = None
        self._echo_free = False
        self._misses = 0
        self._gain = 0.0  # learnt echo power gain (mic echo energy / reference energy), 0: unknown
        self._mic_next: int | None = None
        self._history = np.zeros(self._window, np.float32)
        self._history_end = 0
        self._next_estimate = 0
        self._floor.clear()
        if self._canceller is not None:
            self._canceller.reset()

    def reference(self, samples: Float32Array, at: float | None = None) -> None:
        """Answer audio as it goes out (mono float32 at ``sample_rate``), its first sample due to play at
        monotonic time ``at``; ``None``: right after the audio sent before it, or now if that has played."""
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not data.size:
            return
        now = round(self._clock() * self.sample_rate)
        start = max(now, self._ref.end) if at is None else round(at * self.sample_rate)
        self._ref.add(start, data.copy())

    def process(self, chunk: AudioChunk) -> EchoVerdict:
        """Judge one microphone block (see the module docstring)."""
        mono = chunk.to_mono().as_float32()
        rate = chunk.sample_rate
        mic = mono if rate == self.sample_rate else resample(mono, rate, self.sample_rate)
        n = mic.size
        start = round(chunk.timestamp * self.sample_rate)
        if self._mic_next is not None and abs(start - self._mic_next) <= self.sample_rate // 10:
            start = self._mic_next  # a continuous stream: ignore timestamp jitter under 100 ms
        elif self._mic_next is not None:
            self._history[:] = 0.0  # a gap: the history no longer lines up
        self._mic_next = start + n
        energy = float(np.dot(mic, mic)) / max(n, 1)
        if self._ref.end <= start - self._max_lag or not n:  # no reference whose echo could be here
            self._floor.append(energy)
            self._ref.forget_before(start - self._max_lag - self._window)
            return EchoVerdict(chunk, False, delay_s=self.delay_s)
        self._remember(mic, start + n)
        if start + n >= self._next_estimate:
            self._estimate(start + n)
        audio, erle = self._cancel(chunk, mic, start) if rate == self.sample_rate else (chunk, None)
        echo, residual = self._judge(mic, start, energy)
        # A perfect fit (an all-zero or exactly scaled block) leaves no residual at all: floor it.
        ratio = None if residual is None else max(residual, _SILENT) / max(energy, _SILENT)
        residual_db = None if ratio is None else 10 * math.log10(ratio)
        return EchoVerdict(audio, echo, residual_db, erle, self.delay_s)

    # -- internals --------------------------------------------------------------------------------

    def _remember(self, mic: Float32Array, end: int) -> None:
        n = min(mic.size, self._window)
        self._history[:-n] = self._history[n:]
        self._history[-n:] = mic[-n:]
        self._history_end = end

    def _estimate(self, end: int) -> None:
        found = self._delay is not None
        self._next_estimate = end + round((_EVERY_S if found else 0.1) * self.sample_rate)
        ref = self._ref.gather(end - self._window - self._max_lag, self._window + self._max_lag)
        if float(np.dot(ref, ref)) / ref.size < 1e-5 or float(np.dot(self._history, self._history)) == 0.0:
            return  # not enough answer (or microphone) audio in the window to tell anything
        lag, confidence = estimate_delay(self._history, ref, self._max_lag)
        if confidence < _CONFIDENT:
            self._candidate = None
            if self._delay is None:
                self._misses += 1
                self._echo_free = self._misses >= _NO_ECHO_AFTER
            return
        self._misses = 0
        near = self.sample_rate // 500  # 2 ms
        if self._delay is not None and abs(lag - self._delay) <= near:
            self._delay, self._candidate = lag, None
        elif self._candidate is not None and abs(lag - self._candidate) <= near:
            # a new delay counts once two estimates in a row agree on it (one can be a fluke)
            log.debug("echo delay %.1f ms (confidence %.1f)", 1000 * lag / self.sample_rate, confidence)
            self._delay, self._candidate, self._echo_free = lag, None, False
        else:
            self._candidate = lag
            self._next_estimate = end + self.sample_rate // 10

    def _noise(self) -> float:
        """The microphone's noise floor: the quietest block of the last ``_FLOOR_S``, once there are
        enough blocks to tell (else none: the first blocks of a voice are not its noise), and never
        above ``_FLOOR_MAX`` (a floor that loud is a voice, not noise)."""
        if len(self._floor) < _FLOOR_MIN_BLOCKS:
            return 0.0
        return min(min(self._floor), _FLOOR_MAX)

    def _judge(self, mic: Float32Array, start: int, energy: float) -> tuple[bool, float | None]:
        """(is echo, residual energy or None when no delay is known)."""
        n = mic.size
        if self._delay is None:
            self._floor.append(energy)
            if self._echo_free:
                return False, None
            ref = self._ref.gather(start - self._max_lag, n + self._max_lag)
            sums = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
            loudest = float(np.max(sums[n:] - sums[:-n])) / n
            gain = 4.0 * self._gain if self._gain > 0 else _UNLEARNT_GAIN
            return energy <= gain * loudest + _NOISE_MARGIN * self._noise(), None
        ref = self._ref.gather(start - self._delay, n)
        ref_energy = float(np.dot(ref, ref))
        if ref_energy / n < _SILENT:
            self._floor.append(energy)
            return False, None
        scale = float(np.dot(mic, ref)) / ref_energy
        residual = mic - scale * ref
        left = float(np.dot(residual, residual)) / n
        self._floor.append(left)
        echo_energy = scale * scale * ref_energy / n
        noise = self._noise()
        explained = left <= _RESIDUAL * energy or left <= _NOISE_MARGIN * noise
        echo = explained and echo_energy > 0.25 * noise
        if echo and left <= _RESIDUAL * energy:
            gain = echo_energy / (ref_energy / n)
            self._gain = gain if self._gain == 0 else 0.9 * self._gain + 0.1 * gain
        return echo, left

    def _cancel(self, chunk: AudioChunk, mic: Float32Array, start: int) -> tuple[AudioChunk, float | None]:
        if self._canceller is None:
            return chunk, None
        # AEC3 wants the played audio a little before its echo: fed exactly aligned, it diverged after
        # ~10 s here (35 dB of cancellation down to 1-2 dB); 40 ms ahead it held 33-37 dB throughout.
        ahead = (self._delay or 0) - self.sample_rate * _AEC_LEAD_MS // 1000
        out = self._canceller.process(mic, self._ref.gather(start - ahead, mic.size))
        before, after = float(np.dot(mic, mic)), float(np.dot(out, out))
        erle = 10 * math.log10(max(before, _SILENT) / max(after, _SILENT))
        return AudioChunk(out, self.sample_rate, 1, chunk.timestamp, chunk.is_speech), erle
