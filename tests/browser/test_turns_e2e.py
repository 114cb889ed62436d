"""Turn-taking through the page: who holds the turn when the person speaks over an answer, pauses
mid-sentence, or only coughs. The real ``aria serve`` (fake engines with scripted timings, or the offline
engines), Debian's Chromium, and a WAV made of espeak-ng speech, silences and noise as the microphone.

Skipped unless ``/usr/bin/chromium`` and the ``playwright`` package are present; speech needs espeak-ng.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.browser.conftest import fake_engines, require_browser, serve

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.browser.conftest import AriaPage, AriaServer, OpenPage

require_browser()

pytestmark = pytest.mark.timeout(90)

RATE = 16000
QUESTION = "Tell me a long story about the ocean."
# Spoken over the answer, with a pause after its first half longer than the VAD's end of speech.
OPENING, REST = "I would like to know", "the capital city of France."
WHOLE = f"{OPENING} {REST}"
STORY = (
    "Once upon a time the ocean was calm and blue, and a small boat sailed out at dawn. The sailors sang "
    "as they pulled the nets, and the gulls followed them far from the shore, past the lighthouse and the "
    "rocks, until the land was only a thin grey line behind them and the sea was all there was."
)
# Fake STT: one text per utterance, in order (the last repeats). A whole-sentence transcript for the
# interrupting utterance, and what a recogniser would make of its second half alone.
SLOW_FINAL_S = 0.8
SPLIT_ENGINES = fake_engines(
    stt={"texts": [QUESTION, WHOLE, REST], "final_delay_s": SLOW_FINAL_S},
    llm={"replies": [STORY]},
    vad={"start_frames": 2, "end_frames": 15},  # speech ends after 300 ms of silence
)
SHORT_ANSWER = (
    "The ocean covers most of the planet, and it is deep, cold and dark below a few hundred metres down."
)


def mic_wav(path: Path, parts: list[str | float | np.ndarray[Any, Any]]) -> list[tuple[float, float]]:
    """Write the microphone: each part is speech (text for espeak-ng), silence (seconds) or samples
    (float32 at 16 kHz); return the (start, end) of each part in seconds."""
    try:
        from aria.core.audio import write_wav
        from aria.testing.speech import say
    except Exception as exc:  # pragma: no cover - the package is always there
        pytest.skip(f"no speech helpers: {exc}")
    chunks: list[np.ndarray[Any, Any]] = []
    spans, cursor = [], 0.0
    for part in parts:
        if isinstance(part, str):
            try:
                audio = say(part, sample_rate=RATE)
            except Exception as exc:  # espeak-ng missing: no speech to test with
                pytest.skip(f"espeak-ng cannot make the test speech: {exc}")
        elif isinstance(part, float):
            audio = np.zeros(int(part * RATE), np.float32)
        else:
            audio = np.asarray(part, np.float32)
        chunks.append(audio)
        spans.append((cursor, cursor + audio.size / RATE))
        cursor += audio.size / RATE
    write_wav(path, np.concatenate(chunks), RATE)
    return spans


def cough(seed: int = 7) -> np.ndarray[Any, Any]:
    """150 ms of shaped noise: a sharp attack, an exponential decay, low-passed a little (a cough)."""
    rng = np.random.default_rng(seed)
    n = int(0.15 * RATE)
    noise = rng.standard_normal(n).astype(np.float32)
    noise = np.convolve(noise, np.ones(4, np.float32) / 4, mode="same")  # less hiss
    t = np.arange(n, dtype=np.float32) / RATE
    envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t / 0.05)
    return (0.5 * envelope * noise / np.max(np.abs(noise))).astype(np.float32)


def trace(state: dict[str, Any]) -> str:
    """The server's messages (no tokens, no audio) as short lines, for failure messages."""
    lines = []
    for m in state["received"]:
        if m["type"] in ("text_token", "metrics", "session", "mode"):
            continue
        if m["type"] == "transcript" and not m["final"]:
            lines.append(f"{m['at']:>6} partial    {m['turn_id']} {m['text']!r}")
            continue
        detail = m.get("state") or m.get("text", "")
        extra = f" interrupted={m['interrupted']}" if m["type"] == "response_done" else ""
        reason = f" ({m['reason']})" if m.get("reason") else ""
        lines.append(f"{m['at']:>6} {m['type']:<10} {m.get('turn_id')} {str(detail)[:60]!r}{reason}{extra}")
    return "\n".join(lines)


def user_history(server: AriaServer, state: dict[str, Any]) -> list[str]:
    session_id = state["session"]["session_id"]
    owner = {"X-Aria-Session-Key": state["session"]["key"] or ""}  # the key of the page's session
    history = httpx.get(f"{server.url}/sessions/{session_id}", headers=owner).json()["history"]
    return [m["content"] for m in history if m["role"] == "user"]


def start_mic(aria: AriaPage) -> float:
    aria.page.click("#mic-btn")  # opening the microphone starts the file, in real time
    aria.page.wait_for_selector("#mic-btn[aria-pressed='true']", timeout=5000)
    return time.monotonic()


def sleep_until(opened: float, at_s: float) -> None:
    """Until ``at_s`` seconds of the microphone file have played (waiting on real-time audio)."""
    time.sleep(max(0.0, opened + at_s - time.monotonic()))


@pytest.fixture(scope="module")
def split_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    """Fake engines whose final transcript comes ``SLOW_FINAL_S`` after the speech ends (as a batch
    recogniser's does on a busy CPU), answering with a long story."""
    yield from serve(tmp_path_factory, SPLIT_ENGINES, "browser-turns-server.log")


