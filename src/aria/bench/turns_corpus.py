"""The turn-taking bench's world: the spoken corpus, an oracle STT, a simulated loudspeaker and microphone.

* :func:`speak` makes a person's utterance at run time with espeak (voice and rate given) and places its
  words in time from espeak's word events, so the true start and end of every word are known.
* :class:`OracleSTT` is an STT engine that knows the script (:class:`Script`): for each stretch of audio
  it is given it returns the words whose middle lies in that stretch, so the bench measures turn-taking,
  not recognition.
* :class:`SimulatedPlayback` is the pipeline's :class:`~aria.pipeline.voice.Playback`: a play-head that
  plays each turn's answer audio back to back in real time with no lead, pauses and stops when told,
  gives each block to the echo guard as it starts to play, and (optionally) sends it back into the
  microphone as echo (gain, delay) with its words added to the script.
* :class:`Mic` mixes the person's scheduled utterances, the echo and noise into 32 ms blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from aria.engines.base import Capabilities, EngineHealth, EngineKind
from aria.engines.tts.espeak import EspeakTTS
from aria.pipeline.echo import EchoGuard
from aria.types import AudioChunk, Transcription

__all__ = [
    "BACKCHANNELS",
    "BARGE_INS",
    "COMPLETE",
    "PAUSED",
    "RATE",
    "VOICES",
    "Echo",
    "Mic",
    "OracleSTT",
    "Script",
    "SimulatedPlayback",
    "Spoken",
    "cough",
    "norm_words",
    "speak",
]

RATE = 16000
Float32Array = npt.NDArray[np.float32]
VOICES = ("en", "en-us", "en-gb-x-rp", "en-us+f3")

#: Questions with a mid-sentence pause between the two parts.
PAUSED = (
    ("I would like to know,", "the capital city of France."),
    ("Can you tell me", "how far it is to the moon?"),
    ("What I really want is", "a simple recipe for pancakes."),
    ("Please remind me", "to call my sister tomorrow."),
    ("I was wondering if", "you could explain photosynthesis."),
    ("Could you find out", "when the next train leaves?"),
    ("My question is about", "the weather in Berlin."),
    ("Tell me", "a short story about a dragon."),
)
COMPLETE = (
    "What time is it in Tokyo?",
    "How tall is Mount Everest?",
    "Turn on the kitchen lights.",
    "Who wrote Pride and Prejudice?",
    "What is the weather like today?",
    "Set a timer for ten minutes.",
    "How do I boil an egg?",
    "Play some relaxing music please.",
)
BARGE_INS = (
    "Wait, what about Spain?",
    "Actually, tell me about Italy instead.",
    "No, I meant the other one.",
    "Hold on, can you repeat that?",
    "Sorry, how many people live there?",
    "Stop please, that is enough.",
    "Hang on, who is the mayor?",
    "Never mind, play some music.",
)
#: Said over an answer; ``None`` is a cough.
BACKCHANNELS: tuple[str | None, ...] = ("mm-hm", "yeah", "okay", None)

_WORD = re.compile(r"[\w'’-]+")


def norm_words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing texts word by word."""
    return [w.lower().strip("-'’") for w in _WORD.findall(text)]


@dataclass(frozen=True, slots=True)
class Spoken:
    """An utterance: its audio (16 kHz, starting at its first loud sample) and its words' times in it."""

    text: str
    audio: Float32Array
    words: tuple[tuple[str, float, float], ...]
    voice: str
    rate_wpm: int

    @property
    def duration(self) -> float:
        return self.audio.size / RATE

    def then(self, pause_s: float, other: Spoken) -> Spoken:
        """This utterance, ``pause_s`` of silence, then ``other``."""
        gap = np.zeros(round(pause_s * RATE), np.float32)
        shift = self.duration + pause_s
        moved = tuple((w, a + shift, b + shift) for w, a, b in other.words)
        audio = np.concatenate([self.audio, gap, other.audio])
        return Spoken(f"{self.text} {other.text}", audio, self.words + moved, self.voice, self.rate_wpm)


_engines: dict[int, EspeakTTS] = {}


