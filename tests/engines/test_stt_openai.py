"""OpenAISTT against a real HTTP server on 127.0.0.1 that speaks ``POST /v1/audio/transcriptions``.

The server parses the multipart form exactly as a real one must, decodes the WAV it received, and can
answer with JSON, verbose JSON, an HTTP error, a slow answer or a connection cut mid-answer.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import json
import logging
import socket
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aria.engines.base import STT
from aria.engines.stt.openai import OpenAISTT, wav_bytes
from aria.errors import EngineError, EngineTimeout, EngineUnavailable, InvalidInput
from aria.testing.speech import say
from aria.types import AudioChunk

RATE = 16000
KEY = "sk-test-0123456789"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    fields: dict[str, str]
    filename: str | None = None
    content_type: str | None = None
    wav: bytes = b""

    def samples(self) -> tuple[npt.NDArray[np.int16], int, int, int]:
        """The WAV's samples, rate, channels and sample width."""
        with wave.open(io.BytesIO(self.wav), "rb") as reader:
            frames = reader.readframes(reader.getnframes())
            return (
                np.frombuffer(frames, "<i2"),
                reader.getframerate(),
                reader.getnchannels(),
                reader.getsampwidth(),
            )


@dataclass
class Behaviour:
    status: int = 200
    body: dict[str, Any] | str = field(default_factory=lambda: {"text": "  hello   there "})
    delay_s: float = 0.0
    cut: bool = False


class TranscriptionServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[Received] = []
        self.behaviour = Behaviour()
        self.release = threading.Event()  # set at teardown so slow handlers return at once

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: TranscriptionServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": []}).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
        if self.path == "/v1/audio/transcriptions":
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                if name == "file":
                    received.filename = part.get_filename()
                    received.content_type = part.get_content_type()
                    received.wav = payload
                else:
                    received.fields[str(name)] = payload.decode()
        self.server.requests.append(received)
        behaviour = self.server.behaviour
        if behaviour.delay_s:
            self.server.release.wait(behaviour.delay_s)
        if self.path != "/v1/audio/transcriptions":
            self._send(404, b'{"detail": "Not Found"}')
            return
        data = behaviour.body if isinstance(behaviour.body, str) else json.dumps(behaviour.body)
        if behaviour.cut:  # promise a long body, send a little, hang up
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"text": "hel')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(behaviour.status, data.encode())

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[TranscriptionServer]:
    srv = TranscriptionServer()
    thread = threading.Thread(
        target=srv.serve_forever, args=(0.05,), name="fake-transcription-server", daemon=True
    )
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def speech() -> npt.NDArray[np.float32]:
    return say("hello there")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def started(base_url: str, **options: Any) -> OpenAISTT:
    engine = OpenAISTT(OpenAISTT.Config.model_validate({"base_url": base_url, **options}))
    await engine.start()
    return engine


async def chunks(samples: npt.NDArray[Any], step: int = 640) -> AsyncIterator[AudioChunk]:
    for start in range(0, samples.size, step):
        yield AudioChunk(samples[start : start + step], RATE)


async def test_transcribe_sends_the_wav_and_the_form(
    server: TranscriptionServer, speech: npt.NDArray[np.float32], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = await started(server.base_url, api_key=KEY, language="en", prompt="Paris", model="base")
    chunk = AudioChunk(speech, RATE)
    try:
        assert isinstance(engine, STT)
        result = await engine.transcribe(chunk)
    finally:
        await engine.aclose()
    assert result.is_final
    assert result.text == "hello there"
    assert result.language == "en"
    assert result.confidence == 1.0
    (request,) = server.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.fields == {"model": "base", "response_format": "json", "language": "en", "prompt": "Paris"}
    assert request.filename == "audio.wav"
    assert request.content_type == "audio/wav"
    samples, rate, channels, width = request.samples()
    assert (rate, channels, width) == (RATE, 1, 2)
    assert np.array_equal(samples, np.frombuffer(chunk.to_pcm16(), "<i2"))
    assert KEY not in caplog.text
    assert KEY not in repr(engine.config)


async def test_stream_buffers_the_utterance_into_one_request(
    server: TranscriptionServer, speech: npt.NDArray[np.float32]
) -> None:
    engine = await started(server.base_url)
    pcm = (speech * 32767).astype(np.int16)
    try:
        items = [item async for item in engine.stream(chunks(pcm))]
    finally:
        await engine.aclose()
    assert len(items) == 1
    assert items[0].is_final
    assert items[0].text == "hello there"
    assert not engine.capabilities.partials
    assert engine.capabilities.local
    (request,) = server.requests
    assert "authorization" not in request.headers
    assert np.array_equal(request.samples()[0], pcm)


async def test_verbose_json_gives_confidence_and_language(
    server: TranscriptionServer, speech: npt.NDArray[np.float32]
) -> None:
    server.behaviour.body = {
        "text": "hello there",
        "language": "english",
        "segments": [{"tokens": [1, 2, 3], "avg_logprob": -0.2, "no_speech_prob": 0.1}],
    }
    engine = await started(server.base_url, response_format="verbose_json")
    try:
        result = await engine.transcribe(AudioChunk(speech, RATE))
    finally:
        await engine.aclose()
    assert server.requests[0].fields["response_format"] == "verbose_json"
    assert result.confidence == pytest.approx(np.exp(-0.2) * 0.9)
    assert result.language == "en"


async def test_empty_audio_makes_no_request(server: TranscriptionServer) -> None:
    engine = await started(server.base_url)
    try:
        items = [item async for item in engine.stream(chunks(np.zeros(0, np.float32)))]
    finally:
        await engine.aclose()
    assert len(items) == 1
    assert items[0].is_final
    assert items[0].text == ""
    assert items[0].confidence == 0.0
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "body", "error", "retryable", "says"),
    [
        (500, {"error": {"message": "model crashed"}}, EngineError, True, "HTTP 500: model crashed"),
        (503, "overloaded", EngineError, True, "HTTP 503: overloaded"),
        (429, {"error": {"message": "slow down"}}, EngineError, True, "slow down"),
        (400, {"detail": "audio too short"}, EngineError, False, "audio too short"),
        (401, {"error": {"message": "bad key"}}, EngineUnavailable, False, "api_key"),
    ],
)
async def test_http_errors_are_typed(
    server: TranscriptionServer,
    speech: npt.NDArray[np.float32],
    status: int,
    body: dict[str, Any] | str,
    error: type[EngineError],
    retryable: bool,
    says: str,
) -> None:
    server.behaviour = Behaviour(status=status, body=body)
    engine = await started(server.base_url)
    try:
        with pytest.raises(error) as caught:
            await engine.transcribe(AudioChunk(speech, RATE))
    finally:
        await engine.aclose()
    assert type(caught.value) is error
    assert caught.value.retryable is retryable
    assert says in str(caught.value)
    assert caught.value.engine == "stt:openai"


