"""Models of real models' exact shapes with random weights, made here (no download), for benchmarks.

A model's compute cost depends on its shapes, not on its weights: a random model of Qwen2.5-1.5B's
shapes costs what Qwen2.5-1.5B costs per token. :func:`make_models` writes (and caches) the default
loadout's three:

* **LLM**: a ``qwen2``-architecture GGUF of Qwen2.5-1.5B-Instruct's shapes (28 layers, 1536 wide, 12
  query and 2 key/value heads, 8960-wide SwiGLU, q/k/v biases, a 151,936-token vocabulary tied to the
  output), written as F16 with the ``gguf`` package and quantized to Q4_K_M by llama.cpp's own
  ``llama_model_quantize``. The tokenizer is SentencePiece-style (see :mod:`aria.testing.gguf`) with
  whole-word pieces for the given words (so English text takes about one token a word, as with Qwen's
  BPE), padded with unreachable pieces to the real vocabulary size, and a ChatML template. Only the
  whole-word pieces have non-zero embedding rows, so greedy decoding emits whole words only and its
  text re-tokenizes to the same tokens (a next turn finds its whole prefix in the KV cache, as a real
  model's does).
* **STT**: a CTranslate2 Whisper of base.en's shapes (512 wide, 6 + 6 layers, 8 heads, 80 mel bins,
  51,864 tokens), written with CTranslate2's own model specification; decode lengths fixed
  (:mod:`aria.testing.shapes_stt`).
* **TTS**: a Kokoro-sized ONNX (:mod:`aria.testing.shapes_tts`).

Needs ``gguf``, ``ctranslate2``, ``onnx`` and llama-cpp-python; each imported only when its model is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aria.engines.llm.llamacpp_chat import CHATML_TEMPLATE
from aria.testing.gguf import _vocabulary, add_header
from aria.testing.shapes_stt import TINY_WHISPER, WHISPER_BASE_EN, make_whisper_ct2
from aria.testing.shapes_tts import KOKORO_82M, TINY_KOKORO, KokoroShape, make_kokoro

__all__ = [
    "QWEN25_1_5B",
    "TINY_QWEN2",
    "LlmShape",
    "ShapedModels",
    "default_cache_dir",
    "make_models",
    "make_qwen2_gguf",
]

log = logging.getLogger(__name__)
#: Bump when what a maker writes changes, so cached models are made again.
_VERSION = 1


@dataclass(frozen=True, slots=True)
class LlmShape:
    name: str
    layers: int
    dim: int
    heads: int
    kv_heads: int
    ff: int
    vocab: int
    context: int = 32768
    rope_base: float = 1_000_000.0


#: Qwen2.5-1.5B-Instruct (the small default chat model of the catalogue).
QWEN25_1_5B = LlmShape("qwen2.5-1.5b-shaped", 28, 1536, 12, 2, 8960, 151_936)
TINY_QWEN2 = LlmShape("tiny-qwen2", 2, 256, 4, 2, 512, 8192)


@dataclass(frozen=True, slots=True)
class ShapedModels:
    """Where the made models are, and how they were made (for the benchmark's report)."""

    whisper: Path
    gguf: Path
    kokoro_model: Path
    kokoro_voices: Path
    shapes: dict[str, Any]
    made_s: float


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aria" / "bench-shapes"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([_VERSION, *map(repr, parts)]).encode()).hexdigest()[:12]


def make_models(cache_dir: Path, *, quick: bool, words: Sequence[str]) -> ShapedModels:
    """The three models (tiny ones with ``quick``), made into ``cache_dir`` unless already there."""
    llm, stt, tts = (
        (TINY_QWEN2, TINY_WHISPER, TINY_KOKORO) if quick else (QWEN25_1_5B, WHISPER_BASE_EN, KOKORO_82M)
    )
    began = time.perf_counter()
    cache_dir.mkdir(parents=True, exist_ok=True)
    gguf_path = cache_dir / f"{llm.name}-{_key(llm, sorted(set(words)))}-Q4_K_M.gguf"
    if not gguf_path.is_file():
        make_qwen2_gguf(gguf_path, llm, words)
    whisper = cache_dir / f"{stt.name}-{_key(stt)}"
    if not (whisper / "model.bin").is_file():
        _atomic_dir(whisper, lambda out: make_whisper_ct2(out, stt))
    kokoro = cache_dir / f"{tts.name}-{_key(tts)}"
    if not (kokoro / "voices.bin").is_file():
        _atomic_dir(kokoro, lambda out: make_kokoro(out, tts))
    return ShapedModels(
        whisper=whisper,
        gguf=gguf_path,
        kokoro_model=kokoro / "model.onnx",
        kokoro_voices=kokoro / "voices.bin",
        shapes={"llm": asdict(llm) | {"quant": "Q4_K_M"}, "stt": asdict(stt), "tts": _tts_shape(tts)},
        made_s=time.perf_counter() - began,
    )


def _tts_shape(shape: KokoroShape) -> dict[str, Any]:
    return asdict(shape)


def _atomic_dir(target: Path, make: Any) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    make(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


# -- the LLM -----------------------------------------------------------------------------------------


def make_qwen2_gguf(path: Path, shape: LlmShape, words: Sequence[str], *, seed: int = 0) -> Path:
    """Write a random Q4_K_M GGUF of ``shape`` to ``path`` (F16 first, then llama.cpp quantizes it)."""
    f16 = path.with_name(path.name + ".f16.partial")
    partial = path.with_name(path.name + ".partial")
    try:
        _write_f16(f16, shape, words, seed)
        _quantize(f16, partial)
        partial.rename(path)
    finally:
        f16.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return path


def _write_f16(path: Path, shape: LlmShape, words: Sequence[str], seed: int) -> None:
    import gguf

    tokens, scores, types = _vocabulary(sorted(set(words)))
    if len(tokens) > shape.vocab:
        raise ValueError(f"{len(tokens)} pieces do not fit a {shape.vocab}-token vocabulary")
    speakable = [i for i, t in enumerate(tokens) if t.startswith("\u2581") and t[1:] in set(words)]
    filler = shape.vocab - len(tokens)
    tokens += [f"[unused{i}]" for i in range(filler)]  # normal pieces no merge reaches
    scores += [-1e4] * filler
    types += [1] * filler
    dim, kv_dim = shape.dim, shape.dim // shape.heads * shape.kv_heads

    writer = gguf.GGUFWriter(str(path), "qwen2")
    add_header(
        writer,
        name=shape.name,
        context=shape.context,
        dim=dim,
        layers=shape.layers,
        ff=shape.ff,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        rope_base=shape.rope_base,
        rms_eps=1e-6,
        file_type=gguf.LlamaFileType.MOSTLY_F16,
        vocabulary=(tokens, scores, types),
        chat_template=CHATML_TEMPLATE,
    )

    plan: list[tuple[str, tuple[int, ...], str]] = [
        ("token_embd.weight", (shape.vocab, dim), "embedding"),
        ("output_norm.weight", (dim,), "ones"),
    ]
    for block in range(shape.layers):
        p = f"blk.{block}."
        plan += [
            (p + "attn_norm.weight", (dim,), "ones"),
            (p + "attn_q.weight", (dim, dim), "w"),
            (p + "attn_q.bias", (dim,), "bias"),
            (p + "attn_k.weight", (kv_dim, dim), "w"),
            (p + "attn_k.bias", (kv_dim,), "bias"),
            (p + "attn_v.weight", (kv_dim, dim), "w"),
            (p + "attn_v.bias", (kv_dim,), "bias"),
            (p + "attn_output.weight", (dim, dim), "w"),
            (p + "ffn_norm.weight", (dim,), "ones"),
            (p + "ffn_gate.weight", (shape.ff, dim), "w"),
            (p + "ffn_up.weight", (shape.ff, dim), "w"),
            (p + "ffn_down.weight", (dim, shape.ff), "w"),
        ]
    # Norms and biases stay F32 (as convert_hf_to_gguf writes them); matrices F16.
    dtypes = {kind: np.dtype(np.float32 if kind in ("ones", "bias") else np.float16) for _, _, kind in plan}
    for name, dims, kind in plan:
        writer.add_tensor_info(name, dims, dtypes[kind], int(np.prod(dims)) * dtypes[kind].itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for _name, dims, kind in plan:
        if kind == "ones":
            writer.write_tensor_data(np.ones(dims, np.float32))
        elif kind == "bias":
            writer.write_tensor_data((rng.standard_normal(dims, np.float32) * 0.02).astype(np.float32))
        else:
            values = rng.standard_normal(dims, np.float32)
            values *= 1.0 / np.sqrt(dims[-1]) if kind == "w" else 1.0
            if kind == "embedding":  # only whole words are ever generated (see the module docstring)
                keep = np.zeros(dims[0], bool)
                keep[speakable] = True
                values[~keep] = 0.0
            writer.write_tensor_data(values.astype(np.float16))
    writer.close()


def _quantize(source: Path, target: Path) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0:
        raise RuntimeError(f"llama_model_quantize failed ({status}) on {source}")
