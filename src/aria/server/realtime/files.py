"""Audio files for ``/v1/audio/*``: any container PyAV reads (WAV without it) in, WAV/PCM (and MP3, Opus,
AAC, FLAC with PyAV) out. PyAV comes with faster-whisper (the ``stt`` extra); it is imported only here."""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.core.audio import resample
from aria.errors import InvalidInput
from aria.types import float32_samples, int16_samples

__all__ = ["CONTENT_TYPES", "decode_file", "encode_file"]

Float32 = npt.NDArray[np.float32]
#: response_format -> (PyAV container, codec, content type); ``wav`` and ``pcm`` need no PyAV.
_CODECS = {
    "mp3": ("mp3", "mp3"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
}
CONTENT_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
}


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise InvalidInput(
            "only WAV is understood without PyAV; install aria-assistant[stt] for other formats"
        ) from exc
    return av


def decode_file(data: bytes, rate: int = 16000) -> Float32:
    """A whole audio file as float32 mono at ``rate``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(data)) as wav:
                width, channels, src_rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
                frames = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError) as exc:
            raise InvalidInput(f"the WAV file cannot be read: {exc}") from exc
        if width != 2:
            raise InvalidInput(f"WAV files must be 16-bit PCM, got {8 * width}-bit")
        samples = float32_samples(np.frombuffer(frames, dtype="<i2"))
        samples = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
        return resample(samples, src_rate, rate)
    av = _av()
    try:
        with av.open(io.BytesIO(data)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            blocks = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(audio=0)
                for out in resampler.resample(frame)
            ]
            blocks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise InvalidInput(f"the audio file cannot be decoded: {exc}") from exc
    return np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)


def encode_file(samples: Float32, rate: int, response_format: str) -> bytes:
    """``samples`` (mono float32 at ``rate``) as a file of ``response_format``; ``pcm`` is raw 16-bit
    little-endian at 24 kHz, like OpenAI's."""
    if response_format == "pcm":
        samples, rate = resample(samples, rate, 24000), 24000
    pcm = int16_samples(samples)
    if response_format == "pcm":
        return pcm.tobytes()
    if response_format == "wav":
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(pcm.tobytes())
        return out.getvalue()
    if response_format not in _CODECS:
        raise InvalidInput(f"unknown response_format {response_format!r}; use one of {sorted(CONTENT_TYPES)}")
    av = _av()
    fmt, codec = _CODECS[response_format]
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
