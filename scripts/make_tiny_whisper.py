"""Build the tiny random Whisper test fixture in ``tests/fixtures/tiny-whisper/``.

The model has Whisper's real architecture, feature extractor and special tokens but tiny dimensions
(d_model 64, 2 encoder + 2 decoder layers) and random weights, so faster-whisper loads and decodes it
for real while the text it produces is gibberish. Its vocabulary is byte-level (256 tokens, no merges)
followed by the empty-string token (which makes CTranslate2 treat the model as multilingual, so language
detection runs), Whisper's special tokens, the language tokens and the 1501 timestamp tokens.

It needs torch, transformers and ctranslate2, which Aria itself does not: run it from a separate
virtual environment, never Aria's own::

    python3 -m venv /tmp/gen-venv
    /tmp/gen-venv/bin/pip install torch==2.13.0 transformers ctranslate2 numpy
    /tmp/gen-venv/bin/python scripts/make_tiny_whisper.py

The output is about a megabyte (int8 weights) and is committed, so tests need none of those packages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch  # type: ignore[import-not-found, unused-ignore]
from transformers import (  # type: ignore[import-not-found, unused-ignore]
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import (  # type: ignore[import-not-found, unused-ignore]
    LANGUAGES,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "tiny-whisper"
SEED = 20261101
NON_LANGUAGE_SPECIALS = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
TIMESTAMPS = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what byte-level BPE vocabularies use)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def build_tokenizer(workdir: Path) -> WhisperTokenizer:
    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[byte]: byte for byte in range(256)}
    vocab[""] = 256  # the empty-string token: CTranslate2 then treats the model as multilingual
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])  # adds <|endoftext|> (unk/bos/eos) as id 257
    languages = [f"<|{code}|>" for code in LANGUAGES]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|startoftranscript|>", *languages, *NON_LANGUAGE_SPECIALS]}
    )
    tokenizer.add_tokens(list(TIMESTAMPS))
    tokenizer.save_pretrained(workdir)
    return tokenizer


def build_model(workdir: Path, tokenizer: WhisperTokenizer) -> None:
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    assert (ids(""), eot, sot) == (256, 257, 258), "unexpected special-token layout"
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[ids("Ġ"), eot],
    )
    torch.manual_seed(SEED)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[ids("Ġ"), eot],
        no_timestamps_token_id=ids("<|notimestamps|>"),
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        alignment_heads=[[1, 0], [1, 1]],
        max_length=448,
    )
    model.save_pretrained(workdir)
    # transformers 5 writes processor_config.json; faster-whisper reads preprocessor_config.json.
    WhisperFeatureExtractor(feature_size=80).save_pretrained(workdir)


def convert(workdir: Path, out: Path) -> None:
    converter = shutil.which("ct2-transformers-converter") or str(
        Path(sys.executable).with_name("ct2-transformers-converter")
    )
    subprocess.run(
        [
            converter,
            "--model", str(workdir),
            "--output_dir", str(out),
            "--copy_files", "tokenizer.json", "preprocessor_config.json",
            "--quantization", "int8",
            "--force",
        ],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (replaced)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tiny-whisper-") as tmp:
        workdir = Path(tmp)
        tokenizer = build_tokenizer(workdir)
        build_model(workdir, tokenizer)
        convert(workdir, args.out)
    config = json.loads((args.out / "config.json").read_text())
    size = sum(f.stat().st_size for f in args.out.iterdir())
    sys.stdout.write(f"wrote {args.out} ({size / 1e6:.2f} MB, {len(config['lang_ids'])} languages)\n")


if __name__ == "__main__":
    main()
