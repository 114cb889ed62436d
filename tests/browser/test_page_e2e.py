"""The browser client end to end: the real server, Debian's Chromium, a WAV file as the microphone.

Skipped unless ``/usr/bin/chromium`` and the ``playwright`` package are present (``scripts/test`` installs
both); speech tests also need espeak-ng for the WAV. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.browser.conftest import require_browser, serve

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.browser.conftest import AriaPage, AriaServer, OpenPage

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(90)

QUESTION = "What time is it?"
LONG_ANSWER_QUESTION = "Tell me a long story about the ocean."
#: The answer for the barge-in test: many seconds of espeak speech (the builtin's replies are short).
LONG_STORY = " ".join(
    f"Chapter {n}: the waves rolled over the quiet shore while the gulls called above the boats."
    for n in range(1, 9)
)


@pytest.fixture(scope="module")
def story_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    """The real offline speech engines (Silero VAD, Smart Turn, PocketSphinx, espeak) with a scripted
    model whose answer is long, so there is an answer to speak over."""
    engines = {
        "ARIA_STT__BACKEND": "pocketsphinx",
        "ARIA_LLM__BACKEND": "fake",
        "ARIA_LLM__FALLBACK": "[]",
        # One reply for every call: a preemptive request at a pause (dropped when the person goes on) must
        # not use up the long answer.
        "ARIA_LLM__OPTIONS": json.dumps({"replies": [LONG_STORY]}),
        "ARIA_TTS__BACKEND": "espeak",
    }
    yield from serve(tmp_path_factory, engines, "browser-story-server.log")


def speech_wav(path: Path, texts: list[str], *, lead_s: float, gap_s: float) -> list[tuple[float, float]]:
    """Write espeak-ng saying ``texts`` (16 kHz mono s16) with ``gap_s`` of silence after each; return the
    true (start, end) of each. The trailing silence matters: with ``%noloop`` Chromium repeats the last
    10 ms of the file forever."""
    try:
        from aria.core.audio import write_wav
        from aria.testing.speech import conversation

        audio, segments = conversation(texts, lead_s=lead_s, gap_s=gap_s)
    except Exception as exc:  # espeak-ng missing: no speech to test with
        pytest.skip(f"espeak-ng cannot make the test speech: {exc}")
    write_wav(path, audio, 16000)
    return segments


def test_page_loads_and_shows_status(open_page: OpenPage, aria_server: AriaServer) -> None:
    aria = open_page()
    page = aria.page
    ARTIFACTS.mkdir(exist_ok=True)
    state = aria.state()
    session = state["session"]
    assert session["protocol"] == 1
    assert session["audio_out"]["sample_rate"] > 0
    assert page.locator("#conn").get_attribute("data-conn") == "open"
    assert page.locator("#conn-text").inner_text() == "Connected"
    assert page.locator("#status").get_attribute("data-state") == "idle"
    assert page.locator("#status-text").inner_text().startswith("Idle")
    assert page.locator("#mode-select").input_value() == session["mode"]
    # The worklet module must come as JavaScript, or addModule() fails.
    worklet = httpx.get(f"{aria_server.url}/mic-worklet.js")
    assert "javascript" in worklet.headers["content-type"]
    # Voices come from GET /models when the server offers them.
    voices = httpx.get(f"{aria_server.url}/models").json().get("voices", [])
    if voices:
        page.wait_for_function("() => !document.querySelector('#voice-select').disabled", timeout=5000)
    assert state["audioContextState"] == "running", "the autoplay flag should let audio start on its own"
    page.screenshot(path=ARTIFACTS / "page.png")

    page.emulate_media(color_scheme="dark")
    page.screenshot(path=ARTIFACTS / "page-dark.png")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=ARTIFACTS / "page-phone.png", full_page=True)
    assert page.locator("#mic-btn").is_visible()
    assert page.locator("#text-input").is_visible()
    assert aria.problems == []


def test_typed_text_streams_tokens_and_plays_audio(open_page: OpenPage) -> None:
    aria = open_page()
    page = aria.page
    page.fill("#text-input", QUESTION)
    page.press("#text-input", "Enter")
    aria.wait_for("t.tokens.length > 0", 15, "the first text token")
    aria.wait_for("t.responses.length > 0", 20, "response_done")
    aria.wait_for("t.samplesPlayed > 0", 10, "answer audio to play")
    aria.wait_for("t.playbackReports.some((r) => r.final)", 15, "the final playback report")
    state = aria.state()

    done = state["responses"][0]
    assert done["interrupted"] is False
    assert done["error"] is None
    assert state["tokens"].strip() == done["text"].strip()
    assert state["audioFramesReceived"] > 0
    assert state["errors"] == []
    final = next(r for r in state["playbackReports"] if r["final"])
    assert final["turn_id"] == done["turn_id"]
    # The whole answer was played (the server's audio_ms), give or take a block.
    assert final["played_ms"] == pytest.approx(done["audio_ms"], abs=120)
    assert {"type": "playback", "turn_id": final["turn_id"], "played_ms": final["played_ms"]} in state["sent"]
    assert state["states"][0] == "processing"
    assert "responding" in state["states"]

    # The page shows the exchange, the status goes back to idle and a waterfall is drawn.
    assert page.locator(".msg.user .text").last.inner_text() == QUESTION
    assert page.locator(".msg.assistant .text").last.inner_text().strip() == done["text"].strip()
    aria.wait_for("t.metrics.length > 0", 5, "the metrics message")
    page.wait_for_selector(".waterfall .wf-row[data-stage='first_token']", timeout=5000)
    page.wait_for_function("() => document.querySelector('#status').dataset.state === 'idle'", timeout=5000)
    page.screenshot(path=ARTIFACTS / "page-conversation.png")
    assert aria.problems == []


def test_microphone_question_is_transcribed_answered_and_played(open_page: OpenPage, tmp_path: Path) -> None:
    wav = tmp_path / "question.wav"
    speech_wav(wav, [QUESTION], lead_s=1.0, gap_s=2.0)
    aria = open_page(wav, "?rawmic=1")
    page = aria.page
    page.click("#mic-btn")  # opening the microphone starts the file, in real time
    page.wait_for_selector("#mic-btn[aria-pressed='true']", timeout=5000)
    aria.wait_for("t.finalTranscripts.length > 0", 20, "a final transcript")
    aria.wait_for("t.tokens.length > 0", 10, "the answer's tokens")
    # pocketsphinx rarely gets espeak's words right, so the answer is often llm:builtin's long
    # "no language model" text: check that it plays rather than wait for all of it.
    aria.wait_for("t.samplesPlayed > t.session.audio_out.sample_rate / 4", 10, "answer audio to play")
    state = aria.state()

    final = next(m for m in state["transcripts"] if m["final"])
    assert final["text"].strip(), "the final transcript is empty"
    assert state["states"][:2] == ["listening", "processing"]
    tokens = [m for m in state["received"] if m["type"] == "text_token"]
    assert {m["turn_id"] for m in tokens} == {final["turn_id"]}
    assert state["playbackReports"][-1]["turn_id"] == final["turn_id"]
    # 20 ms frames for at least the second of silence before the speech and the speech itself.
    assert state["audioFramesSent"] >= 100
    assert state["errors"] == []
    assert page.locator(".msg.user:not(.partial) .text").first.inner_text() == final["text"]
    assert page.locator(".msg.assistant .text").last.inner_text().strip()
    assert page.locator("#status").get_attribute("data-state") == "speaking"
    page.screenshot(path=ARTIFACTS / "page-voice.png")
    assert aria.problems == []


def test_barge_in_stops_playback_and_reports(
    open_browser: Callable[..., AriaPage], tmp_path: Path, story_server: AriaServer
) -> None:
    wav = tmp_path / "barge-in.wav"
    # The question, then 4 s after it ends (while its long answer plays) more speech.
    _, (barge_start, _) = speech_wav(wav, [LONG_ANSWER_QUESTION, QUESTION], lead_s=1.0, gap_s=4.0)
    aria = open_browser(story_server, wav, "?rawmic=1")
    page = aria.page
    page.click("#mic-btn")
    page.wait_for_selector("#mic-btn[aria-pressed='true']", timeout=5000)
    opened = time.monotonic()
    aria.wait_for("t.samplesPlayed > 0", 15, "the first answer to start playing")
    first = aria.state()
    assert first["responses"] == [], "the first answer ended before the barge-in: too short for this test"
    turn_id = next(m["turn_id"] for m in first["transcripts"] if m["final"])
    left_s = barge_start + 5 - (time.monotonic() - opened)
    aria.wait_for("t.interrupts > 0", max(5.0, left_s), "playback to stop on barge-in")
    at_stop = aria.state()
    played = f"() => window.ariaTest.playedMs({turn_id!r})"
    cut_at_stop = page.evaluate(played)
    assert cut_at_stop > 0
    time.sleep(0.6)
    later = aria.state()

    # Playback stopped at once: nothing more of the cut answer played in the next 0.6 s (the answer to the
    # speech over it may start playing meanwhile: with adaptive interruption the answer is cut when the
    # speech is judged, often at its end, so the whole count of samples played is no measure).
    assert at_stop["playing"] is False
    assert page.evaluate(played) - cut_at_stop < 50, "the cut answer went on playing"
    # The final playback report of the cut turn went out, and nothing about that turn after it.
    finals = [r for r in at_stop["playbackReports"] if r["final"] and r["turn_id"] == turn_id]
    assert len(finals) == 1, at_stop["playbackReports"]
    played_ms = finals[0]["played_ms"]
    assert played_ms > 0
    assert {"type": "playback", "turn_id": turn_id, "played_ms": played_ms} in at_stop["sent"]
    after = later["playbackReports"][len(at_stop["playbackReports"]) :]
    assert not [r for r in after if r["turn_id"] == turn_id]

    # The server ends that answer as interrupted and keeps it in the history as such.
    aria.wait_for(
        f"t.responses.some((r) => r.turn_id === {turn_id!r})",
        5,
        "the server's response_done (interrupted) for the turn barged in on",
    )
    done = next(r for r in aria.state()["responses"] if r["turn_id"] == turn_id)
    assert done["interrupted"] is True
    session_id = at_stop["session"]["session_id"]
    owner = {"X-Aria-Session-Key": at_stop["session"]["key"]}  # the page's new session: its key
    history = httpx.get(f"{story_server.url}/sessions/{session_id}", headers=owner).json()["history"]
    assistant = [m for m in history if m["role"] == "assistant"]
    assert assistant
    assert assistant[0]["interrupted"] is True
    assert LONG_STORY.startswith(assistant[0]["content"])  # word-exact: what had been heard
    assert aria.problems == []


def test_stop_button_silences_the_answer_and_interrupts(open_page: OpenPage) -> None:
    aria = open_page()
    page = aria.page
    page.fill("#text-input", LONG_ANSWER_QUESTION)
    page.press("#text-input", "Enter")
    aria.wait_for(
        "t.samplesPlayed > t.session.audio_out.sample_rate / 2", 15, "half a second of the answer to play"
    )
    page.wait_for_selector("#stop-btn:not([disabled])", timeout=2000)
    page.click("#stop-btn")
    aria.wait_for("t.interrupts > 0", 2, "the Stop button to stop playback")
    at_stop = aria.state()
    time.sleep(0.6)
    later = aria.state()

    assert at_stop["playing"] is False
    assert later["samplesPlayed"] == at_stop["samplesPlayed"], "audio played on after Stop"
    assert {"type": "control", "action": "interrupt"} in at_stop["sent"]
    turn_id = at_stop["responses"][0]["turn_id"] if at_stop["responses"] else None
    report = next(r for r in at_stop["playbackReports"] if r["final"])
    assert turn_id in (None, report["turn_id"])
    assert report["played_ms"] > 0
    assert page.locator("#status").get_attribute("data-state") != "speaking"
    # The server ends the turn as interrupted.
    aria.wait_for(
        f"t.responses.some((r) => r.turn_id === {report['turn_id']!r} && r.interrupted)",
        5,
        "response_done (interrupted) for the stopped turn",
    )
    assert aria.problems == []


def test_reconnect_resumes_the_session(open_page: OpenPage) -> None:
    aria = open_page()
    page = aria.page
    first = aria.state()["session"]
    assert first["resumed"] is False
    page.evaluate("() => window.ariaTest.disconnect()")
    aria.wait_for("t.connection !== 'open'", 2, "the page to notice the drop")
    assert "retrying" in page.locator("#conn-text").inner_text()
    aria.wait_for("t.connection === 'open' && t.session !== null", 10, "the page to reconnect")
    again = aria.state()["session"]
    assert again["resumed"] is True
    assert again["session_id"] == first["session_id"]
    assert aria.problems == []


def _png(width: int, height: int) -> bytes:
    """A small RGB PNG (a gradient), made with the standard library."""
    rows = b"".join(
        b"\0" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_image_upload_camera_and_voice_picker(open_page: OpenPage, tmp_path: Path) -> None:
    aria = open_page()
    page = aria.page
    image = tmp_path / "gradient.png"
    image.write_bytes(_png(64, 48))
    page.fill("#text-input", QUESTION)
    page.set_input_files("#image-input", image)
    aria.wait_for("t.sent.some((m) => m.type === 'image')", 5, "the image message")
    aria.wait_for("t.responses.length > 0", 20, "the answer to the image's question")
    state = aria.state()
    sent = next(m for m in state["sent"] if m["type"] == "image")
    assert sent["format"] == "png"
    assert sent["text"] == QUESTION
    assert base64.b64decode(sent["data"]) == image.read_bytes()
    assert state["errors"] == []
    assert page.locator(".msg.user img.thumb").count() == 1
    assert page.locator("#text-input").input_value() == ""

    # The camera (Chromium's fake one) sends JPEG frames about once a second.
    page.click("#camera-btn")
    aria.wait_for("t.videoFramesSent >= 2", 5, "two camera frames")
    assert page.locator("#camera-panel").is_visible()
    page.screenshot(path=ARTIFACTS / "page-image-camera.png")
    page.click("#camera-btn")
    assert page.locator("#camera-panel").is_hidden()

    # Picking a voice sends a live configuration change that the server takes.
    voices = page.locator("#voice-select option").evaluate_all("(os) => os.map((o) => o.value)")
    if len(voices) > 1:
        page.select_option("#voice-select", voices[1])
        aria.wait_for("t.sent.some((m) => m.action === 'update_config')", 2, "the update_config message")
        sent_config = next(m for m in aria.state()["sent"] if m.get("action") == "update_config")
        assert sent_config["config"] == {"tts.voice": voices[1]}
    time.sleep(0.5)  # an error would come back at once
    assert aria.state()["errors"] == []
    assert aria.problems == []


RENDER_THROUGH_MIC_WORKLET = """async ([rate, freq]) => {
  const ctx = new OfflineAudioContext(1, rate, rate);  // one second
  await ctx.audioWorklet.addModule("/mic-worklet.js");
  const node = new AudioWorkletNode(ctx, "aria-mic", { processorOptions: { targetRate: 16000 } });
  const frames = [];
  node.port.onmessage = (e) => frames.push(Array.from(new Int16Array(e.data.pcm)));
  const osc = new OscillatorNode(ctx, { frequency: freq });
  osc.connect(new GainNode(ctx, { gain: 0.5 })).connect(node).connect(ctx.destination);
  osc.start();
  await ctx.startRendering();
  for (let i = 0; i < 50 && frames.length < 49; i++) await new Promise((r) => setTimeout(r, 20));
  return frames;
}"""


@pytest.mark.parametrize("rate", [44100, 48000])
def test_mic_worklet_resamples_to_16k_frames(open_page: OpenPage, rate: int) -> None:
    np = pytest.importorskip("numpy")
    page = open_page().page

    def render(freq: float) -> tuple[list[list[int]], object]:
        frames = page.evaluate(RENDER_THROUGH_MIC_WORKLET, [rate, freq])
        return frames, np.concatenate([np.asarray(f, dtype=np.float64) for f in frames]) / 32768

    frames, tone = render(440.0)
    assert {len(f) for f in frames} == {320}, "frames of 20 ms at 16 kHz"
    assert len(frames) in (49, 50)
    steady = tone[1600:]  # past the filter's start-up
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    peak_hz = np.argmax(spectrum) * 16000 / steady.size
    assert peak_hz == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)
    # Above 8 kHz would alias into the speech band: the low-pass keeps it out (measured: -47 to -52 dB).
    _, high = render(12000.0)
    assert np.sqrt(np.mean(high[1600:] ** 2)) < 0.01 * 0.5 / np.sqrt(2)
