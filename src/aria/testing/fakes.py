"""Fake engines driven by scripted timelines: fixed delays, fixed outputs, injectable failures.

Each fake records what it was asked (``requests``) and how long it spent in its own scripted waits
(``waits``: label, start, end on the monotonic clock), so a harness can subtract the fakes' time from a
measured latency and what remains is the pipeline's own overhead. Each record list keeps the latest
:data:`MAX_RECORDS` entries (a long soak measures the server's memory, not the fakes').

Failures are scripted with :class:`Fault`: which calls fail (1-based), after how many items, whether
they raise (retryable or not) or hang (to exercise timeouts).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aria.engines.base import (
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
    LLMChunk,
    LLMRequest,
    VADEvent,
    VADEventType,
)
from aria.errors import EngineCrashed, EngineError
from aria.types import (
    AudioChunk,
    GeneratedToken,
    ImageFrame,
    ToolCall,
    Transcription,
    VisionEmbedding,
    WordMark,
)

__all__ = ["MAX_RECORDS", "FakeLLM", "FakeSTT", "FakeTTS", "FakeVAD", "FakeVision", "Fault", "tokenize"]

_R = TypeVar("_R")


class Fault(BaseModel):
    """A scripted failure. ``calls`` are 1-based call numbers that fail (empty: every call when
    ``always``); ``after`` items are produced first; ``hang`` waits forever instead of raising."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    calls: tuple[int, ...] = ()
    always: bool = False
    after: int = 0
    hang: bool = False
    retryable: bool = True
    message: str = "injected failure"
    #: Fail as a crash (``EngineCrashed``): the engine stays broken, its health says so, until it is
    #: replaced by a fresh one.
    crash: bool = False

    def hits(self, call: int) -> bool:
        return self.always or call in self.calls


class _FakeBase:
    name: str = "fake"
    capabilities: Capabilities = Capabilities()

    def __init__(self) -> None:
        self.started = False
        self.closed = False
        self.crashed = False
        self.calls = 0
        self.waits: list[tuple[str, float, float]] = []

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True

    async def health(self) -> EngineHealth:
        if self.crashed:
            return EngineHealth(ok=False, detail="fake: crashed")
        return EngineHealth(ok=not self.closed, detail="fake")

    async def _wait(self, label: str, seconds: float) -> None:
        if seconds <= 0:
            return
        start = time.monotonic()
        try:
            await asyncio.sleep(seconds)
        finally:
            _record(self.waits, (label, start, time.monotonic()))

    async def _maybe_fail(self, fault: Fault | None, produced: int) -> None:
        if fault is None or not fault.hits(self.calls) or produced != fault.after:
            return
        if fault.hang:
            await asyncio.Event().wait()
        if fault.crash:
            self.crashed = True
            raise EngineCrashed(fault.message, engine=self.name)
        raise EngineError(fault.message, engine=self.name, retryable=fault.retryable)


#: How many entries each record list of a fake keeps (the oldest go first).
MAX_RECORDS = 256


def _record(records: list[_R], item: _R) -> None:
    records.append(item)
    if len(records) > MAX_RECORDS:
        del records[: len(records) - MAX_RECORDS]


