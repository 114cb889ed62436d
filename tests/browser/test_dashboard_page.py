"""The status dashboard (``/dashboard``) of the real ``aria serve`` with the fake engines, after typed turns
over the WebSocket: its latency charts have lines for the stages of those turns, the table of percentiles
since start lists them, the engines and their breakers are shown, and the memory chart and residency table
name the resident engines; what it draws is what ``/metrics`` says. A screenshot is kept in artifacts/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, AriaServer, require_browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(90)


def typed_turns(server: AriaServer, count: int) -> None:
    """``count`` typed turns in one session, each until its metrics."""
    with connect(server.url.replace("http", "ws") + "/ws") as ws:
        json.loads(ws.recv())  # session
        for n in range(count):
            ws.send(json.dumps({"type": "text", "text": f"question number {n}"}))
            while True:
                raw = ws.recv(timeout=15)
                if isinstance(raw, str) and json.loads(raw)["type"] == "metrics":
                    break


def counted_turns(server: AriaServer) -> int:
    """Turns with a first audio out, from the Prometheus text of ``/metrics``."""
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r'aria_turn_stage_seconds_count\{stage="first_audio_out"\} (\d+)', text)
    return int(found.group(1)) if found else 0


def test_the_dashboard_draws_latency_engines_and_memory(
    playwright_driver: Any, fake_aria_server: AriaServer
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(f"{fake_aria_server.url}/dashboard?poll=1&testhooks=1")
        page.wait_for_function(
            "() => window.dashboardTest && window.dashboardTest.rendered >= 1", timeout=10000
        )
        typed_turns(fake_aria_server, 3)
        page.wait_for_function(
            "() => { const d = window.dashboardTest.data; return d && d.series.filter("
            "(s) => s.stages.first_audio_out).length >= 2 }",
            timeout=15000,
        )
        typed_turns(fake_aria_server, 2)  # later samples: the lines go on over time
        page.wait_for_function(
            "() => (window.dashboardTest.data.stages.first_audio_out || {}).count >= 5", timeout=15000
        )
        data = page.evaluate("() => window.dashboardTest.data")
        assert data["stages"]["first_audio_out"]["count"] == counted_turns(fake_aria_server) >= 5

        charts = page.locator("#latency-charts figure")
        assert charts.count() == 4
        first_audio = charts.nth(2)
        assert first_audio.locator("figcaption").inner_text() == "First audio out"
        assert first_audio.locator("polyline.line").count() == 3  # p50, p90, p99, each a line over time
        points = first_audio.locator("polyline.line").first.get_attribute("points") or ""
        assert len(points.split()) >= 2
        assert int(first_audio.locator("svg").get_attribute("data-points") or 0) >= 6

        stages = page.locator("#stage-table tbody tr")
        assert "first_audio_out" in stages.evaluate_all("(rows) => rows.map((r) => r.dataset.stage)")
        row = page.locator('#stage-table tr[data-stage="first_audio_out"]')
        assert row.locator("td").nth(0).inner_text() == str(data["stages"]["first_audio_out"]["count"])
        assert row.locator("td").nth(1).inner_text().endswith("ms")

        engines = page.locator("#engine-table tbody tr")
        kinds = engines.evaluate_all("(rows) => rows.map((r) => r.dataset.kind)")
        assert {"stt", "llm", "tts"} <= set(kinds)
        assert page.locator('#engine-table tr[data-kind="llm"] td').first.inner_text() == "fake"
        assert "fake: closed" in page.locator('#breakers p[data-slot="llm"]').inner_text()
        assert "completed: 5" in page.locator("#turns").inner_text()

        memory = page.locator("#memory-chart svg")
        assert memory.locator("polyline.line").count() >= 2  # resident, RSS (and the budget)
        slots = page.locator("#residency-table tbody tr").evaluate_all(
            "(rows) => rows.map((r) => r.dataset.slot)"
        )
        assert {"stt", "llm", "tts"} <= set(slots)
        assert page.locator("#dash-status").get_attribute("data-status") in ("ok", "degraded")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider
        page.wait_for_function(
            f"() => window.dashboardTest.rendered > {page.evaluate('window.dashboardTest.rendered')}"
        )
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        assert not problems, problems
    finally:
        browser.close()


def test_the_waterfall_shows_the_stages_to_first_audio_and_playback_apart(open_fake_page: Any) -> None:
    aria = open_fake_page()
    page = aria.page
    page.fill("#text-input", "hello")
    page.press("#text-input", "Enter")
    aria.wait_for("t.metrics.length >= 1", 15, "the turn's metrics")
    figure = page.locator(".waterfall").first
    figure.wait_for()
    stages = figure.locator("ol.wf-rows .wf-row").evaluate_all("(rows) => rows.map((r) => r.dataset.stage)")
    assert stages == ["llm_request", "first_token", "first_tts_request", "first_audio_out"]  # a typed turn
    # The stages share one scale, whose end is the last of them (the whole track) ... The newest figure
    # and the metrics messages are read in one step: a later metrics message of the same turn (playback
    # done) may arrive between two reads, and it draws a newer figure.
    drawn = page.evaluate(
        """() => {
            const figure = document.querySelector(".waterfall");
            const widths = [...figure.querySelectorAll("ol.wf-rows .wf-bar")].map((b) => b.style.width);
            const stages = [...figure.querySelectorAll("ol.wf-rows .wf-row")].map((r) => r.dataset.stage);
            const turn = figure.dataset.turnId;
            const own = window.ariaTest.metrics.filter((m) => m.turn_id === turn);
            const played = figure.querySelector('.wf-playback .wf-row[data-stage="playback"] .wf-ms');
            return {
                widths, stages, own: own.map((m) => m.waterfall), waterfall: own[own.length - 1].waterfall,
                played: played.textContent,
            };
        }"""
    )
    assert drawn["stages"] == stages, drawn
    widths = [float(w.rstrip("%")) for w in drawn["widths"]]

    def scaled(waterfall: dict[str, float]) -> list[float]:
        span = max(1.0, *(waterfall[stage] for stage in stages))  # at least 1 ms: fakes can be faster
        return [100 * waterfall[stage] / span for stage in stages]

    # The figure is one of its turn's metrics messages drawn to scale (a turn may send more than one).
    matching = [w for w in drawn["own"] if widths == pytest.approx(scaled(w), abs=0.01)]
    assert matching, drawn
    metrics = matching[-1]
    # ... and playback comes after a gap marker, on its own, hatched, with its length.
    playback = figure.locator(".wf-playback")
    assert "playback, not to scale" in playback.locator(".wf-gap").inner_text()
    row = playback.locator('.wf-row[data-stage="playback"]')
    length = metrics["done"] - metrics["first_audio_out"]
    assert row.locator(".wf-label").inner_text() == "Playback"
    assert drawn["played"] == (f"{length / 1000:.1f} s" if length >= 10000 else f"{round(length)} ms")
    hatched = row.locator(".wf-play-bar").evaluate("(b) => getComputedStyle(b).backgroundImage")
    assert "repeating-linear-gradient" in hatched
    assert "first audio" in figure.locator("figcaption").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#waterfalls").screenshot(path=str(ARTIFACTS / "waterfall.png"))
    assert not aria.problems, aria.problems
