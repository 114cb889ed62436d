"""Where engine model files live: ``<data_dir>/models`` (``ARIA_DATA_DIR`` or the per-user data folder)."""

from __future__ import annotations

import os
from pathlib import Path

from aria.core.config import default_data_dir

__all__ = ["models_dir"]


def models_dir(data_dir: Path | None = None) -> Path:
    """The folder engines read model files from and ``aria models pull`` writes them to."""
    if data_dir is None:
        env = os.environ.get("ARIA_DATA_DIR")
        data_dir = Path(env).expanduser() if env else default_data_dir()
    return data_dir / "models"
