"""The audio pacer sends answer audio at real-time pace with a bounded lead, and knows what was heard.

Time is a fake clock (its ``call_later`` drives the pacer's waits), so every send time is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from aria.server.pacing import AudioPacer
from aria.testing.clock import FakeClock

BLOCK_S = 0.02
PacerOf = Callable[[float], AudioPacer]


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, object]] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append((self.clock(), data))

    async def send_text(self, text: str) -> None:
        self.sent.append((self.clock(), text))

    def times_of(self, payload: object) -> list[float]:
        return [at for at, sent in self.sent if sent == payload]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rec(clock: FakeClock) -> Recorder:
    return Recorder(clock)


@pytest.fixture
async def pacer_of(clock: FakeClock, rec: Recorder) -> AsyncIterator[PacerOf]:
    tasks: list[asyncio.Task[None]] = []

    def make(lead_s: float) -> AudioPacer:
        pacer = AudioPacer(
            rec.send_bytes, rec.send_text, lead_s=lead_s, clock=clock, call_later=clock.call_later
        )
        tasks.append(asyncio.create_task(pacer.run()))
        return pacer

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _approx(values: list[float]) -> object:
    return pytest.approx(values, abs=1e-9)


async def test_audio_is_paced_with_a_bounded_lead_and_done_follows_the_audio(
    clock: FakeClock, rec: Recorder, pacer_of: PacerOf
) -> None:
    pacer = pacer_of(0.1)
    for i in range(25):  # 0.5 s of audio
        pacer.add_audio("t1", bytes([1, i]), BLOCK_S)
    assert pacer.add_after_audio("t1", "done")
    await clock.advance(0.31)
    # Block i plays at i * 20 ms and goes out exactly the lead (100 ms) before, never earlier.
    sent = [at for at, data in rec.sent if isinstance(data, bytes)]
    assert sent == _approx([max(0.0, i * BLOCK_S - 0.1) for i in range(len(sent))])
    assert len(sent) == 21  # at 0.31 s: blocks due by 0.41 s; the rest still waits
    await clock.advance(0.3)
    audio = [(at, data) for at, data in rec.sent if isinstance(data, bytes)]
    assert [data for _, data in audio] == [bytes([1, i]) for i in range(25)]  # in order, nothing lost
    assert [at for at, _ in audio] == _approx([max(0.0, i * BLOCK_S - 0.1) for i in range(25)])
    # response_done right behind the last block, which goes out the lead before it plays (0.48 s).
    assert rec.sent[-1] == (pytest.approx(0.38, abs=1e-9), "done")
    assert clock.pending == 0  # nothing left waiting


async def test_cancel_drops_unsent_audio_and_heard_is_estimated_from_time(
    clock: FakeClock, rec: Recorder, pacer_of: PacerOf
) -> None:
    pacer = pacer_of(0.05)
    for _ in range(50):  # 1 s
        pacer.add_audio("t1", b"\x01ab", BLOCK_S)
    await clock.advance(0.2)
    assert pacer.heard_seconds("t1") == pytest.approx(0.2, abs=1e-9)  # played from 0 until now
    assert len(rec.sent) == 13  # blocks due by 0.25 s (lead 50 ms)
    pacer.cancel("t1")
    await clock.advance(1.0)
    assert len(rec.sent) == 13  # nothing after the cancel
    assert not pacer.pending("t1")
    assert not pacer.add_after_audio("t1", "done")  # nothing pending: the caller sends it at once
    assert pacer.heard_seconds("t1") == pytest.approx(13 * BLOCK_S, abs=1e-9)  # at most what was sent


async def test_client_reports_refine_what_was_heard(clock: FakeClock, pacer_of: PacerOf) -> None:
    pacer = pacer_of(0.5)
    for _ in range(20):
        pacer.add_audio("t1", b"\x01ab", BLOCK_S)
    await clock.advance(0.05)
    assert pacer.heard_seconds("t1") == pytest.approx(0.05, abs=1e-9)  # the estimate from time
    pacer.report("t1", 30.0)
    assert pacer.heard_seconds("t1") == 0.03  # the client's own account wins
    assert pacer.heard_seconds("unknown") is None


async def test_a_second_turn_plays_after_the_first(
    clock: FakeClock, rec: Recorder, pacer_of: PacerOf
) -> None:
    pacer = pacer_of(0.02)
    for _ in range(5):
        pacer.add_audio("t1", b"\x01a1", BLOCK_S)
    for _ in range(5):
        pacer.add_audio("t2", b"\x01a2", BLOCK_S)
    await clock.advance(0.3)
    # t2 starts when t1's 100 ms end: its blocks go out the lead (20 ms) before 0.10, 0.12, ...
    assert rec.times_of(b"\x01a2") == _approx([0.08, 0.10, 0.12, 0.14, 0.16])
    assert rec.times_of(b"\x01a1") == _approx([0.0, 0.0, 0.02, 0.04, 0.06])


async def test_pause_holds_the_audio_and_resume_goes_on_after_the_buffered_part(
    clock: FakeClock, rec: Recorder, pacer_of: PacerOf
) -> None:
    pacer = pacer_of(0.04)
    for _ in range(10):
        pacer.add_audio("t1", b"\x01ab", BLOCK_S)
    await clock.advance(0.05)  # sent: blocks due by 0.09 s (5 blocks, 100 ms), 50 ms played
    assert len(rec.sent) == 5
    pacer.pause("t1")
    await clock.advance(1.0)
    assert len(rec.sent) == 5  # held
    assert pacer.heard_seconds("t1") == pytest.approx(0.05, abs=1e-9)  # the pause is not listening
    pacer.resume("t1")  # at 1.05 s; 50 ms still buffered at the client: the next block plays at 1.10
    await clock.advance(0.2)
    resumed = [at for at, _ in rec.sent[5:]]
    assert resumed == _approx([1.06, 1.08, 1.10, 1.12, 1.14])
