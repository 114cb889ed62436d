"""The dashboard's data (``GET /metrics/json``): percentiles read from the stage latency histogram the way
Prometheus reads them, over time from the difference of samples, and the same numbers ``/metrics`` has;
behind the token like ``/metrics``."""

from __future__ import annotations

import math

import httpx
import pytest

from aria.core.metrics import MetricsRegistry
from aria.server.dashboard import DashboardHistory, histogram_quantile, parse_metrics, stage_buckets
from tests.server.conftest import LiveServer, connect


def test_quantiles_interpolate_within_buckets() -> None:
    buckets = [(0.1, 0.0), (0.25, 10.0), (0.5, 20.0), (math.inf, 20.0)]
    assert histogram_quantile(50, buckets) == pytest.approx(0.25)
    assert histogram_quantile(25, buckets) == pytest.approx(0.175)  # half of the way through (0.1, 0.25]
    assert histogram_quantile(90, buckets) == pytest.approx(0.45)
    assert histogram_quantile(50, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(99, [(0.1, 1.0), (math.inf, 4.0)]) == 0.1  # beyond the last bound: that bound


def test_series_percentiles_cover_only_the_window() -> None:
    registry = MetricsRegistry()
    stages = registry.histogram("aria_turn_stage_seconds", "help", ("stage",))
    history = DashboardHistory(window_s=10)
    memory = {"resident_mb": 1.0, "rss_mb": 2.0, "budget_mb": 3.0}

    def sample(at: float) -> None:
        history.add(at, stage_buckets(parse_metrics(registry.render())), memory)

    for _ in range(4):
        stages.labels(stage="first_audio_out").observe(0.2)
    sample(100.0)
    sample(105.0)  # nothing new, but still inside the window of the first turns
    for _ in range(4):
        stages.labels(stage="first_audio_out").observe(2.0)
    sample(120.0)  # only the slow turns are in its window
    sample(140.0)  # no turns in its window
    points = history.series()
    assert [p["at"] for p in points] == [100.0, 105.0, 120.0, 140.0]
    assert points[0]["stages"]["first_audio_out"]["count"] == 4
    assert points[0]["stages"]["first_audio_out"]["p50"] == pytest.approx(175.0)  # within (100, 250] ms
    assert points[1]["stages"]["first_audio_out"]["count"] == 4
    assert points[2]["stages"]["first_audio_out"]["count"] == 4
    assert 1000 < points[2]["stages"]["first_audio_out"]["p50"] <= 2500
    assert points[3]["stages"] == {}
    assert points[3]["resident_mb"] == 1.0


async def test_metrics_json_has_what_metrics_has(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        for text in ("one", "two"):
            await client.send({"type": "text", "text": text})
            await client.until("metrics")
    async with httpx.AsyncClient(base_url=live.url) as http:
        data = (await http.get("/metrics/json")).json()
        text = (await http.get("/metrics")).text
        page = await http.get("/dashboard")
    assert page.status_code == 200
    assert "<canvas" in page.text or "latency-charts" in page.text
    assert data["stages"]["first_audio_out"]["count"] == 2
    assert 'aria_turn_stage_seconds_count{stage="first_audio_out"} 2' in text
    assert data["turns"] == {"completed": 2.0}
    assert set(data["engines"]) >= {"stt", "llm", "tts"}
    assert data["breakers"]["llm"][0]["engine"] == "fake"
    assert data["residency"]["engines"]["llm"]["resident"] is True
    assert len(data["series"]) == 1
    assert data["series"][0]["stages"]["first_audio_out"]["count"] == 2
    assert "aria_active_connections" in data["metrics"]


@pytest.mark.parametrize("server_overrides", [{"server.token": "s3cret"}])
async def test_metrics_json_wants_the_token(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/metrics/json")).status_code == 401
        assert (await http.get("/metrics/json?token=s3cret")).status_code == 200
        assert (await http.get("/dashboard")).status_code == 200  # the page itself, like /, is open
