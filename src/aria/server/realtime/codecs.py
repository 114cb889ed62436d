"""The Realtime API's audio formats, and resampling to and from the engines' rates.

``audio/pcm`` is 16-bit little-endian mono at 24 kHz; ``audio/pcmu`` (G.711 µ-law) and ``audio/pcma``
(G.711 A-law) are 8 kHz, one byte a sample. G.711 is done with two 65,536-entry encode tables and two
256-entry decode tables built once with numpy (the standard library's ``audioop`` is gone in 3.13).
Streams are resampled with soxr's streaming resampler, so block boundaries leave no clicks.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from aria.errors import InvalidInput
from aria.types import float32_samples, int16_samples

__all__ = [
    "FORMAT_RATES",
    "AudioFormat",
    "Decoder",
    "Encoder",
    "alaw_decode",
    "alaw_encode",
    "b64decode_audio",
    "ulaw_decode",
    "ulaw_encode",
]

AudioFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
#: The sample rate of each wire format.
FORMAT_RATES: dict[str, int] = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}
Float32 = npt.NDArray[np.float32]


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = codes & 0x80, (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return np.asarray(~(sign | (exponent << 4) | mantissa) & 0xFF, dtype=np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm >= 0, 0x80, 0)
    magnitude = np.minimum(np.where(pcm < 0, -pcm - 1, pcm), 32767) >> 3
    exponent = np.where(magnitude < 32, 0, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    return np.asarray((sign | (exponent << 4) | mantissa) ^ 0x55, dtype=np.uint8)


_ULAW_DEC, _ALAW_DEC = _ulaw_decode_table(), _alaw_decode_table()
_ULAW_ENC, _ALAW_ENC = _ulaw_encode_table(), _alaw_encode_table()


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    return bytes(_ULAW_ENC[pcm.astype(np.int32) + 32768].tobytes())


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    return bytes(_ALAW_ENC[pcm.astype(np.int32) + 32768].tobytes())


def b64decode_audio(text: str) -> bytes:
    """The bytes of a base64 audio field; :class:`InvalidInput` when it is not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"audio: not valid base64 ({exc})") from exc


class Decoder:
    """Wire audio of one format -> float32 mono at ``rate`` (the engines' rate), resampled as a stream."""

    def __init__(self, fmt: str, rate: int) -> None:
        if fmt not in FORMAT_RATES:
            raise InvalidInput(f"unknown audio format {fmt!r}; use one of {sorted(FORMAT_RATES)}")
        self.format, self.rate = fmt, rate
        self.wire_rate = FORMAT_RATES[fmt]
        self._stream = soxr.ResampleStream(self.wire_rate, rate, 1, dtype="float32")

    def samples_of(self, data: bytes) -> int:
        """How many wire samples ``data`` holds."""
        return len(data) // 2 if self.format == "audio/pcm" else len(data)

    def decode(self, data: bytes) -> Float32:
        if self.format == "audio/pcm":
            if len(data) % 2:
                raise InvalidInput("audio/pcm audio must be whole 16-bit samples (an even number of bytes)")
            pcm = np.frombuffer(data, dtype="<i2")
        elif self.format == "audio/pcmu":
            pcm = ulaw_decode(data)
        else:
            pcm = alaw_decode(data)
        samples = float32_samples(pcm)
        if self.wire_rate == self.rate:
            return samples
        return np.asarray(self._stream.resample_chunk(samples), dtype=np.float32)


class Encoder:
    """float32 mono at an engine's rate -> wire audio of one format (resampled per answer stream)."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMAT_RATES:
            raise InvalidInput(f"unknown audio format {fmt!r}; use one of {sorted(FORMAT_RATES)}")
        self.format = fmt
        self.wire_rate = FORMAT_RATES[fmt]
        self._streams: dict[int, soxr.ResampleStream] = {}

    def encode(self, samples: Float32, rate: int, *, last: bool = False) -> bytes:
        if rate != self.wire_rate:
            stream = self._streams.get(rate)
            if stream is None:
                stream = self._streams[rate] = soxr.ResampleStream(rate, self.wire_rate, 1, dtype="float32")
            samples = np.asarray(stream.resample_chunk(samples.astype(np.float32), last=last), np.float32)
            if last:
                del self._streams[rate]
        pcm = int16_samples(samples)
        if self.format == "audio/pcm":
            return pcm.tobytes()  # little-endian int16 already
        return ulaw_encode(pcm) if self.format == "audio/pcmu" else alaw_encode(pcm)

    def seconds(self, data: bytes) -> float:
        """How long ``data`` (in this format) plays."""
        per_sample = 2 if self.format == "audio/pcm" else 1
        return len(data) / per_sample / self.wire_rate
