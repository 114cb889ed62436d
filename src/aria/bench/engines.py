"""The embedded-engines benchmark: real engines on this machine, real espeak-ng speech as input.

* VAD: time per 32 ms chunk for each VAD that can run here;
* STT: real-time factor (processing time / audio time) of each STT that can run here;
* TTS: time to first audio and real-time factor of each TTS that can run here;
* loop: the whole embedded voice loop (configured VAD -> STT -> LLM -> TTS through the real
  pipeline), fed in real time: end of speech (the VAD's decision, ``vad.min_silence_ms`` after the
  last word) to the first answer audio out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
from typing import Any

import numpy as np

from aria.core.aio import closing_stream
from aria.core.config import Settings, load_settings
from aria.core.metrics import percentile
from aria.engines.base import STT, TTS, VAD
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AriaError
from aria.pipeline.build import build_pipeline, start_engines
from aria.pipeline.outputs import AudioOut, ResponseDone
from aria.testing.speech import conversation, say
from aria.types import AudioChunk

__all__ = ["run_engine_bench"]

log = logging.getLogger(__name__)
SENTENCE = "Hello there. What is the weather like today?"
RATE = 16000


def _chunks(samples: np.ndarray[Any, Any], size: int) -> list[AudioChunk]:
    return [AudioChunk(samples[i : i + size].copy(), RATE) for i in range(0, samples.size - size + 1, size)]


async def _bench_vad(registry: EngineRegistry, audio: np.ndarray[Any, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in ("vad:silero", "vad:webrtc", "vad:energy"):
        if not registry.availability(name).available:
            results[name] = {"available": False}
            continue
        vad = registry.create(name)
        assert isinstance(vad, VAD)
        await vad.start()
        chunks = _chunks(audio, 512)
        times = []
        events = 0
        for chunk in chunks:
            start = time.perf_counter()
            events += vad.process(chunk) is not None
            times.append((time.perf_counter() - start) * 1e6)
        await vad.aclose()
        results[name] = {
            "available": True,
            "chunk_ms": 32,
            "us_per_chunk_p50": round(percentile(times, 50), 2),
            "us_per_chunk_p95": round(percentile(times, 95), 2),
            "events": events,
        }
    return results


async def _bench_stt(registry: EngineRegistry, speech: np.ndarray[Any, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    audio_s = speech.size / RATE
    for name in ("stt:whisper", "stt:pocketsphinx"):
        if not registry.availability(name).available:
            results[name] = {"available": False, "reason": registry.availability(name).reason}
            continue
        stt = registry.create(name)
        assert isinstance(stt, STT)
        try:
            await stt.start()
            start = time.perf_counter()
            result = await stt.transcribe(AudioChunk(speech, RATE))
            took = time.perf_counter() - start
            results[name] = {"available": True, "rtf": round(took / audio_s, 4), "text": result.text}
        except AriaError as exc:
            results[name] = {"available": False, "reason": str(exc)}
        finally:
            await stt.aclose()
    return results


async def _bench_tts(registry: EngineRegistry) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in ("tts:kokoro", "tts:piper", "tts:espeak"):
        if not registry.availability(name).available:
            results[name] = {"available": False}
            continue
        tts = registry.create(name)
        assert isinstance(tts, TTS)
        await tts.start()
        firsts, rtfs = [], []
        for _ in range(5):
            start = time.perf_counter()
            first = None
            audio_s = 0.0
            async with closing_stream(tts.synthesize(SENTENCE)) as chunks:
                async for chunk in chunks:
                    first = first if first is not None else time.perf_counter() - start
                    audio_s += chunk.duration
            total = time.perf_counter() - start
            firsts.append((first or total) * 1000)
            rtfs.append(total / max(audio_s, 1e-9))
        await tts.aclose()
        results[name] = {
            "available": True,
            "first_audio_ms_p50": round(percentile(firsts, 50), 2),
            "rtf_p50": round(percentile(rtfs, 50), 4),
        }
    return results


async def _bench_loop(settings: Settings, turns: int) -> dict[str, Any]:
    engines = await start_engines(settings)
    audio, _ = conversation(["What time is it?"], gap_s=1.0, lead_s=0.3)
    frames = _chunks(audio, 320)
    latencies: list[float] = []
    first_audio: dict[str, float] = {}
    done = asyncio.Event()

    async def read(pipeline: Any) -> None:
        async for out in pipeline.outputs:
            if isinstance(out, AudioOut):
                first_audio.setdefault(out.turn_id, time.monotonic())
            elif isinstance(out, ResponseDone):
                done.set()

    try:
        async with build_pipeline(settings, engines) as pipeline:
            reader = asyncio.create_task(read(pipeline))
            for _ in range(turns):
                done.clear()
                # Paced like a microphone: the STT works while the person speaks, as it would live.
                start = time.monotonic()
                for index, frame in enumerate(frames):
                    await asyncio.sleep(max(0.0, start + index * frame.duration - time.monotonic()))
                    pipeline.push_audio(AudioChunk(frame.data, RATE))
                await asyncio.wait_for(done.wait(), 30)
                turn = pipeline.turn
                end = turn.waterfall.at("speech_end") if turn else None
                if turn is not None and end is not None and turn.id in first_audio:
                    latencies.append((first_audio[turn.id] - end) * 1000)
        await reader
    finally:
        await engines.aclose()
    return {
        "engines": {k: getattr(engines, k).name for k in ("vad", "stt", "llm", "tts") if getattr(engines, k)},
        "end_of_speech_to_first_audio_ms_p50": round(percentile(latencies, 50), 2) if latencies else None,
        "end_of_speech_to_first_audio_ms_max": round(max(latencies), 2) if latencies else None,
        "turns": len(latencies),
        "vad_min_silence_ms": settings.vad.min_silence_ms,
    }


async def run_engine_bench(settings: Settings | None = None, *, loop_turns: int = 5) -> dict[str, Any]:
    settings = settings or load_settings()
    registry = default_registry()
    speech = say(SENTENCE, sample_rate=RATE)
    audio, _ = conversation([SENTENCE, "Yes, please."], gap_s=0.8)
    return {
        "bench": "engines",
        "vad": await _bench_vad(registry, audio),
        "stt": await _bench_stt(registry, speech),
        "tts": await _bench_tts(registry),
        "loop": await _bench_loop(settings, loop_turns),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
