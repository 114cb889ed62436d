"""``aria bench embedded --quick``: the real CLI, real engines (faster-whisper, llama.cpp, kokoro-onnx) on
tiny models of the loadout's kinds made by :mod:`aria.testing.shapes`, and the shaped-model makers."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aria.engines.tts.espeak_lib import espeak_available

_needed = ("llama_cpp", "gguf", "faster_whisper", "ctranslate2", "kokoro_onnx", "onnx", "onnxruntime")
_missing = [name for name in _needed if importlib.util.find_spec(name) is None]
_espeak_ok, _espeak_why = espeak_available()
pytestmark = [
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)}"),
    pytest.mark.skipif(not _espeak_ok, reason=f"espeak-ng is missing: {_espeak_why}"),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-shapes")


def bench(cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARIA_MODELS__OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aria", "bench", "embedded", "--quick", "--cache-dir", str(cache), *extra],
        capture_output=True,
        text=True,
        timeout=110,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def result(cache: Path) -> dict[str, Any]:
    done = bench(cache, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints only the JSON line"
    parsed: dict[str, Any] = json.loads(lines[0])
    return parsed


def test_stages_add_up_to_voice_to_voice(result: dict[str, Any]) -> None:
    stages = result["stages"]
    assert set(stages) == {"stt_final_ms", "llm_ttft_ms", "llm_to_first_clause_ms", "tts_first_audio_ms"}
    assert all(isinstance(v, float) and v >= 0 for v in stages.values()), stages
    assert result["voice_to_voice_ms"] == pytest.approx(sum(stages.values()), abs=0.2)
    cpu = result["stages_cpu_ms"]
    assert set(cpu) == set(stages)
    assert result["voice_to_voice_cpu_ms"] == pytest.approx(sum(cpu.values()), abs=0.2)
    assert result["voice_to_voice_uncached_ms"] > result["voice_to_voice_ms"] - stages["llm_ttft_ms"]
    assert len(result["machine"]["loadavg_1m"]) == 2
    piped = result["llm"]["pipelined"]
    assert piped["cached_tokens"] > result["llm"]["cached"]["prompt_tokens"], "the third turn is cached too"
    expected = stages["stt_final_ms"] + piped["first_clause_ms"] + piped["tts_first_audio_ms"]
    assert result["voice_to_voice_pipelined_ms"] == pytest.approx(expected, abs=0.2)
    assert "stt_final_ms" in result["formula"]
    assert "tts_first_audio_ms" in result["formula"]
    assert result["goal_ms"] == 1200.0
    assert result["goal_met"] is (result["voice_to_voice_ms"] < 1200.0)
    assert sum(result["share"].values()) == pytest.approx(1.0, abs=0.01)
    cached_ttft = result["llm"]["cached"]["ttft_ms"]
    assert stages["llm_ttft_ms"] == cached_ttft
    assert result["llm"]["cached"]["first_clause_ms"] >= cached_ttft


def test_cached_prefix_prefills_only_the_new_turn(result: dict[str, Any]) -> None:
    llm = result["llm"]
    cold, warm = llm["uncached"], llm["cached"]
    assert cold["cached_tokens"] <= 8, "the uncached turn starts a new conversation"
    assert cold["prefilled_tokens"] >= 300, "a realistic multi-turn prefix"
    # The second turn repeats the whole first prompt and its answer: only the new message is prefilled.
    assert warm["prompt_tokens"] > cold["prompt_tokens"]
    assert warm["cached_tokens"] >= cold["prompt_tokens"]
    assert warm["prefilled_tokens"] < cold["prefilled_tokens"] / 5
    # ... and costs less: CPU time to the first token (steadier than wall time on a shared machine).
    assert warm["ttft_cpu_ms"] < cold["ttft_cpu_ms"]
    assert warm["tokens"] == cold["tokens"] == llm["decode_tokens"], "decode lengths are fixed"
    assert llm["tokens_per_s"] > 0


def test_stt_and_tts_figures(result: dict[str, Any]) -> None:
    stt, tts = result["stt"], result["tts"]
    assert stt["audio_s"] == 3.0
    assert stt["decode_tokens"] > 0
    assert stt["final_ms"] > 0
    assert tts["first_audio_ms"] > 0
    assert tts["audio_s"] > 0.5
    shapes = result["models"]["shapes"]
    assert shapes["llm"]["quant"] == "Q4_K_M"
    assert shapes["llm"]["name"] == "tiny-qwen2"
    assert result["quick"] is True


def test_the_table_and_the_cache_is_reused(cache: Path, result: dict[str, Any]) -> None:
    made = sorted(p.name for p in cache.iterdir())
    assert any(name.endswith("-Q4_K_M.gguf") for name in made), made
    assert not any(name.endswith(".partial") for name in made), made
    done = bench(cache, "--runs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    *table, last = done.stdout.strip().splitlines()
    text = "\n".join(table)
    words = (
        "stt_final_ms",
        "llm_ttft_ms",
        "tts_first_audio_ms",
        "voice_to_voice_ms",
        "uncached",
        "pipelined",
    )
    for word in words:
        assert word in text
    again = json.loads(last)
    assert again["models"]["made_s"] < 2.0, "the models made by the first run are reused"
    assert sorted(p.name for p in cache.iterdir()) == made


def test_the_made_models_are_what_the_engines_load(cache: Path, result: dict[str, Any]) -> None:
    import ctranslate2
    import gguf

    gguf_file = next(cache.glob("*-Q4_K_M.gguf"))
    reader = gguf.GGUFReader(str(gguf_file))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "qwen2"
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.ffn_gate.weight"] == "Q4_K"
    assert "output.weight" not in kinds, "tied embeddings, like Qwen2.5-1.5B"
    whisper = next(p for p in cache.iterdir() if p.name.startswith("tiny-whisper"))
    model = ctranslate2.models.Whisper(str(whisper), device="cpu", compute_type="int8")
    assert not model.is_multilingual
    assert model.n_mels == 80
    config = json.loads((whisper / "config.json").read_text())
    assert 50256 in config["suppress_ids"], "end of text suppressed: fixed decode lengths"


# -- the performance settings the bench varies, on the made tiny models -----------------------------


def test_whisper_max_new_tokens_caps_the_decode(cache: Path, result: dict[str, Any]) -> None:
    import numpy as np

    from aria.engines.stt.whisper import WhisperSTT
    from aria.types import AudioChunk

    folder = next(p for p in cache.iterdir() if p.name.startswith("tiny-whisper"))
    audio = AudioChunk(np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1, 16000)

    async def words(cap: int | None) -> int:
        config = WhisperSTT.Config(
            model=str(folder), language="en", temperatures=(0.0,), max_new_tokens=cap, local_files_only=True
        )
        stt = WhisperSTT(config)
        await stt.start()
        try:
            return len((await stt.transcribe(audio)).text.split())
        finally:
            await stt.aclose()

    capped, uncapped = asyncio.run(words(4)), asyncio.run(words(None))
    assert 1 <= capped <= 4
    assert uncapped > 20, "the end of text is suppressed: without a cap the decode runs on"


def test_llamacpp_thread_options_reach_llama_cpp(cache: Path, result: dict[str, Any]) -> None:
    from aria.engines.base import LLMRequest
    from aria.engines.llm.llamacpp import LlamaCppLLM
    from aria.types import Message

    model = next(cache.glob("*-Q4_K_M.gguf"))
    llm = LlamaCppLLM(LlamaCppLLM.Config(model_path=model, n_threads=1, n_threads_batch=1))

    async def run() -> str:
        await llm.start()
        try:
            assert llm._llama.n_threads == 1
            assert llm._llama.n_threads_batch == 1
            request = LLMRequest(messages=(Message("user", "hello there"),), temperature=0.0, max_tokens=3)
            return await llm.complete(request)
        finally:
            await llm.aclose()

    assert asyncio.run(run()).strip()


def test_kokoro_threads_option(cache: Path, result: dict[str, Any]) -> None:
    from aria.engines.tts.kokoro import KokoroTTS

    folder = next(p for p in cache.iterdir() if p.name.startswith("tiny-kokoro"))
    tts = KokoroTTS(
        KokoroTTS.Config(model_path=folder / "model.onnx", voices_path=folder / "voices.bin", threads=1)
    )

    async def run() -> float:
        await tts.start()
        try:
            assert tts._kokoro.sess.get_session_options().intra_op_num_threads == 1
            return sum([chunk.duration async for chunk in tts.synthesize("Hello there, how are you?")])
        finally:
            await tts.aclose()

    assert asyncio.run(run()) > 0.5


def test_a_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aria.bench import embedded
    from aria.errors import EngineUnavailable

    monkeypatch.setattr(embedded, "_NEEDS", (*embedded._NEEDS, "aria_no_such_package"))
    with pytest.raises(EngineUnavailable, match=r"aria_no_such_package.*aria-assistant\[bench\]"):
        asyncio.run(embedded.run_embedded_bench(quick=True, cache_dir=tmp_path))
    assert not any(tmp_path.iterdir()), "nothing is made before the check"
