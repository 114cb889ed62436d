"""The page's modes against a stub server the test scripts (``stub_server.py``): the picker from
``session.mode_details``, switching (the ``mode`` message is the truth), the loading state, the microphone
and camera per mode, the monitor's watch condition and alerts, and broadcast's dictation document.

Skipped unless ``/usr/bin/chromium`` and the ``playwright`` package are present. Screenshots go to
``artifacts/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import require_browser
from tests.browser.stub_server import MODES

if TYPE_CHECKING:
    from tests.browser.conftest import AriaPage, OpenPage
    from tests.browser.stub_server import StubAria

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(60)

WATCH = "a person at the door"


def switch(aria: AriaPage, stub: StubAria, mode: str, *, watch: str | None = None) -> dict[str, Any]:
    """Pick ``mode`` in the page; return the switch_mode the stub got, after answering it with ``mode``."""
    before = len(stub.received)
    aria.page.select_option("#mode-select", mode)
    sent = stub.wait_for(lambda m: m.get("action") == "switch_mode", 5, "switch_mode", after=before)
    stub.send({"type": "mode", "mode": mode, "watch": watch, "engines": {}})
    aria.wait_for(f"t.mode === {mode!r} && t.pendingMode === null", 5, f"the page to take {mode}")
    return sent


def alert(alert_id: str, description: str, at: float) -> dict[str, Any]:
    data = {"kind": "monitor", "alert_id": alert_id, "condition": WATCH, "description": description, "at": at}
    return {"type": "notification", "text": f"Alert: {description}", "level": "warning", "data": data}


def iso(at: float) -> str:
    """``at`` (seconds since the epoch) as JavaScript's ``Date.toISOString()`` writes it."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_picker_lists_modes_and_follows_the_servers_mode_message(
    open_stub_page: OpenPage, stub_aria: StubAria
) -> None:
    aria = open_stub_page()
    page = aria.page
    options = page.locator("#mode-select option").evaluate_all(
        "(os) => os.map((o) => [o.value, o.textContent, o.title])"
    )
    assert options == [[m["name"], m["label"], m["description"]] for m in MODES]
    assert page.locator("#mode-select").input_value() == "voice_chat"
    assert page.locator("#mode-description").inner_text() == MODES[0]["description"]
    assert aria.state()["mode"] == "voice_chat"

    # Engines loading at start-up (no mode named): the state, then what loads.
    stub_aria.send({"type": "state", "state": "idle", "reason": "", "turn_id": None, "loading": ["llm"]})
    aria.wait_for("t.loading.length === 1", 5, "the loading state")
    assert page.locator("#status-text").inner_text() == "Idle · loading language model…"

    page.select_option("#mode-select", "deep_dive")
    sent = stub_aria.wait_for(lambda m: m.get("action") == "switch_mode", 5, "switch_mode")
    assert sent == {"type": "control", "action": "switch_mode", "mode": "deep_dive"}
    state = aria.state()
    assert (state["mode"], state["pendingMode"]) == ("voice_chat", "deep_dive")

    # The switch loads a model: the status pill says so, so the switch never looks hung. The reason names
    # the mode by name or as the server writes it in words.
    status = page.locator("#status")
    for number, reason in enumerate(
        ["loading llm:deep for deep_dive", "loading llm:deep_dive for deep dive"]
    ):
        loading = {
            "type": "state",
            "state": "idle",
            "reason": reason,
            "turn_id": None,
            "loading": ["llm:deep"],
        }
        stub_aria.send(loading)
        aria.wait_for(f"t.states.length === {number + 2}", 5, "the loading state message")
        assert page.locator("#status-text").inner_text() == "Loading deep-dive model…"
        assert status.get_attribute("data-loading") == "true"
        assert status.get_attribute("title") == reason
    page.screenshot(path=ARTIFACTS / "page-mode-loading.png")

    engines = {"stt": "stt", "llm": "llm:deep_dive", "tts": "tts"}
    stub_aria.send({"type": "mode", "mode": "deep_dive", "watch": None, "engines": engines})
    stub_aria.send({"type": "state", "state": "idle", "reason": "loaded llm:deep_dive", "loading": []})
    aria.wait_for("t.mode === 'deep_dive' && t.loading.length === 0", 5, "the mode message")
    assert aria.state()["pendingMode"] is None
    assert page.locator("#mode-select").input_value() == "deep_dive"
    assert page.locator("#status-text").inner_text() == "Idle"
    assert status.get_attribute("data-loading") == "false"
    assert page.locator("#mode-description").inner_text().splitlines() == [
        "A heavier model for harder questions.",
        "Its own language model: llm:deep_dive",
    ]

    # A mode message the page did not ask for is the truth too.
    stub_aria.send({"type": "mode", "mode": "voice_chat", "watch": None, "engines": {}})
    aria.wait_for("t.mode === 'voice_chat'", 5, "the server's mode message")
    assert page.locator("#mode-select").input_value() == "voice_chat"

    # A switch the server refuses leaves the mode in effect.
    before = len(stub_aria.received)
    page.select_option("#mode-select", "visual_chat")
    stub_aria.wait_for(
        lambda m: m.get("mode") == "visual_chat", 5, "switch_mode to visual_chat", after=before
    )
    message = "no vision model is configured"
    stub_aria.send({"type": "error", "code": "mode_unavailable", "message": message, "retryable": False})
    aria.wait_for("t.errors.length === 1 && t.pendingMode === null", 5, "the error to undo the switch")
    assert page.locator("#mode-select").input_value() == "voice_chat"
    assert aria.state()["mode"] == "voice_chat"
    assert (
        page.locator(".alert.error span").last.inner_text()
        == f"That mode cannot run on this server: {message}"
    )
    assert [m["mode"] for m in aria.state()["modeMessages"]] == ["deep_dive", "voice_chat"]
    assert aria.problems == []