def _answer_server(texts: list[str]) -> Callable[[pytest.TempPathFactory], Iterator[AriaServer]]:
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
        engines = fake_engines(stt={"texts": texts}, llm={"replies": [SHORT_ANSWER]})
        yield from serve(tmp_path_factory, engines, "browser-turns-backchannel-server.log")

    return server


cough_server = pytest.fixture(scope="module", name="cough_server")(_answer_server([QUESTION, ""]))
mmhm_server = pytest.fixture(scope="module", name="mmhm_server")(_answer_server([QUESTION, "mm-hm"]))


def test_barge_in_sentence_with_a_pause_stays_one_turn(
    open_browser: Callable[..., AriaPage], split_server: AriaServer, tmp_path: Path
) -> None:
    wav = tmp_path / "barge-in-pause.wav"
    spans = mic_wav(wav, [1.0, QUESTION, 3.0, OPENING, 0.5, REST, 3.0])
    barge_start, barge_end = spans[3][0], spans[5][1]
    aria = open_browser(split_server, wav, "?rawmic=1")
    opened = start_mic(aria)
    aria.wait_for("t.samplesPlayed > 0", 15, "the story to start playing")
    first = aria.state()
    question_turn = next(m["turn_id"] for m in first["transcripts"] if m["final"])
    sleep_until(opened, barge_end + SLOW_FINAL_S + 1.0)
    aria.wait_for(
        f"t.received.some((m) => m.type === 'text_token' && m.turn_id !== {question_turn!r})",
        10,
        "an answer to the interrupting sentence",
    )
    time.sleep(0.5)  # a late turn of its own would show by now
    state = aria.state()
    log = trace(state)

    assert next(r for r in state["responses"] if r["turn_id"] == question_turn)["interrupted"] is True
    assert state["interrupts"] >= 1, "the page did not stop the story on barge-in"
    later = [m for m in state["transcripts"] if m["turn_id"] != question_turn]
    turns = list(dict.fromkeys(m["turn_id"] for m in later))
    finals = [m for m in later if m["final"]]
    unfinished = [t for t in turns if not any(m["turn_id"] == t for m in finals)]
    assert unfinished == [], f"turns whose transcript was never finalised: {unfinished}\n{log}"
    assert len(turns) == 1, f"the interrupting sentence became {len(turns)} turns\n{log}"
    assert len(finals) == 1, log
    assert OPENING.lower() in finals[0]["text"].lower(), f"the first half was lost\n{log}"
    assert aria.page.locator(".msg.user.partial").count() == 0, "an italic partial is left on the page"
    assert user_history(split_server, state) == [QUESTION, finals[0]["text"]], log
    answered = {m["turn_id"] for m in state["received"] if m["type"] == "text_token"}
    assert turns[0] in answered, f"the interrupting sentence was not answered\n{log}"
    assert aria.problems == []
    assert barge_start > 0


def test_pause_mid_sentence_is_one_turn(open_page: OpenPage, aria_server: AriaServer, tmp_path: Path) -> None:
    wav = tmp_path / "pause.wav"
    spans = mic_wav(wav, [1.0, "I would like to know,", 0.8, "the capital city of France.", 3.0])
    aria = open_page(wav, "?rawmic=1")
    opened = start_mic(aria)
    aria.wait_for("t.finalTranscripts.length > 0", 20, "a final transcript")
    sleep_until(opened, spans[3][1] + 1.5)  # a second turn would have started by now
    aria.wait_for("t.tokens.length > 0", 10, "the answer")
    state = aria.state()
    log = trace(state)

    turns = list(dict.fromkeys(m["turn_id"] for m in state["transcripts"]))
    assert len(turns) == 1, f"one sentence became {len(turns)} turns\n{log}"
    assert len(state["finalTranscripts"]) == 1, log
    assert len(user_history(aria_server, state)) == 1, log
    answers = {m["turn_id"] for m in state["received"] if m["type"] == "text_token"}
    assert answers == set(turns), f"answers for {answers}, turns {turns}\n{log}"
    assert not [r for r in state["responses"] if r["interrupted"]], log
    assert aria.page.locator(".msg.user.partial").count() == 0
    assert aria.problems == []


def _listener_noise_keeps_the_answer(
    open_browser: Callable[..., AriaPage], server: AriaServer, wav: Path, noise: str | np.ndarray[Any, Any]
) -> None:
    mic_wav(wav, [1.0, QUESTION, 3.0, noise, 6.0])
    aria = open_browser(server, wav, "?rawmic=1")
    start_mic(aria)
    aria.wait_for("t.samplesPlayed > 0", 15, "the answer to start playing")
    turn_id = next(m["turn_id"] for m in aria.state()["transcripts"] if m["final"])
    aria.wait_for(f"t.responses.some((r) => r.turn_id === {turn_id!r})", 20, "the answer's response_done")
    state = aria.state()
    log = trace(state)

    done = next(r for r in state["responses"] if r["turn_id"] == turn_id)
    assert done["interrupted"] is False, f"the answer was cut: heard {done['text']!r}\n{log}"
    assert done["text"].strip() == SHORT_ANSWER
    assert state["interrupts"] == 0, f"the page stopped the answer itself\n{log}"
    assert aria.problems == []


def test_cough_during_the_answer_does_not_interrupt(
    open_browser: Callable[..., AriaPage], cough_server: AriaServer, tmp_path: Path
) -> None:
    _listener_noise_keeps_the_answer(open_browser, cough_server, tmp_path / "cough.wav", cough())


def test_mm_hm_during_the_answer_does_not_interrupt(
    open_browser: Callable[..., AriaPage], mmhm_server: AriaServer, tmp_path: Path
) -> None:
    _listener_noise_keeps_the_answer(open_browser, mmhm_server, tmp_path / "mm-hm.wav", "Mm-hm.")
