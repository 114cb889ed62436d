"""``aria bench embedded``: the default loadout's engines at their real sizes, on this machine.

Models of the loadout's exact shapes with random weights are made locally and cached
(:mod:`aria.testing.shapes`: a Whisper base.en-shaped CTranslate2 model, a Qwen2.5-1.5B-shaped Q4_K_M
GGUF, a Kokoro-sized ONNX), then run through Aria's own engine classes (``WhisperSTT``,
``LlamaCppLLM`` with its KV-cache prefix reuse, ``KokoroTTS``) with fixed decode lengths:

* ``stt_final_ms``: ``WhisperSTT.transcribe`` of a 3 s utterance (the final decode after the speech
  ends: a 30 s window encoded, beam 5, a fixed number of tokens);
* LLM: a new turn after a realistic conversation (a system prompt and four exchanges) prefilled cold
  (``uncached``: nothing of it in the KV cache) and warm (``cached``: the conversation up to the new user
  message is already in the KV cache, as it is when the previous turn was answered by the same model);
  time to first token, decode tokens/s, and the time to the first clause (the first
  :data:`FIRST_CLAUSE_TOKENS` tokens: where the pipeline hands the first clause to the TTS);
* ``tts_first_audio_ms``: ``KokoroTTS.synthesize`` of that first clause to its first audio block;
* ``voice_to_voice_ms`` = ``stt_final_ms`` + ``llm_first_clause_ms`` (cached) + ``tts_first_audio_ms``:
  from the end of the user's speech to the first answer audio, if the stages ran back to back with
  nothing else on the machine (end-of-turn detection and playback buffering not included);
* ``voice_to_voice_pipelined_ms``: the same with the first clause synthesised while the model goes on
  decoding the rest of the answer, as the pipeline does (a third turn, also cached): on few cores the two
  compete, and this is the figure a person would hear.

Medians over ``runs`` after one warm-up each. ``quick`` runs tiny shapes (CI smoke: seconds).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aria.core.aio import closing_stream
from aria.engines.base import LLMRequest
from aria.engines.llm.llamacpp import LlamaCppLLM
from aria.engines.stt.whisper import WhisperSTT
from aria.engines.tts.kokoro import KokoroTTS
from aria.errors import EngineUnavailable
from aria.testing.shapes import ShapedModels, default_cache_dir, make_models
from aria.testing.speech import say
from aria.types import AudioChunk, GeneratedToken, Message

__all__ = ["FIRST_CLAUSE_TOKENS", "FORMULA", "GOAL_MS", "run_embedded_bench", "script_words"]

GOAL_MS = 1200.0
#: Tokens of :data:`FIRST_CLAUSE` as Qwen2.5 splits it (Sure|,| for| a| day| trip| to| the| coast|,): the
#: pipeline hands a clause to the TTS once it has one of at least ``first_clause_min_chars`` (12).
FIRST_CLAUSE_TOKENS = 10
FORMULA = (
    "stt_final_ms + llm_first_clause_ms (cached prefix: TTFT + the tokens to the first clause)"
    " + tts_first_audio_ms"
)
UTTERANCE = "What should I pack for a day trip to the coast tomorrow?"
UTTERANCE_S = 3.0
STT_TOKENS = 12  # about a 3 s utterance's words, and its timestamps
FIRST_CLAUSE = "Sure, for a day trip to the coast,"

SYSTEM = (
    "You are Aria, a friendly voice assistant running on this computer. You speak with the user out loud, "
    "so keep every answer short and natural: one to three sentences, no lists, no tables, no markdown, no "
    "emoji and no links. Say numbers, dates and times the way a person would say them. If you are not sure "
    "what the user means, ask one short question instead of guessing. If the user asks for something you "
    "cannot do, say so plainly and suggest what they can do instead. Never read out code, file paths or "
    "configuration. The user's name is Sam. Sam lives near the coast, likes walking and cooking, and "
    "prefers metric units. Today is Saturday, the weather is mild and it is late in the afternoon."
)
HISTORY = (
    (
        "Good afternoon. Can you tell me what the weather will be like tomorrow morning?",
        "Good afternoon, Sam. Tomorrow morning should be cool and bright, around twelve degrees, with a "
        "light wind from the west. It will warm up to about eighteen degrees by the afternoon, and rain is "
        "not expected until late in the evening.",
    ),
    (
        "Great. I was thinking of going for a long walk along the cliffs. How long is the path to the "
        "lighthouse?",
        "The cliff path from the harbour to the lighthouse is about nine kilometres each way. At an easy "
        "pace that is around two hours there, so plan on four to five hours for the round trip with a stop "
        "for lunch. The last part is steep, so good shoes will help.",
    ),
    (
        "That sounds lovely. What could I cook tonight with potatoes, leeks and some cheese?",
        "You could make a leek and potato gratin. Slice the potatoes thinly, soften the leeks in butter, "
        "layer them in a dish with cream and grated cheese, and bake it for about an hour until the top is "
        "golden. A green salad on the side would go well with it.",
    ),
    (
        "Thanks. Remind me, how long should I rest the gratin before serving it?",
        "Let it rest for about ten minutes after it comes out of the oven. The cream settles and it is "
        "much easier to cut into neat portions, and nobody burns their mouth on the first bite.",
    ),
)
NEW_TURNS = (
    UTTERANCE,
    "And will I need a jacket in the evening if I come back late?",
    "And how long is the path to the lighthouse?",
)


def script_words() -> list[str]:
    """Every word of the benchmark's conversation (the shaped GGUF gives each one a token)."""
    texts = [SYSTEM, UTTERANCE, FIRST_CLAUSE, *NEW_TURNS, *(t for pair in HISTORY for t in pair), "Session"]
    found = {w for text in texts for w in re.findall(r"[A-Za-z']+|\d+", text)}
    return sorted(found | {f"S{i}" for i in range(10)})


