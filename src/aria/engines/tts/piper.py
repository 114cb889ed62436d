"""Piper speech (VITS voices on onnxruntime, CPU) through the ``piper-tts`` package.

A voice is an ``.onnx`` model with its ``.onnx.json`` config; ``aria models pull piper`` puts the default,
``en_US-lessac-medium``, in ``<models>/piper/`` (another voice: set ``voice`` to its file name without
``.onnx``, or ``model_path``). The output rate is the voice's (22050 Hz for medium voices, 16000 for
x_low). Multi-speaker voices take a speaker name as ``voice`` (``capabilities.voices`` lists them).

Words: the voice is loaded with Piper's phoneme alignments (the model patched in memory to output its
phoneme durations, which needs the ``onnx`` package); each chunk carries the words that start in it,
labelled with the text's words when Piper speaks as many, else with their phonemes. A voice that cannot
be patched gives none (the pipeline then splits the clause by characters).

Piper splits the text into sentences; each is synthesised in a worker thread, peak-normalised to the
target (see :mod:`~aria.engines.tts.textprep`) and streamed out while the next one is synthesised. A
consumer that stops early stops the worker before its next sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from aria.engines.base import Availability, Capabilities, EngineHealth, EngineKind
from aria.engines.models import LocalModelCheck, models_dir
from aria.engines.tts.textprep import (
    Marked,
    ShapingOptions,
    SpeechShaper,
    labelled,
    pause_ms,
    peak_gain,
    phoneme_words,
    prepare_text,
    thread_stream,
)
from aria.errors import ConfigError, EngineUnavailable, InvalidInput
from aria.types import SAMPLE_RATES, AudioChunk, WordMark

__all__ = ["DEFAULT_VOICE", "PiperTTS"]

log = logging.getLogger(__name__)

_ENGINE = "tts:piper"
DEFAULT_VOICE = "en_US-lessac-medium"
_DEFAULT_RATE = 22050
_PULL_FIX = "run `aria models pull piper`"
_INSTALL_FIX = "pip install piper-tts"
_REQUIRES = LocalModelCheck(
    "Piper voice files", (("piper", "piper-tts"), ("onnxruntime", "onnxruntime")), _INSTALL_FIX, _PULL_FIX
)


class PiperTTS:
    """Text to speech with a Piper voice; see the module docstring."""

    kind: ClassVar[EngineKind] = "tts"
    name: str = "piper"

    class Config(ShapingOptions):
        #: Aria's data folder (voices are read from ``<data_dir>/models/piper``); filled by the factory.
        data_dir: Path | None = None
        #: Voice file name without ``.onnx``, looked up in ``<models>/piper``.
        voice: str = DEFAULT_VOICE
        model_path: Path | None = None
        #: Defaults to the model path plus ``.json``.
        config_path: Path | None = None
        #: Speaker of a multi-speaker voice (by name); its default speaker when unset.
        speaker: str | None = None
        #: Phoneme length: above 1 is slower, below 1 faster. The voice's own setting when unset.
        length_scale: float | None = Field(default=None, gt=0.0, le=4.0)
        noise_scale: float | None = Field(default=None, ge=0.0, le=2.0)
        noise_w_scale: float | None = Field(default=None, ge=0.0, le=2.0)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        model, voice_config = self.paths(self.config)
        self._label = model.name.removesuffix(".onnx")
        self.capabilities = Capabilities(
            streaming=True,
            local=True,
            sample_rate=_declared_rate(voice_config),
            voices=(self._label,),
            memory_mb=150,
        )
        self._voice: Any = None
        self._speakers: dict[str, int] = {}

    @staticmethod
    def paths(config: Config) -> tuple[Path, Path]:
        """The voice model and its JSON config."""
        model = config.model_path or models_dir(config.data_dir) / "piper" / f"{config.voice}.onnx"
        return model, config.config_path or model.with_name(model.name + ".json")

    @classmethod
    def check(cls, config: Config) -> Availability:
        return _REQUIRES.availability(cls.paths(config))

    async def start(self) -> None:
        if self._voice is not None:
            return
        model, voice_config = self.paths(self.config)
        _REQUIRES.require((model, voice_config), engine=_ENGINE)
        voice = await asyncio.to_thread(_load, model, voice_config)
        rate = int(voice.config.sample_rate)
        if rate not in SAMPLE_RATES:
            raise EngineUnavailable(f"Piper voice {model} has an unsupported rate {rate} Hz", engine=_ENGINE)
        speakers = {str(k): int(v) for k, v in dict(voice.config.speaker_id_map or {}).items()}
        if self.config.speaker is not None and self.config.speaker not in speakers:
            raise ConfigError(
                f"tts:piper: voice {self._label} has no speaker {self.config.speaker!r}",
                key="tts.options.speaker",
                fix=f"use one of {', '.join(list(speakers)[:8]) or 'none (single-speaker voice)'}",
            )
        self._speakers = speakers
        self.capabilities = Capabilities(
            streaming=True, local=True, sample_rate=rate, voices=(self._label, *speakers), memory_mb=150
        )
        self._voice = voice

    async def aclose(self) -> None:
        self._voice = None

    async def health(self) -> EngineHealth:
        if self._voice is None:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(ok=True, detail=f"Piper voice {self._label}")

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        """Each of the text's sentences as blocks at the voice's rate, with the pauses between them."""
        spoken = prepare_text(text)
        if not spoken:
            return
        if self._voice is None:
            await self.start()
        piper_voice = self._voice
        speaker = self._speaker_id(voice)
        rate = self.capabilities.sample_rate or _DEFAULT_RATE

        def work(emit: Callable[[Marked], bool], stop: threading.Event) -> None:
            self._render(piper_voice, spoken, speaker, rate, emit, stop)

        async with contextlib.aclosing(thread_stream(work, engine=_ENGINE)) as blocks:
            async for block, words in blocks:
                yield AudioChunk(block, rate, words=words)

    def _speaker_id(self, voice: str | None) -> int | None:
        name = voice if voice is not None and voice != self._label else self.config.speaker
        if name is None:
            return None
        if name in self._speakers:
            return self._speakers[name]
        choices = ", ".join(self.capabilities.voices[:8])
        raise InvalidInput(f"unknown Piper voice {name!r}; this voice file offers {choices}")

    def _render(
        self,
        piper_voice: Any,
        text: str,
        speaker: int | None,
        rate: int,
        emit: Callable[[Marked], bool],
        stop: threading.Event,
    ) -> None:
        """Synthesise sentence by sentence and emit blocks (worker thread)."""
        from piper import SynthesisConfig

        config = self.config
        syn_config = SynthesisConfig(
            speaker_id=speaker,
            length_scale=config.length_scale,
            noise_scale=config.noise_scale,
            noise_w_scale=config.noise_w_scale,
            normalize_audio=False,
        )
        shaper = SpeechShaper(rate, config)
        first = True
        labels = _labels(piper_voice, text)
        for sentence in piper_voice.synthesize(text, syn_config=syn_config, include_alignments=True):
            if stop.is_set():
                return
            audio = np.asarray(sentence.audio_float_array, dtype=np.float32).ravel()
            blocks = [] if first else shaper.pause(config.sentence_pause_ms)
            first = False
            shaper.gain = peak_gain(audio, config)
            words = _sentence_words(sentence, rate)
            if labels is not None and len(words) <= len(labels):
                words, labels = labelled(words, " ".join(labels[: len(words)])), labels[len(words) :]
            shaper.add_words(words)
            for block in shaper.marked([*blocks, *shaper.push(audio)]):
                if not emit(block):
                    return
        for block in shaper.marked(shaper.finish(pause_ms(text, config))):
            if not emit(block):
                return


def _labels(piper_voice: Any, text: str) -> list[str] | None:
    """The text's words when Piper speaks as many words (by its phonemes) as the text has."""
    try:
        sentences = piper_voice.phonemize(text)
    except Exception:
        return None
    spoken = sum(len(phoneme_words((p, 0.0, 0.0) for p in phonemes)) for phonemes in sentences)
    written = text.split()
    return written if spoken == len(written) else None


