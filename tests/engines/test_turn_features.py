"""Smart Turn's Whisper log-mel features: shape, padding, values, and agreement with Pipecat's own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from aria.engines.turn.features import N_FRAMES, N_MELS, WINDOW_SAMPLES, log_mel, mel_filters, window
from aria.engines.turn.smart_turn import _wheel_model
from aria.testing.speech import say


def pipecat_features() -> ModuleType | None:
    """Pipecat's reference feature module, loaded from its file (Pipecat's ``__init__`` is never run)."""
    model = _wheel_model()
    if model is None:
        return None
    path = model.parents[1] / "_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shape_and_dtype() -> None:
    features = log_mel(np.zeros(16000, np.float32))
    assert features.shape == (N_MELS, N_FRAMES) == (80, 800)
    assert features.dtype == np.float32


def test_silence_is_the_floor_everywhere() -> None:
    # Zero audio: every mel energy hits the 1e-10 floor, log10 -10, (x + 4) / 4 = -1.5.
    assert np.all(log_mel(np.zeros(4000, np.float32)) == -1.5)


def test_window_keeps_the_last_8_s_and_pads_at_the_start() -> None:
    short = np.ones(100, np.float32)
    padded = window(short)
    assert padded.shape == (WINDOW_SAMPLES,)
    assert np.all(padded[:-100] == 0)
    assert np.all(padded[-100:] == 1)
    long = np.arange(WINDOW_SAMPLES + 50, dtype=np.float32)
    assert np.array_equal(window(long), long[50:])


def test_only_the_last_8_s_count() -> None:
    rng = np.random.default_rng(1)
    tail = rng.standard_normal(WINDOW_SAMPLES).astype(np.float32) * 0.1
    longer = np.concatenate([rng.standard_normal(20000).astype(np.float32), tail])
    assert np.array_equal(log_mel(longer), log_mel(tail))


def test_values_are_clamped_to_8_decades_below_the_peak() -> None:
    features = log_mel(say("Hello there") * 0.5)
    assert features.max() - features.min() <= 2.0 + 1e-6  # 8 decades / 4
    assert features.min() >= -1.5
    assert features.max() <= 2.5


def test_mel_filters_are_slaney_triangles() -> None:
    filters = mel_filters()
    assert filters.shape == (80, 201)
    assert np.all(filters >= 0)
    # Slaney normalisation: each triangle's height is 2 / (its width in Hz), so low filters are tallest.
    assert np.all(filters.max(axis=1) > 0)
    assert filters[0].max() > filters[-1].max()
    # 82 edges evenly spaced from mel 0 to 45.25 (8 kHz): 1 kHz (mel 15, the linear/log break) is nearest the
    # centre of filter 26 (mel 15.08); FFT bin 25 is 1 kHz (40 Hz a bin).
    assert int(np.argmax(filters[:, 25])) == 26
    centres = np.argmax(filters, axis=1)
    assert np.all(np.diff(centres) >= 0)


def test_matches_pipecats_features_on_speech() -> None:
    reference = pipecat_features()
    if reference is None:
        pytest.skip("pipecat-ai is not installed (pip install --no-deps pipecat-ai==1.14.0)")
    audio = np.concatenate([say("What time is it?"), np.zeros(3200, np.float32)])
    # Pipecat pads (at the start) to 8 s before its feature function, as Aria's window() does.
    expected = reference.compute_whisper_log_mel_features(window(audio))
    assert np.abs(log_mel(audio) - expected).max() < 1e-5
    noise = np.random.default_rng(2).standard_normal(WINDOW_SAMPLES + 999).astype(np.float32) * 0.2
    assert np.abs(log_mel(noise) - reference.compute_whisper_log_mel_features(window(noise))).max() < 1e-5


def test_pipecat_reference_file_is_where_expected() -> None:
    model = _wheel_model()
    if model is None:
        pytest.skip("pipecat-ai is not installed")
    assert Path(model.parents[1] / "_whisper_features.py").is_file()
