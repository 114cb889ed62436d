"""ClipEncoder on a real (tiny, random) ONNX vision model run by onnxruntime.

The model is built here with the ``onnx`` package: a ViT-B/32-style patch embedding (a 32x32 convolution
with stride 32), ReLU, global average pooling and a linear projection to ``image_embeds`` [N, 32], plus a
``last_hidden_state`` output listed first so the encoder has to pick the right one. The same computation in
NumPy is the reference the encoder's embeddings are checked against, which also checks the preprocessing
(scaling, CLIP normalisation, channel order, NCHW layout).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from aria.engines.base import VisionEncoder
from aria.engines.models import model_location
from aria.engines.registry import EngineRegistry
from aria.engines.vision.clip import CLIP_MEAN, CLIP_STD, ClipEncoder, preprocess
from aria.engines.vision.images import encode_image
from aria.errors import EngineError, EngineUnavailable, InvalidInput
from aria.types import ImageFrame, VisionEmbedding

DIM = 32
PATCH = 32
FEATURES = 16

Weights = dict[str, npt.NDArray[np.float32]]


def make_weights(seed: int = 7) -> Weights:
    rng = np.random.default_rng(seed)
    return {
        "W": (rng.standard_normal((FEATURES, 3, PATCH, PATCH)) * 0.02).astype(np.float32),
        "B": (rng.standard_normal(FEATURES) * 0.1).astype(np.float32),
        "G": rng.standard_normal((FEATURES, DIM)).astype(np.float32),
        "C": (rng.standard_normal(DIM) * 0.1).astype(np.float32),
    }


def build_model(path: Path, weights: Weights, size: int | str = 224) -> Path:
    spatial: list[int | str] = [size, size] if isinstance(size, int) else ["height", "width"]
    nodes = [
        helper.make_node(
            "Conv", ["pixel_values", "W", "B"], ["conv"], kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH]
        ),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "G", "C"], ["image_embeds"]),
        helper.make_node("Reshape", ["act", "hidden_shape"], ["last_hidden_state"]),
    ]
    initializers = [numpy_helper.from_array(value, name) for name, value in weights.items()]
    initializers.append(numpy_helper.from_array(np.array([0, FEATURES, -1], dtype=np.int64), "hidden_shape"))
    graph = helper.make_graph(
        nodes,
        "tiny_clip_vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, *spatial])],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", FEATURES, "tokens"]
            ),
            helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", DIM]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def reference_embedding(rgb: npt.NDArray[np.uint8], weights: Weights) -> npt.NDArray[np.float64]:
    """The model's embedding of a 224x224 RGB image, computed with NumPy from the raw pixels."""
    x = (rgb.astype(np.float64) / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)  # (h, w, 3)
    n = x.shape[0] // PATCH
    patches = x.reshape(n, PATCH, n, PATCH, 3)  # (i, u, j, v, c)
    conv = np.einsum("ocuv,iujvc->oij", weights["W"].astype(np.float64), patches)
    conv += weights["B"][:, None, None]
    pooled = np.maximum(conv, 0.0).mean(axis=(1, 2))
    embedding = pooled @ weights["G"] + weights["C"]
    normalised: npt.NDArray[np.float64] = embedding / np.linalg.norm(embedding)
    return normalised


@pytest.fixture(scope="module")
def weights() -> Weights:
    return make_weights()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, weights: Weights) -> Path:
    return build_model(tmp_path_factory.mktemp("clip") / "tiny-clip.onnx", weights)


def random_image(seed: int, height: int = 224, width: int = 224) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
async def encoder(model_path: Path) -> AsyncIterator[ClipEncoder]:
    engine = ClipEncoder(ClipEncoder.Config(model_path=model_path, threads=1))
    await engine.start()
    yield engine
    await engine.aclose()


async def test_embedding_matches_the_numpy_reference(encoder: ClipEncoder, weights: Weights) -> None:
    assert isinstance(encoder, VisionEncoder)
    rgb = random_image(1)
    frame = ImageFrame(rgb)
    embedding = await encoder.encode(frame)
    assert embedding.image_id == frame.frame_id
    assert embedding.dimension == DIM == encoder.dimension
    assert embedding.vector.dtype == np.float32
    assert abs(float(np.linalg.norm(embedding.vector)) - 1.0) < 1e-5
    np.testing.assert_allclose(embedding.vector, reference_embedding(rgb, weights), atol=2e-5)
    assert embedding.metadata["cached"] is False


