"""The page's modes end to end: the real ``aria serve`` with the fake engines of ``aria.testing`` (a scripted
transcript per utterance, an answer that reads as the watch condition holding), Debian's Chromium with its
fake camera, and a WAV of tone bursts as the microphone.

Skipped unless ``/usr/bin/chromium`` and the ``playwright`` package are present. Screenshots go to
``artifacts/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import FAKE_TRANSCRIPTS, require_browser

if TYPE_CHECKING:
    from tests.browser.conftest import OpenPage

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(60)

WATCH = "a person at the door"
BUILTIN = ["voice_chat", "broadcast", "visual_chat", "active_monitor", "router", "deep_dive"]


def tone_bursts(
    path: Path, count: int, *, lead_s: float = 0.5, tone_s: float = 0.6, gap_s: float = 1.2
) -> None:
    """A WAV of ``count`` 440 Hz bursts with silence around them: one utterance each for the fake VAD.
    The trailing silence matters: with ``%noloop`` Chromium repeats the last 10 ms forever."""
    np = pytest.importorskip("numpy")
    from aria.core.audio import write_wav

    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(tone_s * rate)) / rate)
    parts = [np.zeros(int(lead_s * rate))]
    for _ in range(count):
        parts += [tone, np.zeros(int(gap_s * rate))]
    write_wav(path, np.concatenate(parts).astype(np.float32), rate)


def test_switching_modes_and_the_monitor_with_the_real_server(open_fake_page: OpenPage) -> None:
    aria = open_fake_page()
    page = aria.page
    session = aria.state()["session"]
    details = session["mode_details"]
    assert [d["name"] for d in details] == session["modes"]
    assert set(BUILTIN) <= set(session["modes"])
    options = page.locator("#mode-select option").evaluate_all(
        "(os) => os.map((o) => [o.value, o.textContent])"
    )
    assert options == [[d["name"], d["label"]] for d in details]

    # A switch goes out, and the page takes the server's mode message as the mode in effect.
    page.select_option("#mode-select", "deep_dive")
    aria.wait_for("t.mode === 'deep_dive' && t.pendingMode === null", 15, "the deep_dive mode message")
    state = aria.state()
    assert {"type": "control", "action": "switch_mode", "mode": "deep_dive"} in state["sent"]
    assert state["modeMessages"][-1]["mode"] == "deep_dive"
    assert page.locator("#mode-select").input_value() == "deep_dive"
    assert page.locator("#status-text").inner_text() == "Idle"

    # The monitor: set the condition, turn the camera on; the fake model sees it at once.
    page.select_option("#mode-select", "active_monitor")
    aria.wait_for(
        "t.mode === 'active_monitor' && t.pendingMode === null", 15, "the active_monitor mode message"
    )
    page.fill("#watch-input", WATCH)
    page.press("#watch-input", "Enter")
    aria.wait_for(f"t.watch === {WATCH!r}", 5, "the server to confirm the watch condition")
    assert {"type": "control", "action": "set_watch", "watch": WATCH} in aria.state()["sent"]
    assert page.locator("#watch-current").inner_text() == f"Watching for: {WATCH}"
    page.click("#camera-btn")
    aria.wait_for("t.alerts.length > 0", 15, "a monitor alert")
    state = aria.state()
    first = state["alerts"][0]
    assert first["condition"] == WATCH
    assert first["description"] == "A person stands at the door."
    notification = next(n for n in state["notifications"] if n["data"].get("kind") == "monitor")
    assert notification["data"]["alert_id"] == first["alert_id"]
    top = page.locator("#monitor-alerts li").first
    assert top.get_attribute("data-alert-id") == first["alert_id"]
    assert top.locator("span").inner_text() == first["description"]
    assert state["alertFlashes"] == len(state["alerts"])
    assert state["announcements"][0] == f"Alert: {first['description']}"
    page.screenshot(path=ARTIFACTS / "page-monitor-live.png")

    # Away and back: the condition in the field goes with the switch, and the server keeps it.
    page.select_option("#mode-select", "voice_chat")
    aria.wait_for("t.mode === 'voice_chat' && t.pendingMode === null", 15, "the voice_chat mode message")
    assert page.locator("#monitor").is_hidden()
    page.select_option("#mode-select", "active_monitor")
    aria.wait_for(
        f"t.mode === 'active_monitor' && t.pendingMode === null && t.watch === {WATCH!r}",
        15,
        "the monitor back, with the condition",
    )
    switch = {"type": "control", "action": "switch_mode", "mode": "active_monitor", "watch": WATCH}
    assert switch in aria.state()["sent"]

    # A dropped connection: the new one's monitor starts afresh, so the page asks for the condition again.
    page.evaluate("() => window.ariaTest.disconnect()")
    aria.wait_for("t.connection !== 'open'", 2, "the page to notice the drop")
    aria.wait_for("t.connection === 'open' && t.session !== null", 10, "the page to reconnect")
    session = aria.state()["session"]
    assert (session["resumed"], session["mode"]) == (True, "active_monitor")
    aria.wait_for(f"t.watch === {WATCH!r}", 5, "the condition set again")
    set_watch = {"type": "control", "action": "set_watch", "watch": WATCH}
    assert aria.state()["sent"].count(set_watch) == 2
    assert page.locator("#watch-current").inner_text() == f"Watching for: {WATCH}"
    assert aria.state()["errors"] == []
    assert aria.problems == []


def test_broadcast_dictation_with_the_real_server(open_fake_page: OpenPage, tmp_path: Path) -> None:
    wav = tmp_path / "two-utterances.wav"
    tone_bursts(wav, 2)
    aria = open_fake_page(wav, "?rawmic=1")
    page = aria.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.url.split("/?")[0])
    page.select_option("#mode-select", "broadcast")
    aria.wait_for("t.mode === 'broadcast' && t.pendingMode === null", 15, "the broadcast mode message")
    assert page.locator("#dictation").is_visible()
    page.click("#mic-btn")  # the WAV starts now, in real time
    aria.wait_for("t.finalTranscripts.length >= 2", 15, "two final transcripts")
    state = aria.state()

    expected = list(FAKE_TRANSCRIPTS)
    assert state["finalTranscripts"][:2] == expected
    assert page.locator("#dictation-text p:not(.partial)").all_inner_texts() == expected
    assert state["dictation"] == expected
    assert state["tokens"] == "", "broadcast answers nothing"
    assert page.locator(".msg.assistant").count() == 0
    page.click("#copy-btn")
    aria.wait_for("t.copied !== null", 5, "the copy")
    assert page.evaluate("() => navigator.clipboard.readText()") == "\n\n".join(expected)
    assert state["errors"] == []
    assert aria.problems == []
