"""``turn:smart_turn``: Pipecat's Smart Turn v3.2 end-of-turn model on onnxruntime, plus a text cue.

Smart Turn v3.2 (BSD-2-Clause) is a Whisper-tiny encoder with a classifier head, exported to ONNX and
quantised to int8 (8 MB). It hears the last 8 s of the turn (16 kHz mono, as Whisper log-mel features:
:mod:`aria.engines.turn.features`) and returns the probability that the turn is complete. One call takes
tens of milliseconds on one CPU thread; it runs on a worker thread so the event loop never waits on it.
When the transcript so far is known, :mod:`aria.engines.turn.text` shifts that probability ("... and the"
is unfinished whatever the voice did).

Where the model comes from, in order (the first that exists wins):

1. the ``model_path`` option (when it is set and the file is missing the engine is unavailable: no silent
   fallback to another model);
2. ``<models_dir>/smart-turn/smart-turn-v3.2-cpu.onnx``, fetched by ``aria models pull smart-turn``;
3. ``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx`` inside the ``pipecat-ai`` wheel
   (``pip install --no-deps pipecat-ai``), found with :func:`importlib.util.find_spec`, which does not
   import Pipecat (its ``__init__`` needs dependencies Aria does not install).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.engines.base import (
    Availability,
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
    TurnPrediction,
)
from aria.engines.models import models_dir
from aria.engines.onnx import cpu_session
from aria.engines.turn.features import N_FRAMES, N_MELS, WINDOW_SAMPLES, log_mel
from aria.engines.turn.text import combine, text_cue
from aria.errors import EngineError, EngineUnavailable, InvalidInput

__all__ = ["DEFAULT_MODEL", "MODEL_FILE", "SmartTurn", "find_model"]

log = logging.getLogger(__name__)

_ENGINE = "turn:smart_turn"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
#: Where ``aria models pull smart-turn`` puts the model, under the models folder.
DEFAULT_MODEL = Path("smart-turn") / MODEL_FILE
_WHEEL_FILE = ("audio", "turn", "smart_turn", "data", MODEL_FILE)
_INSTALL_FIX = "pip install 'aria-assistant[turn]'"
_MODEL_FIX = (
    "run `aria models pull smart-turn`, or pip install --no-deps pipecat-ai (its wheel bundles the model), "
    "or set turn.options.model_path to a Smart Turn v3 .onnx file"
)


def _wheel_model() -> Path | None:
    """The model inside the pipecat-ai wheel, found without importing pipecat."""
    try:
        spec = importlib.util.find_spec("pipecat")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location).joinpath(*_WHEEL_FILE)
        if candidate.is_file():
            return candidate
    return None


def find_model(model_path: Path | None = None, data_dir: Path | None = None) -> tuple[Path | None, str]:
    """The Smart Turn ONNX file to use and where it came from (``"model_path"``, ``"models folder"`` or
    ``"pipecat-ai"``), or ``(None, reason)`` when there is none."""
    if model_path is not None:
        path = Path(model_path).expanduser()
        if path.is_file():
            return path, "model_path"
        return None, f"model_path {str(path)!r} is not a file"
    pulled = models_dir(data_dir) / DEFAULT_MODEL
    if pulled.is_file():
        return pulled, "models folder"
    bundled = _wheel_model()
    if bundled is not None:
        return bundled, "pipecat-ai"
    return None, f"no Smart Turn model found (not at {pulled}, and pipecat-ai is not installed)"


class SmartTurn:
    """Smart Turn v3 on onnxruntime, with the transcript's cue; see the module docstring."""

    kind: ClassVar[EngineKind] = "turn"
    name: str = "smart_turn"
    capabilities: Capabilities = Capabilities(streaming=False, sample_rate=16000, local=True, memory_mb=60)

    class Config(EngineConfig):
        #: A Smart Turn v3 ONNX file; by default the pulled one, else the one in the pipecat-ai wheel.
        model_path: Path | None = None
        #: Filled by the engine factory from the settings' ``data_dir``.
        data_dir: Path | None = None
        #: Completion probability at or above which the turn is complete.
        threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
        #: onnxruntime intra-op threads; one keeps a call from competing with the rest of the pipeline.
        threads: int = Field(default=1, ge=1, le=64)
        #: Shift the audio probability by the transcript's cue (:mod:`aria.engines.turn.text`).
        use_text: bool = True
        #: Language of the transcript's word lists (``en``, ``de``, ``fr``, ``es``; others: punctuation only).
        language: str = "en"

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        problem = self._problem(self.config)
        if problem is not None:
            raise EngineUnavailable("; ".join(problem), engine=_ENGINE)
        self._session: Any = None
        self._input_name = "input_features"
        self.model_path: Path | None = None
        self._calls = 0
        self._inference_s = 0.0

    @staticmethod
    def _problem(config: Config) -> tuple[str, str] | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed", _INSTALL_FIX
        path, origin = find_model(config.model_path, config.data_dir)
        return (origin, _MODEL_FIX) if path is None else None

    # -- availability and lifecycle ------------------------------------------------------------------

    @classmethod
    def check(cls, config: Config) -> Availability:
        """Whether onnxruntime and a model file are present (nothing is loaded)."""
        problem = cls._problem(config)
        if problem is not None:
            return Availability(False, *problem)
        path, origin = find_model(config.model_path, config.data_dir)
        return Availability(True, f"{path} ({origin})")

    async def start(self) -> None:
        """Load the ONNX model (off the event loop). Raises :class:`EngineUnavailable` when it cannot."""
        if self._session is not None:
            return
        path, origin = find_model(self.config.model_path, self.config.data_dir)
        if path is None:
            raise EngineUnavailable(f"{origin}; {_MODEL_FIX}", engine=_ENGINE)
        self._session = await asyncio.to_thread(self._load, path)
        self.model_path = path
        log.info("Smart Turn loaded from %s (%s)", path, origin)

    def _load(self, path: Path) -> Any:
        session = cpu_session(
            path, threads=self.config.threads, engine=_ENGINE, fix=_MODEL_FIX, install_fix=_INSTALL_FIX
        )
        inputs = session.get_inputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        # [batch, 80, 800]; a symbolic (str) or unknown (None) frame count is fine.
        fits = (
            len(shape) == 3 and shape[1] == N_MELS and (not isinstance(shape[2], int) or shape[2] == N_FRAMES)
        )
        if not fits:
            described = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise EngineUnavailable(
                f"{path} is not a Smart Turn v3 model (inputs: {described}; expected one "
                f"[batch, {N_MELS}, {N_FRAMES}] input)",
                engine=_ENGINE,
            )
        self._input_name = inputs[0].name
        return session

    async def aclose(self) -> None:
        """Release the model; ``start()`` loads it again."""
        self._session = None

    async def health(self) -> EngineHealth:
        if self._session is None:
            return EngineHealth(ok=False, detail="not started")
        speed = f", {self.mean_inference_ms:.1f} ms per call" if self._calls else ""
        return EngineHealth(ok=True, detail=f"{self.model_path}{speed}")

    @property
    def mean_inference_ms(self) -> float:
        """Mean time of one prediction (features and model) since the model was loaded."""
        return 1000.0 * self._inference_s / self._calls if self._calls else 0.0

    # -- prediction ----------------------------------------------------------------------------------

    async def predict(self, audio: npt.NDArray[np.float32], text: str | None = None) -> TurnPrediction:
        """Whether the turn in ``audio`` (16 kHz mono float32, the whole utterance; its last 8 s are used)
        is complete, the audio model's probability shifted by the cue in ``text``."""
        if self._session is None:
            raise EngineError("the model is not loaded; await start() first", engine=_ENGINE, retryable=False)
        samples = np.asarray(audio)
        if samples.ndim != 1 or samples.dtype != np.float32:
            raise InvalidInput(
                f"turn audio must be 1-D float32 at 16 kHz, got {samples.dtype} shape {samples.shape}"
            )
        heard = await asyncio.to_thread(self.audio_probability, samples)
        cue = text_cue(text, self.config.language) if self.config.use_text else None
        probability = combine(heard, cue)
        reason = f"audio {heard:.2f}" + (f", text {cue.shift:+.1f} ({cue.reason})" if cue else "")
        return TurnPrediction(probability >= self.config.threshold, probability, reason)

    def audio_probability(self, audio: npt.NDArray[np.float32]) -> float:
        """The model's completion probability for ``audio`` alone (blocking: call it off the event loop)."""
        session = self._session
        if session is None:
            raise EngineError("the model is not loaded; await start() first", engine=_ENGINE, retryable=False)
        began = time.perf_counter()
        tail = audio[-WINDOW_SAMPLES:]
        if not np.all(np.isfinite(tail)):
            raise InvalidInput("turn audio contains NaN or infinite samples")
        features = log_mel(tail)[np.newaxis]
        try:
            outputs = session.run(None, {self._input_name: features})
        except Exception as exc:  # onnxruntime raises its own untyped pybind errors
            raise EngineError(f"inference failed: {exc}", engine=_ENGINE, retryable=False) from exc
        self._inference_s += time.perf_counter() - began
        self._calls += 1
        value = float(np.asarray(outputs[0]).reshape(-1)[0])
        if not np.isfinite(value):
            raise EngineError(f"the model returned a probability of {value}", engine=_ENGINE)
        return min(1.0, max(0.0, value))
