#!/usr/bin/env python3
"""The floor under the side-by-side turn scenario: the same fake engines with nothing between them.

``bench_aria.py`` and ``bench_pipecat.py`` time a turn of 60 tokens, 10 ms apart on a helper-thread clock,
through a framework to a consumer task, with a fake TTS (50 ms, then 6 blocks) per sentence. This script
runs exactly those fakes (the shared ``ThreadClock`` and token script, imported from ``bench_pipecat.py``)
joined by one ``asyncio.Queue`` and nothing else: no framework at all. Its event-loop CPU per turn is what
any framework pays on this machine before doing anything, so a framework's figure can go no lower.

    python scripts/pipecat/floor.py --bench-dir ../shared/bench/pipecat   # prints one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time


async def turns(n: int, warmup: int, gap_s: float) -> dict[str, float]:
    from bench_pipecat import PERF, ThreadClock, make_script

    clock = ThreadClock(asyncio.get_running_loop())
    queue: asyncio.Queue[object] = asyncio.Queue()
    rng = random.Random(1234)
    done = asyncio.Event()

    async def consumer() -> None:
        while True:
            if await queue.get() is None:
                done.set()

    async def tts() -> None:
        await clock.sleep_until(PERF() + 0.05)
        for _ in range(6):
            queue.put_nowait(b"audio")

    sink = asyncio.create_task(consumer())
    loop_cpu, process_cpu, trigger = [], [], []
    for turn in range(warmup + n):
        done.clear()
        tokens, _ = make_script(rng, 60)
        thread0, process0 = time.thread_time(), time.process_time()
        t0 = PERF()
        speaking: list[asyncio.Task[None]] = []
        for i, token in enumerate(tokens):
            await clock.sleep_until(t0 + (i + 1) * 0.01)
            queue.put_nowait(token)
            if token.endswith(".") and len(speaking) < 6:
                speaking.append(asyncio.create_task(tts()))
        await asyncio.gather(*speaking)
        queue.put_nowait(None)
        await done.wait()
        if turn >= warmup:
            loop_cpu.append((time.thread_time() - thread0) * 1000)
            process_cpu.append((time.process_time() - process0) * 1000)
        await asyncio.sleep(gap_s)
        # the floor of "trigger -> LLM": one task started after an idle gap, to its first line
        started: list[float] = []

        async def model() -> None:
            started.append(PERF())

        t = PERF()
        await asyncio.get_running_loop().create_task(model())
        if turn >= warmup:
            trigger.append((started[0] - t) * 1000)
        await asyncio.sleep(gap_s)
    sink.cancel()
    clock.stop()
    return {
        "turns": n,
        "loop_thread_cpu_ms_per_turn_p50": round(statistics.median(loop_cpu), 3),
        "cpu_ms_per_turn_p50": round(statistics.median(process_cpu), 3),
        "task_start_after_idle_ms_p50": round(statistics.median(trigger), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-dir", default="../shared/bench/pipecat", help="where bench_pipecat.py is")
    ap.add_argument("--turns", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--gap-ms", type=float, default=50.0)
    args = ap.parse_args()
    sys.path.insert(0, args.bench_dir)
    result = asyncio.run(turns(args.turns, args.warmup, args.gap_ms / 1000))
    print(json.dumps({"bench": "asyncio_floor", **result}), flush=True)


if __name__ == "__main__":
    main()
