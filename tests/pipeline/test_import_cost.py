"""Importing the pipeline stays cheap: the settings model (pydantic-settings), pydantic and NumPy are not
loaded until something needs them (the server converts its settings at its edge, an engine's options
bring pydantic, audio brings NumPy)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aria.core.config", "pydantic_settings", "pydantic", "numpy", "tomllib")


def test_importing_the_voice_pipeline_loads_no_settings_model_pydantic_or_numpy() -> None:
    code = (
        "import sys, aria.pipeline.voice, aria.pipeline.speech, aria.pipeline.answer; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_audio_still_checks_its_data_with_numpy_loaded_on_demand() -> None:
    code = (
        "import sys; from aria.types import AudioChunk; from aria.errors import InvalidInput\n"
        "assert 'numpy' not in sys.modules\n"
        "try:\n    AudioChunk(b'1234', 16000)\nexcept InvalidInput as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "audio data must be a numpy array, got bytes"
