"""``aria say TEXT -o out.wav`` (TTS) and ``aria transcribe FILE.wav`` (STT)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from aria.cli.common import settings_from_args
from aria.core.aio import closing_stream
from aria.core.audio import read_wav, resample, write_wav
from aria.core.config import Settings
from aria.core.text import ClauseChunker
from aria.engines.base import STT, TTS
from aria.engines.factory import create_engine
from aria.types import AudioChunk

__all__ = ["add_parsers", "synthesize_text", "transcribe_file"]

FRAME_S = 0.02


def add_parsers(sub: Any) -> None:
    say: argparse.ArgumentParser = sub.add_parser("say", help="speak text into a WAV file")
    say.add_argument("text", help="what to say")
    say.add_argument("-o", "--output", required=True, help="WAV file to write")
    say.add_argument("--tts", metavar="BACKEND", help="TTS backend, e.g. espeak, kokoro, piper, openai")
    say.add_argument("--voice", help="voice name")
    say.set_defaults(run=_run_say)

    tr: argparse.ArgumentParser = sub.add_parser("transcribe", help="print the transcript of a WAV file")
    tr.add_argument("file", help="WAV file (PCM, any rate; converted to 16 kHz mono)")
    tr.add_argument("--stt", metavar="BACKEND", help="STT backend, e.g. whisper, pocketsphinx, openai")
    tr.add_argument("--language", help="language code, e.g. en")
    tr.add_argument("--partials", action="store_true", help="show partial transcripts on stderr")
    tr.set_defaults(run=_run_transcribe)


async def synthesize_text(
    settings: Settings, text: str, voice: str | None = None
) -> tuple[np.ndarray[Any, Any], int]:
    """Speak ``text`` sentence by sentence with the configured TTS; the samples and their rate."""
    tts = create_engine("tts", settings)
    if tts is None:
        raise SystemExit("aria: TTS is disabled (tts.backend = none)")
    assert isinstance(tts, TTS)
    await tts.start()
    try:
        chunker = ClauseChunker()
        sentences = [*chunker.push(text), *chunker.flush()]
        blocks: list[np.ndarray[Any, Any]] = []
        rate = tts.capabilities.sample_rate or 0
        for sentence in sentences:
            async with closing_stream(tts.synthesize(sentence, voice=voice or settings.tts.voice)) as audio:
                async for chunk in audio:
                    rate = chunk.sample_rate
                    blocks.append(chunk.as_float32())
    finally:
        await tts.aclose()
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return samples, rate or 16000


async def transcribe_file(settings: Settings, path: Path, *, partials: bool = False) -> str:
    """Stream a WAV file through the configured STT in 20 ms frames; the final transcript."""
    samples, rate = read_wav(path)
    samples = resample(samples, rate, 16000)
    stt = create_engine("stt", settings)
    assert isinstance(stt, STT)
    await stt.start()
    step = int(16000 * FRAME_S)

    async def frames() -> Any:
        for start in range(0, samples.size, step):
            yield AudioChunk(samples[start : start + step].copy(), 16000)
            await asyncio.sleep(0)

    final = ""
    try:
        async with closing_stream(stt.stream(frames())) as transcripts:
            async for tr in transcripts:
                if tr.is_final:
                    final = tr.text
                elif partials:
                    print(f"… {tr.text}", file=sys.stderr, flush=True)
    finally:
        await stt.aclose()
    return final


def _run_say(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, {"tts.backend": args.tts, "tts.voice": args.voice})
    started = time.perf_counter()
    samples, rate = asyncio.run(synthesize_text(settings, args.text, args.voice))
    write_wav(args.output, samples, rate)
    took = time.perf_counter() - started
    print(f"wrote {args.output}: {samples.size / rate:.2f} s at {rate} Hz in {took:.2f} s", file=sys.stderr)
    return 0


def _run_transcribe(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, {"stt.backend": args.stt, "stt.language": args.language})
    print(asyncio.run(transcribe_file(settings, Path(args.file), partials=args.partials)))
    return 0
