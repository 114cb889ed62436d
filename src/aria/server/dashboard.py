"""The status dashboard: ``GET /dashboard`` (a static page drawing its own charts) and ``GET /metrics/json``,
what it polls, built from the same registry ``/metrics`` renders.

``/metrics/json`` parses the Prometheus text that ``/metrics`` serves (:func:`parse_metrics`, with
``prometheus_client``'s parser), so both always say the same. From the stage latency histogram it gives
per-stage percentiles (:func:`histogram_quantile`, Prometheus' linear interpolation within a bucket):
since start, and over time, each point of ``series`` covering the turns of the ``window_s`` before it
(the difference of two samples' cumulative buckets). Samples are taken when the data is asked for (at most
one per ``MIN_SAMPLE_S``), the last ``MAX_SAMPLES`` kept. Beside them: engines and their breakers, the
resident engines against the memory budget, turns by outcome, errors by code.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from prometheus_client.parser import text_string_to_metric_families

from aria.server.runtime import Runtime

__all__ = [
    "DashboardHistory",
    "Sample",
    "dashboard_data",
    "histogram_quantile",
    "parse_metrics",
    "percentiles",
    "router",
    "stage_buckets",
]

router = APIRouter()
PAGE = Path(__file__).parent / "static" / "dashboard.html"
STAGE_METRIC = "aria_turn_stage_seconds"
QUANTILES = (50, 90, 99)
MIN_SAMPLE_S = 1.0
MAX_SAMPLES = 360
WINDOW_S = 60.0
#: How often the page asks (it reads this).
POLL_S = 3.0

Buckets = dict[str, list[tuple[float, float]]]


def parse_metrics(text: str) -> dict[str, dict[str, Any]]:
    """The Prometheus text as ``{family: {type, help, samples: [{name, labels, value}]}}``."""
    families: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": _finite(s.value)} for s in family.samples
            ],
        }
    return families


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def stage_buckets(families: Mapping[str, Mapping[str, Any]]) -> Buckets:
    """Per stage, the histogram's cumulative ``(upper bound, count)`` pairs in order (+Inf last)."""
    found: Buckets = {}
    for sample in families.get(STAGE_METRIC, {}).get("samples", ()):
        if not sample["name"].endswith("_bucket"):
            continue
        labels = sample["labels"]
        bound = float(labels["le"])
        found.setdefault(labels.get("stage", ""), []).append((bound, float(sample["value"])))
    return {stage: sorted(pairs) for stage, pairs in found.items()}


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-th percentile (0..100) of a histogram's cumulative buckets, interpolating linearly within
    the bucket it falls in (the largest finite bound when it falls in +Inf); None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = total * q / 100
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = (bound if not math.isinf(bound) else lower_bound), count
    return lower_bound


def percentiles(buckets: Sequence[tuple[float, float]]) -> dict[str, float | None]:
    """Count and p50/p90/p99 in milliseconds."""
    result: dict[str, float | None] = {"count": buckets[-1][1] if buckets else 0.0}
    for q in QUANTILES:
        value = histogram_quantile(q, buckets)
        result[f"p{q}"] = None if value is None else round(value * 1000, 1)
    return result


def _minus(
    now: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]] | None
) -> list[tuple[float, float]]:
    if not before:
        return list(now)
    old = dict(before)
    return [(bound, count - old.get(bound, 0.0)) for bound, count in now]


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    stages: Buckets
    memory: dict[str, float]


class DashboardHistory:
    """The samples the ``series`` is drawn from; ``clock`` is injectable for tests."""

    def __init__(self, *, window_s: float = WINDOW_S, max_samples: int = MAX_SAMPLES) -> None:
        self.window_s = window_s
        self.samples: deque[Sample] = deque(maxlen=max_samples)

    def add(self, at: float, stages: Buckets, memory: dict[str, float]) -> None:
        if self.samples and at - self.samples[-1].at < MIN_SAMPLE_S:
            self.samples[-1] = Sample(self.samples[-1].at, stages, memory)  # keep the time, fresher data
            return
        self.samples.append(Sample(at, stages, memory))

    def series(self) -> list[dict[str, Any]]:
        """Per sample: each stage's percentiles over the turns of the window before it (stages without
        turns in it are left out), and the memory figures."""
        points: list[dict[str, Any]] = []
        samples = list(self.samples)
        start = 0
        for sample in samples:
            while start < len(samples) and samples[start].at < sample.at - self.window_s:
                start += 1
            base = samples[start - 1] if start > 0 else None
            stages: dict[str, Any] = {}
            for stage, buckets in sample.stages.items():
                delta = _minus(buckets, base.stages.get(stage) if base is not None else None)
                if delta and delta[-1][1] > 0:
                    stages[stage] = percentiles(delta)
            points.append({"at": sample.at, "stages": stages, **sample.memory})
        return points


def _labelled(families: Mapping[str, Mapping[str, Any]], name: str, label: str) -> dict[str, float]:
    """A counter's values by one label (``name`` as the parser names counter families: without _total)."""
    return {
        str(s["labels"].get(label, "")): s["value"]
        for s in families.get(name, {}).get("samples", ())
        if isinstance(s["value"], float)
    }


def dashboard_data(rt: Runtime, history: DashboardHistory, *, now: float | None = None) -> dict[str, Any]:
    """What the dashboard draws (see the module docstring)."""
    rt.refresh_gauges()
    families = parse_metrics(rt.metrics.render())
    stages = stage_buckets(families)
    usage = rt.residency.usage()
    at = time.time() if now is None else now
    memory = {
        "resident_mb": float(usage["resident_mb"]),
        "rss_mb": float(usage["rss_mb"]),
        "budget_mb": float(usage["budget_mb"]),
    }
    history.add(at, stages, memory)
    return {
        "at": at,
        "status": rt.status(),
        "uptime_s": round(time.time() - rt.started_at, 1),
        "poll_s": POLL_S,
        "window_s": history.window_s,
        "stages": {stage: percentiles(buckets) for stage, buckets in stages.items() if stage != "speech_end"},
        "series": history.series(),
        "turns": _labelled(families, "aria_turns", "outcome"),
        "errors": _labelled(families, "aria_errors", "code"),
        "connections": rt.connections,
        "engines": rt.engine_states(),
        "breakers": rt.breakers(),
        "probes": rt.probes,
        "residency": usage,
        "metrics": families,
    }


@router.get("/dashboard", include_in_schema=False)
async def _page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")


@router.get("/metrics/json")
async def _metrics_json(request: Request) -> dict[str, Any]:
    state = request.app.state
    if getattr(state, "dashboard_history", None) is None:
        state.dashboard_history = DashboardHistory()
    history: DashboardHistory = state.dashboard_history
    return dashboard_data(state.runtime, history)
