"""``aria bench talk``: voice-to-voice latency through the real sounddevice path, as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aria.bench.talk import VirtualAudio
from tests.talk.conftest import ROOT, engines, write_config


def test_bench_talk_measures_end_of_speech_to_first_answer_audio(tmp_path: Path) -> None:
    reason = VirtualAudio.unavailable()
    if reason is not None:
        pytest.skip(f"no virtual audio devices: {reason}")
    config = write_config(tmp_path / "aria.toml", engines(), tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "aria", "--config", str(config), "bench", "talk", "--turns", "2", "--json"],
        capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bench"] == "talk"
    assert result["answered"] == 2, result["transcript"]
    latencies = result["voice_to_voice_ms"]["each"]
    assert len(latencies) == 2, result
    # At least the end-of-turn wait (Silero's 320 ms of silence), at most a few seconds.
    assert all(300 < value < 3000 for value in latencies), latencies
    assert result["echo"] is True
