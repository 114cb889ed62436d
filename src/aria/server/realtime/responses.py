"""One Realtime response: the language model's answer as text, or spoken clause by clause, or function calls.

The model's stream is read ahead (so it keeps writing while a clause is synthesised). For an audio
response each clause's transcript goes out first, then its audio in the session's output format (at the
session's ``speed``), then the clause is recorded with its word timings (for ``conversation.item.truncate``).
Function calls the model makes are handed to the client, which runs them and sends the output back.
"""

from __future__ import annotations

import base64
from typing import Protocol

import numpy as np

from aria.core.aio import closing_stream
from aria.core.streams import merge
from aria.core.text import ClauseChunker
from aria.engines.base import LLM, TTS, LLMRequest
from aria.server.realtime.codecs import Encoder
from aria.server.realtime.state import Spoken
from aria.server.realtime.tempo import stretch
from aria.types import Message, ToolCall, ToolSpec, WordMark

__all__ = ["ResponseSink", "generate"]


class ResponseSink(Protocol):
    async def text(self, delta: str) -> None: ...

    async def transcript(self, delta: str) -> None: ...

    async def audio(self, b64: str, seconds: float) -> None: ...

    def spoken(self, clause: Spoken) -> None: ...

    async def function_call(self, call: ToolCall) -> None: ...


async def generate(
    sink: ResponseSink,
    llm: LLM,
    tts: TTS | None,
    *,
    messages: list[Message],
    system_prompt: str | None,
    tools: tuple[ToolSpec, ...],
    audio: bool,
    voice: str | None,
    speed: float,
    output_format: str,
    temperature: float,
    max_tokens: int,
) -> None:
    request = LLMRequest(
        messages=tuple(messages),
        system_prompt=system_prompt,
        temperature=temperature,
        max_tokens=max_tokens,
        tools=tools,
    )
    chunker = ClauseChunker(first_min_chars=12, min_chars=40)
    encoder = Encoder(output_format)
    calls: list[ToolCall] = []
    clauses = 0
    spoken_s = 0.0
    async with closing_stream(merge(llm.stream(request), maxsize=4096)) as stream:
        async for chunk in stream:
            if isinstance(chunk, ToolCall):
                calls.append(chunk)
                continue
            if not chunk.text:
                continue
            if not audio or tts is None:
                await sink.text(chunk.text)
                continue
            for clause in chunker.push(chunk.text):
                spoken_s += await _speak(sink, tts, encoder, clause, clauses, spoken_s, voice, speed)
                clauses += 1
    if audio and tts is not None:
        for clause in chunker.flush():
            spoken_s += await _speak(sink, tts, encoder, clause, clauses, spoken_s, voice, speed)
            clauses += 1
    for call in calls:
        await sink.function_call(call)


async def _speak(
    sink: ResponseSink,
    tts: TTS,
    encoder: Encoder,
    clause: str,
    index: int,
    start_s: float,
    voice: str | None,
    speed: float,
) -> float:
    """Say one clause: its transcript, then its audio. Returns how long its audio plays."""
    await sink.transcript(clause if index == 0 else " " + clause)
    seconds = 0.0
    marks: list[WordMark] = []
    held: list[np.ndarray] = []
    rate = 0
    async with closing_stream(tts.synthesize(clause, voice=voice)) as chunks:
        async for chunk in chunks:
            samples, rate = chunk.to_mono().as_float32(), chunk.sample_rate
            marks += [
                WordMark(m.text, (m.start_s + seconds) / speed, (m.end_s + seconds) / speed)
                for m in chunk.words
            ]
            seconds += samples.size / rate
            if speed != 1.0:
                held.append(samples)  # the whole clause is stretched at once
                continue
            data = encoder.encode(samples, rate)
            if data:
                await sink.audio(base64.b64encode(data).decode("ascii"), encoder.seconds(data))
    if rate:
        tail = stretch(np.concatenate(held), rate, speed) if held else np.zeros(0, np.float32)
        data = encoder.encode(tail, rate, last=True)
        if data:
            await sink.audio(base64.b64encode(data).decode("ascii"), encoder.seconds(data))
    played = seconds / speed
    sink.spoken(Spoken(clause, start_s, played, tuple(marks)))
    return played
