"""``aria bench turns``: turn-taking of the real voice pipeline, in real time.

Each item drives a fresh :class:`~aria.pipeline.voice.VoicePipeline` (as one connection of the server)
with the real Silero VAD (its min silence set to ``turn.pause_ms``, as the server does), the shared real
Smart Turn model, the echo guard, an oracle STT (:class:`~aria.bench.turns_corpus.OracleSTT`: the
figures measure turn-taking, not recognition), a fake LLM (300 ms to its first token) and a fake TTS
(espeak where the answer's echo must sound like speech). The person's speech is made at run time by
espeak (voices and rates vary) and fed in 32 ms blocks at real-time pace; the answer plays on a simulated
loudspeaker (:class:`~aria.bench.turns_corpus.SimulatedPlayback`). Items run a few at a time (staggered);
the report says how many at once, since the end-of-turn model is shared as on a server.

Sets: a pause mid-question (does it split the turn?), complete questions (end-of-turn latency; first
token with and without the preemptive answer), barge-ins at random points of an answer (words lost,
heard text), the answer's echo alone and with a person over it, backchannels and a cough over an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from aria.bench.turns_corpus import (
    BACKCHANNELS,
    BARGE_INS,
    COMPLETE,
    PAUSED,
    RATE,
    VOICES,
    Echo,
    Mic,
    OracleSTT,
    Script,
    SimulatedPlayback,
    Spoken,
    cough,
    norm_words,
    speak,
)
from aria.bench.turns_report import build_report, format_report
from aria.core.config import Settings
from aria.engines.base import TTS, VAD, Capabilities, EngineHealth, EngineKind, TurnDetector, TurnPrediction
from aria.engines.factory import create_engine
from aria.engines.tts.espeak import EspeakTTS
from aria.pipeline.echo import EchoGuard, EchoVerdict
from aria.pipeline.interruptions import InterruptionMode, InterruptionPolicy
from aria.pipeline.outputs import AudioOut, Output, PlaybackOut, ResponseDone, StageOut, TranscriptOut
from aria.pipeline.voice import PipelineConfig, VoicePipeline
from aria.testing.fakes import FakeLLM, FakeTTS
from aria.types import AudioChunk

__all__ = ["TurnsBench", "format_report"]

BLOCK = 512  # 32 ms at 16 kHz
QUESTION = "Tell me about Paris."
ANSWER = (
    "Paris is the capital of France. It lies on the Seine in the north of the country, "
    "and about two million people live in the city itself."
)
TTFT_S = 0.3


class _TimedDetector:
    """The shared end-of-turn model, timed per call (wall time, worker thread included)."""

    kind: ClassVar[EngineKind] = "turn"

    def __init__(self, inner: TurnDetector) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.capabilities: Capabilities = inner.capabilities
        self.ms: list[float] = []

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def health(self) -> EngineHealth:
        return await self.inner.health()

    async def predict(self, audio: Any, text: str | None = None) -> TurnPrediction:
        start = time.perf_counter()
        try:
            return await self.inner.predict(audio, text)
        finally:
            self.ms.append((time.perf_counter() - start) * 1000)


class _TimedGuard:
    """The echo guard, its ``process`` timed per microphone block while it is active."""

    def __init__(self, guard: EchoGuard, us: list[float]) -> None:
        self.guard, self.us = guard, us

    @property
    def active(self) -> bool:
        return self.guard.active

    def process(self, chunk: AudioChunk) -> EchoVerdict:
        start = time.perf_counter()
        verdict = self.guard.process(chunk)
        self.us.append((time.perf_counter() - start) * 1e6)
        return verdict


@dataclass
class _Run:
    """One item: the pipeline's outputs as they came (monotonic time, output)."""

    pipeline: VoicePipeline
    mic: Mic
    script: Script
    playback: SimulatedPlayback
    outputs: list[tuple[float, Output]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def finals(self) -> list[tuple[float, TranscriptOut]]:
        return [(t, o) for t, o in self.outputs if isinstance(o, TranscriptOut) and o.final and o.text]

    def done(self, turn_id: str) -> ResponseDone | None:
        return next(
            (o for _, o in self.outputs if isinstance(o, ResponseDone) and o.turn_id == turn_id), None
        )

    def first_token(self, turn_id: str) -> float | None:
        return next(
            (
                t
                for t, o in self.outputs
                if isinstance(o, StageOut) and o.turn_id == turn_id and o.stage == "llm_first_token"
            ),
            None,
        )

    async def until(self, ready: Callable[[], bool], deadline: float) -> None:
        while not ready() and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.001, deadline - time.monotonic()))


