"""A CTranslate2 Whisper of given shapes with random weights, for benchmarks (no download).

Written directly with CTranslate2's own model specification (``ctranslate2.specs.WhisperSpec``, what its
Transformers converter fills), saved as float16 like the published conversions, with a byte-level
``tokenizer.json`` and ``preprocessor_config.json``, so faster-whisper loads it as it loads a downloaded
model. Token ids are base.en's (GPT-2's 50,257 with ``<|endoftext|>`` last, Whisper's special tokens,
timestamps). The end-of-text token is suppressed (``suppress_ids``), so a decode runs to the length it
is given (``max_new_tokens``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TINY_WHISPER", "WHISPER_BASE_EN", "WhisperShape", "make_whisper_ct2"]


@dataclass(frozen=True, slots=True)
class WhisperShape:
    name: str
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    mels: int = 80


WHISPER_BASE_EN = WhisperShape("whisper-base.en-shaped", 512, 6, 6, 8)
TINY_WHISPER = WhisperShape("tiny-whisper", 64, 2, 2, 2)


# -- Whisper -----------------------------------------------------------------------------------------

#: base.en's token ids: GPT-2's 50,257 (``<|endoftext|>`` last), then Whisper's specials, then timestamps.
_EOT = 50256
_SPECIALS = (
    ["<|startoftranscript|>"]
    + [f"<|lang{i}|>" if i else "<|en|>" for i in range(99)]
    + [
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
)
_WHISPER_VOCAB = 51864


def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode map: the 256 characters byte-level BPE writes bytes as."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}
    return [chars[b] for b in range(256)]


def _whisper_tokens() -> list[str]:
    alphabet = _byte_alphabet()
    words = [f"\u0120w{i}" for i in range(_EOT - 256)]  # "Ġw17": decodes to " w17"
    tokens = alphabet + words + ["<|endoftext|>"] + _SPECIALS
    tokens += [f"<|{i * 0.02:.2f}|>" for i in range(_WHISPER_VOCAB - len(tokens))]
    assert tokens.index("<|notimestamps|>") == 50362 and len(tokens) == _WHISPER_VOCAB
    return tokens


def _tokenizer_json(tokens: list[str]) -> dict[str, Any]:
    special = tokens[_EOT:]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": _EOT + i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, t in enumerate(special)
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens[:_EOT])},
            "merges": [],
        },
    }


def make_whisper_ct2(folder: Path, shape: WhisperShape, *, seed: int = 0) -> Path:
    """Write a random CTranslate2 Whisper of ``shape`` into ``folder`` (see the module docstring)."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(seed)
    d, ff = shape.d_model, 4 * shape.d_model

    def w(*dims: int) -> np.ndarray[Any, Any]:
        values: np.ndarray[Any, Any] = rng.standard_normal(dims, np.float32)
        values /= np.sqrt(dims[-1] if len(dims) > 1 else d)
        return values

    def norm(spec: Any) -> None:
        spec.gamma, spec.beta = np.ones(d, np.float32), np.zeros(d, np.float32)

    def linear(spec: Any, out: int, inp: int) -> None:
        spec.weight, spec.bias = w(out, inp), np.zeros(out, np.float32)

    def ffn(spec: Any) -> None:
        norm(spec.layer_norm)
        linear(spec.linear_0, ff, d)
        linear(spec.linear_1, d, ff)

    spec = whisper_spec.WhisperSpec(shape.encoder_layers, shape.heads, shape.decoder_layers, shape.heads)
    enc, dec = spec.encoder, spec.decoder
    enc.conv1.weight, enc.conv1.bias = w(d, shape.mels, 3), np.zeros(d, np.float32)
    enc.conv2.weight, enc.conv2.bias = w(d, d, 3), np.zeros(d, np.float32)
    enc.position_encodings.encodings = w(1500, d)
    norm(enc.layer_norm)
    for layer in enc.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        ffn(layer.ffn)
    tokens = _whisper_tokens()
    dec.embeddings.weight = w(len(tokens), d)
    dec.position_encodings.encodings = w(448, d)
    norm(dec.layer_norm)
    for layer in dec.layer:
        norm(layer.self_attention.layer_norm)
        linear(layer.self_attention.linear[0], 3 * d, d)
        linear(layer.self_attention.linear[1], d, d)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)
        linear(layer.attention.linear[1], 2 * d, d)
        linear(layer.attention.linear[2], d, d)
        ffn(layer.ffn)
    dec.projection.weight = dec.embeddings.weight  # tied, as in Whisper
    spec.register_vocabulary(tokens)
    half = shape.decoder_layers // 2
    spec.config.alignment_heads = [
        (layer, head) for layer in range(half, shape.decoder_layers) for head in range(shape.heads)
    ]
    spec.config.lang_ids = []
    spec.config.suppress_ids = [_EOT]  # never ends early: decode lengths are fixed by max_new_tokens
    spec.config.suppress_ids_begin = [220, _EOT]
    spec.validate()
    spec.optimize(quantization="float16")
    spec.save(str(folder))
    (folder / "tokenizer.json").write_text(json.dumps(_tokenizer_json(tokens)), encoding="utf-8")
    preprocessor = {
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": shape.mels,
        "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False, "sampling_rate": 16000,
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    return folder
