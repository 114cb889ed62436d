"""Speech from an OpenAI-compatible server: ``POST {base_url}/audio/speech``.

Works with OpenAI and with local servers that speak the same API (Kokoro-FastAPI, openedai-speech,
LocalAI, ...). The response body is read as it arrives and turned into audio blocks at once, so playback
can start while the server is still speaking. ``response_format`` ``"pcm"`` is raw 16-bit little-endian
mono at ``sample_rate`` (24 kHz for OpenAI); ``"wav"`` is parsed incrementally (its header gives the rate;
a rate other than ``sample_rate`` is resampled once the sentence is complete).

Levels: the server's level is kept for the first sentence (limited to the target peak); afterwards the
gain brings the loudest peak of the last few sentences to the target, and a louder peak lowers it at once.

Errors (translated by :class:`~aria.engines.http.HTTPClient`): refused connection ->
:class:`~aria.errors.EngineUnavailable` (retryable); no byte within ``timeout_s`` ->
:class:`~aria.errors.EngineTimeout`; 401/403 (API key) and 404 (wrong ``base_url``) ->
:class:`~aria.errors.EngineUnavailable`; other HTTP errors and a body cut mid-stream ->
:class:`~aria.errors.EngineError` (retryable for 408/409/425/429/5xx and cuts). The API key is sent as a
Bearer token and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, SecretStr

from aria.core.aio import closing_stream
from aria.core.audio import resample
from aria.engines.base import Availability, Capabilities, EngineKind
from aria.engines.http import (
    HTTPClient,
    HTTPEngine,
    HttpURL,
    httpx_missing,
    is_local,
    openai_hints,
    probe_availability,
    require_httpx,
)
from aria.engines.options import SampleRate
from aria.engines.tts.textprep import Float32Array, ShapingOptions, SpeechShaper, pause_ms, prepare_text
from aria.errors import EngineError, EngineUnavailable, InvalidInput
from aria.types import AudioChunk, float32_samples

__all__ = ["OPENAI_VOICES", "OpenAITTS", "PcmDecoder", "WavDecoder"]

log = logging.getLogger(__name__)

_ENGINE = "tts:openai"
_OFFICIAL = "https://api.openai.com/v1"
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
_MAX_GAIN = 8.0
_RECENT_SENTENCES = 8
_MAX_WAV_HEADER = 64 * 1024


class PcmDecoder:
    """Little-endian 16-bit PCM bytes in pieces of any size -> float32 mono samples. A sample (or frame)
    split across two pieces is carried over to the next."""

    def __init__(self, channels: int = 1) -> None:
        self.channels = channels
        self._carry = b""

    @property
    def leftover(self) -> int:
        """Bytes of an incomplete frame still waiting for the rest."""
        return len(self._carry)

    def feed(self, data: bytes) -> Float32Array:
        data = self._carry + data
        frame = 2 * self.channels
        usable = len(data) - len(data) % frame
        self._carry = data[usable:]
        samples = float32_samples(np.frombuffer(data[:usable], dtype="<i2"))
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return samples


class WavDecoder:
    """A streamed WAV file (16-bit PCM; the data size may be a placeholder) -> float32 mono samples."""

    def __init__(self) -> None:
        self._header = b""
        self._pcm: PcmDecoder | None = None
        self.sample_rate: int | None = None

    @property
    def leftover(self) -> int:
        return self._pcm.leftover if self._pcm is not None else len(self._header)

    def feed(self, data: bytes) -> Float32Array:
        if self._pcm is not None:
            return self._pcm.feed(data)
        self._header += data
        parsed = self._parse_header()
        if parsed is None:
            if len(self._header) > _MAX_WAV_HEADER:
                raise EngineError("WAV response has no data chunk in its first 64 KiB", engine=_ENGINE)
            return np.zeros(0, np.float32)
        self._pcm, rest = parsed
        return self._pcm.feed(rest)

    def _parse_header(self) -> tuple[PcmDecoder, bytes] | None:
        """A decoder for the data and the bytes after the ``data`` chunk header, once it has arrived."""
        head = self._header
        if len(head) < 12:
            return None
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise EngineError("response is not a WAV file (no RIFF/WAVE header)", engine=_ENGINE)
        offset, channels = 12, 0
        while len(head) >= offset + 8:
            chunk_id, size = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
            body = offset + 8
            if chunk_id == b"data":
                if not channels:
                    raise EngineError("WAV response has no fmt chunk before its data", engine=_ENGINE)
                return PcmDecoder(channels), head[body:]
            if len(head) < body + size:
                return None
            if chunk_id == b"fmt ":
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[body : body + 16])
                if fmt not in (1, 0xFFFE) or bits != 16:
                    raise EngineError(
                        f"WAV response is not 16-bit PCM (format {fmt}, {bits} bits); "
                        "use response_format 'pcm'",
                        engine=_ENGINE,
                    )
                self.sample_rate = rate
            offset = body + size + (size & 1)
        return None


class OpenAITTS(HTTPEngine):
    """Text to speech through an OpenAI-compatible ``/audio/speech`` endpoint; see the module docstring."""

    kind: ClassVar[EngineKind] = "tts"
    name: str = "openai"

    class Config(ShapingOptions):
        base_url: HttpURL = _OFFICIAL
        #: Sent as ``Authorization: Bearer ...``; required for api.openai.com.
        api_key: SecretStr | None = None
        model: str = "tts-1"
        voice: str = "alloy"
        #: Voices the server offers (``voice`` is always allowed); extend it for other servers.
        voices: tuple[str, ...] = OPENAI_VOICES
        response_format: Literal["pcm", "wav"] = "pcm"
        #: Rate of ``pcm`` responses, and the output rate.
        sample_rate: SampleRate = 24000
        speed: float = Field(default=1.0, ge=0.25, le=4.0)
        #: Connect timeout, and the longest wait for any byte of the response.
        timeout_s: float = Field(default=10.0, gt=0)

    config: Config

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self._voices = tuple(dict.fromkeys([self.config.voice, *self.config.voices]))
        self.capabilities = Capabilities(
            streaming=True,
            local=is_local(self.config.base_url),
            sample_rate=self.config.sample_rate,
            voices=self._voices,
        )
        self._client: HTTPClient | None = None
        self._recent_peaks: deque[float] = deque(maxlen=_RECENT_SENTENCES)

    @classmethod
    def check(cls, config: Config) -> Availability:
        if (missing := httpx_missing()) is not None:
            return missing
        if config.base_url == _OFFICIAL and config.api_key is None:
            return Availability(False, "no API key for api.openai.com", "set tts.options.api_key")
        return probe_availability(
            f"{config.base_url}/models",
            api_key=config.api_key,
            unreachable="cannot reach the speech server",
            fix="start the speech server or set tts.options.base_url",
        )

    async def start(self) -> None:
        if self._client is not None:
            return
        require_httpx(_ENGINE)
        if self.config.base_url == _OFFICIAL and self.config.api_key is None:
            raise EngineUnavailable("no API key for api.openai.com; set tts.options.api_key", engine=_ENGINE)
        self._client = HTTPClient.open(
            _ENGINE,
            self.config,
            api_key=self.config.api_key,
            hints=openai_hints("tts.options.api_key"),
        )

    async def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        """The sentence as audio blocks while the response streams in, then its pause."""
        spoken = prepare_text(text)
        if not spoken:
            return
        name = voice or self.config.voice
        if name not in self._voices:
            raise InvalidInput(
                f"unknown voice {name!r} for {self.config.base_url}; "
                f"try one of {', '.join(self._voices[:8])} "
                "(add the server's voices to tts.options.voices)"
            )
        if self._client is None:
            await self.start()
        client = self._client
        assert client is not None
        rate = self.config.sample_rate
        payload: dict[str, Any] = {
            "model": self.config.model,
            "input": spoken,
            "voice": name,
            "response_format": self.config.response_format,
        }
        if self.config.speed != 1.0:
            payload["speed"] = self.config.speed
        decoder = WavDecoder() if self.config.response_format == "wav" else PcmDecoder()
        shaper = SpeechShaper(rate, self.config, gain=self._start_gain())
        held: list[Float32Array] = []  # a WAV at another rate, resampled once complete
        peak = 0.0
        url = f"{self.config.base_url}/audio/speech"
        async with closing_stream(client.post_bytes(url, payload)) as pieces:
            async for piece in pieces:
                samples = decoder.feed(piece)
                if samples.size == 0:
                    continue
                source_rate = getattr(decoder, "sample_rate", None) or rate
                if source_rate != rate:
                    held.append(samples)
                    continue
                peak = self._track(shaper, samples, peak)
                for block in shaper.push(samples):
                    yield AudioChunk(block, rate)
        if isinstance(decoder, WavDecoder) and decoder.sample_rate is None:
            raise EngineError("WAV response ended before its data chunk", engine=_ENGINE)
        if decoder.leftover:
            log.warning("%s: response ended with %d byte(s) of a partial sample", _ENGINE, decoder.leftover)
        if held:
            source = getattr(decoder, "sample_rate", None) or rate
            samples = await asyncio.to_thread(resample, np.concatenate(held), source, rate)
            peak = self._track(shaper, samples, peak)
            for block in shaper.push(samples):
                yield AudioChunk(block, rate)
        if peak > 0:
            self._recent_peaks.append(peak)
        for block in shaper.finish(pause_ms(spoken, self.config)):
            yield AudioChunk(block, rate)

    def _start_gain(self) -> float:
        if not self._recent_peaks:
            return 1.0
        return min(_MAX_GAIN, self.config.target_peak / max(max(self._recent_peaks), 1e-6))

    def _track(self, shaper: SpeechShaper, samples: Float32Array, peak: float) -> float:
        """Lower the gain at once when a louder peak than the reference arrives; returns the new peak."""
        peak = max(peak, float(np.max(np.abs(samples))))
        if peak * shaper.gain > self.config.target_peak:
            shaper.gain = self.config.target_peak / peak
        return peak