def test_microphone_and_camera_follow_the_modes_inputs(open_stub_page: OpenPage, stub_aria: StubAria) -> None:
    aria = open_stub_page()
    page = aria.page
    page.click("#mic-btn")
    page.wait_for_selector("#mic-btn[aria-pressed='true']", timeout=5000)
    assert page.locator("#mode-hint").is_hidden()

    # A mode without audio input: the microphone stops and goes away.
    switch(aria, stub_aria, "typed_notes")
    assert page.locator("#mic-btn").is_hidden()
    assert page.locator("#level").is_hidden()
    assert page.locator("#mic-btn").get_attribute("aria-pressed") == "false"
    assert aria.state()["micAvailable"] is False
    assert page.locator("#text-input").is_enabled()

    # A mode that looks: a hint to turn the camera on or attach an image; the microphone is back.
    switch(aria, stub_aria, "visual_chat")
    assert page.locator("#mic-btn").is_visible()
    assert aria.state()["micAvailable"] is True
    hint = page.locator("#mode-hint")
    assert hint.inner_text() == "Turn on the camera so Aria can see, or attach an image with your question."
    assert "suggest" in (page.locator("#camera-btn").get_attribute("class") or "")
    page.click("#camera-btn")
    aria.wait_for("t.videoFramesSent >= 1", 5, "a camera frame")
    assert hint.inner_text() == "Your questions are answered with the latest camera frame."
    assert "suggest" not in (page.locator("#camera-btn").get_attribute("class") or "")

    # The typed question goes as plain text: the server pairs it with the latest frame.
    before = len(stub_aria.received)
    page.fill("#text-input", "What do you see?")
    page.press("#text-input", "Enter")
    got = stub_aria.wait_for(lambda m: m.get("type") == "text", 5, "the question", after=before)
    assert got == {"type": "text", "text": "What do you see?"}
    assert aria.problems == []


