"""`aria doctor`, `aria say` and `aria transcribe` run for real in a subprocess, on the offline engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aria.core.audio import read_wav

ALWAYS_HERE = {"vad:silero", "stt:pocketsphinx", "llm:builtin", "tts:espeak"}
LISTED = ALWAYS_HERE | {
    "vad:webrtc",
    "stt:whisper",
    "stt:openai",
    "llm:openai",
    "llm:ollama",
    "tts:kokoro",
    "tts:piper",
    "tts:openai",
}


def aria(*args: str, tmp_path: Path, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARIA_")}
    clean.update({"ARIA_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "aria", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean,
        check=False,
    )


def test_doctor_json_lists_every_engine_with_reasons(tmp_path: Path) -> None:
    result = aria("doctor", "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    engines = {e["name"]: e for e in report["engines"]}
    assert set(engines) >= LISTED
    for name in ALWAYS_HERE:
        assert engines[name]["available"], engines[name]
    for entry in engines.values():
        assert isinstance(entry["available"], bool)
        if not entry["available"]:
            assert entry["reason"], entry
    assert "models pull kokoro" in engines["tts:kokoro"]["fix"]
    assert "fake" not in " ".join(engines)
    assert report["selected"]["llm"] == "llm:builtin"
    assert report["selected"]["tts"] == "tts:espeak"


def test_say_writes_a_wav_of_the_right_length(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    short = aria("say", "Hello.", "-o", str(out), tmp_path=tmp_path)
    assert short.returncode == 0, short.stderr
    short_audio, rate = read_wav(out)
    long = aria(
        "say",
        "Hello. This is a much longer sentence, spoken slowly and clearly.",
        "-o",
        str(out),
        tmp_path=tmp_path,
    )
    assert long.returncode == 0, long.stderr
    long_audio, rate2 = read_wav(out)
    assert rate == rate2 == 22050
    # espeak speaks ~175 words a minute: "Hello." is well under a second, the long text several seconds.
    assert 0.3 < short_audio.size / rate < 1.5
    assert 3.0 < long_audio.size / rate < 8.0
    assert f"{long_audio.size / rate:.2f} s" in long.stderr


def test_transcribe_prints_a_transcript_and_falls_back_offline(tmp_path: Path) -> None:
    wav = tmp_path / "yes.wav"
    aria("say", "Yes.", "-o", str(wav), tmp_path=tmp_path)
    # Default STT is whisper, whose model is not on disk and cannot be downloaded here: it must fail fast
    # and pocketsphinx (the configured fallback) must answer.
    result = aria(
        "transcribe", str(wav), "--log-level", "WARNING", tmp_path=tmp_path, timeout=60, HF_HUB_OFFLINE="0"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), result.stderr
    assert "whisper" in result.stderr.lower()


@pytest.mark.parametrize(
    "args", [["say", "Hi", "-o", "/nonexistent-dir/x.wav"], ["transcribe", "/nonexistent.wav"]]
)
def test_bad_paths_give_a_clear_error(args: list[str], tmp_path: Path) -> None:
    result = aria(*args, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "aria:" in result.stderr
