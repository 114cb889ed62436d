"""Where engine model files live: ``<data_dir>/models`` (``ARIA_DATA_DIR`` or the per-user data folder)."""

from __future__ import annotations

import os
from pathlib import Path

from aria.core.config import default_data_dir
from aria.engines.catalog import find_entry

__all__ = ["model_location", "models_dir"]


def models_dir(data_dir: Path | None = None) -> Path:
    """The folder engines read model files from and ``aria models pull`` writes them to."""
    if data_dir is None:
        env = os.environ.get("ARIA_DATA_DIR")
        data_dir = Path(env).expanduser() if env else default_data_dir()
    return data_dir / "models"


def model_location(name: str, data_dir: Path | None = None) -> Path:
    """The file or folder an engine loads for catalog model ``name`` (``"kokoro"`` ->
    ``<models_dir>/kokoro``), where ``aria models pull NAME`` puts it."""
    return find_entry(name).local_path(models_dir(data_dir))
