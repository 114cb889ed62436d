"""Metrics: the turn waterfall on a fake clock, Prometheus rendering, percentiles."""

from __future__ import annotations

import pytest

from aria.core.metrics import DEFAULT_LATENCY_BUCKETS, STAGES, MetricsRegistry, TurnWaterfall, percentile


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_waterfall_marks_in_ms_since_speech_end() -> None:
    clock = FakeClock()
    w = TurnWaterfall("t1", clock=clock)
    assert w.origin is None
    assert w.total_ms is None
    assert w.as_dict() == dict.fromkeys(STAGES)
    for stage, now in [
        ("speech_end", 100.0),
        ("final_transcript", 100.25),
        ("llm_request", 100.2505),
        ("first_token", 100.5),
        ("first_audio_out", 100.75),
        ("done", 102.0),
    ]:
        clock.now = now
        assert w.mark(stage) is True
    assert list(w.as_dict()) == list(STAGES)
    assert w.as_dict() == {
        "speech_end": 0.0,
        "final_transcript": 250.0,
        "end_of_turn": None,
        "llm_request": 250.5,
        "first_token": 500.0,
        "first_tts_request": None,
        "first_audio_out": 750.0,
        "done": 2000.0,
    }
    assert w.stage_durations() == {
        "final_transcript": 250.0,
        "llm_request": 0.5,
        "first_token": 249.5,
        "first_audio_out": 250.0,
        "done": 1250.0,
    }
    assert w.total_ms == 2000.0
    assert w.at("first_token") == 100.5
    assert w.has("done")
    assert not w.has("first_tts_request")


def test_first_mark_wins() -> None:
    clock = FakeClock(1.0)
    w = TurnWaterfall("t", clock=clock)
    assert w.mark("first_token") is True
    clock.now = 5.0
    assert w.mark("first_token") is False
    assert w.mark("first_token", at=0.5) is False
    assert w.at("first_token") == 1.0


def test_explicit_time_and_origin_without_speech_end() -> None:
    w = TurnWaterfall("t", clock=FakeClock(50.0))
    w.mark("first_token", at=10.1)
    w.mark("llm_request", at=10.0)
    assert w.origin == 10.0
    assert w.as_dict()["first_token"] == 100.0
    assert w.total_ms is None
    w.mark("speech_end", at=9.0)
    assert w.origin == 9.0
    assert w.as_dict()["llm_request"] == 1000.0


def test_unknown_stage_is_an_error() -> None:
    w = TurnWaterfall("t")
    with pytest.raises(ValueError, match="unknown stage"):
        w.mark("first_tokn")


def test_waterfall_has_slots() -> None:
    w = TurnWaterfall("t")
    with pytest.raises(AttributeError):
        w.extra = 1  # type: ignore[attr-defined]


def test_render_histogram_exactly() -> None:
    registry = MetricsRegistry()
    h = registry.histogram("aria_ttfa_seconds", "Time to first audio.", buckets=(0.1, 0.5, 1.0))
    for value in (0.05, 0.3, 0.3, 2.0):
        h.observe(value)
    assert registry.render() == (
        "# HELP aria_ttfa_seconds Time to first audio.\n"
        "# TYPE aria_ttfa_seconds histogram\n"
        'aria_ttfa_seconds_bucket{le="0.1"} 1.0\n'
        'aria_ttfa_seconds_bucket{le="0.5"} 3.0\n'
        'aria_ttfa_seconds_bucket{le="1.0"} 3.0\n'
        'aria_ttfa_seconds_bucket{le="+Inf"} 4.0\n'
        "aria_ttfa_seconds_count 4.0\n"
        "aria_ttfa_seconds_sum 2.65\n"
    )


def test_render_labelled_counter_and_gauge_exactly() -> None:
    registry = MetricsRegistry()
    c = registry.counter(
        "aria_engine_errors_total", "Engine errors.\nBy engine.", labelnames=("engine", "kind")
    )
    c.labels(engine="llm:builtin", kind="timeout").inc()
    c.labels(engine="llm:builtin", kind="timeout").inc(2)
    c.labels(engine='tts:"odd"\\name\n', kind="x").inc()
    g = registry.gauge("aria_sessions", "Open sessions.")
    g.inc()
    g.inc()
    g.dec()
    assert registry.render() == (
        "# HELP aria_engine_errors_total Engine errors.\\nBy engine.\n"
        "# TYPE aria_engine_errors_total counter\n"
        'aria_engine_errors_total{engine="llm:builtin",kind="timeout"} 3.0\n'
        'aria_engine_errors_total{engine="tts:\\"odd\\"\\\\name\\n",kind="x"} 1.0\n'
        "# HELP aria_sessions Open sessions.\n"
        "# TYPE aria_sessions gauge\n"
        "aria_sessions 1.0\n"
    )


def test_labelled_histogram_and_default_buckets() -> None:
    registry = MetricsRegistry()
    h = registry.histogram("aria_stage_seconds", "Stage latency.", labelnames=("stage",))
    h.labels(stage="stt").observe(0.002)
    text = registry.render()
    bounds = [line.split('le="')[1].split('"')[0] for line in text.splitlines() if "_bucket{" in line]
    assert bounds == [*(str(b) for b in DEFAULT_LATENCY_BUCKETS), "+Inf"]
    assert 'aria_stage_seconds_bucket{le="0.001",stage="stt"} 0.0\n' in text
    assert 'aria_stage_seconds_bucket{le="0.0025",stage="stt"} 1.0\n' in text
    assert 'aria_stage_seconds_bucket{le="+Inf",stage="stt"} 1.0\n' in text
    assert 'aria_stage_seconds_count{stage="stt"} 1.0\n' in text
    assert "_created" not in text


def test_registry_get_or_create_and_type_clash() -> None:
    registry = MetricsRegistry()
    c = registry.counter("aria_turns_total", "Turns.")
    assert registry.counter("aria_turns_total", "Turns.") is c
    with pytest.raises(ValueError, match="already registered as a counter"):
        registry.gauge("aria_turns_total", "Turns.")
    with pytest.raises(ValueError, match="labels"):
        registry.counter("aria_turns_total", "Turns.", labelnames=("mode",))
    h = registry.histogram("aria_h_seconds", "H.", buckets=(0.1, 1.0))
    assert registry.histogram("aria_h_seconds", "H.", buckets=(1.0, 0.1)) is h
    with pytest.raises(ValueError, match="already exists with buckets"):
        registry.histogram("aria_h_seconds", "H.", buckets=(0.5,))


def test_label_and_value_misuse() -> None:
    registry = MetricsRegistry()
    c = registry.counter("aria_x_total", "X.", labelnames=("engine",))
    with pytest.raises(ValueError, match="missing label values"):
        c.inc()
    with pytest.raises(ValueError, match="Incorrect label names"):
        c.labels(engin="a")
    with pytest.raises(ValueError, match="non-negative"):
        c.labels(engine="a").inc(-1)
    with pytest.raises(ValueError, match="invalid metric name"):
        registry.counter("bad name", "X.")
    with pytest.raises(ValueError, match="'le'"):
        registry.histogram("aria_h", "H.", labelnames=("le",))


def test_unlabelled_metrics_render_zero_before_use() -> None:
    registry = MetricsRegistry()
    registry.counter("aria_y_total", "Y.")
    assert registry.render().endswith("aria_y_total 0.0\n")


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 50, 1.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([10.0, 20.0, 30.0, 40.0, 50.0], 90, 46.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        percentile(values, q)
