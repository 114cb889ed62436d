"""Latency and health metrics: a per-turn waterfall and a Prometheus registry.

:class:`TurnWaterfall` records when each stage of one turn happened (speech end, final transcript, first
token, first audio out, ...). :class:`MetricsRegistry` gets or creates ``prometheus_client`` counters, gauges
and histograms by name and renders them in the Prometheus text exposition format 0.0.4.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric as PromMetric

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_LATENCY_BUCKETS",
    "REGISTRY",
    "STAGES",
    "MetricsRegistry",
    "TurnWaterfall",
    "percentile",
]

STAGES: tuple[str, ...] = (
    "speech_end",
    "final_transcript",
    "end_of_turn",
    "llm_request",
    "first_token",
    "first_tts_request",
    "first_audio_out",
    "done",
)
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_STAGE_SET = frozenset(STAGES)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class TurnWaterfall:
    """When each stage of one turn happened, on ``clock`` (seconds). The first mark of a stage wins."""

    __slots__ = ("_clock", "_marks", "turn_id")

    def __init__(self, turn_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.turn_id = turn_id
        self._clock = clock
        self._marks: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"TurnWaterfall({self.turn_id!r}, {self.as_dict()!r})"

    def mark(self, stage: str, at: float | None = None) -> bool:
        """Record ``stage`` at ``at`` (default now); False if already marked, ValueError if unknown."""
        if stage not in _STAGE_SET:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        if stage in self._marks:
            return False
        self._marks[stage] = self._clock() if at is None else at
        return True

    def clear(self, *stages: str) -> None:
        """Forget ``stages`` (the person went on speaking after a pause: its marks no longer apply)."""
        for stage in stages:
            self._marks.pop(stage, None)

    def at(self, stage: str) -> float | None:
        return self._marks.get(stage)

    def has(self, stage: str) -> bool:
        return stage in self._marks

    @property
    def origin(self) -> float | None:
        """The ``speech_end`` mark if there is one, else the earliest mark."""
        if "speech_end" in self._marks:
            return self._marks["speech_end"]
        return min(self._marks.values(), default=None)

    def as_dict(self) -> dict[str, float | None]:
        """Each stage, in order, as milliseconds since :attr:`origin` (None where not marked)."""
        marks, origin = self._marks, self.origin
        if origin is None:
            return dict.fromkeys(STAGES)
        return {stage: _ms(marks[stage] - origin) if stage in marks else None for stage in STAGES}

    def stage_durations(self) -> dict[str, float]:
        """Milliseconds between consecutive marked stages, keyed by the later stage."""
        marked = [(stage, self._marks[stage]) for stage in STAGES if stage in self._marks]
        return {later: _ms(t1 - t0) for (_, t0), (later, t1) in itertools.pairwise(marked)}

    @property
    def total_ms(self) -> float | None:
        origin, done = self.origin, self._marks.get("done")
        return None if origin is None or done is None else _ms(done - origin)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


# --- Prometheus registry ---------------------------------------------------------------------------------


class MetricsRegistry:
    """Counters, gauges and histograms in a ``prometheus_client`` registry of their own, got or created by
    name (asking twice for the same metric gives the same object; the same name as another kind or with
    other labels is a ValueError) and rendered together in the text format 0.0.4.

    The metrics are ``prometheus_client``'s own (``labels(...)``, ``inc``, ``set``, ``observe``);
    ``prometheus_client`` is imported on first use, not with this module: the pipeline imports the turn
    waterfall above and should not pay for it. The ``*_created`` series are left out of :meth:`render`.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, _Entry] = {}
        self._registry: CollectorRegistry | None = None

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        from prometheus_client import Counter

        metric: Counter = self._get(
            "counter", name, labelnames, lambda r: Counter(name, help, labelnames, registry=r)
        )
        return metric

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        from prometheus_client import Gauge

        metric: Gauge = self._get(
            "gauge", name, labelnames, lambda r: Gauge(name, help, labelnames, registry=r)
        )
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> Histogram:
        from prometheus_client import Histogram

        bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name} needs distinct finite buckets, got {tuple(buckets)}")
        if "le" in labelnames:
            raise ValueError(f"histogram {name} cannot use the label name 'le'")
        metric: Histogram = self._get(
            "histogram",
            name,
            labelnames,
            lambda r: Histogram(name, help, labelnames, registry=r, buckets=bounds),
            bounds,
        )
        return metric

    def _get(
        self,
        kind: str,
        name: str,
        labelnames: Sequence[str],
        create: Callable[[CollectorRegistry], Any],
        buckets: tuple[float, ...] = (),
    ) -> Any:
        old = self._metrics.get(name)
        if old is not None:
            if old.kind != kind:
                raise ValueError(f"metric {name} is already registered as a {old.kind}, not a {kind}")
            if old.labelnames != tuple(labelnames):
                raise ValueError(f"metric {name} is already registered with labels {old.labelnames}")
            if old.buckets != buckets:
                raise ValueError(f"histogram {name} already exists with buckets {old.buckets}")
            return old.metric
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=True)
        metric = create(self._registry)
        self._metrics[name] = _Entry(kind, tuple(labelnames), buckets, metric)
        return metric

    def get(self, name: str) -> Counter | Gauge | Histogram | None:
        entry = self._metrics.get(name)
        return None if entry is None else entry.metric

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4, in registration order."""
        if self._registry is None:
            return ""
        from prometheus_client import generate_latest

        return generate_latest(_WithoutCreated(self._registry)).decode()


class _Entry(NamedTuple):
    kind: str
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...]
    metric: Any


class _WithoutCreated:
    """A registry's metric families without their ``*_created`` samples (a timestamp per series)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[PromMetric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


REGISTRY = MetricsRegistry()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, interpolating linearly between closest ranks."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be between 0 and 100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
