"""CLIP image encoder: a CLIP vision tower exported to ONNX, run on onnxruntime.

Preprocessing follows CLIP's own: decode to RGB, resize the shortest side to ``image_size`` (Pillow
bicubic), centre-crop a square, scale to [0, 1], normalise with CLIP's mean and standard deviation, NCHW.
The model's embedding output (``image_embeds`` when the graph names one, else its first 2-D output) is
L2-normalised. Decoding, preprocessing and inference run on one worker thread owned by the engine, so the
event loop never waits on them, and embeddings are cached by a hash of the image
(:class:`~aria.engines.vision.cache.EmbeddingCache`), so a repeated frame costs a hash, not a forward pass.

The default model is ``<models_dir>/clip/clip-vit-b32-vision.onnx``, fetched by ``aria models pull clip``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.engines.base import Availability, Capabilities, EngineConfig, EngineHealth, EngineKind
from aria.engines.models import models_dir
from aria.engines.vision.cache import EmbeddingCache, image_key
from aria.engines.vision.images import MAX_PIXELS, center_crop, decode_image, resize
from aria.errors import EngineError, EngineUnavailable
from aria.types import ImageFrame, VisionEmbedding

__all__ = ["CLIP_MEAN", "CLIP_STD", "DEFAULT_MODEL", "ClipEncoder", "preprocess"]

logger = logging.getLogger(__name__)

ENGINE = "vision:clip"
#: Where the model lives under ``models_dir``.
DEFAULT_MODEL = Path("clip") / "clip-vit-b32-vision.onnx"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PULL_HINT = "run `aria models pull clip`"
_INSTALL_HINT = "pip install 'aria-assistant[vision]'"
_EMBEDDING_NAMES = ("image_embeds", "image_embedding", "embeddings", "embedding")

Float32Array = npt.NDArray[np.float32]


def preprocess(
    rgb: npt.NDArray[np.uint8],
    image_size: int = 224,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> Float32Array:
    """CLIP's preprocessing of one ``(h, w, 3)`` RGB image: a float32 ``(3, image_size, image_size)``."""
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    short, long = min(height, width), max(height, width)
    # As torchvision's Resize(int) and transformers' CLIPImageProcessor: the short side becomes exactly
    # image_size, the long side is scaled and truncated.
    new_long = max(image_size, int(image_size * long / short))
    new_w, new_h = (image_size, new_long) if width <= height else (new_long, image_size)
    square = center_crop(resize(rgb, (new_w, new_h), "bicubic"), image_size)
    tensor = square.astype(np.float32) * np.float32(1.0 / 255.0)
    tensor -= np.asarray(mean, dtype=np.float32)
    tensor /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(tensor.transpose(2, 0, 1))


