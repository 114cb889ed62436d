"""Where engine model files live: ``<data_dir>/models`` (``ARIA_DATA_DIR`` or the per-user data folder),
and :class:`LocalModelCheck`, the questions every local engine asks before it loads them."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aria.core.config import default_data_dir
from aria.engines.base import Availability
from aria.engines.catalog import find_entry
from aria.errors import EngineUnavailable

__all__ = ["LocalModelCheck", "model_location", "models_dir"]


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


@dataclass(frozen=True, slots=True)
class LocalModelCheck:
    """What a local engine needs before it can load: Python packages, then model files on disk.

    ``check()`` and ``start()`` ask the same questions and give the same reason and fix, ``check()`` as an
    :class:`~aria.engines.base.Availability` and ``start()`` as an :class:`~aria.errors.EngineUnavailable`.
    Nothing is imported or loaded.
    """

    #: What the files are, for messages (``"Kokoro model files"``).
    files: str
    #: ``(module, pip package)`` pairs, looked for in order with :func:`importlib.util.find_spec`.
    packages: tuple[tuple[str, str], ...]
    install_fix: str
    pull_fix: str

    def problem(self, paths: Iterable[Path]) -> tuple[str, str] | None:
        """``(what is wrong, how to fix it)`` for the first thing missing, or None."""
        for module, package in self.packages:
            if importlib.util.find_spec(module) is None:
                return f"{package} is not installed", self.install_fix
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            return f"{self.files} not found at {', '.join(missing)}", self.pull_fix
        return None

    def availability(self, paths: Iterable[Path]) -> Availability:
        problem = self.problem(paths)
        return Availability(True) if problem is None else Availability(False, *problem)

    def require(self, paths: Iterable[Path], *, engine: str) -> None:
        """Raise :class:`~aria.errors.EngineUnavailable` (``"reason; fix"``) when something is missing."""
        problem = self.problem(paths)
        if problem is not None:
            raise EngineUnavailable("; ".join(problem), engine=engine)
