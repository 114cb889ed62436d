"""Whisper speech recognition on faster-whisper (CTranslate2), with streaming partials.

Models are named like ``"base.en"`` or ``"small"`` (downloaded from the Hugging Face Hub on first use
into ``<data_dir>/models/whisper``, or fetched ahead of time with ``aria models pull whisper-base.en``),
or given as a local folder holding a converted model. Offline, a model that is not on disk fails within
a second or two with :class:`~aria.errors.EngineUnavailable`, so a fallback chain can take over.

Streaming: while audio arrives, the growing buffer is re-decoded every ``partial_interval_s`` of audio
on the engine's worker thread (greedy, never more than one decode in flight: intervals are skipped
while a decode is running). A :class:`~aria.engines.stt.streaming.StablePrefix` keeps the words two
consecutive decodes agreed on, so partials do not flicker; later decodes get the committed words as
Whisper's forced prefix, so they only decode the tail. When the audio ends the whole utterance is decoded
once more with ``beam_size`` and the same prefix (cheap to confirm, and the final never contradicts a
committed word).

Confidence is ``exp(avg_logprob) * (1 - no_speech_prob)`` over the segments (token-weighted), clipped to
[0, 1]; an empty transcript has confidence 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.engines.base import Availability, Capabilities, EngineConfig, EngineHealth, EngineKind
from aria.engines.models import models_dir
from aria.engines.stt.streaming import (
    STT_SAMPLE_RATE,
    StablePrefix,
    Worker,
    prepare_audio,
    whisper_confidence,
)
from aria.errors import EngineError, EngineUnavailable
from aria.types import AudioChunk, Transcription

__all__ = ["WhisperSTT"]

log = logging.getLogger(__name__)

ENGINE = "stt:whisper"
_INSTALL_FIX = "pip install 'aria-assistant[stt]'"
#: Whisper decodes 30 s windows; a forced prefix only makes sense inside the first one.
_WINDOW_S = 30.0
_HUB_PROBE_TIMEOUT_S = 2.0
_MEMORY_MB = {"tiny": 150, "base": 250, "small": 600, "medium": 1600, "large": 3500, "turbo": 1800}


class WhisperSTT:
    """faster-whisper speech recognition; see the module docstring."""

    kind: ClassVar[EngineKind] = "stt"
    name: str = "whisper"
    capabilities: Capabilities = Capabilities(streaming=True, partials=True, sample_rate=STT_SAMPLE_RATE)

    class Config(EngineConfig):
        #: A model name (``"base.en"``, ``"small"``, ``"large-v3"``), a Hub id, or a local folder.
        model: str = "base.en"
        device: Literal["auto", "cpu", "cuda"] = "auto"
        #: ``"auto"``: int8 on CPU, float16 on CUDA; or any CTranslate2 compute type.
        compute_type: str = "auto"
        #: Language code (``"en"``); ``None`` detects it.
        language: str | None = None
        #: Beam size of the final decode (partials are always greedy).
        beam_size: int = Field(default=5, ge=1, le=16)
        #: Temperatures tried in turn for the final when a decode looks wrong (partials use 0 only).
        temperatures: tuple[float, ...] = Field(default=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), min_length=1)
        #: Seconds of new audio between partial decodes; 0 disables partials.
        partial_interval_s: float = Field(default=0.5, ge=0.0)
        #: Give later decodes the committed words as Whisper's forced prefix: cheaper, and neither a later
        #: partial nor the final contradicts a committed word.
        prefix_committed: bool = True
        cpu_threads: int = Field(default=0, ge=0)
        #: Most tokens one decode may generate (None: Whisper's 448-token window). A cap bounds the cost of a
        #: decode that loops (noise heard as speech); also how benchmarks fix decode lengths.
        max_new_tokens: int | None = Field(default=None, ge=1)
        #: Never go to the network: a model that is not on disk is unavailable.
        local_files_only: bool = False
        data_dir: Path | None = None

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self._model: Any = None
        self._worker = Worker("aria-stt-whisper")
        self._device = ""
        self._compute_type = ""
        family = self.config.model.removeprefix("distil-").split(".")[0].split("-")[0]
        english_only = self.config.model.endswith(".en")
        self.capabilities = Capabilities(
            streaming=True,
            partials=self.config.partial_interval_s > 0,
            local=True,
            sample_rate=STT_SAMPLE_RATE,
            languages=("en",) if english_only else (),
            memory_mb=_MEMORY_MB.get(family, 500),
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    @classmethod
    def check(cls, config: Config) -> Availability:
        """faster-whisper installed and the model on disk (or downloadable on first use); loads nothing."""
        if importlib.util.find_spec("faster_whisper") is None:
            return Availability(False, "faster-whisper is not installed", _INSTALL_FIX)
        try:
            if _local_model(config) is not None:
                return Availability(True)
        except EngineUnavailable as exc:
            return Availability(False, str(exc), "set stt.options.model to a converted model folder")
        fix = f"run `aria models pull {_pull_name(config.model)}`"
        if config.local_files_only or _hub_offline():
            return Availability(False, f"whisper model {config.model!r} is not downloaded", fix)
        return Availability(True, f"whisper model {config.model!r} will be downloaded on first use", fix)

    async def start(self) -> None:
        """Find (or download) the model and load it on the worker thread."""
        if self._model is not None:
            return
        if importlib.util.find_spec("faster_whisper") is None:
            raise EngineUnavailable(f"faster-whisper is not installed; {_INSTALL_FIX}", engine=ENGINE)
        self._worker.start()
        try:
            self._model = await self._worker.run(self._load)
        except BaseException:
            self._worker.close()
            raise

    async def aclose(self) -> None:
        self._worker.close()
        self._model = None

    async def health(self) -> EngineHealth:
        if self._model is None:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(
            ok=True, detail=f"whisper {self.config.model} on {self._device} ({self._compute_type})"
        )

    # -- recognition ---------------------------------------------------------------------------------

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        """The final transcription of one whole utterance."""
        samples = prepare_audio(audio, ENGINE).as_float32()
        self._require_model()
        if samples.size == 0:
            return Transcription("", is_final=True, confidence=0.0, language=self.config.language)
        return await self._worker.run(self._decode, samples, True, None)

    async def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        """Partials while ``audio`` arrives, then exactly one final once it ends."""
        self._require_model()
        interval = round(self.config.partial_interval_s * STT_SAMPLE_RATE)
        blocks: list[npt.NDArray[np.float32]] = []
        size = decoded_size = 0
        stable = StablePrefix()
        shown = ""
        source = aiter(audio)
        next_chunk: asyncio.Future[AudioChunk] | None = None
        decoding: asyncio.Future[Transcription] | None = None
        try:
            while True:
                if next_chunk is None:
                    next_chunk = asyncio.create_task(_next(source), name="whisper-audio")
                waiting: set[asyncio.Future[Any]] = {next_chunk}
                if decoding is not None:
                    waiting.add(decoding)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if decoding is not None and decoding in done:
                    partial, decoding = decoding.result(), None
                    text = stable.update(partial.text)
                    if text and text != shown:
                        shown = text
                        yield Transcription(
                            text, is_final=False, confidence=partial.confidence, language=partial.language
                        )
                if next_chunk in done:
                    future, next_chunk = next_chunk, None
                    try:
                        chunk = future.result()
                    except StopAsyncIteration:
                        break
                    block = prepare_audio(chunk, ENGINE).as_float32()
                    if block.size:
                        blocks.append(block)
                        size += block.size
                if decoding is None and interval and size - decoded_size >= interval:
                    decoded_size = size
                    blocks = [np.concatenate(blocks)] if len(blocks) > 1 else blocks
                    decoding = self._worker.submit(self._decode, blocks[0], False, self._prefix(stable, size))
            if decoding is not None:  # already running: let it extend the committed words
                partial, decoding = await decoding, None
                stable.update(partial.text)
            if size == 0:
                yield Transcription("", is_final=True, confidence=0.0, language=self.config.language)
                return
            samples = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
            yield await self._worker.run(self._decode, samples, True, self._prefix(stable, size))
        finally:
            for pending in (next_chunk, decoding):
                if pending is not None:
                    _discard(pending)

    # -- worker-thread side --------------------------------------------------------------------------

    def _prefix(self, stable: StablePrefix, size: int) -> str | None:
        if not self.config.prefix_committed or size > _WINDOW_S * STT_SAMPLE_RATE:
            return None
        return stable.committed_text or None

    def _require_model(self) -> Any:
        if self._model is None:
            raise EngineUnavailable("whisper is not started; call start() first", engine=ENGINE)
        return self._model

    def _load(self) -> Any:
        from faster_whisper import WhisperModel

        vendor_log = logging.getLogger("faster_whisper")
        if vendor_log.level == logging.NOTSET:  # it logs every decode at INFO, twice a second when streaming
            vendor_log.setLevel(logging.WARNING)

        path = _resolve_model(self.config)
        device, compute_type = _device_and_compute_type(self.config)
        began = time.perf_counter()
        try:
            model = WhisperModel(
                path,
                device=device,
                compute_type=compute_type,
                cpu_threads=self.config.cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineUnavailable(f"cannot load whisper model from {path}: {exc}", engine=ENGINE) from exc
        self._device, self._compute_type = device, compute_type
        elapsed_ms = 1000 * (time.perf_counter() - began)
        log.info(
            "loaded whisper %s on %s (%s) in %.0f ms", self.config.model, device, compute_type, elapsed_ms
        )
        return model

    def _decode(self, samples: npt.NDArray[np.float32], final: bool, prefix: str | None) -> Transcription:
        model = self._require_model()
        options: dict[str, Any] = {"language": self.config.language, "beam_size": 1, "temperature": 0.0}
        if final:
            options.update(beam_size=self.config.beam_size, temperature=list(self.config.temperatures))
        if prefix:
            options["prefix"] = prefix
        if self.config.max_new_tokens is not None:
            options["max_new_tokens"] = self.config.max_new_tokens
        try:
            segments_iter, info = model.transcribe(samples, condition_on_previous_text=False, **options)
            segments = list(segments_iter)  # decoding happens while iterating
        except (RuntimeError, ValueError, IndexError) as exc:
            raise EngineError(f"decoding failed: {exc}", engine=ENGINE, retryable=False) from exc
        text = " ".join("".join(segment.text for segment in segments).split())
        if prefix and not text.casefold().startswith(prefix.casefold()):  # the prefix is part of the answer
            text = f"{prefix} {text}".strip()
        return Transcription(
            text,
            is_final=final,
            confidence=whisper_confidence(_scores(segments)) if text else 0.0,
            language=self.config.language or info.language,
        )


def _scores(segments: Sequence[Any]) -> list[tuple[int, float, float]]:
    return [(len(s.tokens), float(s.avg_logprob), float(s.no_speech_prob)) for s in segments]


async def _next(source: AsyncIterator[AudioChunk]) -> AudioChunk:
    # anext() inside the task: a task cancelled before it runs then leaves no un-awaited asend() behind.
    return await anext(source)


def _discard(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


def _pull_name(model: str) -> str:
    return f"whisper-{model}"


def _whisper_root(config: WhisperSTT.Config) -> Path:
    return models_dir(config.data_dir) / "whisper"


def _is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def _local_model(config: WhisperSTT.Config) -> str | None:
    """The model's folder if it is on disk (no network); raises for a folder path that holds no model."""
    name = config.model
    given = Path(name).expanduser()
    looks_like_path = given.is_absolute() or name.startswith((".", "~")) or (os.sep != "/" and os.sep in name)
    if given.exists() or looks_like_path:
        if _is_model_dir(given):
            return str(given)
        raise EngineUnavailable(
            f"whisper model folder {str(given)!r} does not hold a converted model (no model.bin)",
            engine=ENGINE,
        )
    root = _whisper_root(config)
    if _is_model_dir(root / name):  # a plain folder, e.g. written by `aria models pull`
        return str(root / name)
    if importlib.util.find_spec("faster_whisper") is None:
        return None
    from faster_whisper.utils import download_model

    try:
        path = download_model(name, local_files_only=True, cache_dir=str(root))
    except ValueError as exc:  # neither a known size nor a Hub id
        raise EngineUnavailable(
            f"unknown whisper model {name!r}: use a size such as 'base.en' or 'small', a Hub id, "
            "or a folder holding a converted model",
            engine=ENGINE,
        ) from exc
    except Exception as exc:  # LocalEntryNotFoundError and friends: not in the cache
        log.debug("whisper model %s is not in %s: %s", name, root, exc)
        return None
    return str(path) if _is_model_dir(Path(path)) else None


