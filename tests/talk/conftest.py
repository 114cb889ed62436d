"""``aria talk`` as a person runs it: the real command in its own process, real devices (a private
PulseAudio server), real speech (espeak-ng), scripted fake STT/LLM so the answers are known."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aria.bench.talk import VirtualAudio
from aria.core.audio import write_wav
from aria.testing.speech import say

RATE = 16000
ROOT = Path(__file__).resolve().parents[2]


def engines(**overrides: Any) -> dict[str, Any]:
    """Real VAD (Silero) and voice (espeak-ng); scripted recogniser and model."""
    config: dict[str, Any] = {
        "models": {"offline": True},
        "vad": {"backend": "silero"},
        "stt": {"backend": "fake", "fallback": [], "options": {"texts": ["what time is it"]}},
        "llm": {"backend": "fake", "fallback": [], "options": {"replies": ["It is nine in the morning."]}},
        "tts": {"backend": "espeak", "fallback": []},
        "turn": {"backend": "silence", "fallback": [], "preemptive": False},
    }
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        config.setdefault(section, {})[field] = value
    return config


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def write_config(path: Path, config: dict[str, Any], data_dir: Path) -> Path:
    lines = [f"data_dir = {json.dumps(str(data_dir))}"]
    for section, fields in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def speech_wav(
    path: Path, texts: list[str], *, gap_s: float = 2.0, voice: str = "en-us", rate: int = 160
) -> Path:
    """Spoken sentences with ``gap_s`` of silence before, between and after."""
    parts = [np.zeros(int(0.5 * RATE), np.float32)]
    for text in texts:
        speech = say(text, sample_rate=RATE, voice=voice, rate_wpm=rate)
        parts += [speech, np.zeros(int(gap_s * RATE), np.float32)]
    write_wav(path, np.concatenate(parts), RATE)
    return path


class Talk:
    """``aria talk`` in its own process; its output lines read as they come."""

    def __init__(self, args: list[str], *, config: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aria", "--config", str(config), "talk", "--plain", *args],
            env={**(env or os.environ), "PYTHONPATH": str(ROOT / "src")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, match: Callable[[str], bool] | str, count: int = 1, within: float = 30.0) -> list[str]:
        test = match if callable(match) else (lambda line: line.startswith(match))  # type: ignore[misc]
        deadline = time.monotonic() + within
        with self._cond:
            while len(found := [line for line in self.lines if test(line)]) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not left):
                    raise AssertionError(f"no {count} lines matching {match!r} in {within} s: {self.lines}")
                self._cond.wait(min(left, 0.5))
        return found

    def stop(self, within: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        assert self.proc.stderr is not None
        assert self.proc.stdout is not None
        if not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        self._reader.join(5)
        self.proc.stdout.close()
        return code


@pytest.fixture
def audio(tmp_path: Path) -> Iterator[VirtualAudio]:
    reason = VirtualAudio.unavailable()
    if reason is not None:
        pytest.skip(f"no virtual audio devices: {reason} (the file-mode tests cover the same path)")
    with VirtualAudio.running(tmp_path / "pulse") as running:
        yield running


@pytest.fixture
def talks() -> Iterator[list[Talk]]:
    """Every process a test starts is stopped at its end, whatever happened."""
    started: list[Talk] = []
    yield started
    for talk in started:
        if talk.proc.poll() is None:
            talk.stop()