async def speak(text: str, voice: str, rate_wpm: int) -> Spoken:
    """``text`` said by espeak; words placed by espeak's word events (one mark per written word), else
    spread over the speech by characters. Each word lasts until the next one starts."""
    engine = _engines.get(rate_wpm)
    if engine is None:
        engine = EspeakTTS(EspeakTTS.Config(voice="en-us", rate_wpm=rate_wpm, sample_rate=RATE))
        await engine.start()
        _engines[rate_wpm] = engine
    blocks: list[Float32Array] = []
    marks: list[float] = []
    offset = 0.0
    async for chunk in engine.synthesize(text, voice=voice):
        blocks.append(chunk.as_float32())
        marks += [offset + w.start_s for w in chunk.words]
        offset += chunk.duration
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    first, last = (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, audio.size)
    audio = audio[first:last].copy()
    end = audio.size / RATE
    written = text.split()
    if len(marks) == len(written):
        starts = [max(0.0, m - first / RATE) for m in marks]
    else:
        total = max(len(text), 1)
        starts = [end * m.start() / total for m in re.finditer(r"\S+", text)]
    ends = [*starts[1:], end]
    words = tuple((w, a, b) for w, a, b in zip(written, starts, ends, strict=True))
    return Spoken(text, audio, words, voice, rate_wpm)


def cough(rng: np.random.Generator, seconds: float = 0.15) -> Float32Array:
    """A cough: a 150 ms burst of low-passed noise with a fast attack and a slower decay."""
    n = round(seconds * RATE)
    noise = rng.standard_normal(n).astype(np.float32)
    smooth = np.convolve(noise, np.ones(6, np.float32) / 6, mode="same")
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    envelope = np.minimum(t / 0.1, 1.0) * np.exp(-4.0 * t)
    burst: Float32Array = (smooth * envelope).astype(np.float32)
    peak = max(float(np.max(np.abs(burst))), 1e-9)
    return np.asarray(burst * np.float32(0.5 / peak), dtype=np.float32)


class Script:
    """Every word that reaches the microphone, with its true start and end (monotonic seconds)."""

    def __init__(self) -> None:
        self.words: list[tuple[str, float, float]] = []

    def add(
        self, words: tuple[tuple[str, float, float], ...] | list[tuple[str, float, float]], at: float
    ) -> None:
        self.words += [(w, at + a, at + b) for w, a, b in words]
        self.words.sort(key=lambda w: w[1])


class OracleSTT:
    """An STT engine that returns the script's words whose middle lies in the audio it was given."""

    kind: ClassVar[EngineKind] = "stt"
    name = "oracle"
    capabilities = Capabilities(partials=True, sample_rate=RATE)

    def __init__(self, script: Script) -> None:
        self.script = script

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True, detail="oracle")

    def _text(self, spans: list[tuple[float, float]]) -> str:
        said = [w for w, a, b in self.script.words if any(lo <= (a + b) / 2 < hi for lo, hi in spans)]
        return " ".join(said)

    async def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        spans: list[tuple[float, float]] = []
        shown = ""
        async for chunk in audio:
            lo, hi = chunk.timestamp, chunk.timestamp + chunk.duration
            if spans and abs(spans[-1][1] - lo) < 0.005:
                spans[-1] = (spans[-1][0], hi)
            else:
                spans.append((lo, hi))
            text = self._text(spans)
            if text != shown:
                shown = text
                yield Transcription(text, is_final=False, confidence=0.5, language="en")
        yield Transcription(self._text(spans), is_final=True, confidence=1.0, language="en")

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        span = [(audio.timestamp, audio.timestamp + audio.duration)]
        return Transcription(self._text(span), is_final=True, confidence=1.0, language="en")


@dataclass(slots=True)
class Echo:
    """The loudspeaker-to-microphone path: gain (linear), delay (s), and the script its words join."""

    gain: float
    delay_s: float
    script: Script | None = None


@dataclass(slots=True)
class _Sound:
    start: float
    samples: Float32Array
    echo: bool
    cut: float = float("inf")


class Mic:
    """The microphone: scheduled sounds (utterances, coughs), the answer's echo, and white noise."""

    def __init__(self, rng: np.random.Generator, noise_db: float = -60.0) -> None:
        self._rng = rng
        self._noise = 10 ** (noise_db / 20)
        self._sounds: list[_Sound] = []

    def add(self, samples: Float32Array, at: float, *, echo: bool = False) -> None:
        """A sound whose first sample reaches the microphone at monotonic time ``at``."""
        self._sounds.append(_Sound(at, samples, echo))

    def cut_echo(self, at: float) -> None:
        """The loudspeaker stopped: no echo reaches the microphone from ``at`` on."""
        for sound in self._sounds:
            if sound.echo:
                sound.cut = min(sound.cut, at)

    def block(self, at: float, n: int) -> Float32Array:
        out = (self._noise * self._rng.standard_normal(n)).astype(np.float32)
        first = round(at * RATE)
        for sound in self._sounds:
            begin = round(sound.start * RATE)
            stop = begin + sound.samples.size
            if sound.cut != float("inf"):
                stop = min(stop, round(sound.cut * RATE))
            lo, hi = max(first, begin), min(first + n, stop)
            if lo < hi:
                out[lo - first : hi - first] += sound.samples[lo - begin : hi - begin]
        return np.clip(out, -1.0, 1.0)


