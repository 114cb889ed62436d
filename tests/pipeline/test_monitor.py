"""The active monitor on real JPEG frames, checked by a test model that really looks at the pixels.

Frames are 320x240 grey "rooms" drawn with Pillow, some with a big red square on the left or the right.
:class:`EyeVLM` implements the LLM protocol: it decodes the attached JPEG and answers "YES, a bright red
square is in view on the left." (or right) when it sees one, else "NO, an empty grey room.". A fake clock
drives sampling, cooldowns, duplicate windows and back-off, so nothing sleeps for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aria.core.channels import Channel, Overflow
from aria.engines.base import LLM, Capabilities, EngineHealth, EngineKind, LLMChunk, LLMRequest
from aria.errors import EngineError, EngineTimeout
from aria.pipeline.monitor import Alert, Monitor, MonitorConfig, Verdict, parse_answer
from aria.testing import tokenize
from aria.types import GeneratedToken, ImageFrame
from tests.server.conftest import free_port

CONDITION = "a red square is in view"
Side = Literal["left", "right"]
EMPTY = "NO, an empty grey room."


def room(square: Side | None = None, *, shade: int = 128, t: float = 0.0) -> ImageFrame:
    """A JPEG camera frame: a grey room (``shade``), with a 120x120 red square on one side or none.
    Equal arguments give byte-identical frames (a still camera); each call is a new frame."""
    image = Image.new("RGB", (320, 240), (shade, shade, shade))
    if square is not None:
        left = 20 if square == "left" else 180
        ImageDraw.Draw(image).rectangle((left, 60, left + 119, 179), fill=(220, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return ImageFrame(buffer.getvalue(), format="JPEG", width=320, height=240, timestamp=t)


def seen(square: Side) -> str:
    return f"a bright red square is in view on the {square}."


class EyeVLM:
    """A vision-language model for tests that looks at the image: red pixels over 5% of the frame are
    "a bright red square", on the side where their centre is. It records requests, counts calls in
    flight, and can be told to fail (``error``), hang, wait for ``gate``, or give ``answers`` in turn."""

    kind: ClassVar[EngineKind] = "llm"
    name = "eye"
    capabilities = Capabilities(vision=True)

    def __init__(self) -> None:
        self.requests: list[LLMRequest] = []
        self.active = 0
        self.max_active = 0
        self.error: BaseException | None = None
        self.hang = False
        self.gate: asyncio.Event | None = None
        self.delay_s = 0.0
        self.answers: list[str] = []
        #: Set when a call starts (clear it to wait for the next).
        self.called = asyncio.Event()

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True)

    @staticmethod
    def look(frame: ImageFrame) -> str:
        assert isinstance(frame.data, bytes)
        assert frame.format == "JPEG"
        pixels = np.asarray(Image.open(io.BytesIO(frame.data)).convert("RGB")).astype(np.int16)
        red = (pixels[..., 0] > 160) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
        if red.mean() < 0.05:
            return EMPTY
        side: Side = "left" if np.nonzero(red)[1].mean() < pixels.shape[1] / 2 else "right"
        return f"YES, {seen(side)}"

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.requests.append(request)
        self.called.set()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.hang:
                await asyncio.Event().wait()
            if self.error is not None:
                raise self.error
            (image,) = request.images
            answer = self.answers.pop(0) if self.answers else self.look(image)
            for index, token in enumerate(tokenize(answer)):
                yield GeneratedToken(token, token_id=index)
        finally:
            self.active -= 1

    async def complete(self, request: LLMRequest) -> str:
        return "".join([c.text async for c in self.stream(request) if isinstance(c, GeneratedToken)])

    def checked(self) -> list[ImageFrame]:
        return [request.images[0] for request in self.requests]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    """A monitor with an :class:`EyeVLM`, a fake clock, and everything its callbacks reported."""

    monitor: Monitor
    vlm: EyeVLM
    clock: Clock
    alerts: list[Alert] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def feed(self, *frames: ImageFrame, at: float | None = None, step: float = 0.0) -> None:
        """Submit frames one by one, each at ``at`` (then ``step`` seconds apart), letting each check end."""
        for frame in frames:
            if at is not None:
                self.clock.now = 1000.0 + at
                at += step
            self.monitor.submit(frame)
            await self.monitor.drain()

    def alerted(self) -> list[tuple[str, float]]:
        return [(alert.description, alert.frame_timestamp) for alert in self.alerts]


def rig(condition: str | None = CONDITION, session_id: str | None = None, **options: Any) -> Rig:
    options = {"every_s": 0.0, "cooldown_s": 0.0, "dedup_s": 0.0, **options}
    vlm, clock = EyeVLM(), Clock()
    alerts: list[Alert] = []
    verdicts: list[Verdict] = []
    errors: list[BaseException] = []
    monitor = Monitor(
        vlm,
        MonitorConfig(**options),
        condition=condition,
        on_alert=alerts.append,
        on_check=verdicts.append,
        on_error=errors.append,
        session_id=session_id,
        clock=clock,
    )
    return Rig(monitor, vlm, clock, alerts, verdicts, errors)


# -- one check --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("YES, a red square.", (True, "a red square.")),
        ("  **Yes.** Someone is at the door", (True, "Someone is at the door")),
        ("no, nothing there.", (False, "nothing there.")),
        ("Answer: NO - empty room", (False, "empty room")),
        ("NO\n\nThe room\n is empty.", (False, "The room is empty.")),
        ("`YES`", (True, "")),
        ("Yesterday a man came in", (None, "Yesterday a man came in")),
        ("I cannot tell.", (None, "I cannot tell.")),
        ("", (None, "")),
    ],
)
def test_parse_answer(answer: str, expected: tuple[bool | None, str]) -> None:
    assert parse_answer(answer) == expected


async def test_a_check_sends_the_frame_and_the_condition_and_reads_the_answer() -> None:
    r = rig()
    assert isinstance(r.vlm, LLM)
    red, grey = room("left", t=5.0), room(t=6.0)
    yes, no = await r.monitor.check(red), await r.monitor.check(grey)
    assert (yes.holds, yes.description, yes.frame_timestamp) == (True, seen("left"), 5.0)
    assert (no.holds, no.description, no.raw) == (False, "an empty grey room.", EMPTY)
    assert yes.latency_ms >= 0.0
    request = r.vlm.requests[0]
    assert request.images == (red,)
    assert r.vlm.requests[1].images == (grey,)
    assert len(request.messages) == 1
    assert request.messages[0].role == "user"
    assert CONDITION in request.last_user_text
    assert "YES or NO" in request.last_user_text
    assert request.temperature <= 0.2
    assert request.max_tokens == 60
    # check() is a plain look: no alert, no edge state, no check counted
    assert r.alerts == []
    assert r.monitor.stats.checks == 0
    other = await r.monitor.check(red, condition="  a dog sleeps ")
    assert other.holds
    assert "a dog sleeps" in r.vlm.requests[2].last_user_text


async def test_an_unparseable_answer_counts_as_not_holding(caplog: pytest.LogCaptureFixture) -> None:
    r = rig(change_gated=False)
    r.vlm.answers = ["I am not sure what I see.", "**Yes** — a red square, left side"]
    with caplog.at_level(logging.DEBUG, logger="aria.pipeline.monitor"):
        await r.feed(room("left"), room("left"))
    assert [v.holds for v in r.verdicts] == [False, True]
    assert r.monitor.stats.unparsed == 1
    assert [a.description for a in r.alerts] == ["a red square, left side"]
    assert any("I am not sure" in rec.getMessage() and rec.levelno == logging.DEBUG for rec in caplog.records)


# -- alerts: edges, re-arming, cooldown, duplicates -------------------------------------------------


async def test_alerts_fire_on_rising_edges_only() -> None:
    r = rig(change_gated=False)
    script: list[Side | None] = [None, "left", "left", "right", None, "left", None, None, "right"]
    await r.feed(*(room(side, t=float(i)) for i, side in enumerate(script)))
    assert [v.holds for v in r.verdicts] == [side is not None for side in script]
    assert r.alerted() == [(seen("left"), 1.0), (seen("left"), 5.0), (seen("right"), 8.0)]
    assert all(alert.condition == CONDITION for alert in r.alerts)
    assert len({alert.id for alert in r.alerts}) == 3
    stats = r.monitor.stats
    assert (stats.frames, stats.checks, stats.holds, stats.alerts) == (9, 9, 5, 3)
    assert stats.suppressed_cooldown == stats.suppressed_duplicate == 0


async def test_rearming_needs_consecutive_not_holding_checks() -> None:
    r = rig(change_gated=False, rearm_after=2)
    script: list[Side | None] = ["left", None, "left", None, None, "right", None, "right"]
    await r.feed(*(room(side, t=float(i)) for i, side in enumerate(script)))
    assert r.alerted() == [(seen("left"), 0.0), (seen("right"), 5.0)]


async def test_cooldown_suppresses_a_new_edge_and_counts_it() -> None:
    r = rig(change_gated=False, cooldown_s=30.0)
    await r.feed(room("left", t=0), at=0)
    await r.feed(room(t=5), at=5)
    await r.feed(room("right", t=10), at=10)  # a new edge 10 s after the alert: suppressed
    assert r.monitor.stats.suppressed_cooldown == 1
    assert len(r.alerts) == 1
    await r.feed(room("right", shade=140, t=40), at=40)  # still holding: that edge is spent
    await r.feed(room(t=45), at=45)
    await r.feed(room("left", t=50), at=50)  # 50 s after the alert: delivered
    assert r.alerted() == [(seen("left"), 0.0), (seen("left"), 50.0)]
    assert r.monitor.stats.suppressed_cooldown == 1


async def test_the_same_description_within_dedup_s_is_suppressed() -> None:
    r = rig(change_gated=False, dedup_s=300.0)
    await r.feed(room("left", t=0), at=0)
    await r.feed(room(t=10), at=10)
    r.vlm.answers = ["yes —  A bright RED square is in view, on the left!"]  # same, once normalised
    await r.feed(room("left", t=20), at=20)
    assert r.monitor.stats.suppressed_duplicate == 1
    await r.feed(room(t=30), room("right", t=40), room(t=50), at=30, step=10)  # new description
    await r.feed(room("right", t=100), room(t=110), at=100, step=10)  # duplicate of the one at 40
    await r.feed(room("right", t=345), at=345)  # 305 s later: no longer a duplicate
    assert r.alerted() == [(seen("left"), 0.0), (seen("right"), 40.0), (seen("right"), 345.0)]
    assert r.monitor.stats.suppressed_duplicate == 2


async def test_a_failing_callback_does_not_stop_the_monitor(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[Alert] = []

    def broken(alert: Alert) -> None:
        calls.append(alert)
        raise RuntimeError("subscriber bug")

    vlm = EyeVLM()
    config = MonitorConfig(every_s=0, cooldown_s=0, dedup_s=0, change_gated=False)
    async with Monitor(vlm, config, condition=CONDITION, on_alert=broken) as monitor:
        with caplog.at_level(logging.ERROR, logger="aria.pipeline.monitor"):
            for side in ("left", None, "right"):
                monitor.submit(room(side))
                await monitor.drain()
    assert [a.description for a in calls] == [seen("left"), seen("right")]
    assert monitor.stats.checks == 3
    assert sum("callback" in rec.getMessage() for rec in caplog.records) == 2


# -- gating and sampling ----------------------------------------------------------------------------


async def test_unchanged_frames_are_not_sent_to_the_model() -> None:
    r = rig()
    frames = [room(), room(), room(), room("left"), room("left"), room("left"), room(), room()]
    await r.feed(*frames)
    assert [f.frame_id for f in r.vlm.checked()] == [
        frames[0].frame_id,
        frames[3].frame_id,
        frames[6].frame_id,
    ]
    assert r.monitor.stats.skipped_unchanged == 5
    assert len(r.alerts) == 1


async def test_change_threshold_reaches_the_detector() -> None:
    r = rig(change_threshold=0.3)  # the red square changes the grey level by about 0.03: not enough
    frames = [room(), room("left"), room(shade=255)]
    await r.feed(*frames)
    assert r.vlm.checked() == [frames[0], frames[2]]
    assert r.monitor.stats.skipped_unchanged == 1


async def test_sampling_every_n_frames() -> None:
    r = rig(change_gated=False, every_frames=3)
    frames = [room(shade=100 + 5 * i) for i in range(10)]
    await r.feed(*frames)
    assert r.vlm.checked() == [frames[i] for i in (0, 3, 6, 9)]
    assert r.monitor.stats.skipped_sampling == 6


async def test_sampling_every_s_seconds_by_the_clock() -> None:
    r = rig(change_gated=False, every_s=2.0)
    frames = [room(shade=100 + 5 * i) for i in range(11)]
    await r.feed(*frames, at=0.0, step=0.5)
    assert r.vlm.checked() == [frames[i] for i in (0, 4, 8)]
    assert r.monitor.stats.skipped_sampling == 8


async def test_both_sampling_rules_apply_together() -> None:
    r = rig(change_gated=False, every_s=2.0, every_frames=3)
    frames = [room(shade=100 + 5 * i) for i in range(10)]
    await r.feed(*frames, at=0.0, step=1.0)  # time alone: 0, 2, 4, 6, 8; frames alone: 0, 3, 6, 9
    assert r.vlm.checked() == [frames[i] for i in (0, 3, 6, 9)]


async def test_without_a_condition_frames_are_ignored() -> None:
    r = rig(condition="   ")
    assert r.monitor.condition is None
    await r.feed(room("left"), room(), room("right"))
    assert r.vlm.requests == []
    assert r.alerts == []
    assert r.monitor.stats.skipped_no_condition == 3
    with pytest.raises(ValueError, match="condition"):
        await r.monitor.check(room())
    r.monitor.set_condition("  someone is in the room  ")
    condition: str | None = r.monitor.condition
    assert condition == "someone is in the room"
    await r.feed(room())
    assert "someone is in the room" in r.vlm.requests[0].last_user_text


async def test_set_condition_starts_afresh() -> None:
    r = rig(cooldown_s=30.0, dedup_s=300.0, every_s=5.0)
    await r.feed(room("left", t=0), at=0)
    await r.feed(room("left", t=1), at=1)  # sampled out
    await r.feed(room("left", t=6), at=6)  # unchanged
    assert len(r.vlm.requests) == 1
    assert len(r.alerts) == 1
    r.monitor.set_condition("something red shows up")
    await r.feed(room("left", t=7), at=7)  # same scene, same description, 7 s later: checked and alerted
    assert len(r.vlm.requests) == 2
    assert "something red shows up" in r.vlm.requests[1].last_user_text
    assert [(a.condition, a.frame_timestamp) for a in r.alerts] == [
        (CONDITION, 0.0),
        ("something red shows up", 7.0),
    ]
    r.monitor.set_condition(None)
    await r.feed(room("right", t=20), at=20)
    assert len(r.vlm.requests) == 2


async def test_a_verdict_for_a_replaced_condition_is_dropped() -> None:
    r = rig()
    r.vlm.gate = asyncio.Event()
    r.monitor.submit(room("left"))
    await asyncio.wait_for(r.vlm.called.wait(), 2.0)
    r.monitor.set_condition("a blue circle is in view")
    r.vlm.gate.set()
    await r.monitor.drain()
    assert r.verdicts == []
    assert r.alerts == []
    await r.feed(room("left"))  # the detector was reset: the same scene is checked for the new condition
    assert len(r.verdicts) == 1
    assert "a blue circle" in r.vlm.requests[1].last_user_text


# -- a failing model --------------------------------------------------------------------------------


async def test_a_failing_model_is_backed_off_and_recovers() -> None:
    r = rig(backoff_s=2.0, backoff_max_s=5.0)
    r.vlm.error = EngineError("model crashed", engine="eye")
    red = [room("left", t=float(i)) for i in range(9)]
    await r.feed(red[0], at=0)  # fails: pause 2 s
    await r.feed(red[1], at=1.9)
    await r.feed(red[2], at=2.0)  # same scene, checked again after the pause: fails, pause 4 s
    await r.feed(red[3], at=5.9)
    await r.feed(red[4], at=6.0)  # fails, pause min(8, 5) = 5 s
    await r.feed(red[5], at=10.9)
    assert [f.timestamp for f in r.vlm.checked()] == [0.0, 2.0, 4.0]
    assert r.monitor.stats.errors == 3
    assert r.monitor.stats.skipped_backoff == 3
    assert r.errors == [r.vlm.error] * 3
    assert r.alerts == []
    r.vlm.error = None
    await r.feed(red[6], at=11.0)  # the model is back
    assert r.alerted() == [(seen("left"), 6.0)]
    r.vlm.error = EngineError("again", engine="eye")
    await r.feed(room(t=20), at=20)  # one failure after a success: the pause starts again at 2 s
    await r.feed(room(t=21.9), at=21.9)
    await r.feed(room(t=22), at=22)
    assert [f.timestamp for f in r.vlm.checked()][-2:] == [20.0, 22.0]
    assert r.monitor.stats.errors == 5


async def test_a_hanging_model_times_out_and_the_loop_goes_on() -> None:
    r = rig(check_timeout_s=0.05, backoff_s=1.0)
    r.vlm.hang = True
    started = time.perf_counter()
    await r.feed(room("left", t=0), at=0)
    assert time.perf_counter() - started < 1.0
    assert len(r.errors) == 1
    assert isinstance(r.errors[0], EngineTimeout)
    assert "0.05 s" in str(r.errors[0])
    assert r.vlm.active == 0
    r.vlm.hang = False
    await r.feed(room("left", t=1), at=1)
    assert r.alerted() == [(seen("left"), 1.0)]
    assert r.monitor.stats.errors == 1


# -- no pile-up -------------------------------------------------------------------------------------


async def test_checks_never_overlap_and_the_latest_frame_is_checked_next() -> None:
    r = rig()
    r.vlm.gate = asyncio.Event()
    first = room(shade=100)
    r.monitor.submit(first)
    await asyncio.wait_for(r.vlm.called.wait(), 2.0)
    flood = [room(shade=110 + 5 * i) for i in range(9)]
    for frame in flood:
        r.monitor.submit(frame)
        await asyncio.sleep(0)
    assert r.monitor.busy
    assert len(r.vlm.requests) == 1
    r.vlm.gate.set()
    await r.monitor.drain()
    assert r.vlm.checked() == [first, flood[-1]]
    assert r.vlm.max_active == 1
    assert r.monitor.stats.superseded == 8


async def test_run_reads_a_frame_channel_and_checks_never_pile_up() -> None:
    r = rig()
    r.vlm.gate = asyncio.Event()
    frames: Channel[ImageFrame] = Channel(2, Overflow.DROP_OLDEST, name="frames")
    sent = [room("left" if 8 <= i < 16 else None, shade=60 + 6 * i, t=float(i)) for i in range(24)]

    async def camera() -> None:
        for frame in sent:
            await frames.send(frame)
            await asyncio.sleep(0)
        frames.close()

    async def received() -> AsyncIterator[ImageFrame]:
        async for frame in frames:
            yield frame
        assert r.vlm.gate is not None
        r.vlm.gate.set()  # the first check ends only once every frame was read (or dropped)

    async with asyncio.TaskGroup() as group:
        group.create_task(camera())
        group.create_task(r.monitor.run(received()))
    stats = r.monitor.stats
    assert stats.frames + frames.stats.dropped == len(sent)
    assert r.vlm.checked() == [sent[0], sent[-1]]  # the first frame, then the latest one
    assert r.vlm.max_active == 1
    assert not r.monitor.busy
    assert stats.superseded == stats.frames - 2
    assert stats.skipped_unchanged == 0


async def test_cancelling_run_stops_the_check_in_flight() -> None:
    r = rig()
    r.vlm.hang = True
    frames: Channel[ImageFrame] = Channel(2, Overflow.DROP_OLDEST)
    await frames.send(room("left"))
    task = asyncio.create_task(r.monitor.run(frames))
    await asyncio.wait_for(r.vlm.called.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert r.vlm.active == 0
    assert not r.monitor.busy
    assert r.monitor.stats.errors == 0


# -- webhook ----------------------------------------------------------------------------------------


class WebhookSink:
    """A tiny HTTP/1.1 server on 127.0.0.1 that records POSTed JSON bodies; ``hold`` delays answers."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str], Any]] = []
        self.arrivals: asyncio.Queue[None] = asyncio.Queue()
        self.hold: asyncio.Event | None = None
        self.port = 0

    async def __aenter__(self) -> WebhookSink:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, _ = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append((method, target, headers, json.loads(body)))
            self.arrivals.put_nowait(None)
            if self.hold is not None:
                await self.hold.wait()
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_alerts_are_posted_to_the_webhook_without_blocking_the_loop() -> None:
    async with WebhookSink() as sink:
        sink.hold = asyncio.Event()
        url = f"http://127.0.0.1:{sink.port}/hooks/aria?token=abc"
        r = rig(change_gated=False, webhook_url=url, session_id="session-1")
        await r.feed(room("left", t=1.0))
        await asyncio.wait_for(sink.arrivals.get(), 2.0)
        # the first post is still unanswered, and the monitor goes on checking and alerting
        await r.feed(room(t=2.0), room("right", t=3.0))
        assert len(r.alerts) == 2
        assert r.monitor.stats.checks == 3
        await asyncio.wait_for(sink.arrivals.get(), 2.0)
        assert r.monitor.stats.webhook_posts == 0
        sink.hold.set()
        await r.monitor.aclose()
    assert r.monitor.stats.webhook_posts == 2
    assert r.monitor.stats.webhook_failures == 0
    bodies = {body["alert_id"]: body for _, _, _, body in sink.received}
    for alert in r.alerts:
        assert bodies[alert.id] == {
            "condition": CONDITION,
            "description": alert.description,
            "at": alert.at,
            "alert_id": alert.id,
            "session_id": "session-1",
        }
        assert abs(alert.at - time.time()) < 60
    method, target, headers, _ = sink.received[0]
    assert (method, target, headers["content-type"]) == ("POST", "/hooks/aria?token=abc", "application/json")


