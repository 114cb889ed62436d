"""The page tells the truth about a limited setup: the real ``aria serve`` with Whisper configured but
without its model (offline: PocketSphinx serves), the rule-based ``llm:builtin`` and the fake TTS, driven by
Debian's Chromium. The banner says what is limited with the command that fixes it and can be dismissed; the
engine line names what answers; visual chat and the monitor are marked unavailable in the picker before
anyone picks them; an answer names the model that gave it; the monitor's refusal reads right and its toast
can be dismissed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import FAKE_ENGINES, AriaServer, OpenPage, _serve, page_opener, require_browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(90)

LIMITED_SETUP = {
    **FAKE_ENGINES,
    "ARIA_STT__BACKEND": "whisper",
    "ARIA_STT__FALLBACK": '["pocketsphinx"]',
    "ARIA_STT__OPTIONS": "{}",
    "ARIA_LLM__BACKEND": "builtin",
    "ARIA_LLM__OPTIONS": "{}",
}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    yield from _serve(tmp_path_factory, LIMITED_SETUP, "browser-limited-server.log")


@pytest.fixture
def open_limited_page(playwright_driver: Any, limited_server: AriaServer) -> Iterator[OpenPage]:
    yield from page_opener(playwright_driver, f"{limited_server.url}/")


def test_the_banner_says_what_is_limited_and_can_be_dismissed(open_limited_page: OpenPage) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    aria = open_limited_page()
    page = aria.page
    page.evaluate("() => window.ariaTest.refreshHealth()")
    aria.wait_for("t.bannerShown && t.limited.length === 2", 5, "the limited-setup banner")
    banner = page.locator("#banner")
    text = banner.inner_text()
    assert "No language model is available" in text
    assert "PocketSphinx" in text
    assert "Whisper could not start" in text
    commands = page.locator("#banner code").all_inner_texts()
    assert "aria models pull whisper-base.en" in commands
    assert "aria models pull --loadout default" in commands
    # The engine line names what answers (PocketSphinx, not Whisper), marked limited.
    engines = page.locator("#engines")
    assert "speech recognition: pocketsphinx (limited)" in engines.inner_text()
    assert "language model: builtin (limited)" in engines.inner_text()
    assert "whisper" not in engines.inner_text()
    assert aria.state()["session"]["engines"]["stt"]["name"] == "pocketsphinx"
    # Visual chat and the monitor are marked unavailable, with why, before anyone picks them.
    visual = page.locator("#mode-select option[value='visual_chat']")
    assert visual.is_disabled()
    assert "(unavailable)" in visual.inner_text()
    assert "cannot see images" in (visual.get_attribute("title") or "")
    assert page.locator("#mode-select option[value='active_monitor']").is_disabled()
    assert not page.locator("#mode-select option[value='voice_chat']").is_disabled()
    listed = page.locator("#mode-unavailable")
    assert listed.is_visible()
    assert "Visual chat is unavailable" in listed.inner_text()
    assert "the language model (builtin) cannot see images" in listed.inner_text()
    # An answer says briefly that no model is available, and which model gave it.
    page.fill("#text-input", "Tell me about the Eiffel Tower")
    page.press("#text-input", "Enter")
    aria.wait_for("t.metrics.length > 0", 15, "the answer's metrics")
    answer = page.locator(".msg.assistant").last
    assert "no language model is available" in answer.inner_text()
    assert "ARIA_" not in answer.inner_text()
    assert "http" not in answer.inner_text()
    page.wait_for_selector(".msg.assistant .model", timeout=5000)
    assert answer.locator(".model").inner_text() == "Answered by builtin"
    page.screenshot(path=ARTIFACTS / "page-limited-banner.png")
    # Dismissed, it stays hidden (also after the next health poll) until what is limited changes.
    page.click("#banner-close")
    assert banner.is_hidden()
    page.evaluate("() => window.ariaTest.refreshHealth()")
    page.wait_for_timeout(300)
    assert banner.is_hidden()
    assert aria.state()["bannerShown"] is False
    page.screenshot(path=ARTIFACTS / "page-limited-dismissed.png")
    assert aria.problems == []


def test_the_monitor_refusal_reads_right_and_its_toast_can_be_dismissed(
    open_limited_page: OpenPage,
) -> None:
    aria = open_limited_page(viewport=(420, 860))
    page = aria.page
    page.evaluate("() => window.ariaTest.refreshHealth()")
    aria.wait_for("t.bannerShown", 5, "the limited-setup banner")
    # The picker will not offer the monitor; a client that asks anyway is refused, in plain words.
    page.evaluate(
        "async () => (await import('./connection.js'))"
        ".send({type: 'control', action: 'switch_mode', mode: 'active_monitor'})"
    )
    aria.wait_for("t.errors.some((e) => e.code === 'mode_unavailable')", 10, "the refusal")
    toast = page.locator("#alerts .alert.error").last
    text = toast.inner_text()
    assert "{{" not in text
    assert 'options = { model = "llava" }' in text
    page.screenshot(path=ARTIFACTS / "page-limited-refusal-phone.png")
    toast.locator("button.close").click()
    assert page.locator("#alerts .alert.error").count() == 0
    assert aria.state()["mode"] == "voice_chat"
