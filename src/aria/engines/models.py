"""Where engine model files live: ``<data_dir>/models`` (``ARIA_DATA_DIR`` or the per-user data folder),
:class:`LocalModelCheck`, the questions every local engine asks before it loads them, and
:func:`default_loadout`, the models ``aria serve`` and ``aria models pull --loadout default`` fetch, sized
to the machine."""

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

__all__ = [
    "DEFAULT_LLM",
    "SMALL_LLM",
    "SMALL_LLM_BELOW_MB",
    "Loadout",
    "LocalModelCheck",
    "default_loadout",
    "model_location",
    "models_dir",
]

#: The chat model of the default loadout, and the one for machines with less memory.
DEFAULT_LLM = "qwen3-4b"
SMALL_LLM = "qwen2.5-1.5b"
#: Below this much RAM (MiB) and without a GPU of at least ``_GPU_MB`` the small model is chosen: a machine
#: sold as 8 GB reports about 7.6 GiB, and the 4B model (2.5 GB) plus Whisper and Kokoro fit in it.
SMALL_LLM_BELOW_MB = 7 * 1024
_GPU_MB = 6 * 1024
#: The rest of the default loadout: speech recognition, the voice, the end-of-turn model.
_SPEECH = ("whisper-base.en", "kokoro", "smart-turn")


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


@dataclass(frozen=True, slots=True)
class Loadout:
    """The catalog models a loadout pulls (the language model first) and why this language model."""

    llm: str
    models: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        """``qwen3-4b (16 GB RAM, no GPU)``."""
        return f"{self.llm} ({self.reason})"


def default_loadout(ram_mb: float, gpu_mb: float | None = None) -> Loadout:
    """The default loadout for a machine with ``ram_mb`` of RAM and ``gpu_mb`` of GPU memory (None: no
    GPU): the default chat model, or the small one when memory is short."""
    gpu = "no GPU" if not gpu_mb else f"{gpu_mb / 1024:.0f} GB GPU"
    machine = f"{ram_mb / 1024:.0f} GB RAM, {gpu}"
    big_enough = ram_mb >= SMALL_LLM_BELOW_MB or (gpu_mb or 0) >= _GPU_MB
    llm = DEFAULT_LLM if big_enough else SMALL_LLM
    return Loadout(llm, (llm, *_SPEECH), machine)
