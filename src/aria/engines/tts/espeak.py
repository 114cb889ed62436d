"""espeak-ng speech synthesis, in process: the offline default voice (no model download, no apt package).

The library comes from the ``espeakng-loader`` wheel through :mod:`aria.engines.tts.espeak_lib`.
Synthesis runs in a worker thread and its blocks reach the event loop as espeak produces them, so the
first audio is out before a long sentence is finished (espeak needs about 1-3 ms for a sentence). One
library instance serves the whole process: concurrent calls are serialised by its lock, and a consumer
that stops early (barge-in) aborts the running synthesis from espeak's audio callback.

Voices are espeak voice names (``en-us``, ``en``, ``de``, ``fr-fr`` ...; case does not matter), with an
optional variant (``en-us+f3``, ``en+m2``). Output is 22050 Hz unless ``sample_rate`` asks for another
rate (each sentence is then resampled once it is complete). Levels: a fixed gain per voice, calibrated on
reference sentences so the loudest reaches -1 dBFS, then the soft limiter (see
:mod:`~aria.engines.tts.textprep`).

Words: espeak reports where each word starts (its word events); every chunk carries the words that start
in it (``AudioChunk.words``, the text as spoken after :func:`~aria.engines.tts.textprep.prepare_text`).
espeak does not say where a word ends, so each mark's ``end_s`` equals its ``start_s``: the word lasts
until the next one starts. A number read as several words gives one mark per spoken word.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import importlib.util
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.core.audio import resample
from aria.engines.base import Availability, Capabilities, EngineHealth, EngineKind
from aria.engines.options import SampleRate
from aria.engines.tts.espeak_lib import EspeakLibrary, espeak_available
from aria.engines.tts.textprep import (
    Marked,
    ShapingOptions,
    SpeechShaper,
    pause_ms,
    prepare_text,
    thread_stream,
)
from aria.errors import AriaError, ConfigError, EngineError, EngineUnavailable, InvalidInput
from aria.types import AudioChunk, WordMark, float32_samples

__all__ = ["EspeakTTS", "SynthesisStats"]

log = logging.getLogger(__name__)

_ENGINE = "tts:espeak"
_NATIVE_RATE = 22050
_INSTALL_FIX = "pip install 'aria-assistant[tts]'"
_CALIBRATION = (
    "Hello, how can I help you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Is that right? Yes, it is!",
)
_SUGGESTED = ("en-us", "en", "en-gb-x-rp", "es", "fr-fr", "de", "it", "pt-br", "hi", "cmn")


@dataclass(frozen=True, slots=True)
class SynthesisStats:
    """Timings of one ``synthesize`` call (``time.monotonic`` seconds)."""

    chars: int
    requested_at: float
    first_audio_at: float | None
    finished_at: float
    audio_s: float
    aborted: bool

    @property
    def time_to_first_audio_s(self) -> float | None:
        return None if self.first_audio_at is None else self.first_audio_at - self.requested_at

    @property
    def rtf(self) -> float:
        """Real-time factor: synthesis time over audio duration."""
        return (self.finished_at - self.requested_at) / self.audio_s if self.audio_s > 0 else 0.0


@dataclass(slots=True, eq=False)
class _Run:
    """One synthesis: ``cancel`` is set by ``aclose``; the worker fills in the rest."""

    cancel: threading.Event = field(default_factory=threading.Event)
    requested_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    aborted: bool = False


class EspeakTTS:
    """Text to speech with espeak-ng; see the module docstring."""

    kind: ClassVar[EngineKind] = "tts"
    name: str = "espeak"

    class Config(ShapingOptions):
        #: espeak voice, optionally with a variant: ``en-us``, ``en+f3``.
        voice: str = "en-us"
        #: Speaking rate in words per minute.
        rate_wpm: int = Field(default=175, ge=80, le=450)
        #: Base pitch, 0-99.
        pitch: int = Field(default=50, ge=0, le=99)
        #: Output rate; ``None`` keeps espeak's native 22050 Hz.
        sample_rate: SampleRate | None = None

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.capabilities = Capabilities(
            streaming=True,
            local=True,
            sample_rate=self.config.sample_rate or _NATIVE_RATE,
            voices=(self.config.voice,),
            memory_mb=20,
        )
        self._lib: EspeakLibrary | None = None
        self._voices: dict[str, str] = {}  # lower-case name or identifier -> espeak name
        self._variants: dict[str, str] = {}
        self._gains: dict[str, float] = {}
        self._gain_lock = threading.Lock()
        self._active: set[_Run] = set()
        self.last_stats: SynthesisStats | None = None

    @classmethod
    def check(cls, config: Config) -> Availability:
        ok, reason = espeak_available()
        if not ok:
            return Availability(False, reason, _INSTALL_FIX)
        try:
            voices, variants = _voice_files()
        except OSError as exc:
            return Availability(False, f"espeak-ng data is unreadable: {exc}", _INSTALL_FIX)
        base, _, variant = config.voice.partition("+")
        if base.lower() not in voices or (variant and variant.lower() not in variants):
            return Availability(
                False, f"espeak-ng has no voice {config.voice!r}", "set tts.options.voice to e.g. 'en-us'"
            )
        return Availability(True)

    async def start(self) -> None:
        if self._lib is not None:
            return
        lib, voices, variants = await asyncio.to_thread(_load)
        self._voices, self._variants = voices, variants
        self.capabilities = Capabilities(
            streaming=True,
            local=True,
            sample_rate=self.config.sample_rate or lib.sample_rate,
            voices=tuple(sorted(set(voices.values()), key=str.lower)),
            memory_mb=20,
        )
        try:
            voice = self._resolve(self.config.voice)
        except InvalidInput as exc:
            raise ConfigError(
                f"tts:espeak: {exc}",
                key="tts.options.voice",
                fix="set tts.options.voice to an espeak voice such as 'en-us'",
            ) from None
        self._lib = lib
        await asyncio.to_thread(self._gain_for, voice)

    async def aclose(self) -> None:
        """Abort running syntheses; the shared library itself stays loaded for the process."""
        for run in list(self._active):
            run.cancel.set()
        self._lib = None

    async def health(self) -> EngineHealth:
        if self._lib is None:
            return EngineHealth(ok=False, detail="not started")
        voices = len(self.capabilities.voices)
        return EngineHealth(ok=True, detail=f"espeak-ng, voice {self.config.voice}, {voices} voices")

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        """The sentence as 20 ms blocks (by default) at ``capabilities.sample_rate``, then its pause."""
        spoken = prepare_text(text)
        if not spoken:
            return
        if self._lib is None:
            await self.start()
        lib = self._lib
        assert lib is not None
        name = self._resolve(voice or self.config.voice)
        rate = self.capabilities.sample_rate or lib.sample_rate
        run = _Run()
        first_audio: float | None = None
        frames = 0

        def work(emit: Callable[[Marked], bool], stop: threading.Event) -> None:
            self._synthesize(lib, spoken, name, rate, emit, stop, run)

        self._active.add(run)
        try:
            # aclosing: when our consumer stops, the worker is stopped now, not when the GC gets to it.
            async with contextlib.aclosing(thread_stream(work, engine=_ENGINE)) as blocks:
                async for block, words in blocks:
                    if first_audio is None:
                        first_audio = time.monotonic()
                    frames += block.size
                    yield AudioChunk(block, rate, words=words)
        finally:
            self._active.discard(run)
            self.last_stats = SynthesisStats(
                chars=len(spoken),
                requested_at=run.requested_at,
                first_audio_at=first_audio,
                finished_at=run.finished_at or time.monotonic(),
                audio_s=frames / rate,
                aborted=run.aborted,
            )

    # -- worker thread ---------------------------------------------------------------------------------

    def _synthesize(
        self,
        lib: EspeakLibrary,
        text: str,
        voice: str,
        rate: int,
        emit: Callable[[Marked], bool],
        stop: threading.Event,
        run: _Run,
    ) -> None:
        shaper = SpeechShaper(rate, self.config, gain=self._gain_for(voice))
        collected: list[npt.NDArray[np.int16]] = []
        resampling = rate != lib.sample_rate

        def deliver(blocks: list[npt.NDArray[np.float32]]) -> bool:
            for out in shaper.marked(blocks):
                if not emit(out):
                    run.aborted = True
                    return False
            return True

        def on_audio(block: npt.NDArray[np.int16]) -> bool:
            if stop.is_set() or run.cancel.is_set():
                run.aborted = True
                return False
            if resampling:
                collected.append(block)
                return True
            return deliver(shaper.push(float32_samples(block)))

        words = _WordEvents(text)

        def on_word(offset: int, length: int, audio_ms: int) -> None:
            word = words.word_at(offset)
            if word:  # times from the start of the synthesis: shaper input position 0
                shaper.add_words([WordMark(word, audio_ms / 1000, audio_ms / 1000)], origin_s=0.0)

        try:
            try:
                lib.synthesize(
                    text,
                    on_audio,
                    voice=voice,
                    rate_wpm=self.config.rate_wpm,
                    pitch=self.config.pitch,
                    on_word=on_word,
                )
            except AriaError:
                raise
            except Exception as exc:
                raise EngineError(f"synthesis failed: {exc}", engine=_ENGINE) from exc
            if run.aborted:
                return
            if resampling and collected:
                audio = float32_samples(np.concatenate(collected))
                if not deliver(shaper.push(resample(audio, lib.sample_rate, rate))):
                    return
            deliver(shaper.finish(pause_ms(text, self.config)))
        finally:
            run.finished_at = time.monotonic()

    def _gain_for(self, voice: str) -> float:
        """The voice's fixed gain: the loudest calibration sentence reaches the target peak."""
        with self._gain_lock:
            gain = self._gains.get(voice.lower())
            if gain is not None:
                return gain
            lib = EspeakLibrary.get()
            peak = 0.0

            def measure(block: npt.NDArray[np.int16]) -> bool:
                nonlocal peak
                peak = max(peak, float(np.max(np.abs(block.astype(np.float32)))) / 32768.0)
                return True

            for sentence in _CALIBRATION:
                lib.synthesize(
                    sentence, measure, voice=voice, rate_wpm=self.config.rate_wpm, pitch=self.config.pitch
                )
            gain = self.config.target_peak / peak if peak > 1e-4 else 1.0
            log.debug("espeak voice %s: calibration peak %.3f, gain %.2f", voice, peak, gain)
            self._gains[voice.lower()] = gain
            return gain

    def _resolve(self, voice: str) -> str:
        """The espeak name for ``voice`` (and its variant), or InvalidInput listing a few voices."""
        base, plus, variant = voice.strip().partition("+")
        name = self._voices.get(base.lower())
        if name is None:
            known = sorted(set(self._voices.values()), key=str.lower)
            close = difflib.get_close_matches(base, known, n=4, cutoff=0.5)
            suggested = [v for v in _SUGGESTED if v in self._voices]
            few = list(dict.fromkeys([*close, *(self._voices[v] for v in suggested)]))[:8]
            raise InvalidInput(
                f"unknown espeak voice {voice!r}; try one of {', '.join(few)} "
                f"({len(known)} voices in capabilities.voices)"
            )
        if plus:
            canonical = self._variants.get(variant.lower())
            if canonical is None:
                options = [
                    v for v in ("f1", "f2", "f3", "f4", "m1", "m2", "m3", "whisper") if v in self._variants
                ]
                raise InvalidInput(
                    f"unknown espeak voice variant {variant!r} in {voice!r}; try one of {', '.join(options)}"
                )
            return f"{name}+{canonical}"
        return name