def _messages(session: int, turns: Sequence[tuple[str, str]], question: str) -> tuple[Message, ...]:
    out = [Message("system", f"Session S{session}. {SYSTEM}")]
    for user, assistant in [*HISTORY, *turns]:
        out += [Message("user", user), Message("assistant", assistant)]
    return (*out, Message("user", question))


#: What making and running the models imports (the ``bench`` extra).
_NEEDS = ("gguf", "onnx", "ctranslate2", "faster_whisper", "llama_cpp", "kokoro_onnx", "onnxruntime")
_LLM_TIMES = ("ttft_ms", "first_clause_ms", "ttft_cpu_ms", "first_clause_cpu_ms")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 1)


async def _first_audio(tts: KokoroTTS, text: str) -> tuple[float, float]:
    """Seconds (wall, process CPU) from now to the first audio of ``text``."""
    began, cpu = time.perf_counter(), time.process_time()
    async with closing_stream(tts.synthesize(text)) as chunks:
        async for _chunk in chunks:
            return time.perf_counter() - began, time.process_time() - cpu
    raise AssertionError(f"no audio for {text!r}")


async def _llm_turn(
    llm: LlamaCppLLM, messages: tuple[Message, ...], max_tokens: int, tts: KokoroTTS | None = None
) -> dict[str, Any]:
    """One streamed answer; with ``tts``, the first clause is synthesised as soon as its last token
    arrives, while the model goes on decoding (as the pipeline does)."""
    request = LLMRequest(messages=messages, temperature=0.0, max_tokens=max_tokens)
    speaking: asyncio.Task[tuple[float, float]] | None = None
    began, cpu = time.perf_counter(), time.process_time()
    stamps: list[float] = []
    cpu_stamps: list[float] = []
    text: list[str] = []
    try:
        async with closing_stream(llm.stream(request)) as pieces:
            async for piece in pieces:
                if isinstance(piece, GeneratedToken):
                    stamps.append(time.perf_counter() - began)
                    cpu_stamps.append(time.process_time() - cpu)
                    text.append(piece.text)
                    if tts is not None and speaking is None and len(stamps) == FIRST_CLAUSE_TOKENS:
                        speaking = asyncio.create_task(_first_audio(tts, FIRST_CLAUSE))
    except BaseException:
        if speaking is not None:
            speaking.cancel()
        raise
    overlap = await speaking if speaking is not None else None
    prefill = llm.last_prefill
    assert prefill is not None and stamps, "the model generated nothing"
    k = min(FIRST_CLAUSE_TOKENS, len(stamps)) - 1
    decode_s = stamps[-1] - stamps[0]
    return {
        "prompt_tokens": prefill.prompt_tokens,
        "cached_tokens": prefill.cached_tokens,
        "prefilled_tokens": prefill.evaluated_tokens,
        "ttft_ms": _ms(stamps[0]),
        "first_clause_ms": _ms(stamps[k]),
        "ttft_cpu_ms": _ms(cpu_stamps[0]),
        "first_clause_cpu_ms": _ms(cpu_stamps[k]),
        "tokens": len(stamps),
        "tokens_per_s": round((len(stamps) - 1) / decode_s, 2) if decode_s > 0 else None,
        "text": "".join(text),
    } | ({"tts_first_audio_ms": _ms(overlap[0])} if overlap else {})