async def test_a_dead_webhook_does_not_disturb_alerts(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?secret=s3cr3t"
    r = rig(change_gated=False, webhook_url=url)
    with caplog.at_level(logging.WARNING, logger="aria.pipeline.monitor"):
        await r.feed(room("left"), room(), room("right"))
        await r.monitor.aclose()
    assert [a.description for a in r.alerts] == [seen("left"), seen("right")]
    assert r.monitor.stats.webhook_failures == 2
    assert r.monitor.stats.webhook_posts == 0
    messages = [rec.getMessage() for rec in caplog.records if "webhook" in rec.getMessage()]
    assert len(messages) == 2
    assert all("s3cr3t" not in m for m in messages)


async def test_aclose_does_not_wait_past_the_webhook_timeout() -> None:
    async with WebhookSink() as sink:
        sink.hold = asyncio.Event()
        r = rig(webhook_url=f"http://127.0.0.1:{sink.port}/", webhook_timeout_s=0.2)
        await r.feed(room("left"))
        started = time.perf_counter()
        await r.monitor.aclose()
        assert time.perf_counter() - started < 1.5
    assert len(r.alerts) == 1
    assert r.monitor.stats.webhook_failures == 1
    r.monitor.submit(room("right"))  # closed: ignored
    assert len(r.vlm.requests) == 1
    assert not r.monitor.busy


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"webhook_url": "ftp://example.com/hook"}, "http:// or https://"),
        ({"webhook_url": "example.com/hook"}, "http:// or https://"),
        ({"webhook_url": "http://"}, "with a host"),
        ({"rearm_after": 0}, "rearm_after"),
        ({"every_s": -1.0}, "every_s"),
        ({"check_timeout_s": 0.0}, "check_timeout_s"),
        ({"change_threshold": 0.0}, "change_threshold"),
    ],
)
def test_invalid_config_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MonitorConfig(**options)