class _WordEvents:
    """The text's words for espeak's word events, in order. espeak's positions are not exact (in "it
    is" the second word is reported at the "t" of "it", and its ``length`` says 2 for "it's"), so an
    event is given the whitespace-separated word its position falls in, or the word after the last one
    given when that one was given already; only a word with a digit in it gets several events (espeak
    reads "42" as two words: the second mark is the rest of the number from its position, "2")."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        self._last = -1

    def word_at(self, offset: int) -> str:
        index = next((i for i, (_, end) in enumerate(self._spans) if offset < end), len(self._spans))
        last = self._last
        if index <= last:
            begin, end = self._spans[last]
            if index == last and any(ch.isdigit() for ch in self._text[begin:end]) and begin < offset < end:
                return self._text[offset:end]
            index = last + 1
        if index >= len(self._spans):
            return ""
        self._last = index
        begin, end = self._spans[index]
        return self._text[begin:end]


def _voice_files() -> tuple[dict[str, str], dict[str, str]]:
    """Usable voices and variants from the espeak-ng data folder (no library load), each as lower-case
    key (name or ``family/name`` identifier) -> espeak name. Voices whose dictionary is not shipped (the
    wheel lacks a few) are left out: espeak would say nothing with them."""
    import espeakng_loader

    data = Path(espeakng_loader.get_data_path())
    voices: dict[str, str] = {}
    for path in sorted((data / "lang").rglob("*")):
        if path.is_file() and (data / f"{_dictionary(path)}_dict").is_file():
            voices[path.name.lower()] = path.name
            voices[path.relative_to(data / "lang").as_posix().lower()] = path.name
    variants = {p.name.lower(): p.name for p in (data / "voices" / "!v").iterdir() if p.is_file()}
    return voices, variants


def _dictionary(voice_file: Path) -> str:
    """The dictionary a voice file uses: its ``dictionary`` line, else its first language's prefix."""
    language = ""
    for line in voice_file.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "dictionary" and value.strip():
            return value.split()[0]
        if key == "language" and not language and value.strip():
            language = value.split()[0].split("-")[0]
    return language or voice_file.name.split("-")[0]


def _load() -> tuple[EspeakLibrary, dict[str, str], dict[str, str]]:
    if importlib.util.find_spec("espeakng_loader") is None:
        raise EngineUnavailable(f"espeak-ng is not installed; {_INSTALL_FIX}", engine=_ENGINE)
    lib = EspeakLibrary.get()
    try:
        voices, variants = _voice_files()
    except OSError as exc:
        raise EngineUnavailable(f"espeak-ng data is unreadable: {exc}", engine=_ENGINE) from exc
    return lib, voices, variants
