"""The orchestration-overhead benchmark: real pipeline, fake engines with fixed, known delays.

Measured, per turn, on the consumer side of the pipeline's output channel:

* ``turn_overhead_ms``: end of speech (the VAD's decision) to the first answer audio received, minus the
  time the fakes spent in their own scripted waits on that path (the union of their wait intervals,
  measured, so the event loop's timer overshoot is not charged to the pipeline). The same figure minus
  the *nominal* delays is reported as ``turn_overhead_nominal_ms`` for comparison;
* ``bargein_stop_ms``: ``interrupt()`` to the last audio frame of that answer received (0 when nothing
  leaks after it), and ``bargein_done_ms`` to its ``ResponseDone``;
* ``frame_hop_us``: one audio frame's trip from ``push_audio`` through VAD to the STT engine, and
  ``frames_per_s``, how many frames a second the input path takes;
* ``loop_cpu_ms_per_turn_p50``: CPU time of the event-loop thread per turn (the pipeline's own work,
  the fakes' and the harness's: all of it runs on that thread);
* ``import_ms``: ``import aria.pipeline.voice`` in a fresh interpreter (``-X importtime``'s cumulative
  figure for the module, the median of ``import_runs``).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aria.core.metrics import percentile
from aria.pipeline.outputs import AudioOut, Output, ResponseDone
from aria.pipeline.voice import PipelineConfig
from aria.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from aria.testing.harness import TurnHarness, silence, tone

__all__ = ["OverheadBench", "format_report", "import_time_ms", "union_within"]

REPLY = "Sure, here is the answer you asked for. It comes in two sentences, spoken as they arrive."


def union_within(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """Total length of the union of ``intervals`` clipped to ``[start, end]``."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_a is not None and cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None and cur_b is not None:
        total += cur_b - cur_a
    return total


def _audio_of(turn_id: str) -> Callable[[Output], bool]:
    return lambda out: isinstance(out, AudioOut) and out.turn_id == turn_id


def _done_of(turn_id: str) -> Callable[[ResponseDone], bool]:
    return lambda done: done.turn_id == turn_id


def _is(item: Output) -> Callable[[Output], bool]:
    return lambda out: out is item


