"""PocketSphinx speech recognition: the offline last resort, with the en-us model bundled in the wheel.

Accuracy is limited: open dictation gets many words wrong (a word error rate of 0.6-0.85 on synthetic
speech), while a small JSGF grammar of commands (``grammar``) or a single ``keyphrase`` is recognised
well and about 15 times faster. Use it when no Whisper model is available.

Streaming: int16 audio is fed to the decoder as it arrives (``start_utt`` / ``process_raw``) on the
engine's worker thread, partials come from the running hypothesis, and the final from ``end_utt``.
Each concurrent stream borrows its own decoder from a small pool.

Confidence is the geometric mean of the words' posterior probabilities (fillers and silences left out).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from aria.engines.base import Availability, Capabilities, EngineConfig, EngineHealth, EngineKind
from aria.engines.stt.streaming import STT_SAMPLE_RATE, Worker, prepare_audio
from aria.errors import EngineError, EngineUnavailable
from aria.types import AudioChunk, Transcription

__all__ = ["LIMITED", "PocketSphinxSTT"]

log = logging.getLogger(__name__)

ENGINE = "stt:pocketsphinx"
#: Said in ``health()`` and ``check()`` so that nobody mistakes it for a dictation engine.
LIMITED = "limited accuracy: offline last resort"
_INSTALL_FIX = "pip install 'aria-assistant[stt]'"
_SEARCH = "aria"


@dataclass(slots=True)
class _Utterance:
    """One stream's decoder, borrowed from the pool on its first audio and returned at the end."""

    decoder: Any = None