async def test_same_image_comes_from_the_cache_and_is_identical(encoder: ClipEncoder) -> None:
    rgb = random_image(2)
    first = await encoder.encode(ImageFrame(rgb))
    again = ImageFrame(rgb.copy())  # another frame (new id and time), same pixels
    second = await encoder.encode(again)
    assert second.metadata["cached"] is True
    assert second.image_id == again.frame_id
    np.testing.assert_array_equal(first.vector, second.vector)
    stats = encoder.cache.stats()
    assert (stats.hits, stats.misses, stats.size) == (1, 1, 1)
    with pytest.raises(ValueError, match="read-only"):
        second.vector[0] = 0.0  # the cached vector cannot be corrupted by a caller


async def test_different_images_give_different_embeddings(encoder: ClipEncoder, weights: Weights) -> None:
    a, b = random_image(3), np.full((224, 224, 3), (200, 30, 30), np.uint8)
    ea, eb = await encoder.encode(ImageFrame(a)), await encoder.encode(ImageFrame(b))
    assert float(ea.vector @ eb.vector) < 0.99
    np.testing.assert_allclose(eb.vector, reference_embedding(b, weights), atol=2e-5)


async def test_bgr_and_jpeg_frames(encoder: ClipEncoder) -> None:
    rgb = random_image(4)
    from_rgb = await encoder.encode(ImageFrame(rgb))
    from_bgr = await encoder.encode(ImageFrame(np.ascontiguousarray(rgb[..., ::-1]), format="BGR"))
    np.testing.assert_allclose(from_bgr.vector, from_rgb.vector, atol=1e-6)
    smooth = np.repeat(np.repeat(random_image(5, 28, 28), 8, axis=0), 8, axis=1)  # 224x224, JPEG-friendly
    jpeg = encode_image(smooth, "JPEG", quality=95)
    from_jpeg = await encoder.encode(jpeg)
    from_array = await encoder.encode(ImageFrame(smooth))
    assert from_jpeg.metadata["cached"] is False
    assert float(from_jpeg.vector @ from_array.vector) > 0.99


async def test_center_crop_ignores_what_lies_outside_the_square(encoder: ClipEncoder) -> None:
    middle = random_image(6)
    left, right = random_image(7, 224, 112), random_image(8, 224, 112)
    wide = np.concatenate([left, middle, right], axis=1)  # 448x224: the short side is already 224
    other = np.concatenate([right, middle, left], axis=1)
    ea, eb, em = [await encoder.encode(ImageFrame(x)) for x in (wide, other, middle)]
    np.testing.assert_array_equal(ea.vector, eb.vector)
    np.testing.assert_array_equal(ea.vector, em.vector)


def test_preprocess_shapes_and_values() -> None:
    tall = np.zeros((500, 300, 3), np.uint8)
    tensor = preprocess(tall)
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0, 0], -np.array(CLIP_MEAN) / np.array(CLIP_STD), rtol=1e-6)
    white = preprocess(np.full((10, 20, 3), 255, np.uint8), image_size=32)  # small images are upscaled
    assert white.shape == (3, 32, 32)
    np.testing.assert_allclose(white[:, 5, 5], (1 - np.array(CLIP_MEAN)) / np.array(CLIP_STD), rtol=1e-5)


async def test_broken_jpeg_is_invalid_input_and_the_engine_keeps_working(encoder: ClipEncoder) -> None:
    jpeg = encode_image(random_image(9, 64, 64), "JPEG")
    assert isinstance(jpeg.data, bytes)
    broken = ImageFrame(jpeg.data[:200], format="JPEG")
    with pytest.raises(InvalidInput, match="cannot decode JPEG image"):
        await encoder.encode(broken)
    embedding = await encoder.encode(ImageFrame(random_image(10)))
    assert embedding.dimension == DIM


async def test_missing_model_names_the_pull_command(tmp_path: Path) -> None:
    config = ClipEncoder.Config(data_dir=tmp_path)
    engine = ClipEncoder(config)
    expected = tmp_path / "models" / "clip" / "clip-vit-b32-vision.onnx"
    assert (
        engine.model_path == expected == model_location("clip", tmp_path)
    )  # where `aria models pull` puts it
    with pytest.raises(EngineUnavailable, match="aria models pull clip") as info:
        await engine.start()
    assert str(expected) in str(info.value)
    availability = ClipEncoder.check(config)
    assert not availability.available
    assert "CLIP model not found" in availability.reason
    assert "aria models pull clip" in availability.fix
    assert not (await engine.health()).ok


