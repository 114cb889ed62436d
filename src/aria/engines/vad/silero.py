"""Silero VAD: a small neural voice activity detector, run directly on onnxruntime (no torch).

Where the model comes from, in order (the first that exists wins; ``silero_vad`` is never imported, its
``__init__`` imports torch):

1. the ``model_path`` option (when it is set and the file is missing, the engine is unavailable: no
   silent fallback to another model);
2. ``silero_vad/data/silero_vad.onnx`` inside the ``silero-vad`` wheel (install it with
   ``pip install --no-deps silero-vad``: the ONNX model needs none of its dependencies);
3. ``faster_whisper/assets/silero_vad_v6.onnx`` bundled with faster-whisper.

Both packages are located with :func:`importlib.util.find_spec`, which does not execute a top-level package.
Two model signatures are supported, recognised from the model's inputs:

==========  ========================================  ====================  ===========
signature   inputs                                    outputs               rates
==========  ========================================  ====================  ===========
``state``   ``input [1, ctx + win]``, ``state [2, 1,  ``output [1, 1]``,    8 and 16 kHz
            128]``, ``sr`` (int64 scalar)             ``stateN``
``h/c``     ``input [1, 576]``, ``h [1, 1, 128]``,    ``speech_probs``,     16 kHz
            ``c [1, 1, 128]``                         ``hn``, ``cn``
==========  ========================================  ====================  ===========

(the silero-vad 5/6 wheel's model has the first, faster-whisper's ``silero_vad_v6.onnx`` the second). The
window ``win`` is 512 samples at 16 kHz (32 ms) and 256 at 8 kHz, and each window is preceded by the last
``ctx`` samples of the previous one (64 at 16 kHz, 32 at 8 kHz; zeros for the first).

:meth:`SileroVAD.process` accepts chunks of any length: samples are buffered into windows, every full
window is scored (one inference, about 0.1-0.2 ms on one CPU thread, so it runs inline on the caller's
thread) and the probabilities go through :class:`~aria.engines.vad.segmenter.SpeechSegmenter` (by way
of :class:`~aria.engines.vad.segmenter.ChunkSegmenter`, shared with ``vad:webrtc``). A call
returns the event decided within its chunk; when one chunk decides two events (only possible for chunks
longer than ``min_speech_ms`` or ``min_silence_ms``), the first is returned and the others are queued and
returned, in order, by the next calls. :meth:`SileroVAD.process_all` returns them all at once instead.
An event's ``timestamp`` is the time of the first sample of the window that decided it, counted from the
``timestamp`` of the chunk that completed that window.

One onnxruntime session per model file (and thread count) serves every :class:`SileroVAD` in the process
(``InferenceSession.run`` may be called from several threads at once): each instance keeps only its own
recurrent state, context and buffers (a few KB), so a server's connections share one ~10 MB model. The
session is freed when the last instance using it is closed or collected.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.engines.base import (
    Availability,
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
)
from aria.engines.onnx import cpu_session
from aria.engines.vad.segmenter import ChunkSegmenter, FrameVAD, SpeechSegmenter
from aria.errors import EngineError, EngineUnavailable, InvalidInput

__all__ = ["SileroVAD", "find_model"]

log = logging.getLogger(__name__)

_ENGINE = "vad:silero"
_INSTALL_FIX = "pip install 'aria-assistant[vad]'"
_MODEL_FIX = (
    "pip install --no-deps silero-vad (the wheel bundles the ONNX model; torch is not needed), "
    "or set vad.options.model_path to a Silero VAD .onnx file"
)
_WINDOW = {16000: 512, 8000: 256}
_CONTEXT = {16000: 64, 8000: 32}
_BUNDLED = (("silero_vad", ("data", "silero_vad.onnx")), ("faster_whisper", ("assets", "silero_vad_v6.onnx")))
#: Models that only run at 16 kHz (faster-whisper's has no ``sr`` input).
_ONLY_16K = frozenset({"faster_whisper"})

_Signature = Literal["state", "hc"]


@dataclass(eq=False)
class _Shared:
    """One loaded model, shared by every instance that uses the same file, threads and rate."""

    session: Any
    signature: _Signature


#: Loaded models by (file, threads, sample rate); an entry lives while some instance holds it.
_LOADED: weakref.WeakValueDictionary[tuple[str, int, int], _Shared] = weakref.WeakValueDictionary()
_LOADING = threading.Lock()


def _package_file(package: str, parts: tuple[str, ...]) -> Path | None:
    """A file inside an installed top-level package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location).joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def find_model(model_path: Path | None = None) -> tuple[Path | None, str]:
    """The Silero ONNX model to use and where it came from (``"model_path"``, ``"silero_vad"`` or
    ``"faster_whisper"``), or ``(None, reason)`` when there is none."""
    if model_path is not None:
        path = Path(model_path).expanduser()
        if path.is_file():
            return path, "model_path"
        return None, f"model_path {str(path)!r} is not a file"
    for package, parts in _BUNDLED:
        found = _package_file(package, parts)
        if found is not None:
            return found, package
    return None, "no Silero VAD model found (neither silero-vad nor faster-whisper is installed)"