def tokenize(text: str) -> list[str]:
    """Word tokens that keep their leading space, like most LLM tokenizers: ``["Hi", " there."]``."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])] if text else []


class FakeVAD(_FakeBase):
    """Speech is any frame whose peak exceeds ``level``; start/end after the configured frame counts."""

    kind: ClassVar[EngineKind] = "vad"

    class Config(EngineConfig):
        level: float = 0.01
        start_frames: int = 1
        end_frames: int = 10
        sample_rate: int = 16000

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self.config = config or self.Config()
        self.capabilities = Capabilities(sample_rate=self.config.sample_rate)
        self.reset()

    def reset(self) -> None:
        self._speaking = False
        self._run = 0

    def process(self, chunk: AudioChunk) -> VADEvent | None:
        self.calls += 1
        data = chunk.data
        level = self.config.level * 32768.0 if data.dtype == np.int16 else self.config.level
        # The peak over a memoryview: for one small block, cheaper than NumPy's reductions (whose code
        # is cold when a block comes after a quiet spell), and the minimum only when the maximum is low.
        flat = data if data.ndim == 1 and data.flags.c_contiguous else np.ascontiguousarray(data).reshape(-1)
        samples = memoryview(flat)  # type: ignore[arg-type]  # an ndarray is a buffer (numpy stubs lag)
        loud = bool(data.size) and (max(samples) > level or -min(samples) > level)
        if loud != self._speaking:
            self._run += 1
            if self._run >= (self.config.end_frames if self._speaking else self.config.start_frames):
                self._speaking, self._run = loud, 0
                kind = VADEventType.SPEECH_START if loud else VADEventType.SPEECH_END
                return VADEvent(kind, time.monotonic())
        else:
            self._run = 0
        return None


class FakeSTT(_FakeBase):
    """Partials of the scripted text every ``partial_every`` frames; the final ``final_delay_s`` after
    the audio ends. ``texts`` are used in turn, one per utterance (the last repeats)."""

    kind: ClassVar[EngineKind] = "stt"
    capabilities = Capabilities(partials=True, sample_rate=16000)

    class Config(EngineConfig):
        texts: tuple[str, ...] = ("hello there",)
        partial_every: int = 10
        final_delay_s: float = 0.0
        confidence: float = 0.9
        fault: Fault | None = None

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self.config = config or self.Config()
        #: (chunk timestamp, arrival time) of every frame received, for hop latency.
        self.arrivals: list[tuple[float, float]] = []

    def _text(self) -> str:
        texts = self.config.texts
        return texts[min(self.calls, len(texts)) - 1] if texts else ""

    async def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        self.calls += 1
        text, cfg, frames = self._text(), self.config, 0
        words = text.split()
        await self._maybe_fail(cfg.fault, 0)
        async for chunk in audio:
            _record(self.arrivals, (chunk.timestamp, time.monotonic()))
            frames += 1
            if cfg.partial_every and frames % cfg.partial_every == 0 and words:
                shown = min(len(words), frames // cfg.partial_every)
                yield Transcription(" ".join(words[:shown]), is_final=False, confidence=cfg.confidence / 2)
        await self._maybe_fail(cfg.fault, 1)
        await self._wait("stt_final", cfg.final_delay_s)
        yield Transcription(text, is_final=True, confidence=cfg.confidence, language="en")

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        self.calls += 1
        await self._maybe_fail(self.config.fault, 0)
        await self._wait("stt_final", self.config.final_delay_s)
        return Transcription(self._text(), is_final=True, confidence=self.config.confidence, language="en")


class FakeLLM(_FakeBase):
    """Streams the scripted reply word by word: the first token after ``ttft_s``, then one every
    ``token_interval_s``. ``replies`` are used in turn (the last repeats); a reply written
    ``TOOL:name:{"arg": 1}`` is a tool call instead of text."""

    kind: ClassVar[EngineKind] = "llm"
    capabilities = Capabilities(vision=True, tools=True)

    class Config(EngineConfig):
        replies: tuple[str, ...] = ("Sure, here is the answer. It has two sentences.",)
        #: A fake that looks: when the newest message has an image, reply with the first of these if
        #: the image is bright (mean luminance over half), else the second; ``replies`` are not used.
        vision_replies: tuple[str, str] | None = None
        ttft_s: float = 0.0
        token_interval_s: float = 0.0
        fault: Fault | None = None

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self.config = config or self.Config()
        self.requests: list[LLMRequest] = []

    def _reply(self, request: LLMRequest) -> str:
        images = request.messages[-1].images if request.messages else ()
        if self.config.vision_replies is not None and images:
            bright, dark = self.config.vision_replies
            return bright if _luminance(images[-1]) > 0.5 else dark
        replies = self.config.replies
        return replies[min(self.calls, len(replies)) - 1]

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.calls += 1
        _record(self.requests, request)
        cfg = self.config
        reply = self._reply(request)
        if reply.startswith("TOOL:"):  # a scripted tool call: "TOOL:name:{json arguments}"
            _, name, arguments = reply.split(":", 2)
            await self._wait("llm_ttft", cfg.ttft_s)
            yield ToolCall(f"call_{self.calls}", name, arguments)
            return
        tokens = tokenize(reply)[: request.max_tokens]
        await self._wait("llm_ttft", cfg.ttft_s)
        for index, token in enumerate(tokens):
            await self._maybe_fail(cfg.fault, index)
            if index:
                if cfg.token_interval_s > 0:
                    await self._wait("llm_token", cfg.token_interval_s)
                else:
                    await asyncio.sleep(0)
            yield GeneratedToken(token, token_id=index)
        await self._maybe_fail(cfg.fault, len(tokens))

    async def complete(self, request: LLMRequest) -> str:
        return "".join([c.text async for c in self.stream(request) if isinstance(c, GeneratedToken)])


def _luminance(image: ImageFrame) -> float:
    """Mean luminance of an image, 0 to 1."""
    from PIL import Image  # the vision extra; only a fake that looks needs it

    array = image.data if isinstance(image.data, np.ndarray) else None
    if array is None:
        with Image.open(io.BytesIO(bytes(image.data))) as picture:
            array = np.asarray(picture.convert("L"))
    return float(np.mean(array)) / 255.0


class FakeTTS(_FakeBase):
    """A tone of ``ms_per_char`` per character, in ``chunk_ms`` blocks: the first after
    ``first_chunk_delay_s``, the rest every ``chunk_interval_s``. Each whitespace-separated word of the
    text is marked (``AudioChunk.words``) from its first character's time to its last's."""

    kind: ClassVar[EngineKind] = "tts"

    class Config(EngineConfig):
        sample_rate: int = 16000
        chunk_ms: int = 20
        ms_per_char: float = 60.0
        first_chunk_delay_s: float = 0.0
        chunk_interval_s: float = 0.0
        voices: tuple[str, ...] = ("fake",)
        fault: Fault | None = None

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self.config = config or self.Config()
        self.capabilities = Capabilities(sample_rate=self.config.sample_rate, voices=self.config.voices)
        self.requests: list[tuple[str, str | None, float]] = []

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        self.calls += 1
        _record(self.requests, (text, voice, time.monotonic()))
        cfg = self.config
        total = int(cfg.sample_rate * cfg.ms_per_char * max(len(text), 1) / 1000)
        step = int(cfg.sample_rate * cfg.chunk_ms / 1000)
        t = np.arange(step, dtype=np.float32) / cfg.sample_rate
        tone = (0.2 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
        # Word marks spread by characters: a word starts at (its first character) x ms_per_char.
        per_char = cfg.ms_per_char / 1000
        marks = [
            (
                round(m.start() * per_char * cfg.sample_rate),
                m.group(),
                m.start() * per_char,
                m.end() * per_char,
            )
            for m in re.finditer(r"\S+", text)
        ]
        await self._wait("tts_first", cfg.first_chunk_delay_s)
        for index, start in enumerate(range(0, total, step)):
            await self._maybe_fail(cfg.fault, index)
            if index and cfg.chunk_interval_s > 0:
                await self._wait("tts_chunk", cfg.chunk_interval_s)
            offset = start / cfg.sample_rate
            words = tuple(
                WordMark(word, begin - offset, end - offset)
                for at, word, begin, end in marks
                if start <= at < start + step
            )
            yield AudioChunk(tone[: min(step, total - start)].copy(), cfg.sample_rate, words=words)


class FakeVision(_FakeBase):
    """A deterministic embedding from the image bytes' hash, after ``delay_s``."""

    kind: ClassVar[EngineKind] = "vision"

    class Config(EngineConfig):
        dimension: int = Field(default=16, ge=1)
        delay_s: float = 0.0
        fault: Fault | None = None

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self.config = config or self.Config()

    async def encode(self, frame: ImageFrame) -> VisionEmbedding:
        self.calls += 1
        await self._maybe_fail(self.config.fault, 0)
        await self._wait("vision", self.config.delay_s)
        raw = frame.data if isinstance(frame.data, bytes) else frame.data.tobytes()
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(raw).digest()[:8], "little"))
        vector = rng.standard_normal(self.config.dimension).astype(np.float32)
        return VisionEmbedding(vector / np.linalg.norm(vector), frame.frame_id)