class PocketSphinxSTT:
    """CMU PocketSphinx recognition; see the module docstring."""

    kind: ClassVar[EngineKind] = "stt"
    name: str = "pocketsphinx"
    capabilities: Capabilities = Capabilities(
        streaming=True,
        partials=True,
        local=True,
        sample_rate=STT_SAMPLE_RATE,
        languages=("en",),
        memory_mb=60,
    )

    class Config(EngineConfig):
        #: Only the bundled US English model is supported.
        language: Literal["en"] = "en"
        #: A JSGF grammar (text starting with ``#JSGF``, or the path of a ``.gram`` file): only its
        #: sentences can be recognised, much more reliably than open dictation.
        grammar: str | None = None
        #: Listen for this one phrase only (keyword spotting).
        keyphrase: str | None = None
        #: Detection threshold of the keyphrase (lower: more detections, more false alarms).
        keyphrase_threshold: float = Field(default=1e-20, gt=0.0, le=1.0)

        @model_validator(mode="after")
        def _one_search(self) -> PocketSphinxSTT.Config:
            if self.grammar is not None and self.keyphrase is not None:
                raise ValueError("set either grammar or keyphrase, not both")
            return self

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self._worker = Worker("aria-stt-pocketsphinx")
        self._idle: list[Any] = []  # decoders not in use; touched on the worker thread only
        self._started = False

    @classmethod
    def check(cls, config: Config) -> Availability:
        """The package and its bundled model are installed; loads nothing."""
        spec = importlib.util.find_spec("pocketsphinx")
        if spec is None or spec.origin is None:
            return Availability(False, "pocketsphinx is not installed", _INSTALL_FIX)
        model = Path(spec.origin).parent / "model" / "en-us"
        if not (model / "en-us").is_dir():
            return Availability(
                False, f"pocketsphinx's bundled en-us model is missing from {model}", _INSTALL_FIX
            )
        grammar = config.grammar
        if grammar is not None and not _is_jsgf_text(grammar) and not Path(grammar).expanduser().is_file():
            return Availability(False, f"grammar file {grammar} not found", "fix stt.options.grammar")
        return Availability(True, LIMITED)

    async def start(self) -> None:
        """Load the model (and the grammar or keyphrase) into a first decoder."""
        if self._started:
            return
        if importlib.util.find_spec("pocketsphinx") is None:
            raise EngineUnavailable(f"pocketsphinx is not installed; {_INSTALL_FIX}", engine=ENGINE)
        self._worker.start()
        try:
            self._idle.append(await self._worker.run(self._new_decoder))
        except BaseException:
            self._worker.close()
            raise
        self._started = True

    async def aclose(self) -> None:
        self._worker.close()
        self._idle = []
        self._started = False

    async def health(self) -> EngineHealth:
        if not self._started:
            return EngineHealth(ok=False, detail=f"not started; {LIMITED}")
        mode = "grammar" if self.config.grammar else "keyphrase" if self.config.keyphrase else "dictation"
        return EngineHealth(ok=True, detail=f"pocketsphinx en-us {mode}; {LIMITED}")

    # -- recognition ---------------------------------------------------------------------------------

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        pcm = prepare_audio(audio, ENGINE).to_pcm16()
        self._require_started()
        utterance = _Utterance()
        try:
            if pcm:  # one block (full_utt=True normalisation measured worse on synthetic speech)
                await self._worker.run(self._feed, utterance, pcm)
            text, confidence = await self._worker.run(self._finish, utterance)
        finally:
            self._worker.detach(functools.partial(self._abandon, utterance), "releasing a decoder")
        return Transcription(text, is_final=True, confidence=confidence, language="en")

    async def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        """Partials as the hypothesis changes, then exactly one final once ``audio`` ends."""
        self._require_started()
        utterance = _Utterance()
        shown = ""
        try:
            async for chunk in audio:
                pcm = prepare_audio(chunk, ENGINE).to_pcm16()
                if not pcm:
                    continue
                text, confidence = await self._worker.run(self._feed, utterance, pcm)
                if text and text != shown:
                    shown = text
                    yield Transcription(text, is_final=False, confidence=confidence, language="en")
            text, confidence = await self._worker.run(self._finish, utterance)
            yield Transcription(text, is_final=True, confidence=confidence, language="en")
        finally:
            # Runs after any call still in flight (same thread, in order): the decoder goes back clean.
            self._worker.detach(functools.partial(self._abandon, utterance), "releasing a decoder")

    def _require_started(self) -> None:
        if not self._started:
            raise EngineUnavailable("pocketsphinx is not started; call start() first", engine=ENGINE)

    # -- worker-thread side --------------------------------------------------------------------------

    def _new_decoder(self) -> Any:
        import pocketsphinx

        began = time.perf_counter()
        try:
            decoder = pocketsphinx.Decoder(pocketsphinx.Config(loglevel="ERROR"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineUnavailable(f"cannot load the en-us model: {exc}", engine=ENGINE) from exc
        if self.config.grammar is not None:
            self._use_grammar(decoder, self.config.grammar)
        elif self.config.keyphrase is not None:
            self._use_keyphrase(decoder, self.config.keyphrase)
        log.info("pocketsphinx decoder ready in %.0f ms", 1000 * (time.perf_counter() - began))
        return decoder

    def _use_grammar(self, decoder: Any, grammar: str) -> None:
        where = "stt.options.grammar"
        if not _is_jsgf_text(grammar):
            path = Path(grammar).expanduser()
            try:
                grammar = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise EngineUnavailable(f"cannot read the grammar file {path}: {exc}", engine=ENGINE) from exc
            where = str(path)
        try:
            decoder.add_jsgf_string(_SEARCH, grammar)
        except (ValueError, RuntimeError) as exc:
            raise EngineUnavailable(
                f"invalid JSGF grammar in {where}: {exc} (the log names the line; every word must be in "
                "the en-us dictionary)",
                engine=ENGINE,
            ) from exc
        decoder.activate_search(_SEARCH)

    def _use_keyphrase(self, decoder: Any, phrase: str) -> None:
        words = phrase.lower().split()
        unknown = [word for word in words if decoder.lookup_word(word) is None]
        if not words or unknown:
            raise EngineUnavailable(
                f"keyphrase {phrase!r} has words missing from the en-us dictionary: {', '.join(unknown)}",
                engine=ENGINE,
            )
        decoder.config["kws_threshold"] = self.config.keyphrase_threshold  # read when the search is made
        decoder.add_keyphrase(_SEARCH, " ".join(words))
        decoder.activate_search(_SEARCH)

    def _feed(self, utterance: _Utterance, pcm: bytes) -> tuple[str, float]:
        try:
            if utterance.decoder is None:
                utterance.decoder = self._idle.pop() if self._idle else self._new_decoder()
                utterance.decoder.start_utt()
            utterance.decoder.process_raw(pcm, False, False)
            return _result(utterance.decoder)
        except RuntimeError as exc:
            raise EngineError(f"decoding failed: {exc}", engine=ENGINE, retryable=False) from exc

    def _finish(self, utterance: _Utterance) -> tuple[str, float]:
        decoder, utterance.decoder = utterance.decoder, None
        if decoder is None:
            return "", 0.0
        try:
            decoder.end_utt()
            return _result(decoder)
        except RuntimeError as exc:
            raise EngineError(f"decoding failed: {exc}", engine=ENGINE, retryable=False) from exc
        finally:
            self._idle.append(decoder)

    def _abandon(self, utterance: _Utterance) -> None:
        """Clean up after a stream stopped early: end its utterance and return the decoder."""
        decoder, utterance.decoder = utterance.decoder, None
        if decoder is not None:
            decoder.end_utt()
            self._idle.append(decoder)


def _is_jsgf_text(grammar: str) -> bool:
    return grammar.lstrip().startswith("#JSGF")


def _result(decoder: Any) -> tuple[str, float]:
    """The current hypothesis and its confidence."""
    hypothesis = decoder.hyp()
    text = " ".join(hypothesis.hypstr.split()) if hypothesis is not None else ""
    if not text:
        return "", 0.0
    posteriors = [
        segment.prob
        for segment in decoder.seg()
        if not segment.word.startswith(("<", "[")) and segment.word != "</s>"
    ]
    if not posteriors:
        return text, 0.0
    log_mean = sum(math.log(max(p, 1e-12)) for p in posteriors) / len(posteriors)
    return text, min(1.0, max(0.0, math.exp(log_mean)))
