"""Images through a vision projector with ``llm:llamacpp`` on the real llama-cpp-python: a tiny random
CLIP projector (an ``mmproj`` GGUF in llama.cpp's ``clip`` format, LLaVA's two-layer MLP, written here with
the ``gguf`` package) beside the tiny chat model. The named multimodal handler loads it; a picture in the
request reaches the handler as a data URL of the same picture, libmtmd encodes it into the prompt, and the
model answers; without a picture the same engine answers text; a model without a projector refuses one."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from aria.engines.base import LLMRequest
from aria.engines.llm.llamacpp import LlamaCppLLM
from aria.errors import AriaError
from aria.types import GeneratedToken, ImageFrame, Message

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
gguf = pytest.importorskip("gguf", reason="the gguf package (dev extra) writes the test models")
Image = pytest.importorskip("PIL.Image", reason="pillow encodes the pictures")

from aria.testing.gguf import write_tiny_gguf  # noqa: E402  (needs gguf)


def write_tiny_mmproj(
    path: Path, *, hidden: int = 32, ff: int = 64, text_dim: int = 64, seed: int = 0
) -> Path:
    """A CLIP vision encoder (one block, 28x28 pixels in 14x14 patches: 4 image tokens) with LLaVA's MLP
    projector into ``text_dim`` (the chat model's embedding size), random weights."""
    rng = np.random.default_rng(seed)
    image, patch = 28, 14
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_string("clip.projector_type", "mlp")
    for key, value in {
        "image_size": image, "patch_size": patch, "embedding_length": hidden, "feed_forward_length": ff,
        "projection_dim": text_dim, "block_count": 1, "attention.head_count": 2,
    }.items():  # fmt: skip
        writer.add_uint32(f"clip.vision.{key}", value)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_bool("clip.use_gelu", True)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def norm(name: str) -> None:
        writer.add_tensor(f"{name}.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"{name}.bias", np.zeros(hidden, np.float32))

    def linear(name: str, out: int, into: int) -> None:
        writer.add_tensor(f"{name}.weight", weight(out, into))
        writer.add_tensor(f"{name}.bias", weight(out))

    writer.add_tensor("v.patch_embd.weight", weight(hidden, 3, patch, patch))
    writer.add_tensor("v.class_embd", weight(hidden))
    writer.add_tensor("v.position_embd.weight", weight((image // patch) ** 2 + 1, hidden))
    norm("v.pre_ln")
    for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
        linear(f"v.blk.0.{part}", hidden, hidden)
    norm("v.blk.0.ln1")
    norm("v.blk.0.ln2")
    linear("v.blk.0.ffn_up", ff, hidden)
    linear("v.blk.0.ffn_down", hidden, ff)
    linear("mm.0", text_dim, hidden)
    linear("mm.2", text_dim, text_dim)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vision-gguf")
    write_tiny_gguf(folder / "tiny.gguf")
    write_tiny_mmproj(folder / "mmproj-tiny.gguf")
    return folder


@pytest.fixture
async def seeing(models: Path) -> AsyncIterator[LlamaCppLLM]:
    config = LlamaCppLLM.Config(
        model_path=models / "tiny.gguf",
        clip_model_path=models / "mmproj-tiny.gguf",
        vision_handler="llava-1-5",
        n_ctx=512,
        n_threads=1,
        seed=7,
    )
    engine = LlamaCppLLM(config)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.aclose()


def ask(text: str, *images: ImageFrame) -> LLMRequest:
    return LLMRequest(
        (Message("user", text, images=images),), system_prompt="Be brief.", max_tokens=4, temperature=0.0
    )


async def answer(engine: LlamaCppLLM, request: LLMRequest) -> list[str]:
    return [item.text async for item in engine.stream(request) if isinstance(item, GeneratedToken)]


async def test_a_picture_goes_through_the_projector_and_the_model_answers(seeing: LlamaCppLLM) -> None:
    assert seeing.capabilities.vision
    handler = seeing._llama.chat_handler
    assert type(handler).__name__ == "Llava15ChatHandler"
    seen: list[str] = []
    load_image = handler.load_image

    def spy(url: str) -> bytes:
        seen.append(url)
        return load_image(url)  # type: ignore[no-any-return]

    handler.load_image = spy
    picture = np.zeros((30, 40, 3), np.uint8)
    picture[..., 0] = 200  # red
    tokens = await answer(seeing, ask("what colour is this?", ImageFrame(picture)))
    assert len(tokens) == 4
    assert len(seen) == 1
    header, data = seen[0].split(",", 1)
    assert header.startswith("data:image/")
    decoded = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    assert decoded.size == (40, 30)
    red, green, _ = decoded.getpixel((20, 15))
    assert red > 150 > green
    assert handler.mtmd_ctx is not None  # libmtmd's context: the projector was loaded for real

    seen.clear()
    assert len(await answer(seeing, ask("and without a picture?"))) == 4
    assert seen == []


async def test_without_a_projector_a_picture_is_refused(models: Path) -> None:
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=models / "tiny.gguf", n_ctx=512, n_threads=1))
    assert not engine.capabilities.vision
    await engine.start()
    try:
        with pytest.raises(AriaError, match="cannot see images"):
            await answer(engine, ask("what is this?", ImageFrame(np.zeros((8, 8, 3), np.uint8))))
    finally:
        await engine.aclose()
