"""Whisper-style log-mel features for Smart Turn v3, in NumPy (no torch, no transformers).

Smart Turn v3 was trained on the features of ``transformers.WhisperFeatureExtractor(chunk_length=8)``:

1. the last 8 s of the turn at 16 kHz (128,000 samples); a shorter turn is padded with zeros at the
   *start*, so the end of the speech is always at the end of the window;
2. the window normalised to zero mean and unit variance (float32);
3. a centred STFT (reflect padding of ``n_fft // 2``, periodic Hann window, n_fft 400, hop 160) -> 801
   frames of power spectrum, the last one dropped -> 800;
4. 80 Slaney-scale mel filters with Slaney area normalisation (as librosa and Whisper), 0-8 kHz;
5. ``log10(max(mel, 1e-10))``, clamped from below at ``max - 8``, then ``(x + 4) / 4``.

The result is a float32 ``(80, 800)`` array; the model takes it as ``input_features [1, 80, 800]``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

__all__ = ["N_FRAMES", "N_MELS", "SAMPLE_RATE", "WINDOW_SAMPLES", "log_mel", "mel_filters", "window"]

SAMPLE_RATE = 16000
#: The model sees the last 8 s of the turn.
WINDOW_SAMPLES = 8 * SAMPLE_RATE
N_FFT = 400
HOP = 160
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

# Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: Float64Array) -> Float64Array:
    mel = hz / _LINEAR_HZ_PER_MEL
    above = hz >= _BREAK_HZ
    mel[above] = _BREAK_MEL + np.log(hz[above] / _BREAK_HZ) / _LOG_STEP
    return mel


def _mel_to_hz(mel: Float64Array) -> Float64Array:
    hz = mel * _LINEAR_HZ_PER_MEL
    above = mel >= _BREAK_MEL
    hz[above] = _BREAK_HZ * np.exp(_LOG_STEP * (mel[above] - _BREAK_MEL))
    return hz


@cache
def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> Float64Array:
    """Triangular Slaney mel filters with area normalisation, ``(n_mels, n_fft // 2 + 1)``, 0 Hz to
    Nyquist (librosa's ``mel(htk=False, norm="slaney")``)."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(0.0, _hz_to_mel(np.array([sample_rate / 2.0]))[0], n_mels + 2)
    edges = _mel_to_hz(edges_mel)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    filters: Float64Array = triangles * (2.0 / (upper - lower))
    filters.flags.writeable = False
    return filters


@cache
def _hann(n_fft: int = N_FFT) -> Float64Array:
    """The periodic Hann window (as ``torch.hann_window``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)


def window(audio: npt.NDArray[np.floating], samples: int = WINDOW_SAMPLES) -> Float32Array:
    """The last ``samples`` of ``audio`` as float32, zero-padded at the start when shorter."""
    flat = np.asarray(audio, dtype=np.float32).reshape(-1)
    if flat.size >= samples:
        return np.ascontiguousarray(flat[flat.size - samples :])
    out = np.zeros(samples, dtype=np.float32)
    out[samples - flat.size :] = flat
    return out


def log_mel(audio: npt.NDArray[np.floating]) -> Float32Array:
    """Smart Turn's input for a turn: ``(80, 800)`` float32 (see the module docstring). ``audio`` is
    16 kHz mono; only its last 8 s are used."""
    x = window(audio)
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))
    pad = N_FFT // 2
    padded = np.pad(x.astype(np.float64), pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=-1)) ** 2  # (801, 201)
    mel = mel_filters() @ power[:-1].T  # (80, 800)
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    features: Float32Array = ((logs + 4.0) / 4.0).astype(np.float32)
    return features
