"""File mode: a conversation from a WAV file to a WAV file, the real command over its own server, in
real time and with ``--fast``; the answers are where they belong on the input's timeline."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from aria.core.audio import read_wav, resample
from tests.server.conftest import free_port
from tests.talk.conftest import ROOT, Talk, engines, speech_wav, write_config

QUESTIONS = ["What time is it?", "Tell me a story about a robot."]
ANSWERS = ["It is nine in the morning.", "Once upon a time there was a tiny robot."]


def _config(tmp_path: Path) -> Path:
    config = engines(
        **{
            "stt.options": {"texts": ["what time is it", "tell me a story about a robot"]},
            "llm.options": {"replies": ANSWERS},
        }
    )
    return write_config(tmp_path / "aria.toml", config, tmp_path / "data")


@pytest.mark.parametrize("fast", [False, True], ids=["real-time", "fast"])
def test_a_conversation_from_and_to_files(tmp_path: Path, fast: bool) -> None:
    question = speech_wav(tmp_path / "in.wav", QUESTIONS, gap_s=2.5)
    out = tmp_path / "out.wav"
    args = ["--input", str(question), "--output", str(out)] + (["--fast"] if fast else [])
    talk = Talk(args, config=_config(tmp_path))
    code = talk.proc.wait(60)
    talk.stop()
    assert code == 0, talk.stderr
    said = [line for line in talk.lines if line.startswith(("you:", "aria:"))]
    assert [line.split(" [")[0] for line in said] == [
        "you: what time is it",
        f"aria: {ANSWERS[0]}",
        "you: tell me a story about a robot",
        f"aria: {ANSWERS[1]}",
    ]
    assert all(line.endswith(" ms]") for line in said if line.startswith("aria:")), said
    assert "saved: aria talk --resume continues it" in talk.stderr

    answer, rate = read_wav(out)
    heard, _ = read_wav(question)
    asked = stretches(heard)
    said_at = stretches(resample(answer, rate, 16000))
    assert len(asked) == len(said_at) == 2, (asked, said_at)
    # Each answer starts after the end of its question on the input's timeline, within 1.5 s (the
    # VAD's silence, the turn's end, the first audio), and before the next question.
    for (_, q_end), (a_start, _) in zip(asked, said_at, strict=True):
        assert q_end < a_start < q_end + 1.5, (asked, said_at)
    assert said_at[0][1] < asked[1][0] + 0.1


def stretches(audio: np.ndarray, gap_s: float = 0.8) -> list[tuple[float, float]]:
    """(start, end) in seconds of the stretches of sound separated by at least ``gap_s`` of silence."""
    blocks = audio[: audio.size // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt(np.mean(blocks**2, axis=1)) > 0.02)
    found: list[tuple[float, float]] = []
    for index in loud:
        if found and index / 100 - found[-1][1] < gap_s:
            found[-1] = (found[-1][0], (index + 1) / 100)
        else:
            found.append((index / 100, (index + 1) / 100))
    return found


def test_bad_input_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    talk = Talk(["--input", str(bad), "--output", "none"], config=_config(tmp_path))
    assert talk.proc.wait(60) == 1
    talk.stop()
    assert "is not a PCM WAV file" in talk.stderr


def test_server_option_talks_to_a_live_aria_serve_with_a_token(tmp_path: Path) -> None:
    """``--server`` against ``aria serve`` in its own process: the same conversation from a file."""
    config = _config(tmp_path)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ARIA_MODELS__OFFLINE": "1"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "aria", "--config", str(config), "serve", "--port", str(port),
         "--token", "tk-1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code < 500:
                    break
            assert serve.poll() is None, "aria serve exited"
            assert time.monotonic() < deadline, "aria serve did not start"
            time.sleep(0.2)
        question = speech_wav(tmp_path / "in.wav", QUESTIONS[:1], gap_s=2.5)
        url = f"ws://127.0.0.1:{port}"
        args = ["--server", url, "--token", "tk-1", "--input", str(question), "--output", "none", "--fast"]
        talk = Talk(args, config=config, env=env)
        code = talk.proc.wait(60)
        talk.stop()
        assert code == 0, talk.stderr
        assert [line.split(" [")[0] for line in talk.lines] == ["you: what time is it", f"aria: {ANSWERS[0]}"]
        refused = Talk(["--server", url, "--token", "wrong", "--input", "none"], config=config, env=env)
        assert refused.proc.wait(60) == 1
        refused.stop()
        assert "refused the connection (HTTP 403): check the token (--token)" in refused.stderr
    finally:
        serve.terminate()
        serve.wait(20)