@dataclass(eq=False)
class _Track:
    """One turn's answer audio on the play-head: ``played`` seconds of ``queued`` have played."""

    blocks: list[tuple[float, AudioChunk]] = field(default_factory=list)
    queued: float = 0.0
    base: float = 0.0
    since: float = 0.0
    paused: bool = False
    cancelled: bool = False
    started_at: float | None = None
    #: The answer's words (text, start, end in the turn's audio seconds).
    words: list[tuple[str, float, float]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def played(self, now: float) -> float:
        if self.paused or self.cancelled:
            return self.base
        return min(self.queued, self.base + max(0.0, now - self.since))


class SimulatedPlayback:
    """A listener's loudspeaker playing answer audio in real time with a 0 ms lead (see the module
    docstring); implements :class:`aria.pipeline.voice.Playback` and the pacer's pause/resume."""

    def __init__(
        self,
        guard: EchoGuard,
        mic: Mic,
        echo: Echo | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guard, self.mic, self.echo, self.clock = guard, mic, echo, clock
        self.tracks: dict[str, _Track] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def track(self, turn_id: str) -> _Track:
        track = self.tracks.get(turn_id)
        if track is None:
            track = self.tracks[turn_id] = _Track()
            task = asyncio.get_running_loop().create_task(self._play(track), name="bench-playback")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return track

    def add(self, turn_id: str, chunk: AudioChunk) -> None:
        track, now = self.track(turn_id), self.clock()
        if track.cancelled:
            return
        if not track.paused and track.played(now) >= track.queued:  # an underrun: playing starts now
            track.base, track.since = track.queued, now
        offset = track.queued
        track.blocks.append((offset, chunk))
        track.words += [(w.text, offset + w.start_s, offset + w.end_s) for w in chunk.words]
        track.queued += chunk.duration
        track.changed.set()

    async def _until(self, track: _Track, offset: float) -> bool:
        """Until the play-head reaches ``offset`` (False: the track was cancelled)."""
        while not track.cancelled:
            now = self.clock()
            if track.played(now) >= offset:
                return True
            track.changed.clear()
            timeout = None if track.paused else max(0.001, offset - track.played(now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(track.changed.wait(), timeout)
        return False

    async def _play(self, track: _Track) -> None:
        index = 0
        while True:
            while index >= len(track.blocks):
                track.changed.clear()
                await track.changed.wait()
                if track.cancelled:
                    return
            offset, chunk = track.blocks[index]
            if not await self._until(track, offset):
                return
            at = self.clock() - (track.played(self.clock()) - offset)
            if track.started_at is None:
                track.started_at = at
            samples = chunk.as_float32()
            self.guard.reference(samples, at)
            if self.echo is not None:
                self.mic.add((self.echo.gain * samples).astype(np.float32), at + self.echo.delay_s, echo=True)
                if self.echo.script is not None:
                    words = tuple((w.text, w.start_s, w.start_s + 0.25) for w in chunk.words)
                    self.echo.script.add(words, at + self.echo.delay_s)
            index += 1

    # -- Playback ----------------------------------------------------------------------------------

    def heard_seconds(self, turn_id: str) -> float | None:
        track = self.tracks.get(turn_id)
        return None if track is None else track.played(self.clock())

    def cancel(self, turn_id: str) -> None:
        track, now = self.track(turn_id), self.clock()
        track.base = track.played(now)
        track.cancelled = True
        self._silence(now)
        track.changed.set()

    def pause(self, turn_id: str) -> None:
        track, now = self.track(turn_id), self.clock()
        if not track.paused and not track.cancelled:
            track.base, track.paused = track.played(now), True
            self._silence(now)
            track.changed.set()

    def resume(self, turn_id: str) -> None:
        track = self.track(turn_id)
        if track.paused:
            track.paused, track.since = False, self.clock()
            track.changed.set()

    async def wait_sent(self, turn_id: str, blocks: int) -> None:
        track = self.track(turn_id)
        if blocks > 0 and blocks <= len(track.blocks):
            await self._until(track, track.blocks[blocks - 1][0])

    def _silence(self, now: float) -> None:
        if self.echo is not None:
            self.mic.cut_echo(now + self.echo.delay_s)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
