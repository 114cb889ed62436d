"""Latency and health metrics: a per-turn waterfall and a small Prometheus-style registry.

:class:`TurnWaterfall` records when each stage of one turn happened (speech end, final transcript, first
token, first audio out, ...). :class:`MetricsRegistry` holds counters, gauges and histograms and renders them
in the Prometheus text exposition format 0.0.4. Nothing here locks: it is meant for one event loop.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Generic, TypeVar

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_LATENCY_BUCKETS",
    "REGISTRY",
    "STAGES",
    "Counter",
    "Gauge",
    "Histogram",
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

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


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
        if stage not in STAGES:
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
        origin = self.origin
        return {
            stage: None if origin is None or stage not in self._marks else _ms(self._marks[stage] - origin)
            for stage in STAGES
        }

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


# --- Prometheus-style registry -----------------------------------------------------------------------------


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter can only go up; use a Gauge")
        self.value += amount


class _GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class _HistogramChild:
    __slots__ = ("bucket_counts", "count", "sum", "upper_bounds")

    def __init__(self, upper_bounds: tuple[float, ...]) -> None:
        self.upper_bounds = upper_bounds  # ends with +Inf
        self.bucket_counts = [0] * len(upper_bounds)  # per bucket, not cumulative
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.upper_bounds):
            if value <= bound:
                self.bucket_counts[i] += 1
                break


_C = TypeVar("_C", _CounterChild, _GaugeChild, _HistogramChild)


class _Metric(Generic[_C]):
    kind: ClassVar[str]

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
        self._children: dict[tuple[str, ...], _C] = {}
        if not self.labelnames:
            self._children[()] = self._new_child()

    def _new_child(self) -> _C:
        raise NotImplementedError

    def labels(self, **labelvalues: object) -> _C:
        """The child for these label values (every label name, no others), created on first use."""
        if set(labelvalues) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labelvalues)}")
        key = tuple(str(labelvalues[label]) for label in self.labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _only_child(self) -> _C:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}; call .labels(...) first")
        return self._children[()]

    def _samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        header = f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return header + "".join(f"{line}\n" for line in self._samples())

    def _label_text(self, values: tuple[str, ...], extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = (*zip(self.labelnames, values, strict=True), *extra)
        return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}" if pairs else ""


class Counter(_Metric[_CounterChild]):
    kind = "counter"

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self._only_child().inc(amount)

    @property
    def value(self) -> float:
        return self._only_child().value

    def _samples(self) -> Iterable[str]:
        for values, child in self._children.items():
            yield f"{self.name}{self._label_text(values)} {_num(child.value)}"


class Gauge(_Metric[_GaugeChild]):
    kind = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def set(self, value: float) -> None:
        self._only_child().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only_child().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only_child().dec(amount)

    @property
    def value(self) -> float:
        return self._only_child().value

    def _samples(self) -> Iterable[str]:
        for values, child in self._children.items():
            yield f"{self.name}{self._label_text(values)} {_num(child.value)}"


class Histogram(_Metric[_HistogramChild]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Iterable[str] = (),
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> None:
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name} needs distinct finite buckets, got {tuple(buckets)}")
        self.buckets: tuple[float, ...] = (*bounds, math.inf)
        if "le" in tuple(labelnames):
            raise ValueError(f"histogram {name} cannot use the label name 'le'")
        super().__init__(name, help, labelnames)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.buckets)

    def observe(self, value: float) -> None:
        self._only_child().observe(value)

    def _samples(self) -> Iterable[str]:
        for values, child in self._children.items():
            cumulative = 0
            for bound, n in zip(child.upper_bounds, child.bucket_counts, strict=True):
                cumulative += n
                yield f"{self.name}_bucket{self._label_text(values, (('le', _num(bound)),))} {cumulative}"
            yield f"{self.name}_sum{self._label_text(values)} {_num(child.sum)}"
            yield f"{self.name}_count{self._label_text(values)} {child.count}"


_M = TypeVar("_M", Counter, Gauge, Histogram)


class MetricsRegistry:
    """Named metrics, created on first request and rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, labelnames, lambda: Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, labelnames, lambda: Gauge(name, help, labelnames))

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> Histogram:
        metric = self._get(Histogram, name, labelnames, lambda: Histogram(name, help, labelnames, buckets))
        if metric.buckets[:-1] != tuple(sorted(float(b) for b in buckets if not math.isinf(b))):
            raise ValueError(f"histogram {name} already exists with buckets {metric.buckets[:-1]}")
        return metric

    def _get(self, cls: type[_M], name: str, labelnames: Sequence[str], create: Callable[[], _M]) -> _M:
        metric = self._metrics.get(name)
        if metric is None:
            new = create()
            self._metrics[name] = new
            return new
        if not isinstance(metric, cls):
            raise ValueError(f"metric {name} is already registered as a {metric.kind}, not a {cls.kind}")
        if metric.labelnames != tuple(labelnames):
            raise ValueError(f"metric {name} is already registered with labels {metric.labelnames}")
        return metric

    def get(self, name: str) -> Counter | Gauge | Histogram | None:
        return self._metrics.get(name)

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4, in registration order."""
        return "".join(metric.render() for metric in self._metrics.values())


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


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
