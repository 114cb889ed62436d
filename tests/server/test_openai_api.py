"""``/v1/audio/transcriptions``, ``/v1/audio/speech`` and ``/v1/models`` through the official ``openai`` SDK
(and raw HTTP for the error paths) against a live server with fake engines."""

from __future__ import annotations

import io
import wave

import httpx
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from aria.server.realtime.files import decode_file, encode_file
from aria.testing.speech import say
from tests.server.conftest import LiveServer, engine


def client(live: LiveServer, key: str = "sk-local") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0)


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return out.getvalue()


async def test_models_lists_the_engines(live: LiveServer) -> None:
    async with client(live) as api:
        ids = [m.id async for m in api.models.list()]
    assert ids[0] == "aria"
    assert "fake" in ids


async def test_a_transcription_of_a_wav_file(live: LiveServer) -> None:
    audio = wav_bytes(say("what time is it", sample_rate=22050), rate=22050)
    async with client(live) as api:
        result = await api.audio.transcriptions.create(model="whisper-1", file=("q.wav", audio, "audio/wav"))
        assert result.text == "what time is it"
        text = await api.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", audio, "audio/wav"), response_format="text"
        )
        assert text.strip() == "what time is it"
        verbose = await api.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", audio, "audio/wav"), response_format="verbose_json"
        )
        assert verbose.duration == pytest.approx(len(say("what time is it")) / 16000, abs=0.05)
        srt = await api.audio.transcriptions.create(
            model="whisper-1", file=("q.wav", audio, "audio/wav"), response_format="srt"
        )
        assert srt.startswith("1\n00:00:00,000 --> 00:00:0")
    assert engine(live, "stt").calls == 4


async def test_a_transcription_of_an_mp3_file(live: LiveServer) -> None:
    mp3 = encode_file(say("hello there", sample_rate=24000), 24000, "mp3")
    async with client(live) as api:
        result = await api.audio.transcriptions.create(model="whisper-1", file=("q.mp3", mp3, "audio/mpeg"))
    assert result.text == "what time is it"  # the fake STT's scripted text: the file was decoded and heard


async def test_bad_uploads_get_openai_shaped_errors(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        garbage = await http.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio")})
        assert garbage.status_code == 400
        assert garbage.json()["error"]["param"] == "file"
        missing = await http.post(
            "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"x": ("a", b"")}
        )
        assert missing.json()["error"]["code"] == "missing_file"
        wav = wav_bytes(np.zeros(1600, np.float32))
        fmt = await http.post(
            "/v1/audio/transcriptions", data={"response_format": "docx"}, files={"file": ("a.wav", wav)}
        )
        assert fmt.json()["error"]["param"] == "response_format"


@pytest.mark.parametrize(
    ("fmt", "magic"), [("wav", b"RIFF"), ("mp3", None), ("flac", b"fLaC"), ("opus", b"OggS")]
)
async def test_speech_in_each_format(live: LiveServer, fmt: str, magic: bytes | None) -> None:
    async with client(live) as api:
        response = await api.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello there.", response_format=fmt
        )  # type: ignore[arg-type]
        data = response.content
    if magic is not None:
        assert data.startswith(magic)
    audio = decode_file(data, 16000)
    # the fake TTS says 10 ms a character ("Hello there." is 12)
    assert audio.size / 16000 == pytest.approx(0.12, abs=0.06)
    assert float(np.max(np.abs(audio))) > 0.1


async def test_speech_as_pcm_and_at_double_speed(live: LiveServer) -> None:
    async with client(live) as api:
        normal = (
            await api.audio.speech.create(model="tts-1", voice="alloy", input="A" * 50, response_format="pcm")
        ).content
        fast = (
            await api.audio.speech.create(
                model="tts-1", voice="alloy", input="A" * 50, response_format="pcm", speed=2.0
            )
        ).content
    assert len(normal) / 2 / 24000 == pytest.approx(0.5, abs=0.01)  # 24 kHz 16-bit, like OpenAI's pcm
    assert len(fast) / 2 / 24000 == pytest.approx(0.25, abs=0.01)


async def test_speech_refuses_what_it_cannot_do(live: LiveServer) -> None:
    async with client(live) as api:
        with pytest.raises(openai.BadRequestError) as voice:
            await api.audio.speech.create(model="tts-1", voice="nobody", input="hi")
        assert voice.value.body["param"] == "voice"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as instructions:
            await api.audio.speech.create(model="tts-1", voice="alloy", input="hi", instructions="whisper")
        assert instructions.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError):
            await api.audio.speech.create(model="tts-1", voice="alloy", input="")


@pytest.mark.parametrize("server_overrides", [{"server.token": "s3cret-token"}])
async def test_the_token_guards_v1(live: LiveServer) -> None:
    async with client(live, key="wrong") as api:
        with pytest.raises(openai.AuthenticationError):
            await api.models.list()
    async with client(live, key="s3cret-token") as api:
        ids = [m.id async for m in api.models.list()]
    assert ids[0] == "aria"
