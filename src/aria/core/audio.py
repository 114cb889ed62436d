"""Audio utilities: WAV files, resampling, levels. NumPy only.

Resampling is FFT-based (band-limited: no aliasing when going down), meant for whole clips or
sentence-sized blocks such as one TTS sentence, not for tiny streaming frames.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aria.errors import InvalidInput
from aria.types import int16_samples

__all__ = ["normalize_peak", "read_wav", "resample", "rms_dbfs", "write_wav"]

Float32Array = npt.NDArray[np.float32]


def resample(data: npt.NDArray[Any], src_rate: int, dst_rate: int) -> Float32Array:
    """Mono float32 ``data`` from ``src_rate`` to ``dst_rate`` Hz."""
    samples = np.asarray(data, dtype=np.float32)
    if src_rate == dst_rate or samples.size == 0:
        return samples
    if src_rate <= 0 or dst_rate <= 0:
        raise InvalidInput(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    n_out = max(1, round(samples.size * dst_rate / src_rate))
    spectrum = np.fft.rfft(samples)
    bins = n_out // 2 + 1
    if bins <= spectrum.size:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - spectrum.size, dtype=spectrum.dtype)])
    out = np.fft.irfft(spectrum, n_out) * (n_out / samples.size)
    return out.astype(np.float32)


def rms_dbfs(data: npt.NDArray[Any]) -> float:
    """Root-mean-square level in dB relative to full scale (float32 in [-1, 1]); -inf for silence."""
    samples = np.asarray(data, dtype=np.float32)
    if samples.dtype != np.float32:
        samples = samples.astype(np.float32)
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def normalize_peak(data: npt.NDArray[Any], peak: float = 0.89) -> Float32Array:
    """Scale so the loudest sample reaches ``peak`` (about -1 dBFS by default); silence stays silent."""
    samples = np.asarray(data, dtype=np.float32)
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top <= 1e-9:
        return samples
    return (samples * (peak / top)).astype(np.float32)


def read_wav(path: str | Path) -> tuple[Float32Array, int]:
    """A WAV file as mono float32 samples and its sample rate (8/16/32-bit integer PCM)."""
    try:
        with open(path, "rb") as fh, wave.open(fh, "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidInput(f"{path} is not a PCM WAV file: {exc}") from exc
    dtypes: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype("<i2"), 4: np.dtype("<i4")}
    if width not in dtypes:
        raise InvalidInput(f"{path}: {8 * width}-bit WAV is not supported; use 8, 16 or 32-bit PCM")
    ints = np.frombuffer(raw, dtype=dtypes[width])
    if width == 1:
        samples = (ints.astype(np.float32) - 128.0) / 128.0
    else:
        samples = ints.astype(np.float32) / float(2 ** (8 * width - 1))
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples.astype(np.float32), rate


def write_wav(path: str | Path, data: npt.NDArray[Any], sample_rate: int) -> None:
    """Write mono float32 (or int16) samples as a 16-bit PCM WAV file."""
    samples = int16_samples(np.asarray(data))
    with open(path, "wb") as fh, wave.open(fh, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.tobytes())  # little-endian int16 already