class ClipEncoder:
    """Image embeddings from a CLIP vision model on onnxruntime; see the module docstring."""

    kind: ClassVar[EngineKind] = "vision"
    name: str = "clip"
    capabilities: Capabilities = Capabilities(streaming=False, vision=True, local=True, memory_mb=400)

    class Config(EngineConfig):
        #: The ONNX file; ``<models_dir>/clip/clip-vit-b32-vision.onnx`` when unset.
        model_path: Path | None = None
        #: Filled by the engine factory from the settings' ``data_dir``.
        data_dir: Path | None = None
        image_size: int = Field(default=224, ge=16, le=1024)
        mean: tuple[float, float, float] = CLIP_MEAN
        std: tuple[float, float, float] = CLIP_STD
        #: Seconds a cached embedding stays valid, and how many are kept (0 turns the cache off).
        cache_ttl_s: float = Field(default=300.0, gt=0)
        cache_size: int = Field(default=256, ge=0)
        #: onnxruntime intra-op threads (0 lets onnxruntime choose).
        threads: int = Field(default=0, ge=0)
        #: The model output holding the embedding; found automatically when unset.
        output_name: str | None = None
        max_pixels: int = Field(default=MAX_PIXELS, gt=0)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.cache: EmbeddingCache[Float32Array] = EmbeddingCache(
            self.config.cache_size, self.config.cache_ttl_s
        )
        self._session: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._input_name = ""
        self._input_dtype: type[np.floating[Any]] = np.float32
        self._output_name = ""
        self._dimension: int | None = None
        self.last_inference_ms: float | None = None

    @property
    def model_path(self) -> Path:
        return self.config.model_path or models_dir(self.config.data_dir) / DEFAULT_MODEL

    @property
    def dimension(self) -> int | None:
        """The embedding size, once known (from the graph, or after the first image)."""
        return self._dimension

    @classmethod
    def check(cls, config: Config) -> Availability:
        """Whether onnxruntime, Pillow and the model file are present (nothing is loaded)."""
        missing = [pkg for pkg, mod in (("onnxruntime", "onnxruntime"), ("pillow", "PIL")) if not _has(mod)]
        if missing:
            return Availability(False, f"{' and '.join(missing)} not installed", _INSTALL_HINT)
        path = config.model_path or models_dir(config.data_dir) / DEFAULT_MODEL
        if not path.is_file():
            return Availability(False, f"CLIP model not found at {path}", _PULL_HINT)
        return Availability(True)

    async def start(self) -> None:
        if self._session is not None:
            return
        path = self.model_path
        if not path.is_file():
            raise EngineUnavailable(f"CLIP model not found at {path}; {_PULL_HINT}", engine=ENGINE)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aria-clip")
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._load, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        logger.info(
            "CLIP encoder loaded from %s (input %s, output %s, dimension %s)",
            path,
            self._input_name,
            self._output_name,
            self._dimension or "dynamic",
        )

    def _load(self, path: Path) -> None:
        """Import onnxruntime and load the model (on the worker thread: both take a while)."""
        try:
            import onnxruntime as ort
            import PIL  # noqa: F401  # needed for every image; better to fail now than on the first frame
        except ImportError as exc:
            raise EngineUnavailable(
                f"{exc.name or 'onnxruntime'} is not installed; {_INSTALL_HINT}", engine=ENGINE
            ) from exc

        options = ort.SessionOptions()
        if self.config.threads:
            options.intra_op_num_threads = self.config.threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise EngineUnavailable(
                f"cannot load CLIP model {path}: {exc}; re-download it with `aria models pull clip --force`",
                engine=ENGINE,
            ) from exc
        self._configure(session, path)
        self._session = session

    def _configure(self, session: Any, path: Path) -> None:
        inputs = session.get_inputs()
        image_inputs = [i for i in inputs if len(i.shape) == 4]
        if len(image_inputs) != 1 or len(inputs) != 1:
            names = ", ".join(f"{i.name}{list(i.shape)}" for i in inputs)
            raise EngineUnavailable(
                f"{path.name} is not a CLIP image encoder: expected one [N, 3, H, W] input, got {names}",
                engine=ENGINE,
            )
        image_input = image_inputs[0]
        channels, height, width = image_input.shape[1:]
        size = self.config.image_size
        if isinstance(channels, int) and channels != 3:
            raise EngineUnavailable(f"{path.name} expects {channels} image channels, not 3", engine=ENGINE)
        for dim in (height, width):
            if isinstance(dim, int) and dim != size:
                raise EngineUnavailable(
                    f"{path.name} expects {height}x{width} images but image_size is {size}; "
                    f"set vision.options.image_size = {dim}",
                    engine=ENGINE,
                )
        self._input_name = image_input.name
        self._input_dtype = np.float16 if image_input.type == "tensor(float16)" else np.float32
        outputs = {o.name: o for o in session.get_outputs()}
        if self.config.output_name is not None:
            if self.config.output_name not in outputs:
                raise EngineUnavailable(
                    f"{path.name} has no output {self.config.output_name!r} (it has {', '.join(outputs)})",
                    engine=ENGINE,
                )
            chosen = outputs[self.config.output_name]
        else:
            named = [outputs[n] for n in _EMBEDDING_NAMES if n in outputs]
            flat = [o for o in outputs.values() if len(o.shape) == 2]
            if not (named or flat):
                raise EngineUnavailable(
                    f"{path.name} has no [N, D] embedding output (outputs: {', '.join(outputs)}); "
                    "set vision.options.output_name",
                    engine=ENGINE,
                )
            chosen = (named or flat)[0]
        self._output_name = chosen.name
        last = chosen.shape[-1] if chosen.shape else None
        self._dimension = last if isinstance(last, int) else None

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        self._session = None
        if executor is not None:
            # Queued calls still run and fail with "closed" (cancelling them would surface as a
            # CancelledError in callers that were not cancelled); a running inference finishes alone.
            executor.shutdown(wait=False)

    async def health(self) -> EngineHealth:
        if self._session is None:
            return EngineHealth(ok=False, detail="not started")
        stats = self.cache.stats()
        return EngineHealth(
            ok=True,
            detail=(
                f"{self.model_path.name}, {self._dimension or '?'}-d; cache {stats.size}/{stats.max_size} "
                f"entries, {stats.hits} hits, {stats.misses} misses"
            ),
        )

    async def encode(self, frame: ImageFrame) -> VisionEmbedding:
        """The L2-normalised embedding of ``frame`` (from the cache when the same image was seen recently)."""
        executor = self._executor
        if executor is None or self._session is None:
            raise EngineError("not started; call start() first", engine=ENGINE, retryable=False)
        loop = asyncio.get_running_loop()
        try:
            vector, cached = await loop.run_in_executor(executor, self._encode_sync, frame)
        except RuntimeError as exc:  # the executor was shut down by aclose() in the meantime
            if self._executor is executor:
                raise
            raise EngineError("the encoder was closed", engine=ENGINE, retryable=False) from exc
        metadata = {"engine": ENGINE, "cached": cached, "model": self.model_path.name}
        return VisionEmbedding(vector, frame.frame_id, metadata=metadata)

    def _encode_sync(self, frame: ImageFrame) -> tuple[Float32Array, bool]:
        session = self._session
        if session is None:  # closed while this call waited for the worker
            raise EngineError("the encoder was closed", engine=ENGINE, retryable=False)
        key = image_key(frame)
        hit = self.cache.get(key)
        if hit is not None:
            return hit, True
        size = self.config.image_size
        rgb = decode_image(frame, "RGB", min_size=(size, size), max_pixels=self.config.max_pixels)
        tensor = preprocess(rgb, size, self.config.mean, self.config.std)[None].astype(
            self._input_dtype, copy=False
        )
        started = time.perf_counter()
        try:
            (output,) = session.run([self._output_name], {self._input_name: tensor})
        except Exception as exc:  # onnxruntime's own error types
            raise EngineError(f"CLIP inference failed: {exc}", engine=ENGINE, retryable=False) from exc
        self.last_inference_ms = (time.perf_counter() - started) * 1000
        vector = np.asarray(output, dtype=np.float32).reshape(-1)
        if vector.size == 0 or not np.all(np.isfinite(vector)):
            raise EngineError("model output is empty or not finite", engine=ENGINE, retryable=False)
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            vector = vector / np.float32(norm)
        vector.setflags(write=False)  # shared through the cache: nobody may change it
        self._dimension = int(vector.size)
        self.cache.put(key, vector)
        return vector, False


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
