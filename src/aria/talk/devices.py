"""Microphone and speakers through ``sounddevice`` (PortAudio), with device loss handled.

:class:`Microphone` captures 16 kHz mono float32 blocks of 20 ms; :class:`Speaker` plays the answer audio
at the server's output rate from a buffer that can be flushed (barge-in) or paused, counts what it has
played per turn (for ``playback`` reports) and keeps a copy of every block it played, silence included,
for the echo canceller's reference.

Device loss: PortAudio says little when a device disappears (with PulseAudio the stream just stops
calling back for a while). Each end has a watchdog: once a stream calls back regularly (after
:data:`ARM_AFTER` blocks), a gap of more than ``stall_s`` in its callbacks, or the stream ending by
itself, counts as the device gone; the end is reopened on the system default device and ``announce``
says so. The conversation goes on. The speaker watches only for its stream ending by default
(``stall_s=None``): PulseAudio moves an output stream whose sink is removed to the default sink by
itself, with no pause to see, while output streams do pause for a moment when another device comes or
goes, which a stall watch would take for a loss.

``sounddevice`` is imported only here and only when needed: it fails to import (``OSError``) on a
machine without the PortAudio library, which :func:`describe_devices` reports instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.core.audio import resample

__all__ = ["BLOCK_S", "IN_RATE", "Microphone", "Speaker", "describe_devices", "level", "load_sounddevice"]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
IN_RATE = 16000
BLOCK_S = 0.02
#: Captured blocks kept while the sender is behind; older ones are dropped.
MAX_QUEUED = 50
#: Callbacks before the watchdog is armed: a stream starting on PulseAudio (ALSA's pulse plugin) calls
#: back a few times, then not at all for up to about 2 s, then regularly.
ARM_AFTER = 25


def load_sounddevice() -> Any:
    """The ``sounddevice`` module; ``OSError``/``ImportError`` with the reason when it cannot load."""
    return importlib.import_module("sounddevice")


def describe_devices() -> tuple[str, bool]:
    """A report of the audio devices PortAudio finds, and whether any input and output exist. Never
    raises: on a machine without audio the report says why."""
    try:
        sd = load_sounddevice()
    except ImportError:
        return "sounddevice is not installed: pip install 'aria-assistant[talk]'", False
    except OSError as exc:
        return f"no audio system: the PortAudio library could not be loaded ({exc}); " + (
            "install it (Debian: apt install libportaudio2)"
        ), False
    try:
        devices = list(sd.query_devices())
        default_in, default_out = sd.default.device
    except Exception as exc:  # PortAudio errors carry no stable type across versions
        return f"PortAudio found no usable audio system: {exc}", False
    if not devices:
        return "no audio devices found (no sound card, and no PulseAudio/PipeWire server reachable)", False
    lines = ["audio devices (use the name or the number with --input / --output):"]
    for index, dev in enumerate(devices):
        marks = []
        if index == default_in:
            marks.append("default input")
        if index == default_out:
            marks.append("default output")
        lines.append(
            f"  {index:>2} {dev['name']!r}: {dev['max_input_channels']} in, {dev['max_output_channels']} out,"
            f" {dev['default_samplerate']:.0f} Hz" + (f" ({', '.join(marks)})" if marks else "")
        )
    has_in = any(d["max_input_channels"] > 0 for d in devices)
    has_out = any(d["max_output_channels"] > 0 for d in devices)
    if not has_in:
        lines.append("no input device: speak by typing, or use --input FILE.wav")
    if not has_out:
        lines.append("no output device: answers are shown as text, or use --output FILE.wav")
    return "\n".join(lines), has_in and has_out


def level(block: Float32Array) -> float:
    """A meter reading in 0..1: the block's RMS level from -60 dBFS (0) to 0 dBFS (1)."""
    if block.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    if rms <= 1e-6:
        return 0.0
    return float(min(1.0, max(0.0, (20 * np.log10(rms) + 60) / 60)))


