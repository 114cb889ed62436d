"""OpenAITTS against a real HTTP/1.1 server on 127.0.0.1 that speaks ``POST /v1/audio/speech``: raw PCM or
WAV bodies streamed in uneven pieces with delays, and the failure modes (HTTP errors, a refused
connection, a slow first byte, a stall, a body cut mid-stream) -> typed errors, never a hang."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import SecretStr, ValidationError

from aria.core.aio import closing_stream
from aria.engines.base import TTS
from aria.engines.tts.openai import OpenAITTS, PcmDecoder, WavDecoder
from aria.errors import EngineError, EngineTimeout, EngineUnavailable, InvalidInput
from aria.types import AudioChunk

pytest.importorskip("httpx")

RATE = 24000
API_KEY = "sk-test-very-secret-0123456789"
UNEVEN = [1, 2, 3, 1001, 4097, 333, 7, 2048, 999]


def tone(seconds: float = 0.6, amplitude: float = 0.5, rate: int = RATE, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def uneven_pieces(payload: bytes) -> list[bytes]:
    pieces, offset, i = [], 0, 0
    while offset < len(payload):
        size = UNEVEN[i % len(UNEVEN)]
        pieces.append(payload[offset : offset + size])
        offset, i = offset + size, i + 1
    return pieces


def wav_bytes(samples: np.ndarray, rate: int, *, streamed_size: bool = True) -> bytes:
    data = samples.astype("<i2").tobytes()
    size = 0xFFFFFFFF if streamed_size else len(data)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    extra = b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk to skip before the data
    riff = struct.pack("<I", 0xFFFFFFFF if streamed_size else 4 + 8 + len(fmt) + 12 + 8 + len(data))
    return (
        b"RIFF"
        + riff
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + extra
        + b"data"
        + struct.pack("<I", size)
        + data
    )


# -- the server ----------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the server does with the next request."""

    status: int = 200
    pieces: list[bytes] = field(default_factory=lambda: uneven_pieces(tone().tobytes()))
    content_type: str = "audio/pcm"
    first_byte_delay_s: float = 0.0
    piece_delay_s: float = 0.0
    #: Close the connection abruptly after sending this many pieces (no end of the chunked body).
    cut_after: int | None = None
    #: Stop sending after this many pieces and wait (a stalled stream).
    stall_after: int | None = None
    #: Send this many pieces, then wait for ``release`` before sending the rest.
    hold_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    error_body: bytes = b'{"error": {"message": "the voice melted"}}'


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