async def _bench_llm(
    models: ShapedModels, runs: int, decode: int, threads: int | None, tts: KokoroTTS
) -> dict[str, Any]:
    config = LlamaCppLLM.Config(
        model_path=models.gguf, n_ctx=4096, n_threads=threads, n_threads_batch=threads, seed=0
    )
    llm = LlamaCppLLM(config)
    began = time.perf_counter()
    await llm.start()
    load_ms = _ms(time.perf_counter() - began)
    try:
        await _llm_turn(llm, (Message("user", "Hello there."),), 4)  # warm-up (pages the weights in)
        cold, warm, spoken = [], [], []
        for run in range(runs):
            first = await _llm_turn(llm, _messages(run, (), NEW_TURNS[0]), decode)
            cold.append(first)
            turns = [(NEW_TURNS[0], first["text"])]
            second = await _llm_turn(llm, _messages(run, turns, NEW_TURNS[1]), decode)
            warm.append(second)
            turns.append((NEW_TURNS[1], second["text"]))
            spoken.append(await _llm_turn(llm, _messages(run, turns, NEW_TURNS[2]), decode, tts))
    finally:
        await llm.aclose()

    def summary(turns: list[dict[str, Any]]) -> dict[str, Any]:
        last = turns[-1]
        figures = {key: _median([t[key] for t in turns]) for key in _LLM_TIMES}
        rates = [t["tokens_per_s"] for t in turns if t["tokens_per_s"]]
        keys = ("prompt_tokens", "cached_tokens", "prefilled_tokens", "tokens")
        return figures | {k: last[k] for k in keys} | {"tokens_per_s": _median(rates) if rates else None}

    cached, uncached = summary(warm), summary(cold)
    prefill_rate = uncached["prefilled_tokens"] / max(uncached["ttft_ms"] / 1000, 1e-9)
    return {
        "load_ms": load_ms,
        "n_threads": threads,
        "uncached": uncached,
        "cached": cached,
        "prefill_tokens_per_s": round(prefill_rate, 1),
        "tokens_per_s": _median([t for t in (cached["tokens_per_s"], uncached["tokens_per_s"]) if t]),
        "prefix_saving_ms": round(uncached["ttft_ms"] - cached["ttft_ms"], 1),
        "pipelined": summary(spoken)
        | {"tts_first_audio_ms": _median([t["tts_first_audio_ms"] for t in spoken])},
    }


async def _bench_stt(models: ShapedModels, runs: int, threads: int) -> dict[str, Any]:
    rate = 16000
    speech = say(UTTERANCE, sample_rate=rate)[: int(UTTERANCE_S * rate)]
    audio = np.zeros(int(UTTERANCE_S * rate), np.float32)
    audio[: speech.size] = speech
    config = WhisperSTT.Config(
        model=str(models.whisper),
        device="cpu",
        compute_type="int8",
        language="en",
        temperatures=(0.0,),  # a real model on clear speech passes on the first temperature
        max_new_tokens=STT_TOKENS,
        local_files_only=True,
        cpu_threads=threads,
    )
    stt = WhisperSTT(config)
    await stt.start()
    times, cpu_times = [], []
    try:
        for run in range(runs + 1):
            began, cpu = time.perf_counter(), time.process_time()
            await stt.transcribe(AudioChunk(audio, rate))
            if run:  # the first is a warm-up
                times.append(time.perf_counter() - began)
                cpu_times.append(time.process_time() - cpu)
    finally:
        await stt.aclose()
    return {
        "final_ms": _median([_ms(t) for t in times]),
        "final_cpu_ms": _median([_ms(t) for t in cpu_times]),
        "audio_s": UTTERANCE_S,
        "beam_size": config.beam_size,
        "decode_tokens": STT_TOKENS,
        "compute_type": config.compute_type,
        "cpu_threads": threads,
    }


