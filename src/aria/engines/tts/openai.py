"""Speech from an OpenAI-compatible server: ``POST {base_url}/audio/speech``.

Works with OpenAI and with local servers that speak the same API (Kokoro-FastAPI, openedai-speech,
LocalAI, ...). The response body is read as it arrives and turned into audio blocks at once, so playback
can start while the server is still speaking. ``response_format`` ``"pcm"`` is raw 16-bit little-endian
mono at ``sample_rate`` (24 kHz for OpenAI); ``"wav"`` is parsed incrementally (its header gives the rate;
a rate other than ``sample_rate`` is resampled once the sentence is complete).

Levels: the server's level is kept for the first sentence (limited to the target peak); afterwards the
gain brings the loudest peak of the last few sentences to the target, and a louder peak lowers it at once.

Errors: refused connection -> :class:`~aria.errors.EngineUnavailable`; no byte within ``timeout_s`` ->
:class:`~aria.errors.EngineTimeout`; HTTP errors and a body cut mid-stream ->
:class:`~aria.errors.EngineError` (retryable for 408/429/5xx and cuts). The API key is sent as a Bearer
token and is never logged.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import struct
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, SecretStr, field_validator

from aria.core.audio import resample
from aria.engines.base import Availability, Capabilities, EngineHealth, EngineKind
from aria.engines.tts.textprep import Float32Array, ShapingOptions, SpeechShaper, pause_ms, prepare_text
from aria.errors import EngineError, EngineTimeout, EngineUnavailable, InvalidInput
from aria.types import SAMPLE_RATES, AudioChunk

if TYPE_CHECKING:
    import httpx

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
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / np.float32(32768.0)
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


class OpenAITTS:
    """Text to speech through an OpenAI-compatible ``/audio/speech`` endpoint; see the module docstring."""

    kind: ClassVar[EngineKind] = "tts"
    name: str = "openai"

    class Config(ShapingOptions):
        base_url: str = _OFFICIAL
        #: Sent as ``Authorization: Bearer ...``; required for api.openai.com.
        api_key: SecretStr | None = None
        model: str = "tts-1"
        voice: str = "alloy"
        #: Voices the server offers (``voice`` is always allowed); extend it for other servers.
        voices: tuple[str, ...] = OPENAI_VOICES
        response_format: Literal["pcm", "wav"] = "pcm"
        #: Rate of ``pcm`` responses, and the output rate.
        sample_rate: int = 24000
        speed: float = Field(default=1.0, ge=0.25, le=4.0)
        #: Connect timeout, and the longest wait for any byte of the response.
        timeout_s: float = Field(default=10.0, gt=0)

        @field_validator("sample_rate")
        @classmethod
        def _known_rate(cls, value: int) -> int:
            if value not in SAMPLE_RATES:
                raise ValueError(f"unsupported sample rate {value} Hz; use one of {sorted(SAMPLE_RATES)}")
            return value

        @field_validator("base_url")
        @classmethod
        def _http_url(cls, value: str) -> str:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
            return value.rstrip("/")

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self._voices = tuple(dict.fromkeys([self.config.voice, *self.config.voices]))
        self.capabilities = Capabilities(
            streaming=True,
            local=_is_local(self.config.base_url),
            sample_rate=self.config.sample_rate,
            voices=self._voices,
        )
        self._client: httpx.AsyncClient | None = None
        self._recent_peaks: deque[float] = deque(maxlen=_RECENT_SENTENCES)

    @classmethod
    def check(cls, config: Config) -> Availability:
        if importlib.util.find_spec("httpx") is None:
            return Availability(False, "httpx is not installed", "pip install 'aria-assistant[llm]'")
        if config.base_url == _OFFICIAL and config.api_key is None:
            return Availability(False, "no API key for api.openai.com", "set tts.options.api_key")
        import httpx

        try:
            with httpx.Client(timeout=0.5) as client:
                client.get(f"{config.base_url}/models", headers=_auth(config))
        except httpx.HTTPError as exc:
            return Availability(
                False,
                f"cannot reach {config.base_url} ({type(exc).__name__})",
                "start the speech server or set tts.options.base_url",
            )
        return Availability(True)

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            import httpx
        except ImportError as exc:
            raise EngineUnavailable(
                "httpx is not installed; pip install 'aria-assistant[llm]'", engine=_ENGINE
            ) from exc
        if self.config.base_url == _OFFICIAL and self.config.api_key is None:
            raise EngineUnavailable("no API key for api.openai.com; set tts.options.api_key", engine=_ENGINE)
        timeout = self.config.timeout_s
        self._client = httpx.AsyncClient(
            headers=_auth(self.config), timeout=httpx.Timeout(timeout, connect=timeout)
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def health(self) -> EngineHealth:
        if self._client is None:
            return EngineHealth(ok=False, detail="not started")
        return EngineHealth(ok=True, detail=f"{self.config.model} at {self.config.base_url}")

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
        import httpx

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
        try:
            async with client.stream("POST", url, json=payload) as response:
                if response.status_code >= 400:
                    raise _http_error(response.status_code, (await response.aread())[:300], url)
                async for piece in response.aiter_bytes():
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
        except httpx.TimeoutException as exc:
            raise EngineTimeout(
                f"no response from {url} within {self.config.timeout_s:g} s ({type(exc).__name__})",
                engine=_ENGINE,
            ) from exc
        except httpx.ConnectError as exc:
            raise EngineUnavailable(
                f"cannot connect to {self.config.base_url}: {exc}", engine=_ENGINE
            ) from exc
        except httpx.HTTPError as exc:  # the body was cut, or the connection failed mid-stream
            raise EngineError(
                f"speech stream from {url} broke off: {type(exc).__name__}: {exc}", engine=_ENGINE
            ) from exc
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


def _auth(config: OpenAITTS.Config) -> dict[str, str]:
    if config.api_key is None:
        return {}
    return {"Authorization": f"Bearer {config.api_key.get_secret_value()}"}


def _is_local(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".local")


def _http_error(status: int, body: bytes, url: str) -> EngineError:
    detail = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
    message = f"{url} answered HTTP {status}: {detail}" if detail else f"{url} answered HTTP {status}"
    if status in (401, 403):
        return EngineUnavailable(f"{message}; check tts.options.api_key", engine=_ENGINE)
    if status == 404:
        return EngineUnavailable(f"{message}; is base_url right (it usually ends in /v1)?", engine=_ENGINE)
    return EngineError(message, engine=_ENGINE, retryable=status in (408, 409, 425, 429) or status >= 500)
