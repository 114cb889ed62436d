"""The audio pacer sends answer audio at real-time pace with a bounded lead, and knows what was heard."""

from __future__ import annotations

import asyncio
import time

from aria.server.pacing import AudioPacer

BLOCK_S = 0.02


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, object]] = []
        self.t0 = time.monotonic()

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append((time.monotonic() - self.t0, data))

    async def send_text(self, text: str) -> None:
        self.sent.append((time.monotonic() - self.t0, text))


async def run_pacer(pacer: AudioPacer) -> asyncio.Task[None]:
    return asyncio.create_task(pacer.run())


async def test_audio_is_paced_with_a_bounded_lead_and_done_follows_the_audio() -> None:
    rec = Recorder()
    pacer = AudioPacer(rec.send_bytes, rec.send_text, lead_s=0.1)
    task = await run_pacer(pacer)
    for i in range(25):  # 0.5 s of audio
        pacer.add_audio("t1", bytes([1, i]), BLOCK_S)
    assert pacer.add_after_audio("t1", "done")
    await asyncio.sleep(0.6)
    task.cancel()
    audio = [(t, d) for t, d in rec.sent if isinstance(d, bytes)]
    assert [d for _, d in audio] == [bytes([1, i]) for i in range(25)]  # in order, nothing lost
    assert rec.sent[-1][1] == "done"
    for index, (at, _) in enumerate(audio):
        due = index * BLOCK_S  # when the block starts playing at the client
        assert at >= due - 0.1 - 0.01, (index, at)  # never more than the lead ahead
        assert at <= due + 0.08, (index, at)  # and not late either (scheduling slack)
    # The last block goes out ~lead before it plays; response_done right behind it.
    assert 0.3 <= rec.sent[-1][0] <= 0.5


async def test_cancel_drops_unsent_audio_and_heard_is_estimated_from_time() -> None:
    rec = Recorder()
    pacer = AudioPacer(rec.send_bytes, rec.send_text, lead_s=0.05)
    task = await run_pacer(pacer)
    for _ in range(50):  # 1 s
        pacer.add_audio("t1", b"\x01ab", BLOCK_S)
    await asyncio.sleep(0.2)
    heard = pacer.heard_seconds("t1")
    assert heard is not None
    assert 0.12 <= heard <= 0.3
    pacer.cancel("t1")
    sent_at_cancel = len(rec.sent)
    await asyncio.sleep(0.1)
    task.cancel()
    assert len(rec.sent) == sent_at_cancel  # nothing after the cancel
    assert sent_at_cancel < 20
    assert not pacer.pending("t1")
    assert not pacer.add_after_audio("t1", "done")  # nothing pending: the caller sends it at once


async def test_client_reports_refine_what_was_heard() -> None:
    rec = Recorder()
    pacer = AudioPacer(rec.send_bytes, rec.send_text, lead_s=0.5)
    task = await run_pacer(pacer)
    for _ in range(20):
        pacer.add_audio("t1", b"\x01ab", BLOCK_S)
    await asyncio.sleep(0.05)
    pacer.report("t1", 30.0)
    assert pacer.heard_seconds("t1") == 0.03
    assert pacer.heard_seconds("unknown") is None
    task.cancel()


async def test_a_second_turn_plays_after_the_first() -> None:
    rec = Recorder()
    pacer = AudioPacer(rec.send_bytes, rec.send_text, lead_s=0.02)
    task = await run_pacer(pacer)
    for _ in range(5):
        pacer.add_audio("t1", b"\x01a1", BLOCK_S)
    for _ in range(5):
        pacer.add_audio("t2", b"\x01a2", BLOCK_S)
    await asyncio.sleep(0.3)
    task.cancel()
    times = [t for t, d in rec.sent if d == b"\x01a2"]
    assert times[0] >= 5 * BLOCK_S - 0.02 - 0.01  # t2 starts when t1's audio ends