class SpeechServer:
    def __init__(self) -> None:
        self.reply = Reply()
        self.requests: list[Request] = []
        self.disconnected = asyncio.Event()
        self.finished_body_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> SpeechServer:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Each connection is handled in a task we own, cancelled at teardown."""
        task = asyncio.get_running_loop().create_task(self.handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(path, headers, json.loads(body) if body else None))
            reply = self.reply
            if reply.first_byte_delay_s:
                await asyncio.sleep(reply.first_byte_delay_s)
            if method == "GET":
                await self._whole(writer, 200, b'{"data": []}', "application/json")
            elif reply.status != 200:
                await self._whole(writer, reply.status, reply.error_body, "application/json")
            else:
                await self._stream(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnected.set()
        finally:
            writer.close()

    async def _whole(self, writer: asyncio.StreamWriter, status: int, body: bytes, kind: str) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: {reply.content_type}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        for index, piece in enumerate(reply.pieces):
            if index == reply.cut_after:
                writer.transport.abort()
                return
            if index == reply.stall_after:
                await asyncio.sleep(30)
            if index == reply.hold_after:
                await asyncio.wait_for(reply.release.wait(), 5)
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            if reply.piece_delay_s:
                await asyncio.sleep(reply.piece_delay_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.finished_body_at = time.monotonic()


@pytest.fixture
async def server() -> AsyncIterator[SpeechServer]:
    async with SpeechServer() as speech:
        yield speech


@pytest.fixture
async def tts(server: SpeechServer) -> AsyncIterator[OpenAITTS]:
    engine = OpenAITTS(OpenAITTS.Config(base_url=server.url, api_key=SecretStr(API_KEY), timeout_s=2.0))
    await engine.start()
    yield engine
    await engine.aclose()


async def speak(engine: OpenAITTS, text: str, voice: str | None = None) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(text, voice=voice)]


def joined(chunks: list[AudioChunk]) -> npt.NDArray[np.float32]:
    return np.concatenate([c.data for c in chunks])


# -- decoders (sans I/O) -------------------------------------------------------------------------------


def test_pcm_decoder_carries_odd_bytes_across_pieces() -> None:
    samples = tone(0.05)
    decoder = PcmDecoder()
    out = np.concatenate([decoder.feed(p) for p in uneven_pieces(samples.tobytes())])
    assert decoder.leftover == 0
    np.testing.assert_array_equal(out, samples.astype(np.float32) / 32768)
    decoder.feed(b"\x01\x02\x03")
    assert decoder.leftover == 1


def test_wav_decoder_streams_after_the_header() -> None:
    samples = tone(0.05, rate=16000)
    decoder = WavDecoder()
    out = np.concatenate([decoder.feed(p) for p in uneven_pieces(wav_bytes(samples, 16000))])
    assert decoder.sample_rate == 16000
    np.testing.assert_array_equal(out, samples.astype(np.float32) / 32768)
    with pytest.raises(EngineError, match="not a WAV"):
        WavDecoder().feed(b"ID3\x04" + bytes(20))


# -- streaming -----------------------------------------------------------------------------------------


async def test_streams_pcm_as_it_arrives(server: SpeechServer, tts: OpenAITTS) -> None:
    assert isinstance(tts, TTS)
    reply = server.reply
    reply.hold_after = 6  # the rest of the body waits until the client has played its first block
    reply.piece_delay_s = 0.005
    chunks: list[AudioChunk] = []
    async for chunk in tts.synthesize("**Hello** there, how are you? 😀"):
        if not chunks:
            assert server.finished_body_at is None  # the first audio came before the body ended
            reply.release.set()
        chunks.append(chunk)
    assert server.finished_body_at is not None
    sent = server.requests[-1]
    assert sent.path == "/v1/audio/speech"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body == {
        "model": "tts-1",
        "input": "Hello there, how are you?",
        "voice": "alloy",
        "response_format": "pcm",
    }
    assert {c.sample_rate for c in chunks} == {RATE}
    assert all(c.frames == 480 for c in chunks[:-1])
    audio = joined(chunks)
    original = tone().astype(np.float32) / 32768
    # First sentence: the server's level is kept (below the limiter's knee), sample for sample.
    np.testing.assert_array_equal(audio[: original.size - 100], original[:-100])
    pause = audio.size - original.size
    assert pause / RATE == pytest.approx(0.2, abs=0.015)  # sentence pause after "?"


async def test_later_sentences_are_normalised_to_the_target(server: SpeechServer, tts: OpenAITTS) -> None:
    server.reply.pieces = uneven_pieces(tone(amplitude=0.25).tobytes())
    first = joined(await speak(tts, "One."))
    second = joined(await speak(tts, "Two."))
    assert float(np.max(np.abs(first))) == pytest.approx(0.25, abs=0.01)
    assert 20 * np.log10(np.max(np.abs(second))) == pytest.approx(-1.0, abs=0.3)
    server.reply.pieces = uneven_pieces(tone(amplitude=0.9).tobytes())  # louder: limited at once
    third = joined(await speak(tts, "Three."))
    assert float(np.max(np.abs(third))) <= 10 ** (-1 / 20) + 1e-4


async def test_wav_response_at_another_rate_is_resampled(server: SpeechServer) -> None:
    server.reply.pieces = uneven_pieces(wav_bytes(tone(rate=16000), 16000))
    server.reply.content_type = "audio/wav"
    engine = OpenAITTS(OpenAITTS.Config(base_url=server.url, response_format="wav", sentence_pause_ms=0))
    chunks = await speak(engine, "Hello")
    await engine.aclose()
    assert server.requests[-1].body["response_format"] == "wav"
    assert {c.sample_rate for c in chunks} == {RATE}
    assert sum(c.frames for c in chunks) / RATE == pytest.approx(0.6, abs=0.02)


async def test_consumer_stopping_early_closes_the_connection(server: SpeechServer, tts: OpenAITTS) -> None:
    server.reply.piece_delay_s = 0.05
    async with closing_stream(tts.synthesize("Hello there.")) as stream:
        await anext(stream)
    await asyncio.wait_for(server.disconnected.wait(), 2.0)
    assert server.finished_body_at is None


async def test_voices(server: SpeechServer) -> None:
    engine = OpenAITTS(OpenAITTS.Config(base_url=server.url, voice="af_bella", voices=("af_sky",)))
    assert engine.capabilities.voices == ("af_bella", "af_sky")
    assert engine.capabilities.local
    await speak(engine, "Hi.", voice="af_sky")
    assert server.requests[-1].body["voice"] == "af_sky"
    with pytest.raises(InvalidInput, match=r"unknown voice 'alloy'.*af_bella"):
        await speak(engine, "Hi.", voice="alloy")
    assert await speak(engine, "  ") == []
    assert len(server.requests) == 1  # nothing was sent for the bad voice or the empty text
    await engine.aclose()


# -- failures -----------------------------------------------------------------------------------------


async def test_http_500_is_a_retryable_engine_error(server: SpeechServer, tts: OpenAITTS) -> None:
    server.reply.status = 500
    with pytest.raises(EngineError, match=r"HTTP 500.*the voice melted") as info:
        await speak(tts, "Hello.")
    assert info.value.retryable
    assert not isinstance(info.value, EngineUnavailable)


async def test_http_401_is_unavailable(server: SpeechServer, tts: OpenAITTS) -> None:
    server.reply.status = 401
    with pytest.raises(EngineUnavailable, match="api_key") as info:
        await speak(tts, "Hello.")
    assert not info.value.retryable


async def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = OpenAITTS(OpenAITTS.Config(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="cannot connect"):
        await speak(engine, "Hello.")
    assert time.monotonic() - started < 2.0
    await engine.aclose()


async def test_slow_first_byte_times_out(server: SpeechServer) -> None:
    server.reply.first_byte_delay_s = 5.0
    engine = OpenAITTS(OpenAITTS.Config(base_url=server.url, timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(EngineTimeout, match=r"within 0\.3 s") as info:
        await speak(engine, "Hello.")
    assert time.monotonic() - started < 2.0
    assert info.value.retryable
    await engine.aclose()


async def test_stalled_stream_times_out_after_the_audio_so_far(server: SpeechServer) -> None:
    server.reply.stall_after = 5
    engine = OpenAITTS(OpenAITTS.Config(base_url=server.url, timeout_s=0.3))
    got: list[AudioChunk] = []

    async def consume() -> None:
        async for chunk in engine.synthesize("Hello."):
            got.append(chunk)

    with pytest.raises(EngineTimeout):
        await asyncio.wait_for(consume(), 3.0)
    assert got  # what arrived before the stall was delivered
    await engine.aclose()


async def test_body_cut_mid_stream_is_an_engine_error(server: SpeechServer, tts: OpenAITTS) -> None:
    server.reply.cut_after = 5
    got: list[AudioChunk] = []

    async def consume() -> None:
        async for chunk in tts.synthesize("Hello."):
            got.append(chunk)

    with pytest.raises(EngineError, match="broke off") as info:
        await asyncio.wait_for(consume(), 3.0)
    assert info.value.retryable
    assert got


async def test_api_key_is_never_logged(server: SpeechServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = OpenAITTS.Config(base_url=server.url, api_key=SecretStr(API_KEY))
    engine = OpenAITTS(config)
    await speak(engine, "Hello.")
    server.reply.status = 500
    with pytest.raises(EngineError) as info:
        await speak(engine, "Hello.")
    await engine.aclose()
    assert server.requests[0].headers["authorization"].endswith(API_KEY)
    assert API_KEY not in caplog.text
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(config)
    assert API_KEY not in str(config.model_dump())


# -- configuration and availability -------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="http"):
        OpenAITTS.Config(base_url="ftp://x")
    with pytest.raises(ValidationError):
        OpenAITTS.Config(response_format="mp3")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        OpenAITTS.Config(sample_rate=12345)
    with pytest.raises(ValidationError):
        OpenAITTS.Config(timeout_s=0)
    assert OpenAITTS.Config(base_url="http://h:1/v1/").base_url == "http://h:1/v1"
    assert not OpenAITTS(OpenAITTS.Config()).capabilities.local


async def test_official_api_needs_a_key() -> None:
    availability = OpenAITTS.check(OpenAITTS.Config())
    assert not availability.available
    assert "api_key" in availability.fix
    with pytest.raises(EngineUnavailable, match="api_key"):
        await OpenAITTS().start()


async def test_check_probes_the_server(server: SpeechServer) -> None:
    up = await asyncio.to_thread(OpenAITTS.check, OpenAITTS.Config(base_url=server.url))
    assert up.available
    assert server.requests[-1].path == "/v1/models"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = OpenAITTS.check(OpenAITTS.Config(base_url=f"http://127.0.0.1:{port}/v1"))
    assert not down.available
    assert f"127.0.0.1:{port}" in down.reason