class TurnsBench:
    """See the module docstring. ``quick``: one or two items per set (a few seconds)."""

    def __init__(self, *, quick: bool = False, seed: int = 7, concurrency: int | None = None) -> None:
        self.quick, self.seed = quick, seed
        self.ttft_s = TTFT_S
        self.concurrency = concurrency or (8 if quick else 4)
        self.rng = np.random.default_rng(seed)
        settings = Settings()
        vad = settings.vad.model_copy(update={"backend": "silero", "min_silence_ms": settings.turn.pause_ms})
        self.settings = settings.model_copy(update={"vad": vad})
        self.guard_us: list[float] = []
        self.detector: _TimedDetector | None = None
        self.speech: list[Spoken] = []

    # -- rig ---------------------------------------------------------------------------------------

    async def _rig(
        self, *, tts: TTS, preemptive: bool = True, echo: tuple[float, float] | None = None
    ) -> _Run:
        vad = create_engine("vad", self.settings)
        assert isinstance(vad, VAD)
        await vad.start()
        script, mic = Script(), Mic(np.random.default_rng(int(self.rng.integers(1 << 30))))
        guard = EchoGuard(RATE, max_delay_s=0.5)
        path = Echo(10 ** (echo[0] / 20), echo[1], script) if echo is not None else None
        playback = SimulatedPlayback(guard, mic, path)
        t = self.settings.turn
        pipeline = VoicePipeline(
            llm=FakeLLM(FakeLLM.Config(replies=(ANSWER,), ttft_s=TTFT_S, token_interval_s=0.01)),
            stt=OracleSTT(script),
            vad=vad,
            tts=tts,
            config=PipelineConfig.from_settings(self.settings, preemptive=preemptive, voice=None),
            playback=playback,
            turn_detector=self.detector,
            interruption=InterruptionPolicy(
                InterruptionMode(t.interruption), min_words=t.min_interruption_words, resume_ms=t.resume_ms
            ),
            echo=_TimedGuard(guard, self.guard_us),
        )
        return _Run(pipeline, mic, script, playback)

    async def _drive(self, run: _Run, scene: Callable[[], Awaitable[None]]) -> None:
        """Feed the microphone in real time and collect outputs while ``scene`` runs."""

        async def drain() -> None:
            async for out in run.pipeline.outputs:
                run.outputs.append((time.monotonic(), out))
                if isinstance(out, AudioOut):
                    run.playback.add(out.turn_id, out.chunk)
                run.changed.set()

        async def feed() -> None:
            t0, i = time.monotonic(), 0
            while True:
                at = t0 + i * BLOCK / RATE
                await asyncio.sleep(max(0.0, at + BLOCK / RATE - time.monotonic()))
                run.pipeline.push_audio(AudioChunk(run.mic.block(at, BLOCK), RATE, timestamp=at))
                i += 1

        tasks = [asyncio.create_task(drain()), asyncio.create_task(feed())]
        try:
            await scene()
        finally:
            tasks[1].cancel()
            await run.pipeline.aclose()
            await run.playback.aclose()
            await asyncio.gather(*tasks, return_exceptions=True)
            if run.pipeline.vad is not None:
                await run.pipeline.vad.aclose()

    async def _say(self, text: str, index: int) -> Spoken:
        voice = VOICES[index % len(VOICES)]
        spoken = await speak(text, voice, int(self.rng.integers(140, 191)))
        self.speech.append(spoken)
        return spoken

    def _person(self, run: _Run, spoken: Spoken, at: float) -> None:
        run.mic.add(spoken.audio, at)
        run.script.add(spoken.words, at)

    # -- sets --------------------------------------------------------------------------------------

    async def _paused(self, index: int) -> dict[str, Any]:
        first, second = PAUSED[index % len(PAUSED)]
        pause_s = float(self.rng.uniform(0.4, 1.0))
        spoken = (await self._say(first, index)).then(pause_s, await self._say(second, index))
        run = await self._rig(tts=FakeTTS(FakeTTS.Config(ms_per_char=45)))
        last = norm_words(second)[-1]

        async def scene() -> None:
            at = time.monotonic() + 0.4
            self._person(run, spoken, at)
            end = at + spoken.duration
            await run.until(lambda: any(last in norm_words(o.text) for _, o in run.finals()), end + 4.0)

        await self._drive(run, scene)
        turns = {o.turn_id for _, o in run.finals()}
        finals = [o.text for _, o in run.finals()]
        return {"pause_s": pause_s, "turns": len(turns), "split": len(turns) > 1, "finals": finals}

    async def _complete(self, spoken: Spoken, preemptive: bool) -> dict[str, Any]:
        run = await self._rig(tts=FakeTTS(FakeTTS.Config(ms_per_char=45)), preemptive=preemptive)
        end: list[float] = []

        async def scene() -> None:
            at = time.monotonic() + 0.3
            self._person(run, spoken, at)
            end.append(at + spoken.duration)
            await run.until(
                lambda: bool(run.finals()) and run.first_token(run.finals()[0][1].turn_id) is not None,
                end[0] + 5.0,
            )

        await self._drive(run, scene)
        finals = run.finals()
        if not finals:
            return {"eot_ms": None, "first_token_ms": None, "turns": 0}
        t, out = finals[0]
        token = run.first_token(out.turn_id)
        return {
            "eot_ms": (t - end[0]) * 1000,
            "first_token_ms": None if token is None else (token - end[0]) * 1000,
            "turns": len({o.turn_id for _, o in finals}),
        }

    async def _over_answer(
        self, *, sound: Spoken | None, noise: bool, espeak_answer: bool, echo: tuple[float, float] | None
    ) -> dict[str, Any]:
        """An answer to a typed question plays; ``sound`` (or a cough) starts at a random point of it."""
        tts: TTS
        if espeak_answer:
            tts = EspeakTTS(EspeakTTS.Config(voice="en-us", rate_wpm=175, sample_rate=RATE))
            await tts.start()
        else:
            tts = FakeTTS(FakeTTS.Config(ms_per_char=45))
        run = await self._rig(tts=tts, echo=echo)
        offset = float(self.rng.uniform(0.7, 3.0))
        info: dict[str, Any] = {"offset_s": offset}

        async def scene() -> None:
            await asyncio.sleep(0.2)
            turn = run.pipeline.push_text(QUESTION)
            info["turn"] = turn.id
            await run.until(
                lambda: (
                    turn.id in run.playback.tracks and run.playback.tracks[turn.id].started_at is not None
                ),
                time.monotonic() + 5.0,
            )
            track = run.playback.tracks.get(turn.id)
            start = (
                track.started_at if track is not None and track.started_at is not None else time.monotonic()
            )
            at = start + offset
            if sound is not None:
                self._person(run, sound, at)
                last = norm_words(sound.text)[-1]
                info["end"] = at + sound.duration
                await run.until(
                    lambda: (
                        run.done(turn.id) is not None
                        and (
                            run.done(turn.id).interrupted is False  # type: ignore[union-attr]
                            or any(last in norm_words(o.text) for _, o in run.finals())
                        )
                    ),
                    at + sound.duration + 6.0,
                )
            else:
                if noise:
                    run.mic.add(cough(self.rng), at)
                await run.until(lambda: run.done(turn.id) is not None, at + 15.0)
            await asyncio.sleep(0.05)

        await self._drive(run, scene)
        done = run.done(info["turn"])
        info["interrupted"] = bool(done is not None and done.interrupted)
        info["finished"] = done is not None
        info["heard_text"] = done.text if done is not None else ""
        info["finals"] = [o.text for _, o in run.finals()]
        info["pauses"] = sum(
            1
            for _, o in run.outputs
            if isinstance(o, PlaybackOut) and o.turn_id == info["turn"] and o.action == "pause"
        )
        track = run.playback.tracks.get(info["turn"])
        if track is not None:
            played = track.base if track.cancelled else track.played(time.monotonic())
            info["played_words"] = [w for w, a, b in track.words if (a + max(b, a)) / 2 <= played]
        if isinstance(tts, EspeakTTS):
            await tts.aclose()
        return info

    # -- the run -----------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        detector = create_engine("turn", self.settings)
        assert detector is not None
        await detector.start()
        self.detector = _TimedDetector(detector)  # type: ignore[arg-type]
        n = (
            dict(paused=1, complete=1, barge=2, echo=1, over_echo=2, backchannel=2)
            if self.quick
            else dict(paused=8, complete=8, barge=8, echo=4, over_echo=8, backchannel=4)
        )
        gate = asyncio.Semaphore(self.concurrency)
        jobs: list[tuple[str, Awaitable[dict[str, Any]]]] = []
        completes = [await self._say(COMPLETE[i % len(COMPLETE)], i) for i in range(n["complete"])]
        jobs += [("paused", self._paused(i)) for i in range(n["paused"])]
        jobs += [("complete_pre", self._complete(s, True)) for s in completes]
        jobs += [("complete_nopre", self._complete(s, False)) for s in completes]
        for i in range(n["barge"]):
            sound = await self._say(BARGE_INS[i % len(BARGE_INS)], i)
            jobs.append(
                ("barge", self._over_answer(sound=sound, noise=False, espeak_answer=False, echo=None))
            )
        for _ in range(n["echo"]):
            echo = (float(self.rng.uniform(-20, -6)), float(self.rng.uniform(0.02, 0.2)))
            jobs.append(("echo", self._over_answer(sound=None, noise=False, espeak_answer=True, echo=echo)))
        for i in range(n["over_echo"]):
            sound = await self._say(BARGE_INS[(i + 3) % len(BARGE_INS)], i + 1)
            echo = (float(self.rng.uniform(-20, -6)), float(self.rng.uniform(0.02, 0.2)))
            jobs.append(
                ("over_echo", self._over_answer(sound=sound, noise=False, espeak_answer=True, echo=echo))
            )
        kinds = BACKCHANNELS if not self.quick else (BACKCHANNELS[1], BACKCHANNELS[3])
        for i in range(n["backchannel"]):
            word = kinds[i % len(kinds)]
            said = await self._say(word, i) if word is not None else None
            jobs.append(
                (
                    "backchannel",
                    self._over_answer(sound=said, noise=word is None, espeak_answer=False, echo=None),
                )
            )

        async def one(k: int, kind: str, job: Awaitable[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
            async with gate:
                await asyncio.sleep(0.37 * (k % self.concurrency))
                return kind, await job

        results = await asyncio.gather(*(one(k, kind, job) for k, (kind, job) in enumerate(jobs)))
        await detector.aclose()
        by: dict[str, list[dict[str, Any]]] = {}
        for kind, result in results:
            by.setdefault(kind, []).append(result)
        return self._report(by, time.monotonic() - started)

    # -- the report --------------------------------------------------------------------------------

    def _report(self, by: dict[str, list[dict[str, Any]]], seconds: float) -> dict[str, Any]:
        return build_report(self, by, seconds)
