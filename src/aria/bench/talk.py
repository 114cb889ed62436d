"""``aria bench talk``: voice-to-voice latency of ``aria talk`` through the real sounddevice path.

A private PulseAudio server (:class:`VirtualAudio`, user mode, no sound card needed) gives the program
real devices: a null sink ``room`` is the room, the microphone ``mic`` hears it (a remap of its
monitor), and ``aria talk`` plays its answers into it too, a little quieter, as laptop speakers would
(so the answer's own audio reaches the microphone: the echo canceller and the echo guard have to keep
it from interrupting). PortAudio reaches PulseAudio through ALSA's pulse plugin, with one ALSA device per
PulseAudio device (``mic_in``, ``room_out``, ...) written to the private ``~/.asoundrc``.

The bench runs ``aria talk`` as a separate process (the real command, over its in-process server and
the engines the configuration names), plays spoken questions (espeak-ng, several voices and rates) into
the room, and records the room's monitor the whole time. In that one recording the end of each question
and the first answer audio after it are on the same clock: the difference is the voice-to-voice
latency, from the end of speech in the source to the first answer audio at the sink.

:class:`VirtualAudio` is also what the tests of ``aria talk`` use.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from aria.core.audio import write_wav
from aria.core.metrics import percentile
from aria.testing.speech import say
from aria.types import float32_samples

__all__ = ["Recording", "TalkBench", "VirtualAudio", "format_report", "onset"]

Float32Array = npt.NDArray[np.float32]
RATE = 16000
#: PulseAudio's volume of the laptop speakers into the room (60%: about -13 dB, a loudspeaker to
#: microphone path; a person near the microphone is louder than that).
LAPTOP_VOLUME = "60%"
QUESTIONS = (
    ("What time is it?", "en-us", 160),
    ("Tell me something about the moon.", "en-gb-x-rp", 180),
    ("How warm is it outside today?", "en", 140),
    ("Can you recommend a good book?", "en-us+f3", 170),
    ("What is six times seven?", "en-us", 190),
)


class Recording:
    """``parec`` recording one PulseAudio source as 16 kHz mono, from :meth:`start` to :meth:`stop`."""

    def __init__(self, audio: VirtualAudio, source: str, path: Path) -> None:
        self.path = path
        self._proc = subprocess.Popen(
            ["parec", f"--device={source}", "--format=s16le", f"--rate={RATE}", "--channels=1",
             "--latency-msec=10", "--raw", str(path)],
            env=audio.env,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.started = time.monotonic()

    def samples(self) -> Float32Array:
        raw = self.path.read_bytes()
        return float32_samples(np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2"))

    def stop(self) -> Float32Array:
        self._proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        return self.samples()


class VirtualAudio:
    """A private PulseAudio server with null sinks as speakers and remapped monitors as microphones.

    Sinks: ``room`` (what the default microphone ``mic`` hears), ``laptop`` (speakers playing into the
    room, quieter, as a laptop's own speakers reach its microphone) and ``spk`` (speakers nobody hears).
    :meth:`add_microphone` adds another (``headset``...) on its own sink. Each PulseAudio device gets an
    ALSA device of the same role for PortAudio: ``mic_in``, ``room_out``, ``laptop_out``, ``spk_out``,
    ``<name>_in``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runtime = self.root / "run"
        self.home = self.root / "home"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._alsa: dict[str, tuple[str, str]] = {}
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.runtime / 'pulse' / 'native'}",
            "HOME": str(self.home),
        }
        for key in ("PULSE_SINK", "PULSE_SOURCE", "ALSA_CONFIG_PATH"):
            self.env.pop(key, None)

    @staticmethod
    def unavailable() -> str | None:
        """Why virtual devices cannot run here, or None."""
        missing = [tool for tool in ("pulseaudio", "pactl", "paplay", "parec") if shutil.which(tool) is None]
        if missing:
            return (
                f"PulseAudio is not installed ({', '.join(missing)} missing; Debian: apt install pulseaudio)"
            )
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError) as exc:
            return f"sounddevice/PortAudio cannot load ({exc}; Debian: apt install libportaudio2)"
        return None

    def start(self) -> None:
        self.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = log = open(self.root / "pulseaudio.log", "wb")  # noqa: SIM115 - the server's lifetime
        self._proc = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "-n",
             "--disable-shm", "--load=module-native-protocol-unix",
             "--load=module-null-sink sink_name=room", "--load=module-null-sink sink_name=spk",
             "--load=module-remap-source master=room.monitor source_name=mic"],
            env=self.env, stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not start: {(self.root / 'pulseaudio.log').read_text()}")
            time.sleep(0.05)
        self.pactl("set-default-source", "mic")
        self.pactl("set-default-sink", "spk")
        # Laptop speakers: what they play reaches the room's microphone, LAPTOP_VOLUME quieter.
        self.pactl("load-module", "module-remap-sink", "sink_name=laptop", "master=room")
        self.pactl("set-sink-volume", "laptop", LAPTOP_VOLUME)
        self._alsa = {"mic_in": ("mic", "microphone"), "room_out": ("room", "speakers in the room")}
        self._alsa["laptop_out"] = ("laptop", "laptop speakers the microphone hears")
        self._alsa["spk_out"] = ("spk", "speakers nobody hears")
        self._write_asoundrc()

    def _write_asoundrc(self) -> None:
        blocks = [
            f'pcm.{name} {{\n  type pulse\n  device "{device}"\n  hint {{ show on description "{text}" }}\n}}'
            for name, (device, text) in self._alsa.items()
        ]
        (self.home / ".asoundrc").write_text("\n".join(blocks) + "\n")

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def add_microphone(self, name: str) -> int:
        """A microphone ``<name>_mic`` hearing its own sink ``<name>``; returns its module (to unload)."""
        self.pactl("load-module", "module-null-sink", f"sink_name={name}")
        index = self.pactl(
            "load-module", "module-remap-source", f"master={name}.monitor", f"source_name={name}_mic"
        )
        self._alsa[f"{name}_in"] = (f"{name}_mic", f"{name} microphone")
        self._write_asoundrc()
        return int(index)

    def add_speaker(self, name: str, master: str = "spk") -> int:
        """Speakers ``<name>`` playing into ``master``; returns their module (to unload)."""
        index = self.pactl("load-module", "module-remap-sink", f"sink_name={name}", f"master={master}")
        self._alsa[f"{name}_out"] = (name, f"{name} speakers")
        self._write_asoundrc()
        return int(index)

    def play(self, wav: Path, sink: str = "room") -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", f"--device={sink}", "--latency-msec=10", str(wav)], env=self.env)

    def record(self, source: str, path: Path) -> Recording:
        return Recording(self, source, path)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()

    @classmethod
    @contextlib.contextmanager
    def running(cls, root: Path) -> Iterator[VirtualAudio]:
        audio = cls(root)
        try:
            audio.start()
            yield audio
        finally:
            audio.stop()


