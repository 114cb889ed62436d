"""The page shows an engine whose circuit breaker has opened: the real ``aria serve`` with a language model
that always fails (and the builtin one as its fallback), driven by Debian's Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import FAKE_ENGINES, AriaServer, OpenPage, _serve, page_opener, require_browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(60)

BROKEN_LLM = {
    **FAKE_ENGINES,
    "ARIA_LLM__OPTIONS": json.dumps({"fault": {"always": True, "message": "model server down"}}),
    "ARIA_LLM__FALLBACK": json.dumps(["builtin"]),
    "ARIA_RESILIENCE__FAILURE_THRESHOLD": "1",
    "ARIA_RESILIENCE__RECOVERY_S": "600",
    "ARIA_RESILIENCE__RETRY_ATTEMPTS": "0",
}


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    yield from _serve(tmp_path_factory, BROKEN_LLM, "browser-broken-server.log")


@pytest.fixture
def open_broken_page(playwright_driver: Any, broken_server: AriaServer) -> Iterator[OpenPage]:
    yield from page_opener(playwright_driver, f"{broken_server.url}/")


def test_an_open_breaker_shows_on_the_page_and_the_fallback_still_answers(open_broken_page: OpenPage) -> None:
    aria = open_broken_page()
    page = aria.page
    aria.wait_for("t.mode === 'voice_chat'", 15, "the first mode message")
    page.fill("#text-input", "hello?")
    page.press("#text-input", "Enter")
    aria.wait_for("t.responses.length > 0", 15, "an answer from the fallback")
    page.evaluate("() => window.ariaTest.refreshHealth()")
    aria.wait_for(
        "(t.breakers.llm || []).some(m => m.engine === 'fake' && m.state === 'open')", 5, "the breaker"
    )
    engines = page.locator("#engines")
    assert engines.get_attribute("data-tripped") == "true"
    assert "fake failing, skipped" in engines.inner_text()
    assert aria.state()["responses"][0]["error"] is None  # the builtin fallback answered
    fallback = [n for n in aria.state()["notifications"] if n.get("data", {}).get("kind") == "fallback"]
    assert fallback
    assert fallback[0]["data"]["engine"] == "fake"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-breaker-open.png"))
    assert aria.problems == []