@dataclass
class OverheadBench:
    turns: int = 200
    warmup: int = 20
    stt_final_s: float = 0.030
    llm_ttft_s: float = 0.050
    llm_token_s: float = 0.0
    tts_first_s: float = 0.020
    frames: int = 3000
    bargein_turns: int = 50
    import_runs: int = 5

    def _harness(self, tts_chunk_interval_s: float = 0.0) -> TurnHarness:
        return TurnHarness.with_fakes(
            vad=FakeVAD.Config(start_frames=2, end_frames=8),
            stt=FakeSTT.Config(texts=("what is the weather like today",), final_delay_s=self.stt_final_s),
            llm=FakeLLM.Config(replies=(REPLY,), ttft_s=self.llm_ttft_s, token_interval_s=self.llm_token_s),
            tts=FakeTTS.Config(first_chunk_delay_s=self.tts_first_s, chunk_interval_s=tts_chunk_interval_s),
            config=PipelineConfig(history_turns=4, max_utterance_s=3600.0),
        )

    async def run(self) -> dict[str, Any]:
        overheads, nominal, loop_cpu = await self._turns()
        stops, dones, leaked = await self._bargeins()
        hops, fps = await self._frames()
        import_ms = await asyncio.to_thread(import_time_ms, "aria.pipeline.voice", self.import_runs)
        return {
            "bench": "overhead",
            "turn_overhead_ms_p50": round(percentile(overheads, 50), 4),
            "loop_cpu_ms_per_turn_p50": round(percentile(loop_cpu, 50), 4),
            "import_ms": round(import_ms, 1),
            "turn_overhead_ms_p95": round(percentile(overheads, 95), 4),
            "turn_overhead_ms_max": round(max(overheads), 4),
            "turn_overhead_nominal_ms_p50": round(percentile(nominal, 50), 4),
            "turn_overhead_nominal_ms_p95": round(percentile(nominal, 95), 4),
            "bargein_stop_ms_p50": round(percentile(stops, 50), 4),
            "bargein_stop_ms_p95": round(percentile(stops, 95), 4),
            "bargein_done_ms_p50": round(percentile(dones, 50), 4),
            "audio_frames_after_interrupt": leaked,
            "frame_hop_us_p50": round(percentile(hops, 50), 2),
            "frame_hop_us_p95": round(percentile(hops, 95), 2),
            "frames_per_s": round(fps, 1),
            "turns": len(overheads),
            "bargein_turns": len(stops),
            "fake_delays_ms": {
                "stt_final": self.stt_final_s * 1000,
                "llm_first_token": self.llm_ttft_s * 1000,
                "llm_between_tokens": self.llm_token_s * 1000,
                "tts_first_audio": self.tts_first_s * 1000,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        }

    async def _turns(self) -> tuple[list[float], list[float], list[float]]:
        overheads: list[float] = []
        nominal: list[float] = []
        loop_cpu: list[float] = []
        nominal_s = self.stt_final_s + self.llm_ttft_s + self.tts_first_s
        async with self._harness() as h:
            pipeline = h.pipeline
            fakes = [pipeline.stt, pipeline.llm, pipeline.tts]
            for index in range(self.warmup + self.turns):
                mark = len(h.received)
                cpu = time.thread_time()
                await h.feed([*tone(200), *silence(200)])
                done = await h.wait_for(ResponseDone, after=mark)
                cpu = time.thread_time() - cpu
                turn = pipeline.turn
                assert turn is not None and turn.id == done.turn_id
                end = turn.waterfall.at("speech_end")
                first = h.arrival(_audio_of(done.turn_id))
                assert end is not None and first is not None
                waits = [(a, b) for fake in fakes for _, a, b in getattr(fake, "waits", ())]
                fake_s = union_within(waits, end, first)
                for fake in fakes:
                    getattr(fake, "waits", []).clear()
                h.received.clear()
                if index >= self.warmup:
                    overheads.append((first - end - fake_s) * 1000)
                    nominal.append((first - end - nominal_s) * 1000)
                    loop_cpu.append(cpu * 1000)
        return overheads, nominal, loop_cpu

    async def _bargeins(self) -> tuple[list[float], list[float], int]:
        stops: list[float] = []
        dones: list[float] = []
        leaked = 0
        async with self._harness(tts_chunk_interval_s=0.002) as h:
            for _ in range(self.bargein_turns):
                mark = len(h.received)
                await h.feed([*tone(200), *silence(200)])
                first = await h.wait_for(AudioOut, after=mark)
                await asyncio.sleep(0.01)  # let the answer stream for a while
                t_interrupt = time.monotonic()
                await h.pipeline.interrupt("bench")
                done = await h.wait_for(ResponseDone, _done_of(first.turn_id), after=mark)
                assert done.interrupted
                after = [
                    r.at
                    for r in h.received[mark:]
                    if isinstance(r.output, AudioOut)
                    and r.output.turn_id == first.turn_id
                    and r.at > t_interrupt
                ]
                leaked += len(after)
                done_at = h.arrival(_is(done))
                assert done_at is not None
                stops.append((max(after, default=t_interrupt) - t_interrupt) * 1000)
                dones.append((done_at - t_interrupt) * 1000)
                h.received.clear()
        return stops, dones, leaked

    async def _frames(self) -> tuple[list[float], float]:
        async with self._harness() as h:
            stt = h.pipeline.stt
            assert isinstance(stt, FakeSTT)
            frames = tone(20 * self.frames)
            start = time.monotonic()
            await h.feed(frames)
            elapsed = time.monotonic() - start
            await asyncio.sleep(0)
            hops = [(arrived - sent) * 1e6 for sent, arrived in stt.arrivals[5:]]
        return hops, len(frames) / elapsed


def import_time_ms(module: str, runs: int) -> float:
    """The median, over ``runs`` fresh interpreters, of ``-X importtime``'s cumulative time for ``module``."""
    times = []
    for _ in range(max(runs, 1)):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in done.stderr.splitlines():
            fields = [part.strip() for part in line.removeprefix("import time:").split("|")]
            if len(fields) == 3 and fields[2] == module:
                times.append(int(fields[1]) / 1000)
    if not times:
        raise RuntimeError(f"-X importtime reported nothing for {module}")
    return statistics.median(times)


def format_report(result: dict[str, Any]) -> str:
    delays = result["fake_delays_ms"]
    return "\n".join(
        [
            f"Aria pipeline overhead ({result['turns']} turns, fakes: STT final {delays['stt_final']:g} ms, "
            f"LLM first token {delays['llm_first_token']:g} ms, "
            f"TTS first audio {delays['tts_first_audio']:g} ms)",
            f"  end of speech -> first audio, minus fakes: p50 {result['turn_overhead_ms_p50']:.3f} ms, "
            f"p95 {result['turn_overhead_ms_p95']:.3f} ms",
            f"  same, minus nominal delays: p50 {result['turn_overhead_nominal_ms_p50']:.3f} ms",
            f"  barge-in: last audio {result['bargein_stop_ms_p50']:.3f} ms, response_done "
            f"{result['bargein_done_ms_p50']:.3f} ms after interrupt; frames leaked: "
            f"{result['audio_frames_after_interrupt']}",
            f"  input path: {result['frame_hop_us_p50']:.1f} us per frame hop, "
            f"{result['frames_per_s']:.0f} frames/s",
            f"  event-loop CPU per turn: p50 {result['loop_cpu_ms_per_turn_p50']:.2f} ms; "
            f"import aria.pipeline.voice: {result['import_ms']:.1f} ms",
        ]
    )