def _sentence_words(sentence: Any, rate: int) -> list[WordMark]:
    """A synthesised sentence's words from Piper's phoneme alignments (none when the voice has none)."""
    alignments = getattr(sentence, "phoneme_alignments", None)
    if not alignments:
        return []
    timed: list[tuple[str, float, float]] = []
    at = 0
    for alignment in alignments:
        timed.append((alignment.phoneme, at / rate, (at + alignment.num_samples) / rate))
        at += alignment.num_samples
    return phoneme_words(timed)


def _declared_rate(voice_config: Path) -> int:
    """The voice's rate from its JSON config when it is there (a small file), else Piper's usual rate."""
    try:
        rate = int(json.loads(voice_config.read_text(encoding="utf-8"))["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        return _DEFAULT_RATE
    return rate if rate in SAMPLE_RATES else _DEFAULT_RATE


def _load(model: Path, voice_config: Path) -> Any:
    try:
        from piper import PiperVoice

        # include_alignments: phoneme durations from the model (patched in memory), for word marks.
        return PiperVoice.load(model, config_path=voice_config, include_alignments=True)
    except Exception as exc:
        raise EngineUnavailable(
            f"cannot load the Piper voice {model}: {type(exc).__name__}: {exc}; "
            f"{_PULL_FIX} to fetch it again",
            engine=_ENGINE,
        ) from exc