def onset(audio: Float32Array, start: int = 0, *, threshold: float = 0.02, block: int = 160) -> int | None:
    """The first sample at or after ``start`` of a 10 ms block louder than ``threshold`` (RMS)."""
    for offset in range(max(0, start), audio.size - block + 1, block):
        if float(np.sqrt(np.mean(np.square(audio[offset : offset + block])))) > threshold:
            return offset
    return None


class _Lines:
    """The talk process's output lines, read by a thread, waited on by content."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait(self, prefix: str, count: int, within: float) -> bool:
        deadline = time.monotonic() + within
        with self._cond:
            while sum(line.startswith(prefix) for line in self.lines) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


class TalkBench:
    """``turns`` spoken questions to ``aria talk`` on virtual devices; see the module docstring."""

    def __init__(self, config: str | None, *, turns: int = 5, echo: bool = True) -> None:
        self.config = config
        self.turns = turns
        self.echo = echo

    def run(self) -> dict[str, Any]:
        reason = VirtualAudio.unavailable()
        if reason is not None:
            return {"bench": "talk", "skipped": reason}
        with (
            tempfile.TemporaryDirectory(prefix="aria-bench-talk-") as tmp,
            VirtualAudio.running(Path(tmp)) as audio,
        ):
            return self._run(audio, Path(tmp))

    def _run(self, audio: VirtualAudio, tmp: Path) -> dict[str, Any]:
        output = "laptop_out" if self.echo else "spk_out"
        recording = audio.record("room.monitor" if self.echo else "mic", tmp / "room.raw")
        answers = audio.record("spk.monitor", tmp / "spk.raw") if not self.echo else None
        command = [sys.executable, "-m", "aria"] + (["--config", self.config] if self.config else [])
        command += ["talk", "--input", "mic_in", "--output", output, "--plain"]
        proc = subprocess.Popen(
            command, env={**audio.env, "ARIA_DATA_DIR": str(tmp / "data"), "ARIA_MODELS__OFFLINE": "1"},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        lines = _Lines(proc.stdout)
        played: list[tuple[float, int]] = []  # (seconds into the recording the question began, its samples)
        try:
            time.sleep(3.0)  # the server's engines load; the first answer does not wait for them
            for index in range(self.turns):
                text, voice, rate = QUESTIONS[index % len(QUESTIONS)]
                speech = say(text, sample_rate=RATE, voice=voice, rate_wpm=rate)
                wav = tmp / f"q{index}.wav"
                write_wav(wav, speech, RATE)
                played.append((time.monotonic() - recording.started, speech.size))
                audio.play(wav).wait(30)
                lines.wait("aria:", index + 1, within=30)
                time.sleep(1.5)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            room = recording.stop()
            heard = answers.stop() if answers is not None else None
        return self._measure(room, heard, played, lines.lines)

    def _measure(
        self, room: Float32Array, heard: Float32Array | None, played: list[tuple[float, int]], out: list[str]
    ) -> dict[str, Any]:
        latencies: list[float] = []
        shift: float | None = None  # recording time minus our clock, from the first question's onset
        for at, size in played:
            expected = 0 if shift is None else int((at + shift - 0.15) * RATE)
            start = onset(room, expected)
            if start is None:
                continue
            if shift is None:
                shift = start / RATE - at
            end = start + size
            # With echo the answer is in the room; without, in the speakers' recording, which started
            # within milliseconds of the room's (both parec on the same server).
            first = onset(room if heard is None else heard, end + int(0.05 * RATE))
            if first is not None:
                latencies.append(1000.0 * (first - end) / RATE)
        return {
            "bench": "talk",
            "turns": len(played),
            "answered": sum(line.startswith("aria:") for line in out),
            "voice_to_voice_ms": {
                "p50": percentile(latencies, 50) if latencies else None,
                "p90": percentile(latencies, 90) if latencies else None,
                "max": max(latencies) if latencies else None,
                "each": [round(v, 1) for v in latencies],
            },
            "echo": self.echo,
            "path": "PulseAudio null sink, its remapped monitor as microphone; PortAudio via ALSA's pulse",
            "transcript": out,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }


def format_report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"aria bench talk skipped: {result['skipped']}"
    v = result["voice_to_voice_ms"]
    return (
        f"aria talk voice-to-voice ({result['turns']} turns, {result['answered']} answered,"
        f" echo {result['echo']}): p50 {v['p50']} ms, p90 {v['p90']} ms, max {v['max']} ms\n"
        + json.dumps(v["each"])
    )
