"""Real speech for tests: espeak-ng (in process) says known sentences with known silences around them,
so VAD and STT tests can check detected segments against true boundaries."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aria.core.audio import resample
from aria.engines.tts.espeak_lib import EspeakLibrary
from aria.types import float32_samples

__all__ = ["conversation", "say", "say_fresh"]


def say(
    text: str, *, sample_rate: int = 16000, voice: str = "en-us", rate_wpm: int = 160
) -> npt.NDArray[np.float32]:
    """``text`` spoken by espeak-ng as float32 mono at ``sample_rate``, trimmed of its own silence."""
    lib = EspeakLibrary.get()
    blocks: list[npt.NDArray[np.int16]] = []

    def keep(block: npt.NDArray[np.int16]) -> bool:
        blocks.append(block)
        return True

    lib.synthesize(text, keep, voice=voice, rate_wpm=rate_wpm)
    audio = float32_samples(np.concatenate(blocks)) if blocks else np.zeros(0, np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if loud.size:
        audio = audio[loud[0] : loud[-1] + 1]
    return resample(audio, lib.sample_rate, sample_rate)


def say_fresh(
    texts: list[str], *, sample_rate: int = 16000, voice: str = "en-us", rate_wpm: int = 160
) -> list[npt.NDArray[np.float32]]:
    """Each of ``texts`` as :func:`say` gives it, said in a new process.

    espeak-ng carries state from one utterance to the next within a process (its pitch flutter runs on,
    and a synthesis stopped early leaves its mark), so what :func:`say` returns depends on what the
    process said before: in a test suite, on timing. A fresh process gives the same samples every time,
    for tests that hold a model's score on the speech to a bound."""
    script = (
        "import json, sys, numpy as np\n"
        "from aria.testing.speech import say\n"
        "texts, options = json.loads(sys.argv[1])\n"
        "for text in texts:\n"
        "    np.save(sys.stdout.buffer, say(text, **options))\n"
    )
    options = {"sample_rate": sample_rate, "voice": voice, "rate_wpm": rate_wpm}
    source = str(Path(__file__).resolve().parents[2])  # the folder aria is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", script, json.dumps([texts, options])]
    done = subprocess.run(command, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"espeak-ng in a fresh process failed: {done.stderr.decode(errors='replace')}")
    out = io.BytesIO(done.stdout)
    return [np.load(out) for _ in texts]


def conversation(
    texts: list[str], *, gap_s: float = 1.0, lead_s: float = 0.5, sample_rate: int = 16000
) -> tuple[npt.NDArray[np.float32], list[tuple[float, float]]]:
    """Utterances separated by ``gap_s`` of silence (after ``lead_s``, and ``gap_s`` at the end), and the
    true (start, end) of each in seconds."""
    parts: list[npt.NDArray[np.float32]] = [np.zeros(int(lead_s * sample_rate), np.float32)]
    segments: list[tuple[float, float]] = []
    cursor = lead_s
    for text in texts:
        speech = say(text, sample_rate=sample_rate)
        segments.append((cursor, cursor + speech.size / sample_rate))
        parts += [speech, np.zeros(int(gap_s * sample_rate), np.float32)]
        cursor += speech.size / sample_rate + gap_s
    return np.concatenate(parts), segments
