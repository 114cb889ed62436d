"""Stand-in for the run_bench helpers run_aria_vs_pipecat.py imports (missing from ../shared/bench/pipecat):
the table rows, number formatting, a dotted-path getter and a quiet-machine gate."""

from __future__ import annotations

import time

METRICS = [
    ("hop system/input paced latency p50", "hop.system.paced.latency_ms.p50", "ms"),
    ("hop data/output paced latency p50", "hop.data.paced.latency_ms.p50", "ms"),
    ("turn overhead excl. look-ahead p50", "turn.overhead_excl_lookahead_ms.p50", "ms"),
    ("framework-only dispatch p50", "turn.breakdown_ms.framework_only.p50", "ms"),
    ("trigger -> LLM p50", "turn.breakdown_ms.trigger_to_llm.p50", "ms"),
    ("LLM token -> TTS run p50", "turn.breakdown_ms.llm_token_to_run_tts.p50", "ms"),
    ("TTS yield -> sink p50", "turn.breakdown_ms.tts_yield_to_sink.p50", "ms"),
    ("event-loop CPU per turn p50 (process)", "turn.cpu_ms_per_turn.p50", "ms"),
    ("event-loop thread CPU per turn p50", "turn.loop_thread_cpu_ms_per_turn.p50", "ms"),
    ("interrupt by audio: time to silence p50", "interruption.broadcast.time_to_silence_ms.p50", "ms"),
    ("interrupt by audio: done at sink p50", "interruption.broadcast.interruption_frame_at_sink_ms.p50", "ms"),
    ("import of the pipeline module (wall) p50", "import.pipecat.pipeline.pipeline.wall_ms.p50", "ms"),
    ("import -X importtime cumulative p50", "import.pipecat.pipeline.pipeline.X_importtime_cumulative_ms.p50", "ms"),
    ("RSS after building a voice pipeline", "memory.rss_after_build_voice_pipeline_mb", "MiB"),
]


def get(d, path):
    # keys may contain dots (module names): try the longest key first
    if not path:
        return d
    if not isinstance(d, dict):
        return None
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in d:
            found = get(d[key], ".".join(parts[n:]))
            if found is not None:
                return found
    return None


def fmt(x):
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    return str(x)


def _busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def wait_quiet(quiet_cores, window, max_wait):
    import os

    ncpu = os.cpu_count() or 1
    t0 = time.monotonic()
    others = None
    while True:
        b0, t_0 = _busy()
        time.sleep(window)
        b1, t_1 = _busy()
        others = (b1 - b0) / max(t_1 - t_0, 1) * ncpu
        if others < quiet_cores or time.monotonic() - t0 > max_wait:
            break
    return {"quiet": others < quiet_cores, "last_others_cores": round(others, 3), "waited_s": round(time.monotonic() - t0, 1)}
