"""Image helpers: real JPEG/PNG encoding and decoding with Pillow, array layouts, limits and broken files."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from aria.engines.vision import images
from aria.engines.vision.images import center_crop, decode_image, encode_image, resize, to_gray
from aria.errors import InvalidInput
from aria.types import ImageFrame


def scene(height: int = 120, width: int = 160, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A smooth colour gradient with a bright square: compresses well, survives JPEG recognisably."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=2)
    rgb[height // 4 : height // 2, width // 4 : width // 2] = (250, 240, 30)
    noise = np.random.default_rng(seed).integers(0, 3, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def test_array_frames_decode_to_rgb_without_copying_rgb() -> None:
    rgb = scene()
    frame = ImageFrame(rgb)
    assert decode_image(frame) is rgb
    np.testing.assert_array_equal(decode_image(ImageFrame(rgb[..., ::-1].copy(), format="BGR")), rgb)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode_image(ImageFrame(rgba, format="RGBA")), rgb)
    grey = rgb[..., 0].copy()
    stacked = decode_image(ImageFrame(grey, format="GRAY"))
    assert stacked.shape == (*grey.shape, 3)
    assert all(np.array_equal(stacked[..., c], grey) for c in range(3))


def test_png_round_trip_is_exact_and_jpeg_is_close() -> None:
    rgb = scene()
    png = encode_image(rgb, "PNG")
    assert png.encoded
    assert png.format == "PNG"
    assert (png.width, png.height) == (160, 120)
    np.testing.assert_array_equal(decode_image(png), rgb)
    jpeg = encode_image(rgb, "JPEG", quality=95)
    assert isinstance(jpeg.data, bytes)
    assert jpeg.data.startswith(b"\xff\xd8\xff")
    decoded = decode_image(jpeg)
    assert decoded.shape == rgb.shape
    assert decoded.dtype == np.uint8
    assert float(np.mean(np.abs(decoded.astype(int) - rgb.astype(int)))) < 3.0


def test_grey_decoding_matches_the_luma_of_the_array() -> None:
    rgb = scene()
    expected = to_gray(rgb)
    np.testing.assert_array_equal(to_gray(rgb[..., ::-1].copy(), "BGR"), expected)
    from_png = decode_image(encode_image(rgb, "PNG"), "L")
    assert from_png.shape == rgb.shape[:2]
    assert int(np.max(np.abs(from_png.astype(int) - expected.astype(int)))) <= 1  # Pillow's fixed point
    from_array = decode_image(ImageFrame(rgb), "L")
    np.testing.assert_array_equal(from_array, expected)


def test_jpeg_draft_decodes_at_a_reduced_scale_but_never_below_min_size() -> None:
    jpeg = encode_image(scene(480, 640), "JPEG")
    full = decode_image(jpeg)
    assert full.shape == (480, 640, 3)
    small = decode_image(jpeg, min_size=(150, 100))
    assert small.shape[1] >= 150
    assert small.shape[0] >= 100
    assert small.shape[1] < 640  # libjpeg's DCT scaling did the downscale
    grey = decode_image(jpeg, "L", min_size=(80, 60))
    assert grey.ndim == 2
    assert grey.shape == (60, 80)


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [
        (b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20, "JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"not really a png", "PNG"),
    ],
)
def test_garbage_with_the_right_magic_is_invalid_input(payload: bytes, fmt: str) -> None:
    frame = ImageFrame(payload, format=fmt)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=f"cannot decode {fmt} image"):
        decode_image(frame)


def test_truncated_jpeg_is_invalid_input() -> None:
    jpeg = encode_image(scene(240, 320), "JPEG")
    assert isinstance(jpeg.data, bytes)
    cut = ImageFrame(jpeg.data[: len(jpeg.data) // 2], format="JPEG")
    with pytest.raises(InvalidInput, match=r"cannot decode JPEG image \(\d+ bytes\)"):
        decode_image(cut)


def test_byte_and_pixel_limits() -> None:
    png = encode_image(scene(), "PNG")
    assert isinstance(png.data, bytes)
    with pytest.raises(InvalidInput, match="larger than the 100-byte limit"):
        decode_image(png, max_bytes=100)
    with pytest.raises(InvalidInput, match="160x120 pixels is larger than the 10000-pixel limit"):
        decode_image(png, max_pixels=10_000)
    assert images.MAX_PIXELS >= 7680 * 4320 // 1  # 8K frames pass by default


def test_declared_size_must_match_the_encoded_image() -> None:
    png = encode_image(scene(), "PNG")
    assert isinstance(png.data, bytes)
    with pytest.raises(InvalidInput, match="declared size 100x120 does not match the PNG image's 160x120"):
        decode_image(ImageFrame(png.data, format="PNG", width=100, height=120))


def test_resize_and_center_crop() -> None:
    rgb = scene(120, 160)
    assert resize(rgb, (160, 120)) is rgb
    half = resize(rgb, (80, 60), "box")
    assert half.shape == (60, 80, 3)
    np.testing.assert_allclose(
        half.astype(float), rgb.reshape(60, 2, 80, 2, 3).mean(axis=(1, 3)), atol=1.0
    )  # a box filter halving is the 2x2 mean
    crop = center_crop(rgb, 100)
    assert crop.shape == (100, 100, 3)
    np.testing.assert_array_equal(crop, rgb[10:110, 30:130])
    with pytest.raises(InvalidInput, match="cannot crop 200x200"):
        center_crop(rgb, 200)
    with pytest.raises(InvalidInput, match="cannot resize"):
        resize(rgb, (0, 10))


def test_encode_image_rejects_wrong_arrays() -> None:
    with pytest.raises(InvalidInput, match="uint8"):
        encode_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(InvalidInput, match="3 channels"):
        encode_image(np.zeros((4, 4, 4), dtype=np.uint8))
    grey_png = encode_image(np.full((8, 8), 200, np.uint8), "PNG")
    np.testing.assert_array_equal(decode_image(grey_png, "L"), np.full((8, 8), 200, np.uint8))