class _Clock:
    """When a stream's blocks happen, from its sample count: smooth where callback times jitter.

    A block's time is an anchor plus the samples before it; the anchor is the smallest ``time of the
    block - samples before it`` of the last second (callbacks come late, never early), so jitter drops
    out and a stall (the stream restarting, PulseAudio catching up) moves the anchor within a second."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._count = 0
        self._anchors: deque[float] = deque(maxlen=max(1, int(1 / BLOCK_S)))

    def stamp(self, frames: int, offset: float = 0.0) -> float:
        """The time of the block's first sample: ``offset`` from the callback (PortAudio's own
        capture or play time for it), smoothed by the sample count."""
        self._anchors.append(time.monotonic() + offset - self._count / self.rate)
        at = min(self._anchors) + self._count / self.rate
        self._count += frames
        return at


def _offset(when: Any, field: str) -> float:
    """PortAudio's time of the block's first sample (ADC or DAC) relative to the callback, in seconds;
    0 where the host API does not say (or says nonsense)."""
    try:
        value = float(getattr(when, field)) - float(when.currentTime)
    except (AttributeError, TypeError, ValueError):
        return 0.0
    return value if abs(value) < 1.0 else 0.0


def _device_arg(device: str | None) -> int | str | None:
    if device is None or device == "":
        return None
    return int(device) if device.isdigit() else device


class _Watched:
    """A stream with a watchdog: reopened on the default device when its callbacks stop."""

    kind = "audio"

    def __init__(self, device: str | None, announce: Callable[[str], None], stall_s: float | None) -> None:
        self.sd = load_sounddevice()
        self.device = device
        self.announce = announce
        self.stall_s = stall_s
        self.level = 0.0
        self.switches = 0
        self._stream: Any = None
        self._last_callback = 0.0
        self._ended = threading.Event()
        self._generation = 0
        self._callbacks = 0
        #: The longest gap between two callbacks seen (seconds), for diagnostics.
        self.max_gap_s = 0.0
        self._watchdog: asyncio.Task[None] | None = None

    def _open_stream(self, device: int | str | None) -> Any:
        raise NotImplementedError

    def _touch(self) -> None:
        now = time.monotonic()
        if self._callbacks >= ARM_AFTER:
            self.max_gap_s = max(self.max_gap_s, now - self._last_callback)
        self._last_callback = now
        self._callbacks += 1

    def _finished(self, generation: int) -> Callable[[], None]:
        """The stream's ``finished_callback``: only the current stream's end counts (closing an old
        stream calls it too)."""

        def finished() -> None:
            if generation == self._generation:
                self._ended.set()

        return finished

    def start(self) -> None:
        self._stream = self._open_stream(_device_arg(self.device))
        self._stream.start()
        self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name=f"{self.kind}-watchdog")

    @property
    def name(self) -> str:
        return str(self._stream.device) if self._stream is not None else "?"

    def latency_s(self) -> float:
        with contextlib.suppress(Exception):
            return float(self._stream.latency)
        return 0.0

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep((self.stall_s or 1.0) / 4)
            started = self.stall_s is not None and self._callbacks > ARM_AFTER
            stalled = started and time.monotonic() - self._last_callback > (self.stall_s or 0.0)
            if stalled or self._ended.is_set():
                await self._switch_to_default("stopped responding" if stalled else "ended")

    async def _switch_to_default(self, why: str) -> None:
        old, lost = self._stream, self.device or "the default device"
        self._stream, self._last_callback, self._callbacks = None, 0.0, 0
        self._generation += 1
        await asyncio.to_thread(_close, old)
        self._ended.clear()
        self.device, self.switches = None, self.switches + 1
        try:
            self._stream = await asyncio.to_thread(self._open_stream, None)
            self._stream.start()
        except Exception as exc:
            self.announce(f"{self.kind} {lost!r} {why} and the system default cannot be opened: {exc}")
            self._stream = None
            await asyncio.sleep(self.stall_s or 1.0)
            self._ended.set()  # try again on the next watch
            return
        log.warning(
            "%s %r %s (longest callback gap %.2f s): reopened on the default",
            self.kind,
            lost,
            why,
            self.max_gap_s,
        )
        self.announce(f"{self.kind} {lost!r} {why}: switched to the system default")

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        stream, self._stream = self._stream, None
        await asyncio.to_thread(_close, stream)


def _close(stream: Any) -> None:
    if stream is None:
        return
    with contextlib.suppress(Exception):
        stream.abort()
    with contextlib.suppress(Exception):
        stream.close()


class Microphone(_Watched):
    """16 kHz mono capture in 20 ms blocks (resampled when the device cannot run at 16 kHz)."""

    kind = "microphone"

    def __init__(self, device: str | None, announce: Callable[[str], None], *, stall_s: float = 1.0) -> None:
        super().__init__(device, announce, stall_s)
        self._queue: asyncio.Queue[tuple[float, Float32Array]] = asyncio.Queue(MAX_QUEUED)
        self._loop = asyncio.get_running_loop()

    def _open_stream(self, device: int | str | None) -> Any:
        try:
            return self._make(device, IN_RATE)
        except Exception:  # the device cannot run at 16 kHz: capture at its own rate and resample
            rate = int(self.sd.query_devices(device, "input")["default_samplerate"])
            return self._make(device, rate)

    def _make(self, device: int | str | None, rate: int) -> Any:
        clock = _Clock(rate)

        def callback(indata: Any, frames: int, when: Any, status: Any) -> None:
            self._touch()
            block = np.array(indata[:, 0], dtype=np.float32)
            if rate != IN_RATE:
                block = resample(block, rate, IN_RATE)
            at = clock.stamp(frames, _offset(when, "inputBufferAdcTime"))  # when it was captured
            self._loop.call_soon_threadsafe(self._put, (at, block))

        return self.sd.InputStream(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="float32",
            blocksize=int(rate * BLOCK_S),
            latency="low",
            callback=callback,
            finished_callback=self._finished(self._generation),
        )

    def _put(self, item: tuple[float, Float32Array]) -> None:
        self.level = level(item[1])
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(item)

    async def frames(self) -> AsyncIterator[tuple[float, Float32Array]]:
        """(monotonic capture time of the first sample, 20 ms block at 16 kHz)."""
        while True:
            yield await self._queue.get()


class Speaker(_Watched):
    """Plays answer audio back to back from a buffer; flush drops it, pause holds it."""

    kind = "speaker"

    def __init__(
        self, device: str | None, announce: Callable[[str], None], *, rate: int, stall_s: float | None = None
    ) -> None:
        super().__init__(device, announce, stall_s)
        self.rate = rate
        self._lock = threading.Lock()
        self._queue: deque[tuple[str | None, Float32Array]] = deque()
        self._paused = False
        self._played: dict[str | None, int] = {}
        #: Every block played (silence included), for the echo canceller; taken by :meth:`take_played`.
        self._reference: deque[tuple[float, Float32Array]] = deque(maxlen=500)
        self.first_audio_at: float | None = None
        self._clock = _Clock(rate)

    def _open_stream(self, device: int | str | None) -> Any:
        self._clock = _Clock(self.rate)
        return self.sd.OutputStream(
            device=device,
            samplerate=self.rate,
            channels=1,
            dtype="float32",
            blocksize=int(self.rate * BLOCK_S),
            latency="low",
            callback=self._callback,
            finished_callback=self._finished(self._generation),
        )

    def _callback(self, outdata: Any, frames: int, when: Any, status: Any) -> None:
        self._touch()
        out = np.zeros(frames, np.float32)
        filled = 0
        with self._lock:
            while filled < frames and self._queue and not self._paused:
                turn, block = self._queue[0]
                take = min(frames - filled, block.size)
                out[filled : filled + take] = block[:take]
                filled += take
                self._played[turn] = self._played.get(turn, 0) + take
                if take == block.size:
                    self._queue.popleft()
                else:
                    self._queue[0] = (turn, block[take:])
            self._reference.append((self._clock.stamp(frames, _offset(when, "outputBufferDacTime")), out))
        if filled and self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        outdata[:, 0] = out
        self.level = level(out)

    def play(self, samples: Float32Array, turn_id: str | None) -> None:
        with self._lock:
            self._queue.append((turn_id, samples))

    def flush(self) -> None:
        with self._lock:
            self._queue.clear()

    def pause(self, paused: bool) -> None:
        with self._lock:
            self._paused = paused

    def played_ms(self, turn_id: str | None) -> float:
        with self._lock:
            return 1000.0 * self._played.get(turn_id, 0) / self.rate

    def buffered_s(self) -> float:
        with self._lock:
            return sum(block.size for _, block in self._queue) / self.rate

    def take_played(self) -> list[tuple[float, Float32Array]]:
        """The blocks played since the last call, with the monotonic time each starts to sound."""
        with self._lock:
            blocks = list(self._reference)
            self._reference.clear()
        return blocks
