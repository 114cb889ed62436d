"""Speech recognition through an OpenAI-compatible server: ``POST {base_url}/audio/transcriptions``.

Works with OpenAI and with local servers that speak the same API (speaches / faster-whisper-server,
vLLM, LocalAI, whisper.cpp's server, ...). The audio is sent as a 16-bit mono WAV file in a multipart
form together with ``model``, ``response_format`` and the optional ``language`` and ``prompt``.

The API is not incremental: :meth:`OpenAISTT.stream` buffers the utterance and makes one request when
the audio ends, so there are no partials. With ``response_format="verbose_json"`` the confidence comes
from the segments' ``avg_logprob`` and ``no_speech_prob``; plain ``json`` carries none (1.0 is reported
for a non-empty text).

Errors (translated by :class:`~aria.engines.http.HTTPClient`): refused connection, a broken connection,
HTTP 408/409/425/429/5xx -> :class:`~aria.errors.EngineError` with ``retryable=True``; no complete answer
within ``timeout_s`` -> :class:`~aria.errors.EngineTimeout`; 401/403 (API key) and 404 (wrong
``base_url``) -> :class:`~aria.errors.EngineUnavailable`; other 4xx and malformed bodies ->
:class:`~aria.errors.EngineError` (not retryable). The API key is sent as a Bearer token and never logged.
"""

from __future__ import annotations

import io
import json
import logging
import wave
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from aria.engines.base import Availability, Capabilities, EngineConfig, EngineKind
from aria.engines.http import (
    HTTPClient,
    HTTPEngine,
    HttpURL,
    is_local,
    openai_hints,
    probe_availability,
)
from aria.engines.stt.streaming import STT_SAMPLE_RATE, prepare_audio, whisper_confidence
from aria.errors import EngineError, EngineUnavailable
from aria.types import AudioChunk, Transcription

__all__ = ["OpenAISTT", "wav_bytes"]

log = logging.getLogger(__name__)

ENGINE = "stt:openai"
#: ``verbose_json`` from OpenAI names the language in full; Whisper-based servers send the code.
_LANGUAGE_NAMES = {
    "english": "en",
    "chinese": "zh",
    "german": "de",
    "spanish": "es",
    "russian": "ru",
    "korean": "ko",
    "french": "fr",
    "japanese": "ja",
    "portuguese": "pt",
    "turkish": "tr",
    "polish": "pl",
    "catalan": "ca",
    "dutch": "nl",
    "arabic": "ar",
    "swedish": "sv",
    "italian": "it",
    "indonesian": "id",
    "hindi": "hi",
    "finnish": "fi",
    "vietnamese": "vi",
    "hebrew": "he",
    "ukrainian": "uk",
    "greek": "el",
    "czech": "cs",
    "romanian": "ro",
    "danish": "da",
    "hungarian": "hu",
    "norwegian": "no",
    "thai": "th",
}


def wav_bytes(pcm16: bytes, sample_rate: int = STT_SAMPLE_RATE) -> bytes:
    """A mono 16-bit PCM WAV file holding ``pcm16`` (little-endian samples)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16)
    return buffer.getvalue()


class OpenAISTT(HTTPEngine):
    """Transcription by an OpenAI-compatible server; see the module docstring."""

    kind: ClassVar[EngineKind] = "stt"
    name: str = "openai"

    class Config(EngineConfig):
        base_url: HttpURL = "http://127.0.0.1:8000/v1"
        #: Sent as ``Authorization: Bearer ...``; needed by api.openai.com, optional for local servers.
        api_key: SecretStr | None = None
        model: str = "whisper-1"
        #: Language code (``"en"``); ``None`` lets the server detect it.
        language: str | None = None
        #: Text to guide the recogniser (names, spelling).
        prompt: str | None = None
        response_format: Literal["json", "verbose_json"] = "json"
        #: The longest wait for the whole answer (connecting, uploading and transcribing).
        timeout_s: float = Field(default=30.0, gt=0)

    config: Config

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.capabilities = Capabilities(
            streaming=True,
            partials=False,
            local=is_local(self.config.base_url),
            sample_rate=STT_SAMPLE_RATE,
            languages=(self.config.language,) if self.config.language else (),
        )
        self._client: HTTPClient | None = None
        self._url = f"{self.config.base_url}/audio/transcriptions"

    @classmethod
    def check(cls, config: Config) -> Availability:
        """httpx is installed and something answers HTTP at ``base_url`` (one probe, 0.5 s at most)."""
        return probe_availability(
            f"{config.base_url}/models",
            api_key=config.api_key,
            unreachable="no transcription server answers",
            fix="start an OpenAI-compatible transcription server or set stt.options.base_url",
        )

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = HTTPClient.open(
            ENGINE,
            self.config,
            api_key=self.config.api_key,
            hints=openai_hints("stt.options.api_key"),
            refused=EngineError,  # a retryable EngineError, as for any other broken connection
        )

    async def transcribe(self, audio: AudioChunk) -> Transcription:
        return await self._request(prepare_audio(audio, ENGINE).to_pcm16())

    async def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        """Buffers the utterance; one final once ``audio`` ends (no partials)."""
        self._require_client()
        pcm = bytearray()
        async for chunk in audio:
            pcm += prepare_audio(chunk, ENGINE).to_pcm16()
        yield await self._request(bytes(pcm))

    def _require_client(self) -> HTTPClient:
        if self._client is None:
            raise EngineUnavailable("the OpenAI STT engine is not started; call start() first", engine=ENGINE)
        return self._client

    async def _request(self, pcm: bytes) -> Transcription:
        client = self._require_client()
        if not pcm:
            return Transcription("", is_final=True, confidence=0.0, language=self.config.language)
        fields = {"model": self.config.model, "response_format": self.config.response_format}
        if self.config.language:
            fields["language"] = self.config.language
        if self.config.prompt:
            fields["prompt"] = self.config.prompt
        files = {"file": ("audio.wav", wav_bytes(pcm), "audio/wav")}
        body = await client.post(self._url, deadline_s=self.config.timeout_s, data=fields, files=files)
        return self._parse(body)

    def _parse(self, body: bytes) -> Transcription:
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise EngineError(
                f"{self._url} answered with something that is not JSON: {body[:120]!r}",
                engine=ENGINE,
                retryable=False,
            ) from exc
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            raise EngineError(f"{self._url} answered without a 'text' field", engine=ENGINE, retryable=False)
        text = " ".join(text.split())
        segments = payload.get("segments")
        confidence = 1.0
        if isinstance(segments, list) and segments:
            confidence = whisper_confidence(_scores(segments))
        language = self.config.language or _language_code(payload.get("language"))
        return Transcription(text, is_final=True, confidence=confidence if text else 0.0, language=language)


def _scores(segments: list[Any]) -> list[tuple[int, float, float]]:
    scores: list[tuple[int, float, float]] = []
    for segment in segments:
        if not isinstance(segment, dict):
            continue
        tokens = segment.get("tokens")
        try:
            scores.append(
                (
                    len(tokens) if isinstance(tokens, list) else 1,
                    float(segment.get("avg_logprob", 0.0)),
                    float(segment.get("no_speech_prob", 0.0)),
                )
            )
        except (TypeError, ValueError):
            log.debug("%s: ignoring a segment without numeric scores", ENGINE)
    return scores


def _language_code(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    lowered = value.strip().lower()
    return _LANGUAGE_NAMES.get(lowered, lowered)
