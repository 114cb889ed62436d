"""A cheap frame-change detector in NumPy, to skip camera frames that show nothing new.

Each frame is reduced to a small grey thumbnail (``size`` x ``size``, 32 by default) of block means, and
compared with the thumbnail of the last frame that was *kept*: the mean absolute difference of grey levels,
from 0 (identical) to 1 (black became white everywhere). :meth:`ChangeDetector.changed` keeps a frame, and
says so, when that difference reaches ``threshold`` and at least ``min_interval_s`` (by the frames'
timestamps) have passed since the last kept frame. Block means average sensor noise away, so a noisy copy
of a still scene stays "unchanged" while a moving object does not.

It is also a :class:`~aria.engines.base.VisionEncoder` (``vision:change``): :meth:`encode` returns the
flattened thumbnail as a (tiny, non-semantic) embedding, so it can stand in where no CLIP model is present.

Cost, measured on one shared core: about 0.6 ms for a 640x480 RGB array and 2 ms for 1920x1080 (sums in
``uint16`` over whole blocks, then one weighted sum per block for the grey level); JPEG frames are decoded
straight to grey at a reduced DCT scale, about 0.7 ms at 640x480 and 2 ms at 1080p. :meth:`changed` is
synchronous, like a VAD's ``process``; :meth:`encode` decodes JPEG/PNG frames on a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.engines.base import Capabilities, EngineConfig, EngineHealth, EngineKind
from aria.engines.vision.images import decode_image
from aria.types import ImageFrame, VisionEmbedding

__all__ = ["ChangeDetector", "thumbnail"]


ENGINE = "vision:change"
Float32Array = npt.NDArray[np.float32]

# Blocks at least this many pixels high and wide take the fast path (crop the remainder, block sums);
# smaller images are area-resampled exactly.
_FAST_BLOCK = 8


def thumbnail(frame: ImageFrame, size: int = 32) -> Float32Array:
    """A ``(size, size)`` float32 grey thumbnail in [0, 1]: the mean grey level of each block."""
    if isinstance(frame.data, bytes):
        # Decode straight to grey, at the smallest JPEG scale that keeps the fast path's block size.
        grey = decode_image(frame, "L", min_size=(size * _FAST_BLOCK, size * _FAST_BLOCK))
        return _block_means(grey[..., None], size, (1,))
    array = frame.data
    if array.ndim == 2:
        return _block_means(array[..., None], size, (1,))
    weights = (114, 587, 299) if frame.format == "BGR" else (299, 587, 114)
    return _block_means(array[..., :3], size, weights)


def _block_means(array: npt.NDArray[np.uint8], size: int, weights: tuple[int, ...]) -> Float32Array:
    """Block means of ``array`` ``(h, w, c)``, mixed over channels with integer ``weights`` summing to
    ``sum(weights)``, scaled to [0, 1]."""
    height, width, channels = array.shape
    block_h, block_w = height // size, width // size
    scale = np.float32(1.0 / (255.0 * sum(weights)))
    if block_h >= _FAST_BLOCK and block_w >= _FAST_BLOCK:
        top, left = (height - block_h * size) // 2, (width - block_w * size) // 2
        crop = array[top : top + block_h * size, left : left + block_w * size]
        rows = crop.reshape(size, block_h, block_w * size * channels)
        # Sum each block's rows first (the bulk of the work) in the narrowest integer type that cannot
        # overflow, then the columns, then mix the channels.
        row_type = np.uint16 if block_h * 255 <= np.iinfo(np.uint16).max else np.uint32
        row_sums = rows.sum(axis=1, dtype=row_type)
        sums = row_sums.reshape(size, size, block_w, channels).sum(axis=2, dtype=np.uint64)
        mixed = sums @ np.asarray(weights, dtype=np.uint64)  # uint64: no overflow even for 8K frames
        means: Float32Array = (mixed.astype(np.float64) * (1.0 / (block_h * block_w))).astype(np.float32)
        return means * scale
    # Small image: exact area resampling of the grey image with two weight matrices (cheap at this size).
    mix = np.asarray(weights, dtype=np.float32) * scale
    grey = array.astype(np.float32) @ mix
    resampled: Float32Array = (_area_weights(height, size) @ grey @ _area_weights(width, size).T).astype(
        np.float32
    )
    return resampled


def _area_weights(source: int, target: int) -> Float32Array:
    """``(target, source)`` matrix averaging the source cells each target cell covers (fractionally)."""
    edges = np.arange(target + 1, dtype=np.float64) * (source / target)
    starts = np.arange(source, dtype=np.float64)
    overlap = np.clip(
        np.minimum(edges[1:, None], starts[None, :] + 1) - np.maximum(edges[:-1, None], starts[None, :]),
        0.0,
        None,
    )
    weights: Float32Array = (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)
    return weights


class ChangeDetector:
    """Says whether a frame differs enough from the last kept one; see the module docstring."""

    kind: ClassVar[EngineKind] = "vision"
    name: str = "change"
    capabilities: Capabilities = Capabilities(streaming=False, vision=True, local=True)

    class Config(EngineConfig):
        #: Thumbnail side in blocks.
        size: int = Field(default=32, ge=4, le=256)
        #: Mean absolute grey-level difference (0..1) from which a frame counts as changed. At 0.01 an
        #: 80x80 dark object moving across a 640x480 room (about 0.016) counts, sensor noise (under
        #: 0.005) does not, and neither does an exposure change of under about 2.5 grey levels.
        threshold: float = Field(default=0.01, gt=0.0, le=1.0)
        #: Minimum seconds between two kept frames (by frame timestamp); frames sooner count as unchanged.
        min_interval_s: float = Field(default=0.0, ge=0.0)

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self._reference: Float32Array | None = None
        self._reference_time = 0.0
        self.last_difference: float | None = None
        self.frames_seen = 0
        self.frames_kept = 0

    async def start(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def health(self) -> EngineHealth:
        kept, seen = self.frames_kept, self.frames_seen
        return EngineHealth(
            ok=True, detail=f"kept {kept} of {seen} frames (threshold {self.config.threshold:g})"
        )

    def reset(self) -> None:
        """Forget the last kept frame: the next frame counts as changed."""
        self._reference = None
        self._reference_time = 0.0
        self.last_difference = None

    def thumbnail(self, frame: ImageFrame) -> Float32Array:
        return thumbnail(frame, self.config.size)

    def difference(self, frame: ImageFrame | Float32Array) -> float:
        """Mean absolute difference (0..1) from the last kept frame; 1.0 when none was kept yet."""
        thumb = frame if isinstance(frame, np.ndarray) else self.thumbnail(frame)
        if self._reference is None:
            return 1.0
        return float(np.mean(np.abs(thumb - self._reference)))

    def changed(self, frame: ImageFrame) -> bool:
        """Whether ``frame`` shows something new; if so it becomes the frame later ones are compared with."""
        self.frames_seen += 1
        interval = self.config.min_interval_s
        if interval and self._reference is not None and frame.timestamp - self._reference_time < interval:
            return False
        thumb = self.thumbnail(frame)
        difference = self.difference(thumb)
        self.last_difference = difference
        if difference < self.config.threshold:
            return False
        self._reference = thumb
        self._reference_time = frame.timestamp
        self.frames_kept += 1
        return True

    async def encode(self, frame: ImageFrame) -> VisionEmbedding:
        """The thumbnail as a flat embedding (``size * size`` values in [0, 1]); does not change what
        :meth:`changed` compares with. Encoded frames are decoded on a worker thread."""
        if isinstance(frame.data, bytes):
            thumb = await asyncio.to_thread(self.thumbnail, frame)
        else:
            thumb = self.thumbnail(frame)
        metadata = {"engine": ENGINE, "size": self.config.size, "difference": self.difference(thumb)}
        return VisionEmbedding(thumb.reshape(-1), frame.frame_id, metadata=metadata)
