"""Kokoro-82M speech through ``kokoro-onnx`` (onnxruntime, CPU): natural voices at 24 kHz.

The model and voice files are not part of the package: ``aria models pull kokoro`` puts
``kokoro-v1.0.onnx`` and ``voices-v1.0.bin`` in ``<models>/kokoro/`` (or set ``model_path`` /
``voices_path``). Voices are Kokoro's names (``af_heart``, ``am_adam``, ``bf_emma`` ...); the first letter
picks the language (``a`` American English, ``b`` British, ``e`` Spanish, ``f`` French, ``h`` Hindi,
``i`` Italian, ``j`` Japanese, ``p`` Brazilian Portuguese, ``z`` Mandarin) unless ``lang`` is set.

Words: a kokoro-onnx with ``create_timed`` and a model export that reports its phoneme durations give
each chunk the words that start in it (labelled with the text's words when there are as many, else
their phonemes); otherwise none (the pipeline then splits the clause by characters).

A sentence is synthesised in one onnxruntime call in a worker thread, then streamed out in blocks,
peak-normalised to the target (see :mod:`~aria.engines.tts.textprep`). A consumer that stops early stops
the stream at once; the call already running in the worker finishes in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
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
)
from aria.errors import ConfigError, EngineError, EngineUnavailable, InvalidInput
from aria.types import AudioChunk

__all__ = ["MODEL_FILE", "VOICES_FILE", "KokoroTTS"]

log = logging.getLogger(__name__)

_ENGINE = "tts:kokoro"
MODEL_FILE = "kokoro-v1.0.onnx"
VOICES_FILE = "voices-v1.0.bin"
_RATE = 24000
_PULL_FIX = "run `aria models pull kokoro`"
_INSTALL_FIX = "pip install 'aria-assistant[tts]'"
_REQUIRES = LocalModelCheck(
    "Kokoro model files",
    (("kokoro_onnx", "kokoro-onnx"), ("onnxruntime", "onnxruntime")),
    _INSTALL_FIX,
    _PULL_FIX,
)
_LANG_BY_PREFIX = {
    "a": "en-us",
    "b": "en-gb",
    "e": "es",
    "f": "fr-fr",
    "h": "hi",
    "i": "it",
    "j": "ja",
    "p": "pt-br",
    "z": "cmn",
}


class KokoroTTS:
    """Text to speech with Kokoro on onnxruntime; see the module docstring."""

    kind: ClassVar[EngineKind] = "tts"
    name: str = "kokoro"

    class Config(ShapingOptions):
        #: Aria's data folder (models are read from ``<data_dir>/models/kokoro``); filled by the factory.
        data_dir: Path | None = None
        model_path: Path | None = None
        voices_path: Path | None = None
        voice: str = "af_heart"
        speed: float = Field(default=1.0, ge=0.5, le=2.0)
        #: espeak language for phonemes; by default from the voice's first letter.
        lang: str | None = None
        #: onnxruntime CPU threads (None: its default, every core). On a machine whose cores are busy with
        #: other work (the LLM decoding while the first clause is spoken), fewer threads waste less.
        threads: int | None = Field(default=None, ge=1)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.capabilities = Capabilities(
            streaming=True, local=True, sample_rate=_RATE, voices=(self.config.voice,), memory_mb=400
        )
        self._kokoro: Any = None

    @staticmethod
    def paths(config: Config) -> tuple[Path, Path]:
        """The model file and the voices file this configuration reads."""
        folder = models_dir(config.data_dir) / "kokoro"
        return config.model_path or folder / MODEL_FILE, config.voices_path or folder / VOICES_FILE

    @classmethod
    def check(cls, config: Config) -> Availability:
        return _REQUIRES.availability(cls.paths(config))

    async def start(self) -> None:
        if self._kokoro is not None:
            return
        model, voices = self.paths(self.config)
        _REQUIRES.require((model, voices), engine=_ENGINE)
        kokoro = await asyncio.to_thread(_load, model, voices, self.config.threads)
        names = tuple(kokoro.get_voices())
        if self.config.voice not in names:
            raise ConfigError(
                f"tts:kokoro: {voices} has no voice {self.config.voice!r}",
                key="tts.options.voice",
                fix=f"use one of {', '.join(names[:8])}",
            )
        self.capabilities = Capabilities(
            streaming=True, local=True, sample_rate=_RATE, voices=names, memory_mb=400
        )
        self._kokoro = kokoro

    async def aclose(self) -> None:
        self._kokoro = None

    async def health(self) -> EngineHealth:
        if self._kokoro is None:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(ok=True, detail=f"Kokoro, voice {self.config.voice}")

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        """The sentence, once synthesised, as blocks at 24 kHz, then its pause."""
        spoken = prepare_text(text)
        if not spoken:
            return
        if self._kokoro is None:
            await self.start()
        name = voice or self.config.voice
        if name not in self.capabilities.voices:
            raise InvalidInput(
                f"unknown Kokoro voice {name!r}; try one of {', '.join(self.capabilities.voices[:8])}"
            )
        for block, words in await asyncio.to_thread(self._render, self._kokoro, spoken, name):
            yield AudioChunk(block, _RATE, words=words)

    def _render(self, kokoro: Any, text: str, voice: str) -> list[Marked]:
        """Synthesise and shape one sentence (worker thread)."""
        config = self.config
        lang = config.lang or _LANG_BY_PREFIX.get(voice[:1], "en-us")
        timed = getattr(kokoro, "create_timed", None)  # kokoro-onnx with phoneme timings
        try:
            result = (timed or kokoro.create)(
                text,
                voice=voice,
                speed=config.speed,
                lang=lang,
                sentence_pause=config.sentence_pause_ms / 1000,
                clause_pause=config.clause_pause_ms / 1000,
            )
        except ValueError as exc:  # too long, or nothing in the model's vocabulary
            raise InvalidInput(f"Kokoro cannot speak {text[:40]!r}: {exc}") from exc
        except Exception as exc:
            raise EngineError(
                f"synthesis failed: {type(exc).__name__}: {exc}", engine=_ENGINE, retryable=False
            ) from exc
        audio, rate = result[0], result[1]
        samples = np.asarray(audio, dtype=np.float32).ravel()
        if rate != _RATE:
            raise EngineError(f"Kokoro returned {rate} Hz audio, expected {_RATE}", engine=_ENGINE)
        shaper = SpeechShaper(_RATE, config, gain=peak_gain(samples, config))
        if len(result) > 2:  # empty unless the model reports durations
            phonemes = ((t.phoneme, float(t.start), float(t.end)) for t in result[2])
            shaper.add_words(labelled(phoneme_words(phonemes), text), origin_s=0.0)
        return shaper.marked([*shaper.push(samples), *shaper.finish(pause_ms(text, config))])


def _load(model: Path, voices: Path, threads: int | None = None) -> Any:
    try:
        from kokoro_onnx import Kokoro

        if threads is None:
            return Kokoro(str(model), str(voices))
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        return Kokoro.from_session(session, str(voices))
    except Exception as exc:
        raise EngineUnavailable(
            f"cannot load the Kokoro model {model} with voices {voices}: {type(exc).__name__}: {exc}; "
            f"{_PULL_FIX} to fetch intact files",
            engine=_ENGINE,
        ) from exc
