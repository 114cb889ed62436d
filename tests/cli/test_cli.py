"""The ``aria`` command line, run for real in a subprocess, and ``chat()`` in-process with text streams."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aria._version import __version__
from aria.cli.chat import chat
from aria.core.config import load_settings

GREETING = "Hello, I'm Aria. How can I help you?"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``ARIA_`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ARIA_")}
    env.update(extra)
    return env


def aria(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aria", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        timeout=60,
        check=False,
    )


# -- subprocess ------------------------------------------------------------------------------------


def test_version() -> None:
    done = aria("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"aria {__version__}\n"
    assert done.stdout.startswith("aria 0.")


def test_no_command_prints_help_and_exits_2() -> None:
    done = aria()
    assert done.returncode == 2
    assert done.stdout.startswith("usage: aria")
    assert "chat" in done.stdout
    assert "bench" in done.stdout


def test_chat_answers_piped_input_without_prompts(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "builtin", input="Hello\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{GREETING}\n"
    assert "you>" not in done.stdout
    assert "aria>" not in done.stdout
    assert "Type a message" not in done.stdout + done.stderr


def test_chat_answers_several_lines_in_order(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "builtin", input="Hello\n\nwhat is 2 plus 3\nthank you\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [GREETING, "2 plus 3 is 5.", "You're welcome."]
    assert "5" in lines[1]


def test_chat_without_trailing_newline_still_answers(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "builtin", input="what is 6 times 7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "6 times 7 is 42.\n"


def test_chat_quit_stops_reading(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "builtin", input="Hello\n/quit\nwhat is 2 plus 3\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{GREETING}\n"


def test_chat_with_empty_input_exits_0_silently(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "builtin", input="", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_invalid_config_in_the_environment_exits_1_naming_the_key(tmp_path: Path) -> None:
    done = aria(
        "chat", "--llm", "builtin", input="Hello\n", env=clean_env(ARIA_LLM__TEMPERATURE="9"), cwd=tmp_path
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("aria: invalid setting llm.temperature")
    assert "ARIA_LLM__TEMPERATURE" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_flag_value_exits_1_naming_the_key(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "builtin", "--temperature", "9", input="Hello\n", cwd=tmp_path)
    assert done.returncode == 1
    assert "llm.temperature" in done.stderr
    assert "Traceback" not in done.stderr


def test_misspelt_setting_suggests_the_right_one(tmp_path: Path) -> None:
    done = aria(
        "chat", "--llm", "builtin", input="Hello\n", env=clean_env(ARIA_LLM__TEMPRATURE="0.5"), cwd=tmp_path
    )
    assert done.returncode == 1
    assert "unknown setting llm.temprature" in done.stderr
    assert "did you mean llm.temperature?" in done.stderr
    assert "ARIA_LLM__TEMPERATURE" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_llm_backend_exits_1_with_a_suggestion(tmp_path: Path) -> None:
    done = aria("chat", "--llm", "bultin", input="Hello\n", cwd=tmp_path)
    assert done.returncode == 1
    assert "unknown engine 'llm:bultin'; did you mean 'llm:builtin'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_config_file_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    done = aria("--config", str(missing), "chat", "--llm", "builtin", input="Hello\n", cwd=tmp_path)
    assert done.returncode == 1
    assert f"config file {missing}" in done.stderr
    assert "does not exist" in done.stderr


def test_config_file_settings_are_used(tmp_path: Path) -> None:
    config = tmp_path / "aria.toml"
    config.write_text('[llm]\nbackend = "builtin"\n\n[llm.options]\nassistant_name = "Nova"\n')
    done = aria("--config", str(config), "chat", input="Hello\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, I'm Nova. How can I help you?\n"


def test_bench_overhead_prints_json_last(tmp_path: Path) -> None:
    done = aria(
        "bench", "overhead", "--json", "--turns", "5", "--warmup", "1", "--frames", "200", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1  # --json prints only the result
    result = json.loads(lines[-1])
    for key in (
        "turn_overhead_ms_p50",
        "turn_overhead_ms_p95",
        "bargein_stop_ms_p50",
        "frame_hop_us_p50",
        "frames_per_s",
        "loop_cpu_ms_per_turn_p50",
        "import_ms",
    ):
        value = result[key]
        assert isinstance(value, int | float), (key, value)
        assert not isinstance(value, bool), key
        assert value >= 0, (key, value)
    assert result["turn_overhead_ms_p50"] <= result["turn_overhead_ms_p95"]
    assert result["frames_per_s"] > 0
    assert result["loop_cpu_ms_per_turn_p50"] > 0
    assert result["import_ms"] > 0
    assert result["audio_frames_after_interrupt"] == 0
    assert result["turns"] == 5


def test_bench_requires_a_benchmark_name(tmp_path: Path) -> None:
    done = aria("bench", cwd=tmp_path)
    assert done.returncode == 2
    assert "usage:" in done.stderr


# -- in-process ------------------------------------------------------------------------------------


class RecordingStream(io.StringIO):
    """A text stream that remembers each write, to see the answer arrive piece by piece."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_chat_streams_two_answers_in_order() -> None:
    settings = load_settings(overrides={"llm.backend": "builtin"}, env={})
    stdin = io.StringIO("Hello\nwhat is 2 plus 3\n")
    stdout = RecordingStream()
    stderr = io.StringIO()

    code = await chat(settings, stdin, stdout, stderr)

    assert code == 0
    assert stderr.getvalue() == ""
    assert stdout.getvalue() == f"{GREETING}\n2 plus 3 is 5.\n"
    pieces = [w for w in stdout.writes if w]
    # Streamed word by word, the first answer and its newline entirely before the second answer.
    assert pieces[:2] == ["Hello,", " I'm"]
    first_end = pieces.index("\n")
    assert "".join(pieces[:first_end]) == GREETING
    assert "".join(pieces[first_end + 1 :]) == "2 plus 3 is 5.\n"
    assert len(pieces[first_end + 1 :]) >= 5


async def test_chat_in_process_stops_at_quit() -> None:
    settings = load_settings(overrides={"llm.backend": "builtin"}, env={})
    stdout = io.StringIO()
    code = await chat(settings, io.StringIO("what is 6 times 7\n/quit\n"), stdout, io.StringIO())
    assert code == 0
    assert stdout.getvalue() == "6 times 7 is 42.\n"


class SlowStdin(io.StringIO):
    """Piped input that sends ``/quit``, then one more line only once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[str]:
        yield "/quit\n"
        self.release.wait(30)
        yield "a line typed after quitting\n"


def test_a_line_read_after_chat_returned_is_dropped_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    before = set(threading.enumerate())
    stdin, stdout = SlowStdin(), io.StringIO()
    settings = load_settings(overrides={"llm.backend": "builtin"}, env={})

    assert asyncio.run(chat(settings, stdin, stdout, io.StringIO())) == 0  # its event loop is now closed

    stdin.release.set()
    readers = [t for t in set(threading.enumerate()) - before if t.name == "stdin"]
    assert len(readers) == 1
    for reader in readers:
        reader.join(10)
    assert not any(reader.is_alive() for reader in readers)
    assert errors == []
    assert stdout.getvalue() == ""


@pytest.mark.parametrize("quit_command", ["/quit", "/exit", "/bye"])
def test_every_quit_command_stops_reading(tmp_path: Path, quit_command: str) -> None:
    done = aria("chat", "--llm", "builtin", input=f"{quit_command}\nHello\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