class SileroVAD(FrameVAD):
    """Silero VAD on onnxruntime; see the module docstring."""

    kind: ClassVar[EngineKind] = "vad"
    name: str = "silero"
    capabilities: Capabilities = Capabilities(streaming=True, sample_rate=16000, local=True, memory_mb=30)

    class Config(EngineConfig):
        #: Speech probability at or above which a window counts as speech (the end uses threshold - 0.15).
        threshold: float = Field(default=0.5, gt=0.0, le=1.0)
        min_speech_ms: int = Field(default=64, ge=0)
        min_silence_ms: int = Field(default=320, ge=0)
        sample_rate: Literal[16000, 8000] = 16000
        #: A Silero VAD ONNX file; by default the one bundled with silero-vad or faster-whisper.
        model_path: Path | None = None
        #: onnxruntime intra-op threads; one is fastest for a model this small.
        threads: int = Field(default=1, ge=1, le=64)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        rate = self.config.sample_rate
        if rate != self.capabilities.sample_rate:
            self.capabilities = Capabilities(streaming=True, sample_rate=rate, local=True, memory_mb=30)
        self.window = _WINDOW[rate]
        self.context = _CONTEXT[rate]
        segmenter = SpeechSegmenter(
            threshold=self.config.threshold,
            min_speech_ms=self.config.min_speech_ms,
            min_silence_ms=self.config.min_silence_ms,
        )
        self._stream = ChunkSegmenter(
            segmenter,
            frame_size=self.window,
            sample_rate=rate,
            score=self._score,
            label="Silero VAD",
            rates="16000 or 8000",
        )
        self._session: Any = None
        self._shared: _Shared | None = None
        self._signature: _Signature = "state"
        self._output_names: list[str] = []
        self._feeds: dict[str, npt.NDArray[Any]] = {}
        self._input = np.zeros((1, self.context + self.window), dtype=np.float32)
        self.model_path: Path | None = None
        self.last_probability = 0.0
        self._windows = 0
        self._inference_s = 0.0

    # -- availability and lifecycle ------------------------------------------------------------------

    @classmethod
    def check(cls, config: Config) -> Availability:
        """Whether onnxruntime and a model file are present (nothing is loaded)."""
        if importlib.util.find_spec("onnxruntime") is None:
            return Availability(False, "onnxruntime is not installed", _INSTALL_FIX)
        path, origin = find_model(config.model_path)
        if path is None:
            return Availability(False, origin, _MODEL_FIX)
        if config.sample_rate != 16000 and origin in _ONLY_16K:
            return Availability(
                False,
                f"the Silero model bundled with {origin} runs at 16000 Hz only, not {config.sample_rate} Hz",
                "set vad.options.sample_rate to 16000, or pip install --no-deps silero-vad",
            )
        return Availability(True, f"{path} ({origin})")

    async def start(self) -> None:
        """Load the ONNX model (off the event loop). Raises :class:`EngineUnavailable` when it cannot."""
        if self._session is not None:
            return
        if importlib.util.find_spec("onnxruntime") is None:
            raise EngineUnavailable(f"onnxruntime is not installed; {_INSTALL_FIX}", engine=_ENGINE)
        path, origin = find_model(self.config.model_path)
        if path is None:
            raise EngineUnavailable(f"{origin}; {_MODEL_FIX}", engine=_ENGINE)
        shared = await asyncio.to_thread(self._shared_model, path)
        self._shared = shared
        self._session, self._signature, self.model_path = shared.session, shared.signature, path
        self._output_names = [output.name for output in shared.session.get_outputs()]
        self.reset()
        log.debug("Silero VAD ready from %s (%s, %s signature)", path, origin, shared.signature)

    def _shared_model(self, path: Path) -> _Shared:
        """The process's loaded model for ``path`` (loaded now if no instance holds it)."""
        key = (str(path.resolve()), self.config.threads, self.config.sample_rate)
        with _LOADING:
            shared = _LOADED.get(key)
            if shared is None:
                shared = _Shared(*self._load(path))
                _LOADED[key] = shared
                log.info("Silero VAD loaded from %s (%s signature)", path, shared.signature)
            return shared

    def _load(self, path: Path) -> tuple[Any, _Signature]:
        session = cpu_session(path, threads=self.config.threads, engine=_ENGINE, fix=_MODEL_FIX)
        inputs = {i.name: i for i in session.get_inputs()}
        if set(inputs) == {"input", "state", "sr"}:
            return session, "state"
        if set(inputs) == {"input", "h", "c"}:
            if self.config.sample_rate != 16000:
                raise EngineUnavailable(
                    f"{path} (no 'sr' input) runs at 16000 Hz only, not {self.config.sample_rate} Hz; "
                    "set sample_rate to 16000 or use the silero-vad wheel's model",
                    engine=_ENGINE,
                )
            width = inputs["input"].shape[-1]
            if isinstance(width, int) and width != self.context + self.window:
                raise EngineUnavailable(
                    f"{path} expects windows of {width} samples, not {self.context + self.window}",
                    engine=_ENGINE,
                )
            return session, "hc"
        described = ", ".join(f"{i.name} {i.shape}" for i in inputs.values())
        raise EngineUnavailable(
            f"{path} is not a supported Silero VAD model (inputs: {described}); expected Silero VAD v5/v6 "
            "with inputs input/state/sr or input/h/c",
            engine=_ENGINE,
        )

    async def aclose(self) -> None:
        """Let go of the model (freed once no instance holds it); ``start()`` takes it again."""
        self._session = self._shared = None
        self.reset()

    async def health(self) -> EngineHealth:
        if self._session is None:
            return EngineHealth(ok=False, detail="not started")
        speed = f", {self.mean_inference_ms:.3f} ms per window" if self._windows else ""
        return EngineHealth(
            ok=True,
            detail=f"{self.model_path} ({self._signature} signature) at {self.config.sample_rate} Hz{speed}",
        )

    # -- streaming -----------------------------------------------------------------------------------

    @property
    def mean_inference_ms(self) -> float:
        """Mean time of one model inference since the model was loaded (0 before the first)."""
        return 1000.0 * self._inference_s / self._windows if self._windows else 0.0

    def reset(self) -> None:
        """Back to silence with a fresh model state, as at the start of a new stream: clears the buffered
        samples, the model's recurrent state and context, and any queued event."""
        self._stream.reset()
        self._input.fill(0.0)
        self.last_probability = 0.0
        if self._signature == "state":
            self._feeds = {
                "state": np.zeros((2, 1, 128), dtype=np.float32),
                "sr": np.array(self.config.sample_rate, dtype=np.int64),
            }
        else:
            self._feeds = {"h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)}
        self._feeds["input"] = self._input

    def _require_ready(self) -> None:
        if self._session is None:
            raise EngineError("the model is not loaded; await start() first", engine=_ENGINE, retryable=False)

    def _score(self, window: npt.NDArray[np.float32]) -> float:
        """Score one window of ``self.window`` float32 samples, advancing the model state."""
        self._require_ready()
        if window.shape != (self.window,):
            raise InvalidInput(f"a Silero window is {self.window} samples, got shape {window.shape}")
        ctx = self.context
        self._input[0, ctx:] = window
        began = time.perf_counter()
        try:
            outputs = self._session.run(self._output_names, self._feeds)
        except Exception as exc:  # onnxruntime raises its own untyped pybind errors
            raise EngineError(f"inference failed: {exc}", engine=_ENGINE, retryable=False) from exc
        self._inference_s += time.perf_counter() - began
        self._windows += 1
        self._input[0, :ctx] = self._input[0, -ctx:]
        if self._signature == "state":
            self._feeds["state"] = outputs[1]
        else:
            self._feeds["h"], self._feeds["c"] = outputs[1], outputs[2]
        value = float(np.asarray(outputs[0]).reshape(-1)[0])
        if not np.isfinite(value):
            raise EngineError(f"the model returned a speech probability of {value}", engine=_ENGINE)
        self.last_probability = min(1.0, max(0.0, value))
        return self.last_probability
