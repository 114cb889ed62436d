"""Real memory numbers: this process's resident set, the GPUs' memory, and the growth around a load.

:func:`process_rss_mb` reads the current resident set from ``/proc/self/statm`` on Linux. Elsewhere it
falls back to the *peak* resident set from ``resource.getrusage``, which only ever grows (a delta
measured with it counts only new peaks), and to 0.0 where neither exists.

:func:`gpu_memory_mb` asks ``nvidia-smi`` for each device's used and total memory. It blocks for at most
``timeout_s``; call it through ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["GPUMemory", "gpu_memory_mb", "measure_load", "process_rss_mb", "total_memory_mb"]

log = logging.getLogger(__name__)

_MIB = 1024 * 1024
_STATM = Path("/proc/self/statm")
_NVIDIA_SMI_QUERY = ("--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits")

T = TypeVar("T")


def process_rss_mb() -> float:
    """This process's resident memory in MiB: current on Linux, the peak elsewhere, 0.0 if unknown."""
    try:
        fields = _STATM.read_bytes().split()
        return int(fields[1]) * _page_size() / _MIB
    except (OSError, IndexError, ValueError):
        return _peak_rss_mb()


@functools.cache
def total_memory_mb() -> float:
    """The machine's RAM in MB (``/proc/meminfo``, else ``sysconf``; 8 GB when neither answers)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return 8192.0


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4096


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux and the BSDs report KiB, macOS bytes.
    return peak / _MIB if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True, slots=True)
class GPUMemory:
    """One device's memory in MiB, as ``nvidia-smi`` reports it (every process's use, not only ours)."""

    index: int
    used_mb: float
    total_mb: float

    @property
    def free_mb(self) -> float:
        return max(0.0, self.total_mb - self.used_mb)


def gpu_memory_mb(*, timeout_s: float = 2.0) -> list[GPUMemory] | None:
    """Used and total memory per NVIDIA GPU, or None when ``nvidia-smi`` is absent, fails, times out or
    prints nothing readable. Never raises."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *_NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return None
    if done.returncode != 0:
        log.debug("nvidia-smi exited with %d: %s", done.returncode, done.stderr.strip())
        return None
    return _parse_nvidia_smi(done.stdout)


def _parse_nvidia_smi(text: str) -> list[GPUMemory] | None:
    """Rows of ``used, total``; a row that is not two numbers (``[N/A]``) is skipped, keeping the others'
    device index."""
    devices: list[GPUMemory] = []
    rows = [line for line in text.splitlines() if line.strip()]
    for index, row in enumerate(rows):
        try:
            used, total = (float(value) for value in row.split(","))
        except ValueError:
            log.debug("unreadable nvidia-smi row %r", row)
            continue
        devices.append(GPUMemory(index, used, total))
    return devices or None


async def measure_load(
    load: Awaitable[T], *, measure: Callable[[], float] = process_rss_mb
) -> tuple[T, float]:
    """Await ``load`` (a model load, say) and return its result with the resident memory it added, in
    MiB. The growth is never negative: memory freed elsewhere meanwhile counts as none added. Anything
    else running at the same time is counted too."""
    before = measure()
    result = await load
    return result, max(0.0, measure() - before)
