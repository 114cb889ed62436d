"""Text clean-up for speech and the audio shaping every TTS adapter shares (pure code, no backend)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from aria.engines.tts.textprep import (
    Emit,
    ShapingOptions,
    SpeechShaper,
    pause_ms,
    peak_gain,
    prepare_text,
    soft_limit,
    thread_stream,
)
from aria.errors import EngineError, InvalidInput

RATE = 22050
OPTIONS = ShapingOptions()


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Hello** there!", "Hello there!"),
        ("__Bold__ and *italic* and _under_ and ~~gone~~ text.", "Bold and italic and under and gone text."),
        ("Run `pip install aria` now.", "Run pip install aria now."),
        ("```python\nprint(1)\n```", "print(1)"),
        ("## Next steps", "Next steps"),
        ("# Steps\n1. Open the door\n2) Walk in\n\nDone", "Steps, Open the door, Walk in. Done"),
        ("- apples\n* pears\n+ plums", "apples, pears, plums"),
        ("> a quoted line", "a quoted line"),
        ("See https://example.com/a?b=1.", "See link."),
        ("Visit www.example.org, then rest", "Visit link, then rest"),
        ("Read [the docs](https://x.y/z) please.", "Read the docs please."),
        ("Logo: ![a red fox](fox.png)", "Logo: a red fox"),
        ("Mail <https://example.com>!", "Mail link!"),
        ("😀 Great job 👍🏽!", "Great job!"),
        ("I love it ❤️ and the flag 🇫🇷.", "I love it and the flag."),
        ("<b>bold</b> text<br/>more", "bold text more"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "a, b. 1, 2"),
        ("Above\n\n---\n\nBelow", "Above. Below"),
        ("snake_case names", "snake case names"),
        ("2 * 3 is 6", "2 * 3 is 6"),
        ("**Note the start of an unclosed marker", "Note the start of an unclosed marker"),
        ("It is 25°C &amp; sunny.", "It is 25°C & sunny."),
        ("  lots   of\t\tspace \n here ", "lots of space, here"),
        ("Hello there,", "Hello there,"),
        ("Dr. Smith arrived.", "Dr. Smith arrived."),
    ],
)
def test_prepare_text(raw: str, spoken: str) -> None:
    assert prepare_text(raw) == spoken


@pytest.mark.parametrize("raw", ["", "   \n\t ", "...", "—", "🎉🎉", "**", "```", "- \n* "])
def test_nothing_speakable_becomes_empty(raw: str) -> None:
    assert prepare_text(raw) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there.", 200),
        ("Really?", 200),
        ("Wow!", 200),
        ('He said "stop."', 200),
        ("(as planned.)", 200),
        ("Wait…", 200),
        ("First,", 80),
        ("as follows:", 80),
        ("one; two;", 80),
        ("cut mid clause", 0),
        ("", 0),
    ],
)
def test_pause_after_punctuation(text: str, expected: int) -> None:
    assert pause_ms(text, OPTIONS) == expected


def test_pauses_come_from_the_options() -> None:
    options = ShapingOptions(sentence_pause_ms=300, clause_pause_ms=50)
    assert (pause_ms("End.", options), pause_ms("so,", options)) == (300, 50)


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError):
        ShapingOptions(target_peak_dbfs=3.0)
    with pytest.raises(ValidationError):
        ShapingOptions(sentence_pause_ms=-1)
    with pytest.raises(ValidationError):
        ShapingOptions(surprise=1)  # type: ignore[call-arg]
    assert ShapingOptions(target_peak_dbfs=-6.0).target_peak == pytest.approx(0.501, abs=1e-3)


def tone(seconds: float, amplitude: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_soft_limit_is_identity_below_the_knee_and_never_exceeds_the_ceiling() -> None:
    quiet = tone(0.1, 0.5)
    assert soft_limit(quiet, 0.89) is quiet
    loud = soft_limit(tone(0.1, 3.0), 0.89)
    assert float(np.max(np.abs(loud))) < 0.89
    assert float(np.max(np.abs(loud))) > 0.85
    assert np.all(np.diff(np.sort(soft_limit(np.linspace(-3, 3, 1001, dtype=np.float32), 0.89))) >= 0)


def test_shaper_blocks_gain_trim_and_pause() -> None:
    silence = np.zeros(RATE // 10, np.float32)  # 100 ms before and after the sound
    audio = np.concatenate([silence, tone(0.5, 0.25), silence])
    shaper = SpeechShaper(RATE, OPTIONS, gain=peak_gain(audio, OPTIONS))
    blocks = []
    for piece in np.array_split(audio, 7):  # uneven pieces
        blocks += shaper.push(piece)
    blocks += shaper.finish(200)
    block = round(RATE * 0.02)
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert all(b.size == block for b in blocks[:-1])
    assert 0 < blocks[-1].size <= block
    out = np.concatenate(blocks)
    # Leading silence trimmed to the 5 ms pre-roll, the tail to 10 ms, then exactly 200 ms of pause.
    assert out.size == pytest.approx(round(0.5 * RATE) + round(0.2 * RATE), abs=round(0.016 * RATE))
    assert np.all(out[-round(0.2 * RATE) :] == 0)
    peak = float(np.max(np.abs(out)))
    assert 20 * np.log10(peak) == pytest.approx(-1.0, abs=0.3)


def test_shaper_with_silence_only_yields_nothing() -> None:
    shaper = SpeechShaper(RATE, OPTIONS)
    assert shaper.push(np.zeros(5000, np.float32)) == []
    assert shaper.finish(200) == []


def test_shaper_keeps_pauses_inside_the_sentence() -> None:
    shaper = SpeechShaper(RATE, OPTIONS, gain=1.0)
    gap = np.zeros(round(0.3 * RATE), np.float32)
    blocks = shaper.push(tone(0.2, 0.5)) + shaper.push(gap) + shaper.push(tone(0.2, 0.5)) + shaper.finish(0)
    out = np.concatenate(blocks)
    assert out.size == pytest.approx(round(0.7 * RATE), abs=round(0.02 * RATE))


async def test_thread_stream_delivers_blocks_in_order() -> None:
    def work(emit: Emit, stop: threading.Event) -> None:
        for i in range(5):
            emit(np.full(10, i, np.float32))

    got = [int(b[0]) async for b in thread_stream(work, engine="tts:test")]
    assert got == [0, 1, 2, 3, 4]


async def test_thread_stream_raises_worker_errors_after_earlier_blocks() -> None:
    def work(emit: Emit, stop: threading.Event) -> None:
        emit(np.zeros(4, np.float32))
        raise RuntimeError("backend crashed")

    got: list[np.ndarray] = []

    async def consume() -> None:
        async for block in thread_stream(work, engine="tts:test"):
            got.append(block)

    with pytest.raises(EngineError, match="backend crashed") as info:
        await consume()
    assert len(got) == 1
    assert info.value.engine == "tts:test"
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_thread_stream_passes_aria_errors_through() -> None:
    def work(emit: Emit, stop: threading.Event) -> None:
        raise InvalidInput("bad text")

    with pytest.raises(InvalidInput, match="bad text"):
        async for _ in thread_stream(work, engine="tts:test"):
            pass


async def test_thread_stream_stops_the_worker_when_the_consumer_leaves() -> None:
    stopped_at: list[float] = []

    def work(emit: Emit, stop: threading.Event) -> None:
        while emit(np.zeros(4, np.float32)):
            time.sleep(0.001)
        stopped_at.append(time.monotonic())

    stream = thread_stream(work, engine="tts:test")
    await anext(stream)
    closed_at = time.monotonic()
    await stream.aclose()
    # aclose waits for the worker, so it has returned by now.
    assert stopped_at
    assert stopped_at[0] - closed_at < 0.5


async def test_thread_stream_consumer_cancelled() -> None:
    started = threading.Event()
    done = threading.Event()

    def work(emit: Emit, stop: threading.Event) -> None:
        started.set()
        stop.wait(5)
        done.set()

    async def consume() -> None:
        async for _ in thread_stream(work, engine="tts:test"):
            pass

    task = asyncio.create_task(consume())
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.wait(1)
