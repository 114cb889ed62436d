"""Image helpers for the vision engines: :class:`~aria.types.ImageFrame` <-> ``uint8`` arrays.

Encoded frames (JPEG/PNG bytes) are decoded with Pillow, imported only when a frame needs it (the ``vision``
extra). Array frames (RGB, BGR, RGBA, GRAY) need NumPy only. Every decode checks a byte limit and a pixel
limit first, and a corrupt or truncated image becomes :class:`~aria.errors.InvalidInput` with a message
that says what was wrong, never a Pillow exception.
"""

from __future__ import annotations

import io
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from aria.errors import EngineUnavailable, InvalidInput
from aria.types import ImageFrame

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "center_crop",
    "decode_image",
    "encode_image",
    "resize",
    "to_gray",
]


#: Largest encoded image accepted (bytes).
MAX_BYTES = 32 * 1024 * 1024
#: Largest decoded image accepted (width x height); 8K video is about 33 million.
MAX_PIXELS = 40_000_000

DecodeMode = Literal["RGB", "L"]
Filter = Literal["bicubic", "bilinear", "box", "nearest"]
Uint8Array = npt.NDArray[np.uint8]

# ITU-R 601-2 luma, the weights Pillow uses for "L" conversion, in thousandths.
_LUMA = (299, 587, 114)
_INSTALL_HINT = "pip install 'aria-assistant[vision]'"


def _pil() -> ModuleType:
    try:
        from PIL import Image
    except ImportError as exc:
        raise EngineUnavailable(f"Pillow is needed to decode JPEG/PNG images; {_INSTALL_HINT}") from exc
    return Image


def decode_image(
    frame: ImageFrame,
    mode: DecodeMode = "RGB",
    *,
    min_size: tuple[int, int] | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Uint8Array:
    """The frame as ``(h, w, 3)`` RGB (``mode="RGB"``) or ``(h, w)`` grey (``mode="L"``) ``uint8``.

    ``min_size=(w, h)`` lets a JPEG decode at a reduced scale (1/2, 1/4 or 1/8 through libjpeg's DCT
    scaling) as long as the result stays at least that large: much faster when a small image is all the
    caller needs. Array frames are returned as they are when already in the wanted layout (no copy).
    """
    if isinstance(frame.data, bytes):
        return _decode_bytes(frame, mode, min_size, max_bytes, max_pixels)
    array = frame.data
    if mode == "L":
        return to_gray(array, frame.format)
    if frame.format == "RGB":
        return array
    if frame.format == "BGR":
        return np.ascontiguousarray(array[..., ::-1])
    if frame.format == "RGBA":
        return np.ascontiguousarray(array[..., :3])
    return np.repeat(array[..., None], 3, axis=2)  # GRAY


def _decode_bytes(
    frame: ImageFrame,
    mode: DecodeMode,
    min_size: tuple[int, int] | None,
    max_bytes: int,
    max_pixels: int,
) -> Uint8Array:
    payload = frame.data
    assert isinstance(payload, bytes)
    kind = frame.format
    if len(payload) > max_bytes:
        raise InvalidInput(f"{kind} image of {len(payload)} bytes is larger than the {max_bytes}-byte limit")
    image_mod = _pil()
    try:
        image = image_mod.open(io.BytesIO(payload), formats=[kind])
    except image_mod.DecompressionBombError as exc:
        raise InvalidInput(f"{kind} image is too large to decode: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"cannot decode {kind} image ({len(payload)} bytes): {exc}") from exc
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidInput(
                f"{kind} image of {width}x{height} pixels is larger than the {max_pixels}-pixel limit"
            )
        if (frame.width and frame.width != width) or (frame.height and frame.height != height):
            raise InvalidInput(
                f"declared size {frame.width}x{frame.height} does not match the {kind} image's "
                f"{width}x{height}"
            )
        try:
            if min_size is not None and kind == "JPEG":
                image.draft(mode, (max(1, min_size[0]), max(1, min_size[1])))
            converted = image.convert(mode) if image.mode != mode else image
            converted.load()
            array: Uint8Array = np.asarray(converted, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput(f"cannot decode {kind} image ({len(payload)} bytes): {exc}") from exc
    if array.size == 0:
        raise InvalidInput(f"{kind} image is empty")
    return array


def to_gray(array: npt.NDArray[np.uint8], fmt: str = "RGB") -> Uint8Array:
    """Grey ``(h, w)`` ``uint8`` from an RGB/BGR/RGBA ``(h, w, c)`` or GRAY ``(h, w)`` array."""
    if array.ndim == 2:
        return array
    weights = _LUMA[::-1] if fmt == "BGR" else _LUMA
    grey = (
        array[..., 0].astype(np.uint32) * weights[0]
        + array[..., 1].astype(np.uint32) * weights[1]
        + array[..., 2].astype(np.uint32) * weights[2]
        + 500
    ) // 1000
    return grey.astype(np.uint8)


def resize(array: npt.NDArray[np.uint8], size: tuple[int, int], filter: Filter = "bicubic") -> Uint8Array:
    """``array`` (``(h, w)`` or ``(h, w, 3)`` ``uint8``) resized to ``size=(w, h)`` with Pillow's filter."""
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidInput(f"cannot resize to {width}x{height}")
    if array.shape[1] == width and array.shape[0] == height:
        return array
    image_mod = _pil()
    resample = {
        "bicubic": image_mod.Resampling.BICUBIC,
        "bilinear": image_mod.Resampling.BILINEAR,
        "box": image_mod.Resampling.BOX,
        "nearest": image_mod.Resampling.NEAREST,
    }[filter]
    image: Any = image_mod.fromarray(np.ascontiguousarray(array))
    return np.asarray(image.resize((width, height), resample=resample), dtype=np.uint8)


def center_crop(array: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    """The central ``size`` x ``size`` square (torchvision's ``CenterCrop`` rounding); the array must be at
    least that large in both dimensions."""
    height, width = int(array.shape[0]), int(array.shape[1])
    if height < size or width < size:
        raise InvalidInput(f"cannot crop {size}x{size} from a {width}x{height} image")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return array[top : top + size, left : left + size]


def encode_image(
    image: npt.NDArray[np.uint8] | ImageFrame,
    format: Literal["JPEG", "PNG"] = "JPEG",
    *,
    quality: int = 90,
) -> ImageFrame:
    """An encoded JPEG/PNG frame from an RGB/GRAY ``uint8`` array (or any frame, decoded first)."""
    if isinstance(image, ImageFrame):
        array = decode_image(image) if image.format != "GRAY" else image.data
        assert isinstance(array, np.ndarray)
    else:
        array = image
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise InvalidInput("encode_image needs a uint8 array of shape (h, w) or (h, w, 3)")
    if array.ndim == 3 and array.shape[2] != 3:
        raise InvalidInput(f"encode_image needs 3 channels (RGB), got shape {array.shape}")
    image_mod = _pil()
    buffer = io.BytesIO()
    pil_image: Any = image_mod.fromarray(np.ascontiguousarray(array))
    if format == "JPEG":
        pil_image.save(buffer, format="JPEG", quality=quality)
    else:
        pil_image.save(buffer, format="PNG")
    height, width = int(array.shape[0]), int(array.shape[1])
    return ImageFrame(buffer.getvalue(), format=format, width=width, height=height)