def test_monitor_watch_condition_and_alerts(open_stub_page: OpenPage, stub_aria: StubAria) -> None:
    aria = open_stub_page()
    page = aria.page
    assert page.locator("#monitor").is_hidden()
    # Into the monitor with nothing typed yet: a plain switch.
    sent = switch(aria, stub_aria, "active_monitor")
    assert sent == {"type": "control", "action": "switch_mode", "mode": "active_monitor"}
    assert page.locator("#monitor").is_visible()
    assert (
        page.locator("#watch-current").inner_text() == "Not watching for anything yet: say what to look for."
    )
    assert page.locator("#mode-hint").inner_text() == "Turn on the camera: Aria watches it for you."

    before = len(stub_aria.received)
    page.fill("#watch-input", WATCH)
    page.press("#watch-input", "Enter")
    got = stub_aria.wait_for(lambda m: m.get("action") == "set_watch", 5, "set_watch", after=before)
    assert got == {"type": "control", "action": "set_watch", "watch": WATCH}
    stub_aria.send(
        {"type": "mode", "mode": "active_monitor", "watch": WATCH, "engines": {"vision": "moondream"}}
    )
    aria.wait_for(f"t.watch === {WATCH!r}", 5, "the watch condition")
    assert page.locator("#watch-current").inner_text() == f"Watching for: {WATCH}"

    # Two alerts and a notification that is not one.
    first, second = 1767225600.0, 1767225675.5
    stub_aria.send(alert("al_1", "A person in a red coat stands at the door.", first))
    stub_aria.send(alert("al_2", "The person knocks.", second))
    stub_aria.send(
        {"type": "notification", "text": "Speech recognition fell back to pocketsphinx.", "data": {}}
    )
    aria.wait_for("t.notifications.length === 3", 5, "the notifications")
    state = aria.state()
    assert [a["alert_id"] for a in state["alerts"]] == ["al_1", "al_2"]
    assert state["alerts"][1] == {
        "alert_id": "al_2",
        "condition": WATCH,
        "description": "The person knocks.",
        "at": second,
    }
    items = page.locator("#monitor-alerts li")
    assert items.count() == 2
    assert items.nth(0).get_attribute("data-alert-id") == "al_2", "the newest alert is on top"
    assert items.nth(0).locator("time").get_attribute("datetime") == iso(second)
    assert items.nth(1).locator("time").get_attribute("datetime") == iso(first)
    assert items.nth(0).locator("span").inner_text() == "The person knocks."
    assert items.nth(0).locator("time").inner_text()
    # Each alert flashes the status area and is read out; the other notification is a toast.
    assert state["alertFlashes"] == 2
    assert "flash" in (page.locator("#status").get_attribute("class") or "")
    assert state["announcements"] == [
        "Alert: A person in a red coat stands at the door.",
        "Alert: The person knocks.",
    ]
    assert page.locator("#announcer").inner_text() == "Alert: The person knocks."
    assert page.locator(".alert span").all_inner_texts() == ["Speech recognition fell back to pocketsphinx."]
    page.locator(".alert .close").click()
    page.screenshot(path=ARTIFACTS / "page-monitor.png")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=ARTIFACTS / "page-monitor-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=ARTIFACTS / "page-monitor-phone.png", full_page=True)
    assert page.locator("#watch-input").is_visible()
    assert page.locator("#monitor-alerts").is_visible()

    # Away and back: the condition still in the field goes with the switch.
    switch(aria, stub_aria, "voice_chat")
    assert page.locator("#monitor").is_hidden()
    sent = switch(aria, stub_aria, "active_monitor", watch=WATCH)
    assert sent == {"type": "control", "action": "switch_mode", "mode": "active_monitor", "watch": WATCH}

    # An empty condition clears it.
    before = len(stub_aria.received)
    page.fill("#watch-input", "")
    page.press("#watch-input", "Enter")
    got = stub_aria.wait_for(lambda m: m.get("action") == "set_watch", 5, "set_watch", after=before)
    assert got == {"type": "control", "action": "set_watch", "watch": ""}
    stub_aria.send({"type": "mode", "mode": "active_monitor", "watch": None, "engines": {}})
    aria.wait_for("t.watch === null && t.modeMessages.length === 5", 5, "the cleared condition")
    assert (
        page.locator("#watch-current").inner_text() == "Not watching for anything yet: say what to look for."
    )
    assert aria.problems == []


def test_broadcast_writes_a_dictation_document(open_stub_page: OpenPage, stub_aria: StubAria) -> None:
    aria = open_stub_page()
    page = aria.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stub_aria.url)
    switch(aria, stub_aria, "broadcast")
    assert page.locator("#dictation").is_visible()
    assert page.locator("#log").is_hidden()
    assert page.locator("#text-input").is_disabled(), "broadcast takes speech only"
    assert page.locator("#send-btn").is_disabled()

    def transcript(turn: str, text: str, final: bool) -> None:
        stub_aria.send({"type": "transcript", "turn_id": turn, "text": text, "final": final})

    transcript("turn_1", "Dear team", False)
    aria.wait_for("t.transcripts.length === 1", 5, "the partial transcript")
    assert page.locator("#dictation-text p.partial").inner_text() == "Dear team"
    transcript("turn_1", "Dear team, the build is green.", True)
    transcript("turn_2", "We ship", False)
    aria.wait_for("t.transcripts.length === 3", 5, "the next partial")
    assert page.locator("#dictation-text p").all_inner_texts() == [
        "Dear team, the build is green.",
        "We ship",
    ]
    transcript("turn_2", "We ship on Friday.", True)
    transcript("turn_3", "", True)  # nothing was made out: no paragraph
    aria.wait_for("t.finalTranscripts.length === 3", 5, "the final transcripts")

    paragraphs = ["Dear team, the build is green.", "We ship on Friday."]
    assert page.locator("#dictation-text p").all_inner_texts() == paragraphs
    assert page.locator("#dictation-text p.partial").count() == 0
    assert aria.state()["dictation"] == paragraphs
    assert page.locator(".msg").count() == 0, "no chat bubbles in a dictation"
    page.screenshot(path=ARTIFACTS / "page-broadcast.png")

    page.click("#copy-btn")
    aria.wait_for("t.copied !== null", 5, "the copy")
    assert aria.state()["copied"] == "\n\n".join(paragraphs)
    assert page.evaluate("() => navigator.clipboard.readText()") == "\n\n".join(paragraphs)
    assert page.locator("#copy-btn").inner_text() == "Copied"

    # Back in voice chat the log returns and transcripts are chat bubbles again.
    switch(aria, stub_aria, "voice_chat")
    assert page.locator("#dictation").is_hidden()
    assert page.locator("#text-input").is_enabled()
    transcript("turn_4", "What time is it?", True)
    aria.wait_for("t.finalTranscripts.length === 4", 5, "the chat transcript")
    assert page.locator(".msg.user .text").all_inner_texts() == ["What time is it?"]
    assert aria.state()["dictation"] == paragraphs
    assert aria.problems == []
