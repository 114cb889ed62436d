"""A harness that runs one stage, or whole turns through a :class:`VoicePipeline`, and records what
came out and when.

::

    async with TurnHarness.with_fakes(llm=FakeLLM.Config(replies=("Hi there.",))) as h:
        await h.speak(speech_ms=400, silence_ms=300)
        done = await h.wait_for(ResponseDone)
        assert h.texts(done.turn_id) == "Hi there."
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from aria.core.events import Event, EventBus
from aria.pipeline.outputs import AudioOut, Output, StageOut, TextOut
from aria.pipeline.voice import PipelineConfig, VoicePipeline
from aria.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD
from aria.types import AudioChunk

__all__ = ["Received", "TurnHarness", "run_stage", "silence", "tone"]

T = TypeVar("T")
U = TypeVar("U")
OutT = TypeVar("OutT", bound=Output)


def tone(
    ms: int, *, sample_rate: int = 16000, frame_ms: int = 20, amplitude: float = 0.2
) -> list[AudioChunk]:
    """Frames of a 200 Hz tone standing in for speech (fake VADs and STTs only look at the level)."""
    step = sample_rate * frame_ms // 1000
    t = np.arange(step, dtype=np.float32) / sample_rate
    wave = (amplitude * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)
    return [AudioChunk(wave.copy(), sample_rate) for _ in range(ms // frame_ms)]


def silence(ms: int, *, sample_rate: int = 16000, frame_ms: int = 20) -> list[AudioChunk]:
    step = sample_rate * frame_ms // 1000
    return [AudioChunk(np.zeros(step, dtype=np.float32), sample_rate) for _ in range(ms // frame_ms)]


async def run_stage(
    stage: Callable[[AsyncIterable[T]], AsyncIterator[U]],
    inputs: Iterable[T],
    *,
    interval_s: float = 0.0,
) -> list[tuple[float, U]]:
    """Feed ``inputs`` (one every ``interval_s``) into a streaming stage; its outputs with arrival times."""

    async def source() -> AsyncIterator[T]:
        for index, item in enumerate(inputs):
            if index and interval_s:
                await asyncio.sleep(interval_s)
            yield item

    return [(time.monotonic(), out) async for out in stage(source())]


@dataclass(frozen=True, slots=True)
class Received:
    at: float
    output: Output


class TurnHarness:
    def __init__(self, pipeline: VoicePipeline) -> None:
        self.pipeline = pipeline
        self.received: list[Received] = []
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._collector: asyncio.Task[None] | None = None

    @classmethod
    def with_fakes(
        cls,
        *,
        vad: FakeVAD.Config | None = None,
        stt: FakeSTT.Config | None = None,
        llm: FakeLLM.Config | None = None,
        tts: FakeTTS.Config | None = None,
        config: PipelineConfig | None = None,
        bus: EventBus | None = None,
        **pipeline_kw: Any,
    ) -> TurnHarness:
        pipeline = VoicePipeline(
            vad=FakeVAD(vad),
            stt=FakeSTT(stt),
            llm=FakeLLM(llm),
            tts=FakeTTS(tts),
            bus=bus,
            config=config,
            **pipeline_kw,
        )
        return cls(pipeline)

    async def __aenter__(self) -> TurnHarness:
        self._events_sub = self.pipeline.bus.subscribe(self.events.append, name="harness")
        self._collector = asyncio.create_task(self._collect(), name="harness-collector")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipeline.aclose()
        if self._collector is not None:
            await self._collector
        await self._events_sub.aclose()

    async def _collect(self) -> None:
        async for out in self.pipeline.outputs:
            self.received.append(Received(time.monotonic(), out))
            async with self._changed:
                self._changed.notify_all()

    # -- driving -----------------------------------------------------------------------------------

    async def feed(self, frames: Iterable[AudioChunk], *, realtime: bool = False) -> float:
        """Push frames (stamped now), yielding to the loop between them; returns the last push time."""
        last = time.monotonic()
        for frame in frames:
            if realtime:
                await asyncio.sleep(frame.duration)
            stamped = AudioChunk(frame.data, frame.sample_rate, frame.channels, time.monotonic())
            last = stamped.timestamp
            self.pipeline.push_audio(stamped)
            await asyncio.sleep(0)
        return last

    async def speak(self, speech_ms: int = 400, silence_ms: int = 300, *, realtime: bool = False) -> float:
        return await self.feed([*tone(speech_ms), *silence(silence_ms)], realtime=realtime)

    # -- observing ---------------------------------------------------------------------------------

    async def wait_for(
        self,
        kind: type[OutT],
        predicate: Callable[[OutT], bool] = lambda _: True,
        *,
        within: float = 5.0,
        after: int = 0,
    ) -> OutT:
        """The first output of ``kind`` (from index ``after``) matching ``predicate``."""

        scanned = after

        def find() -> OutT | None:
            nonlocal scanned
            while scanned < len(self.received):
                item = self.received[scanned].output
                scanned += 1
                if isinstance(item, kind) and predicate(item):
                    return item
            return None

        async with asyncio.timeout(within), self._changed:
            while (found := find()) is None:
                await self._changed.wait()
        return found

    def outputs(self, kind: type[OutT], turn_id: str | None = None) -> list[OutT]:
        return [
            r.output
            for r in self.received
            if isinstance(r.output, kind)
            and (turn_id is None or getattr(r.output, "turn_id", None) == turn_id)
        ]

    def arrival(self, predicate: Callable[[Output], bool]) -> float | None:
        return next((r.at for r in self.received if predicate(r.output)), None)

    def texts(self, turn_id: str) -> str:
        return "".join(o.text for o in self.outputs(TextOut, turn_id)).strip()

    def audio_frames(self, turn_id: str) -> list[AudioOut]:
        return self.outputs(AudioOut, turn_id)

    def kinds(self, turn_id: str | None = None) -> list[str]:
        """Output type names in arrival order (consecutive repeats collapsed), for order assertions."""
        names: list[str] = []
        for r in self.received:
            if turn_id is not None and getattr(r.output, "turn_id", turn_id) != turn_id:
                continue
            if isinstance(r.output, StageOut):  # stages are for observers: not part of the order
                continue
            name = type(r.output).__name__
            if not names or names[-1] != name:
                names.append(name)
        return names
