"""A conversation from and to WAV files: ``--input FILE.wav`` and ``--output FILE.wav``.

:class:`WavSource` sends the file as the microphone would, in 20 ms blocks, followed by silence (so the
last turn can end). In real time each block goes out when its time comes. With ``fast`` the blocks go
out as fast as the server takes them, except that while the assistant holds the floor (from the end of a
turn until its answer is done) the source waits: no waiting for the file's silences, and no barge-ins.

:class:`WavSink` writes what the assistant said on the conversation's timeline (the source's clock), so
the output file lines up with the input: an answer starts where it would have started playing, an
interrupted answer stops where it was cut off. It counts what has "played" (audio before the clock) per
turn, for ``playback`` reports, like the speaker does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aria.core.audio import read_wav, resample, write_wav
from aria.talk.devices import BLOCK_S, IN_RATE, level

__all__ = ["WavSink", "WavSource"]

Float32Array = npt.NDArray[np.float32]
SYNC_EVERY_S = 0.2


class WavSource:
    """A WAV file as the microphone (any rate and channel count; resampled to 16 kHz mono)."""

    def __init__(self, path: str | Path, *, fast: bool = False, tail_s: float = 2.0) -> None:
        samples, rate = read_wav(path)
        self.audio = resample(samples, rate, IN_RATE)
        self.fast = fast
        self.tail_s = tail_s
        self.level = 0.0
        #: Seconds of the file sent: the conversation's timeline.
        self.clock_s = 0.0
        #: Set once the file and its tail of silence have been sent.
        self.exhausted = asyncio.Event()
        #: In fast mode, blocks wait while this is clear (the assistant holds the floor).
        self.floor = asyncio.Event()
        self.floor.set()
        #: Fast mode: waits until the server has received everything sent so far (a ping's pong), every
        #: :data:`SYNC_EVERY_S` of audio, so the input never runs far ahead of what the server heard.
        self.sync: Callable[[], Awaitable[None]] | None = None

    @property
    def duration_s(self) -> float:
        return self.audio.size / IN_RATE

    async def aclose(self) -> None:
        return None

    async def frames(self) -> AsyncIterator[tuple[float, Float32Array]]:
        """(monotonic time, 20 ms block at 16 kHz), like the microphone's."""
        loop = asyncio.get_running_loop()
        block = int(IN_RATE * BLOCK_S)
        total = self.audio.size + int(self.tail_s * IN_RATE)
        started = loop.time()
        sent_s = 0.0
        for offset in range(0, total, block):
            chunk = self.audio[offset : offset + block]
            if chunk.size < block:
                chunk = np.concatenate([chunk, np.zeros(block - chunk.size, np.float32)])
            if self.fast:
                await self.floor.wait()
                if self.sync is not None and offset % int(SYNC_EVERY_S * IN_RATE) < block:
                    await self.sync()
            else:
                await asyncio.sleep(max(0.0, started + sent_s - loop.time()))
            self.level = level(chunk)
            sent_s += BLOCK_S
            self.clock_s += BLOCK_S
            yield time.monotonic(), chunk
        self.exhausted.set()
        while True:  # silence until the session ends
            if self.fast:
                await self.floor.wait()
                await asyncio.sleep(0.005)
            else:
                await asyncio.sleep(max(0.0, started + sent_s - loop.time()))
            sent_s += BLOCK_S
            self.clock_s += BLOCK_S
            yield time.monotonic(), np.zeros(block, np.float32)


class WavSink:
    """The assistant's audio on the conversation's timeline, written as a WAV file on :meth:`close`."""

    def __init__(self, path: str | Path, *, rate: int, clock: Callable[[], float]) -> None:
        self.path = Path(path)
        self.rate = rate
        self.clock = clock
        self.level = 0.0
        self.first_audio_at: float | None = None
        self._audio = np.zeros(0, np.float32)
        #: Per turn: (start, end) sample positions of its audio on the timeline.
        self._spans: dict[str | None, list[tuple[int, int]]] = {}

    def _now(self) -> int:
        return int(self.clock() * self.rate)

    @property
    def end_s(self) -> float:
        return self._audio.size / self.rate

    def play(self, samples: Float32Array, turn_id: str | None) -> None:
        start = max(self._now(), self._audio.size)
        if start > self._audio.size:
            self._audio = np.concatenate([self._audio, np.zeros(start - self._audio.size, np.float32)])
        self._audio = np.concatenate([self._audio, samples.astype(np.float32)])
        self._spans.setdefault(turn_id, []).append((start, self._audio.size))
        self.level = level(samples)
        if self.first_audio_at is None:
            self.first_audio_at = asyncio.get_running_loop().time()

    def flush(self) -> None:
        """Drop what has not "played" yet: the audio after the timeline's present."""
        now = self._now()
        if now < self._audio.size:
            self._audio = self._audio[: max(now, 0)]
            for spans in self._spans.values():
                spans[:] = [(a, min(b, now)) for a, b in spans if a < now]

    def pause(self, paused: bool) -> None:
        # A file has no listener to wait for: a held answer keeps its place on the timeline.
        return None

    def played_ms(self, turn_id: str | None) -> float:
        now = self._now()
        played = sum(max(0, min(b, now) - a) for a, b in self._spans.get(turn_id, []))
        return 1000.0 * played / self.rate

    def buffered_s(self) -> float:
        return max(0.0, self.end_s - self.clock())

    def take_played(self) -> list[tuple[float, Float32Array]]:
        return []

    def latency_s(self) -> float:
        return 0.0

    def start(self) -> None:
        return None

    async def aclose(self) -> None:
        write_wav(self.path, self._audio, self.rate)