async def _bench_tts(tts: KokoroTTS, runs: int) -> dict[str, Any]:
    firsts, cpus, audio_s = [], [], 0.0
    for run in range(runs + 1):
        began, cpu = time.perf_counter(), time.process_time()
        first = first_cpu = None
        audio_s = 0.0
        async with closing_stream(tts.synthesize(FIRST_CLAUSE)) as chunks:
            async for chunk in chunks:
                if first is None:
                    first, first_cpu = time.perf_counter() - began, time.process_time() - cpu
                audio_s += chunk.duration
        if run and first is not None and first_cpu is not None:
            firsts.append(first)
            cpus.append(first_cpu)
    return {
        "first_audio_ms": _median([_ms(t) for t in firsts]),
        "first_audio_cpu_ms": _median([_ms(t) for t in cpus]),
        "text": FIRST_CLAUSE,
        "threads": tts.config.threads,
        "audio_s": round(audio_s, 2),
    }


async def run_embedded_bench(
    *,
    quick: bool = False,
    cache_dir: Path | None = None,
    runs: int | None = None,
    llm_threads: int | None = None,
    stt_threads: int = 0,
    tts_threads: int | None = None,
) -> dict[str, Any]:
    """Make (or reuse) the shaped models and measure; see the module docstring."""
    missing = [name for name in _NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineUnavailable(
            f"aria bench embedded needs {', '.join(missing)}: pip install 'aria-assistant[bench]'"
        )
    runs = runs or (1 if quick else 3)
    cache_dir = cache_dir or default_cache_dir()
    models = await asyncio.to_thread(make_models, cache_dir, quick=quick, words=script_words())
    load_before = os.getloadavg()[0]
    decode = 12 if quick else 32
    stt = await _bench_stt(models, runs, stt_threads)
    voice = KokoroTTS.Config(
        model_path=models.kokoro_model, voices_path=models.kokoro_voices, threads=tts_threads
    )
    speaker = KokoroTTS(voice)
    await speaker.start()
    try:
        tts = await _bench_tts(speaker, runs)
        llm = await _bench_llm(models, runs, decode, llm_threads, speaker)
    finally:
        await speaker.aclose()
    stages = {
        "stt_final_ms": stt["final_ms"],
        "llm_ttft_ms": llm["cached"]["ttft_ms"],
        "llm_to_first_clause_ms": round(llm["cached"]["first_clause_ms"] - llm["cached"]["ttft_ms"], 1),
        "tts_first_audio_ms": tts["first_audio_ms"],
    }
    total = round(sum(stages.values()), 1)
    cpu_stages = {
        "stt_final_ms": stt["final_cpu_ms"],
        "llm_ttft_ms": llm["cached"]["ttft_cpu_ms"],
        "llm_to_first_clause_ms": round(
            llm["cached"]["first_clause_cpu_ms"] - llm["cached"]["ttft_cpu_ms"], 1
        ),
        "tts_first_audio_ms": tts["first_audio_cpu_ms"],
    }
    piped = llm["pipelined"]
    pipelined = round(stt["final_ms"] + piped["first_clause_ms"] + piped["tts_first_audio_ms"], 1)
    uncached_total = round(total - llm["cached"]["ttft_ms"] + llm["uncached"]["ttft_ms"], 1)
    return {
        "bench": "embedded",
        "quick": quick,
        "voice_to_voice_ms": total,
        "voice_to_voice_uncached_ms": uncached_total,
        # The same sum with the first clause synthesised while the LLM goes on decoding the answer.
        "voice_to_voice_pipelined_ms": pipelined,
        "formula": FORMULA,
        "goal_ms": GOAL_MS,
        "goal_met": total < GOAL_MS,
        "stages": stages,
        # The CPU time (all threads) each stage used: its cost whatever else loads the machine.
        "stages_cpu_ms": cpu_stages,
        "voice_to_voice_cpu_ms": round(sum(cpu_stages.values()), 1),
        "share": {k: round(v / total, 3) for k, v in stages.items()} if total > 0 else {},
        "stt": stt,
        "llm": llm | {"first_clause_tokens": FIRST_CLAUSE_TOKENS, "decode_tokens": decode},
        "tts": tts,
        "models": {"shapes": models.shapes, "cache_dir": str(cache_dir), "made_s": round(models.made_s, 1)},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # Other work on the machine slows every stage: a load above the CPU count means contention.
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
    }