def _resolve_model(config: WhisperSTT.Config) -> str:
    """A local folder for the model, downloading it only when the Hub answers quickly."""
    local = _local_model(config)
    if local is not None:
        return local
    name, pull = config.model, _pull_name(config.model)
    missing = f"whisper model {name!r} is not downloaded"
    if config.local_files_only or _hub_offline():
        why = (
            "local_files_only is set"
            if config.local_files_only
            else "the hub cannot be reached (HF_HUB_OFFLINE)"
        )
        raise EngineUnavailable(
            f"{missing} and {why}; run `aria models pull {pull}` while online, "
            "or set stt.options.model to a local folder",
            engine=ENGINE,
        )
    endpoint = _hub_endpoint()
    if not _hub_reachable(endpoint):
        raise EngineUnavailable(
            f"{missing} and the hub cannot be reached ({endpoint}); run `aria models pull {pull}` "
            "on a connected machine, or set stt.options.model to a local folder",
            engine=ENGINE,
        )
    from faster_whisper.utils import download_model

    log.info("downloading whisper model %s into %s", name, _whisper_root(config))
    try:
        return str(download_model(name, cache_dir=str(_whisper_root(config))))
    except Exception as exc:  # the Hub client raises many types (HTTP, OS, validation)
        raise EngineUnavailable(
            f"{missing} and downloading it failed ({type(exc).__name__}: {exc}); "
            f"run `aria models pull {pull}`",
            engine=ENGINE,
        ) from exc


def _hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _hub_reachable(endpoint: str) -> bool:
    """One quick request to the Hub (through any configured proxy), so offline fails in seconds."""
    if importlib.util.find_spec("httpx") is None:  # huggingface_hub < 1.0: its own timeouts apply
        return True
    import httpx

    try:
        with httpx.Client(timeout=_HUB_PROBE_TIMEOUT_S, follow_redirects=False) as client:
            client.head(f"{endpoint}/api/models")
    except httpx.HTTPError as exc:
        log.info("Hugging Face Hub unreachable at %s: %s", endpoint, exc)
        return False
    return True


def _device_and_compute_type(config: WhisperSTT.Config) -> tuple[str, str]:
    device = config.device
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute_type = config.compute_type
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type