async def test_wrong_base_url_is_unavailable(
    server: TranscriptionServer, speech: npt.NDArray[np.float32]
) -> None:
    engine = await started(server.base_url.removesuffix("/v1"))
    try:
        with pytest.raises(EngineUnavailable, match=r"HTTP 404.*base_url"):
            await engine.transcribe(AudioChunk(speech, RATE))
    finally:
        await engine.aclose()


async def test_refused_connection_is_a_retryable_error(speech: npt.NDArray[np.float32]) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    availability = OpenAISTT.check(OpenAISTT.Config(base_url=base_url))
    assert not availability.available
    assert "base_url" in availability.fix
    engine = await started(base_url, timeout_s=5)
    began = time.monotonic()
    try:
        with pytest.raises(EngineError) as caught:
            await engine.transcribe(AudioChunk(speech, RATE))
    finally:
        await engine.aclose()
    assert type(caught.value) is EngineError
    assert caught.value.retryable
    assert "ConnectError" in str(caught.value)
    assert time.monotonic() - began < 2.0


async def test_slow_answer_times_out(server: TranscriptionServer, speech: npt.NDArray[np.float32]) -> None:
    server.behaviour.delay_s = 10.0
    engine = await started(server.base_url, timeout_s=0.4)
    began = time.monotonic()
    try:
        with pytest.raises(EngineTimeout, match=r"within 0.4 s"):
            await engine.stream(chunks(speech)).__anext__()
    finally:
        await engine.aclose()
    assert 0.3 < time.monotonic() - began < 3.0


async def test_answer_cut_midway_is_a_retryable_error(
    server: TranscriptionServer, speech: npt.NDArray[np.float32]
) -> None:
    server.behaviour.cut = True
    engine = await started(server.base_url, timeout_s=5)
    try:
        with pytest.raises(EngineError) as caught:
            await asyncio.wait_for(engine.transcribe(AudioChunk(speech, RATE)), 10)
    finally:
        await engine.aclose()
    assert type(caught.value) is EngineError
    assert caught.value.retryable


async def test_malformed_answers_are_not_retryable(
    server: TranscriptionServer, speech: npt.NDArray[np.float32]
) -> None:
    engine = await started(server.base_url)
    try:
        server.behaviour.body = "<html>not json</html>"
        with pytest.raises(EngineError, match="not JSON") as not_json:
            await engine.transcribe(AudioChunk(speech, RATE))
        server.behaviour.body = {"transcript": "hello"}
        with pytest.raises(EngineError, match="without a 'text' field") as no_text:
            await engine.transcribe(AudioChunk(speech, RATE))
    finally:
        await engine.aclose()
    assert not not_json.value.retryable
    assert not no_text.value.retryable


async def test_input_checks_and_lifecycle(server: TranscriptionServer) -> None:
    assert OpenAISTT.check(OpenAISTT.Config(base_url=server.base_url)).available
    engine = OpenAISTT(OpenAISTT.Config(base_url=server.base_url + "/"))
    assert engine.config.base_url == server.base_url
    assert not (await engine.health()).ok
    with pytest.raises(EngineUnavailable, match="not started"):
        await engine.transcribe(AudioChunk(np.zeros(160, np.float32), RATE))
    await engine.start()
    try:
        assert (await engine.health()).ok
        with pytest.raises(InvalidInput, match="16000 Hz"):
            await engine.transcribe(AudioChunk(np.zeros(480, np.float32), 48000))
    finally:
        await engine.aclose()
    assert server.requests == []
    assert not OpenAISTT(OpenAISTT.Config(base_url="https://api.openai.com/v1")).capabilities.local


def test_wav_bytes_round_trip() -> None:
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    with wave.open(io.BytesIO(wav_bytes(pcm)), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (RATE, 1, 2)
        assert reader.readframes(reader.getnframes()) == pcm
