"""``aria bench``: latency measurements on this machine, printed as JSON (last line)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("bench", help="measure latency on this machine")
    which = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    o = which.add_parser("overhead", help="pipeline overhead with fake engines of fixed delays")
    o.add_argument("--turns", type=int, default=200, help="turns to measure (default 200)")
    o.add_argument("--warmup", type=int, default=20, help="turns run first and not measured")
    o.add_argument("--stt-ms", type=float, default=30.0, help="fake STT: final transcript delay")
    o.add_argument("--ttft-ms", type=float, default=50.0, help="fake LLM: time to first token")
    o.add_argument("--token-ms", type=float, default=0.0, help="fake LLM: time between tokens")
    o.add_argument("--tts-ms", type=float, default=20.0, help="fake TTS: time to first audio")
    o.add_argument("--frames", type=int, default=3000, help="audio frames for the input-path measurement")
    o.add_argument("--json", action="store_true", help="print only the JSON result")
    o.set_defaults(run=_run_overhead)
    e = which.add_parser(
        "engines", help="embedded engines: VAD per chunk, STT RTF, TTS first audio, voice loop"
    )
    e.add_argument("--turns", type=int, default=5, help="voice-loop turns (default 5)")
    e.add_argument("--json", action="store_true", help="print only the JSON result")
    e.set_defaults(run=_run_engines)
    s = which.add_parser("soak", help="many turns over WebSocket against a real server: leaks, lost turns")
    s.add_argument("--turns", type=int, default=500, help="turns to measure (default 500)")
    s.add_argument("--warmup", type=int, default=20, help="turns run first and not measured")
    s.add_argument("--interrupt-every", type=int, default=7, help="interrupt every k-th answer (0: never)")
    s.add_argument("--reconnect-every", type=int, default=25, help="reconnect every k turns (0: never)")
    s.add_argument("--audio-every", type=int, default=3, help="every k-th turn is spoken (0: none)")
    s.add_argument("--tracemalloc", action="store_true", help="also trace Python memory (slower)")
    s.add_argument("--json", action="store_true", help="print only the JSON result")
    s.set_defaults(run=_run_soak)
    st = which.add_parser("store", help="session store: the cost of saving a turn at 100-10,000 messages")
    st.add_argument("--sizes", type=int, nargs="+", default=None, help="history lengths (100 1000 10000)")
    st.add_argument("--turns", type=int, default=50, help="turns saved per length (default 50)")
    st.add_argument("--json", action="store_true", help="print only the JSON result")
    st.set_defaults(run=_run_store)
    t = which.add_parser("turns", help="turn-taking of the voice pipeline: end of turn, barge-in, echo")
    t.add_argument("--quick", action="store_true", help="one or two items per set (a few seconds)")
    t.add_argument("--seed", type=int, default=7, help="random seed for voices, pauses and offsets")
    t.add_argument(
        "--concurrency", type=int, default=None, help="items run at once (default 4, 8 with --quick)"
    )
    t.add_argument("--json", action="store_true", help="print only the JSON result")
    t.set_defaults(run=_run_turns)
    k = which.add_parser("talk", help="aria talk voice-to-voice through real (virtual PulseAudio) devices")
    k.add_argument("--turns", type=int, default=5, help="spoken questions (default 5)")
    k.add_argument("--no-echo", action="store_true", help="answers on speakers the microphone does not hear")
    k.add_argument("--json", action="store_true", help="print only the JSON result")
    k.set_defaults(run=_run_talk)
    m = which.add_parser(
        "embedded",
        help="default-loadout-shaped Whisper, Qwen2.5-1.5B GGUF and Kokoro: stage latencies, voice to voice",
    )
    m.add_argument("--quick", action="store_true", help="tiny shapes, one run (CI smoke: seconds)")
    m.add_argument("--runs", type=int, default=None, help="measured runs per stage (default 3; 1 quick)")
    m.add_argument(
        "--cache-dir", type=Path, default=None, help="made models (default ~/.cache/aria/bench-shapes)"
    )
    m.add_argument("--llm-threads", type=int, default=None, help="llm n_threads (default: the engine's)")
    m.add_argument("--stt-threads", type=int, default=0, help="whisper cpu_threads (0: the engine's default)")
    m.add_argument("--tts-threads", type=int, default=None, help="kokoro threads (default: onnxruntime's)")
    m.add_argument("--json", action="store_true", help="print only the JSON result")
    m.set_defaults(run=_run_embedded)


def _emit(args: argparse.Namespace, result: Any, report: Callable[[Any], str]) -> int:
    """Every bench's output: the readable report (unless ``--json``), then the result as one JSON line."""
    if not args.json:
        print(report(result))
    print(json.dumps(result, sort_keys=True))
    return 0


def _run_overhead(args: argparse.Namespace) -> int:
    from aria.bench.overhead import OverheadBench, format_report

    bench = OverheadBench(
        turns=args.turns,
        warmup=args.warmup,
        stt_final_s=args.stt_ms / 1000,
        llm_ttft_s=args.ttft_ms / 1000,
        llm_token_s=args.token_ms / 1000,
        tts_first_s=args.tts_ms / 1000,
        frames=args.frames,
    )
    result = asyncio.run(bench.run())
    return _emit(args, result, format_report)


def _run_engines(args: argparse.Namespace) -> int:
    from aria.bench.engines import run_engine_bench
    from aria.cli.common import settings_from_args

    settings = settings_from_args(args)
    result = asyncio.run(run_engine_bench(settings, loop_turns=args.turns))
    return _emit(args, result, lambda found: json.dumps(found, indent=2, sort_keys=True))


def _run_soak(args: argparse.Namespace) -> int:
    from aria.bench.soak import SoakBench, format_report
    from aria.server.app import create_app

    bench = SoakBench(
        create_app,
        turns=args.turns,
        warmup=args.warmup,
        interrupt_every=args.interrupt_every,
        reconnect_every=args.reconnect_every,
        audio_every=args.audio_every,
        trace_memory=args.tracemalloc,
    )
    result = asyncio.run(bench.run())
    return _emit(args, result, format_report)


def _run_store(args: argparse.Namespace) -> int:
    from aria.session.bench import DEFAULT_SIZES, format_report, store_bench

    result = store_bench(args.sizes or DEFAULT_SIZES, turns=args.turns)
    return _emit(args, result, format_report)


def _run_turns(args: argparse.Namespace) -> int:
    from aria.bench.turns import TurnsBench, format_report

    result = asyncio.run(TurnsBench(quick=args.quick, seed=args.seed, concurrency=args.concurrency).run())
    return _emit(args, result, format_report)


def _run_embedded(args: argparse.Namespace) -> int:
    from aria.bench.embedded import run_embedded_bench
    from aria.bench.embedded_report import format_report

    result = asyncio.run(
        run_embedded_bench(
            quick=args.quick,
            cache_dir=args.cache_dir,
            runs=args.runs,
            llm_threads=args.llm_threads,
            stt_threads=args.stt_threads,
            tts_threads=args.tts_threads,
        )
    )
    return _emit(args, result, format_report)


def _run_talk(args: argparse.Namespace) -> int:
    from aria.bench.talk import TalkBench, format_report

    result = TalkBench(args.config, turns=args.turns, echo=not args.no_echo).run()
    return _emit(args, result, format_report)
