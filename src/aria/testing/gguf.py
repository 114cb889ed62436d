"""A tiny random-weight GGUF chat model that llama.cpp really loads, for tests and benchmarks.

:func:`write_tiny_gguf` writes a llama-architecture model (2 layers, 64 wide by default: well under 1 MB,
in milliseconds) with a SentencePiece-style tokenizer (byte fallback, word pieces with scores, so text
round-trips), the ChatML control tokens as BOS/EOS-style ids, and a ChatML chat template in
``tokenizer.chat_template`` that renders tools the way Qwen2.5 does
(:data:`~aria.engines.llm.llamacpp_chat.CHATML_TEMPLATE`). The weights are random: the model "speaks"
word salad, deterministically under greedy decoding, and never emits a control or byte token (their
output rows are zero), so a generation runs to ``max_tokens`` unless a stop sequence ends it.

Needs the ``gguf`` package (the ``dev`` extra), imported only when a model is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aria.engines.llm.llamacpp_chat import CHATML_TEMPLATE

__all__ = ["TINY_WORDS", "add_header", "write_tiny_gguf"]

#: Whole-word pieces of the vocabulary (each with its prefixes, so the tokenizer can merge up to them).
_WORDS = (
    "the a an and or but if then so to of in on at for with from by is are was be it this that you i we "
    "they he she what when where why how who time weather today tomorrow hello hi yes no please thanks "
    "thank sure here answer question light lights turn off set timer minute minutes hour music play stop "
    "tell me about tower poem rainbow forms sky sun rain water city paris london name call tool result "
    "good bad new old big small one two three four five six seven eight nine ten twelve times number "
    "think speak voice word words sentence short long first last next help can will do does not"
)
TINY_WORDS = tuple(_WORDS.split())

_CONTROL = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
_SPACE = "\u2581"  # SentencePiece's word-start mark
# gguf.TokenType values (kept here so that importing this module needs no gguf).
_NORMAL, _UNKNOWN, _CONTROL_TYPE, _BYTE = 1, 2, 3, 6


def _vocabulary(words: Sequence[str]) -> tuple[list[str], list[float], list[int]]:
    tokens: list[str] = list(_CONTROL)
    types = [_UNKNOWN] + [_CONTROL_TYPE] * (len(_CONTROL) - 1)
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [_BYTE] * 256
    pieces: list[str] = [_SPACE] + [chr(code) for code in range(33, 127)]
    for word in words:
        pieces += [_SPACE + word[:end] for end in range(1, len(word) + 1)]
        pieces += [word[:end] for end in range(2, len(word) + 1)]
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(_NORMAL)
    # SentencePiece merges the pair whose union scores highest: longer pieces win.
    scores = [
        0.0 if kind != _NORMAL else float(len(token)) for token, kind in zip(tokens, types, strict=True)
    ]
    return tokens, scores, types


def add_header(
    writer: Any,
    *,
    name: str,
    context: int,
    dim: int,
    layers: int,
    ff: int,
    heads: int,
    kv_heads: int,
    rope_base: float,
    rms_eps: float,
    file_type: Any,
    vocabulary: tuple[list[str], list[float], list[int]],
    chat_template: str | None,
) -> None:
    """A llama-style model's hyper-parameters and its vocabulary (from :func:`_vocabulary`, ending a turn
    with ``<|im_end|>``) into a ``gguf.GGUFWriter``: shared by the tiny model here and the shaped stand-ins
    of :mod:`aria.testing.shapes`."""
    tokens, scores, types = vocabulary
    writer.add_name(name)
    writer.add_context_length(context)
    writer.add_embedding_length(dim)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(dim // heads)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(rms_eps)
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def write_tiny_gguf(
    path: Path,
    *,
    name: str = "aria-tiny-chatml",
    chat_template: str | None = CHATML_TEMPLATE,
    layers: int = 2,
    dim: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    ff: int = 128,
    context: int = 4096,
    words: Sequence[str] = TINY_WORDS,
    seed: int = 0,
) -> Path:
    """Write the tiny model to ``path`` and return it (see the module docstring)."""
    import gguf

    tokens, scores, types = _vocabulary(words)
    vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 1.0) -> np.ndarray:
        # numpy shape is GGML's reversed: (rows = outputs, cols = inputs).
        values: np.ndarray = rng.standard_normal(shape) * scale / np.sqrt(shape[-1])
        return values.astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    add_header(
        writer,
        name=name,
        context=context,
        dim=dim,
        layers=layers,
        ff=ff,
        heads=heads,
        kv_heads=kv_heads,
        rope_base=10000.0,
        rms_eps=1e-5,
        file_type=gguf.LlamaFileType.ALL_F32,
        vocabulary=(tokens, scores, types),
        chat_template=chat_template,
    )

    embedding = weight(vocab, dim, scale=np.sqrt(dim))
    output = weight(vocab, dim, scale=4.0)
    output[[i for i, kind in enumerate(types) if kind != _NORMAL]] = 0.0  # never emitted
    writer.add_tensor("token_embd.weight", embedding)
    writer.add_tensor("output_norm.weight", np.ones(dim, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    kv_dim = dim // heads * kv_heads
    for block in range(layers):
        prefix = f"blk.{block}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(dim, dtype=np.float32))
        writer.add_tensor(prefix + "attn_q.weight", weight(dim, dim))
        writer.add_tensor(prefix + "attn_k.weight", weight(kv_dim, dim))
        writer.add_tensor(prefix + "attn_v.weight", weight(kv_dim, dim))
        writer.add_tensor(prefix + "attn_output.weight", weight(dim, dim))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(dim, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_gate.weight", weight(ff, dim))
        writer.add_tensor(prefix + "ffn_up.weight", weight(ff, dim))
        writer.add_tensor(prefix + "ffn_down.weight", weight(dim, ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