def test_check_passes_with_the_model_present(model_path: Path) -> None:
    assert ClipEncoder.check(ClipEncoder.Config(model_path=model_path)).available


async def test_not_started_and_closed_engines_refuse_to_encode(model_path: Path) -> None:
    engine = ClipEncoder(ClipEncoder.Config(model_path=model_path, threads=1))
    with pytest.raises(EngineError, match="not started"):
        await engine.encode(ImageFrame(random_image(11)))
    await engine.start()
    health = await engine.health()
    assert health.ok
    assert "32-d" in health.detail
    await engine.aclose()
    with pytest.raises(EngineError, match="not started"):
        await engine.encode(ImageFrame(random_image(11)))


async def test_closing_with_calls_in_flight_fails_them_cleanly(model_path: Path) -> None:
    engine = ClipEncoder(ClipEncoder.Config(model_path=model_path, threads=1))
    await engine.start()
    frames = [ImageFrame(random_image(20 + i, 480, 640)) for i in range(12)]  # a few ms of work each
    calls = [asyncio.ensure_future(engine.encode(frame)) for frame in frames]
    await asyncio.sleep(0)  # let them reach the worker's queue
    await engine.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:  # finished, or refused as closed: never a stray CancelledError
        assert isinstance(result, VisionEmbedding) or (
            isinstance(result, EngineError) and "closed" in str(result)
        ), repr(result)
    assert any(isinstance(r, EngineError) for r in results)


async def test_corrupt_model_file_is_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "clip.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(EngineUnavailable, match="cannot load CLIP model"):
        await ClipEncoder(ClipEncoder.Config(model_path=bad)).start()


async def test_fixed_input_size_must_match_image_size(tmp_path: Path, weights: Weights) -> None:
    small = build_model(tmp_path / "clip-96.onnx", weights, size=96)
    with pytest.raises(EngineUnavailable, match="image_size = 96"):
        await ClipEncoder(ClipEncoder.Config(model_path=small)).start()
    engine = ClipEncoder(ClipEncoder.Config(model_path=small, image_size=96, threads=1))
    await engine.start()
    try:
        embedding = await engine.encode(ImageFrame(random_image(12, 300, 200)))
        assert embedding.dimension == DIM
    finally:
        await engine.aclose()


async def test_unknown_output_name_is_reported(model_path: Path) -> None:
    engine = ClipEncoder(ClipEncoder.Config(model_path=model_path, output_name="pooler_output"))
    with pytest.raises(EngineUnavailable, match=r"has no output 'pooler_output'.*image_embeds"):
        await engine.start()


async def test_cache_can_be_turned_off(model_path: Path) -> None:
    engine = ClipEncoder(ClipEncoder.Config(model_path=model_path, threads=1, cache_size=0))
    await engine.start()
    try:
        rgb = random_image(13)
        a, b = await engine.encode(ImageFrame(rgb)), await engine.encode(ImageFrame(rgb))
        assert a.metadata["cached"] is False
        assert b.metadata["cached"] is False
        np.testing.assert_array_equal(a.vector, b.vector)
    finally:
        await engine.aclose()


def test_registry_builds_it_with_validated_options(model_path: Path) -> None:
    registry = EngineRegistry(discover=False)
    engine = registry.create("vision:clip", {"model_path": str(model_path), "cache_size": 8})
    assert isinstance(engine, ClipEncoder)
    assert engine.cache.max_size == 8
    assert registry.availability("vision:clip", {"model_path": str(model_path)}).available


def test_modules_import_and_explain_without_onnxruntime_or_pillow(model_path: Path) -> None:
    """With the ``vision`` extra missing the modules still import; the engine says what to install."""
    script = f"""
import asyncio, sys
sys.modules["onnxruntime"] = None  # as if not installed: importing it raises ImportError
sys.modules["PIL"] = None
import numpy as np
from aria.engines.vision.clip import ClipEncoder
from aria.engines.vision.change import ChangeDetector
from aria.errors import EngineUnavailable
from aria.types import ImageFrame
config = ClipEncoder.Config(model_path={str(model_path)!r})
print(ClipEncoder.check(config))
try:
    asyncio.run(ClipEncoder(config).start())
except EngineUnavailable as exc:
    print("start:", exc)
print("changed:", ChangeDetector().changed(ImageFrame(np.zeros((64, 64, 3), np.uint8))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "available=False" in out
    assert "onnxruntime and pillow not installed" in out
    assert "start: vision:clip: onnxruntime is not installed; pip install 'aria-assistant[vision]'" in out
    assert "changed: True" in out  # the change detector needs NumPy only for array frames
