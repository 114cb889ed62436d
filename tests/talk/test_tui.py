"""The terminal interface, driven as a person would: the real command in tmux, keys sent with
``send-keys``, the screen read back with ``capture-pane``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.talk.conftest import ROOT, write_config

REPLY = "Hello! I am Aria, and this answer streams in word by word."


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True)
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "talk")

    def wait(self, check: Callable[[str], bool], within: float = 20.0) -> str:
        deadline = time.monotonic() + within
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed it:\n{screen}")
            time.sleep(0.2)

    def start(self, command: str) -> None:
        self("new-session", "-d", "-s", "talk", "-x", "110", "-y", "30", command)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian: apt install tmux)")
    session = Tmux(f"aria-talk-{uuid.uuid4().hex[:8]}")
    yield session
    subprocess.run(["tmux", "-L", session.socket, "kill-server"], capture_output=True, check=False)


def _command(config: Path, *args: str) -> str:
    aria = f"PYTHONPATH={ROOT / 'src'} {sys.executable} -m aria --config {config} talk"
    return f"{aria} --input none --output none {' '.join(args)}; echo EXIT=$?; sleep 60"


def test_the_terminal_interface_typed_turns_modes_exit_and_resume(tmp_path: Path, tmux: Tmux) -> None:
    config = write_config(
        tmp_path / "aria.toml",
        {
            "models": {"offline": True},
            "vad": {"backend": "fake"},
            "stt": {"backend": "fake", "fallback": []},
            "llm": {
                "backend": "fake",
                "fallback": [],
                "options": {"replies": [REPLY], "token_interval_s": 0.05},
            },
            "tts": {"backend": "fake", "fallback": []},
            "turn": {"backend": "silence", "fallback": []},
        },
        tmp_path / "data",
    )
    tmux.start(_command(config, "--ptt"))
    screen = tmux.wait(lambda s: "mode: voice_chat" in s)
    assert "● ready" in screen
    assert "[muted]" in screen  # push-to-talk: the microphone waits for the key
    assert "Enter send · Tab mode · Esc stop · Ctrl-C quit · ctrl-t talk" in screen
    tmux("send-keys", "-t", "talk", "C-t")
    tmux.wait(lambda s: "[talking]" in s)

    tmux("send-keys", "-t", "talk", "hello there")
    tmux.wait(lambda s: "> hello there" in s)
    tmux("send-keys", "-t", "talk", "Enter")
    # The answer streams in (the cursor mark while it does), then shows its latency.
    streaming = tmux.wait(lambda s: "aria: Hello!" in s and "▌" in s)
    assert "you: hello there" in streaming
    assert "● speaking" in streaming or "● thinking" in streaming
    done = tmux.wait(lambda s: REPLY in s and "ms]" in s)
    assert "last turn" in done

    tmux("send-keys", "-t", "talk", "Tab")  # the next mode
    switched = tmux.wait(lambda s: "mode: broadcast" in s)
    assert "note: mode: broadcast" in switched

    tmux("send-keys", "-t", "talk", "C-c")  # a clean exit saves the session
    left = tmux.wait(lambda s: "EXIT=0" in s)
    assert "saved: aria talk --resume continues it" in left
    session_id = left.split("session ")[1].split()[0]

    tmux("respawn-pane", "-k", "-t", "talk", _command(config, "--resume"))
    resumed = tmux.wait(lambda s: f"resumed session {session_id}" in s)
    assert "you: hello there" in resumed  # the history, shown again
    assert REPLY in resumed
    assert session_id in resumed.splitlines()[2]
    tmux("send-keys", "-t", "talk", "/quit", "Enter")
    assert "EXIT=0" in tmux.wait(lambda s: "EXIT=" in s)


def _piped(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``aria talk`` with no terminal and no audio (a fake model): ``piped(*lines, *args)`` types the
    lines on stdin, then ``/quit``, and returns the finished command."""
    config = write_config(
        tmp_path / "aria.toml",
        {"models": {"offline": True}, "tts": {"enabled": False},
         "llm": {"backend": "fake", "fallback": [], "options": {"replies": [REPLY]}}},
        tmp_path / "data",
    )  # fmt: skip
    talk = [sys.executable, "-m", "aria", "--config", str(config), "talk"]

    def piped(line: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*talk, "--input", "none", "--output", "none", *args],
            input=f"{line}\n/quit\n", capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    return piped


def test_no_terminal_no_audio_still_talks_by_pipe(tmp_path: Path) -> None:
    """Typed lines on stdin, answers on stdout: the plain interface for scripts."""
    said = _piped(tmp_path)("hello there").stdout.splitlines()
    assert said[0] == "you: hello there"
    assert said[1].startswith(f"aria: {REPLY} [")  # answered (with its latency) before /quit


def test_an_earlier_session_is_resumed_by_its_id(tmp_path: Path) -> None:
    """``--resume SESSION_ID``: not the last session, and it opens with the key it was given."""
    say = _piped(tmp_path)
    first = say("the first conversation").stderr.split("session ")[-1].split()[0]
    second = say("the second conversation").stderr.split("session ")[-1].split()[0]
    assert first != second
    resumed = say("back to the first", "--resume", first)
    assert f"resumed session {first}" in resumed.stdout
    assert "you: the first conversation" in resumed.stdout  # its history, not the second's
    assert "the second conversation" not in resumed.stdout
    assert f"session {first} saved" in resumed.stderr
