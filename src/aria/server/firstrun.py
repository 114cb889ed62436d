"""First run: pull the default loadout in the background while the server answers with what it has.

:class:`FirstRunPull` downloads the missing files of a loadout's catalog entries one after another with
the resumable, checksummed downloader (:func:`aria.engines.downloads.download`). A transfer that breaks
is retried from where it stopped (``retries`` times); a file that fails for good (wrong checksum, HTTP
error, unreachable host) is marked ``failed`` with the reason and the pull goes on with the next entry, so
the server never stops because of a download. :meth:`FirstRunPull.snapshot` is what ``/health`` shows
under ``downloads``; listeners hear every progress update (the terminal's progress bar).

:func:`embedded_llm` is the middle of the language model chain: a detected local server, else the
embedded GGUF model once it is on disk, else the builtin responder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from aria.core.config import Settings
from aria.engines.catalog import CATALOG, ModelEntry, find_entry
from aria.engines.downloads import download, file_matches
from aria.engines.models import Loadout, default_loadout, models_dir
from aria.errors import AriaError, EngineError
from aria.pipeline.memory import gpu_memory_mb, total_memory_mb

__all__ = ["DownloadState", "FirstRunPull", "embedded_llm", "machine_loadout", "missing_entries"]

log = logging.getLogger(__name__)

State = Literal["waiting", "downloading", "done", "failed"]


@dataclass(slots=True)
class DownloadState:
    """One file of the pull: which model it belongs to, bytes done of the total, and how it stands."""

    name: str
    file: str
    done: int
    total: int | None
    state: State = "waiting"
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_loadout(*, gpu_timeout_s: float = 1.0) -> Loadout:
    """The default loadout for this machine (its RAM, and its GPU memory when ``nvidia-smi`` answers)."""
    gpus = gpu_memory_mb(timeout_s=gpu_timeout_s)
    gpu_mb = max((g.total_mb for g in gpus), default=0.0) if gpus else None
    return default_loadout(total_memory_mb(), gpu_mb)


def missing_entries(names: Sequence[str], root: Path) -> list[ModelEntry]:
    """The catalog entries among ``names`` not wholly in ``root`` (bundled ones never are missing)."""
    entries = [find_entry(name) for name in names]
    return [e for e in entries if not e.bundled and e.status(root) != "present"]


def embedded_llm(settings: Settings, preferred: str | None = None) -> Settings:
    """With ``llm.backend = auto`` (no local server was detected), ``llm:llamacpp`` on a chat model of the
    catalog that is on disk (``preferred`` first), falling back to what ``llm.fallback`` lists; the same
    settings otherwise."""
    if settings.llm.backend != "auto":
        return settings
    root = models_dir(settings.data_dir)
    chat = [e for e in CATALOG if e.engine == "llm:llamacpp" and len(e.files) == 1]
    chat.sort(key=lambda e: e.name != preferred)
    for entry in chat:
        if entry.status(root) == "present":
            data = settings.model_dump()
            data["llm"]["backend"] = "llamacpp"
            data["llm"]["options"] = {"model_path": str(entry.local_path(root)), **settings.llm.options}
            log.info("using the embedded language model %s", entry.name)
            return type(settings).model_validate(data)
    return settings


class FirstRunPull:
    """Download the missing files of ``entries`` into ``root``; see the module docstring."""

    def __init__(
        self,
        entries: Sequence[ModelEntry],
        root: Path,
        *,
        retries: int = 3,
        retry_delay_s: float = 1.0,
        timeout_s: float = 30.0,
        client: Any = None,
    ) -> None:
        self.entries = list(entries)
        self.root = root
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.timeout_s = timeout_s
        self.client = client
        self.files: list[DownloadState] = [
            DownloadState(entry.name, file.path, 0, file.size) for entry in entries for file in entry.files
        ]
        #: Hear each change of a file's state or progress.
        self.listeners: set[Callable[[DownloadState], None]] = set()
        self.finished = asyncio.Event()
        #: The engine kinds (``stt``, ``llm``...) a model was downloaded for by this pull.
        self.fetched_kinds: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None and not self.finished.is_set()

    def keep_used(self, settings: Settings) -> None:
        """Leave out (before :meth:`start`) the entries no configured engine would load: an entry for
        ``stt:whisper`` is kept while ``stt.backend`` is ``auto`` or ``whisper``."""

        def used(entry: ModelEntry) -> bool:
            kind, _, backend = entry.engine.partition(":")
            section = getattr(settings, kind, None)
            return section is not None and section.backend in ("auto", backend)

        names = {e.name for e in self.entries if not used(e)}
        self.entries = [e for e in self.entries if e.name not in names]
        self.files = [f for f in self.files if f.name not in names]

    def snapshot(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.files]

    def failed(self) -> list[DownloadState]:
        return [f for f in self.files if f.state == "failed"]

    def start(self, on_done: Callable[[], Any] | None = None) -> asyncio.Task[None]:
        """Run the pull as a task (kept here); ``on_done`` (sync or async) runs after it, pass or fail."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(on_done), name="first-run-pull")
        return self._task

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, on_done: Callable[[], Any] | None) -> None:
        try:
            await self.run()
        finally:
            self.finished.set()
        if on_done is not None:
            result = on_done()
            if asyncio.iscoroutine(result):
                await result

    async def run(self) -> None:
        """Pull every file in turn; failures are recorded, never raised."""
        states = iter(self.files)
        for entry in self.entries:
            for file in entry.files:
                state = next(states)
                dest = file.local_path(self.root)
                if await asyncio.to_thread(file_matches, dest, size=file.size, sha256=file.sha256):
                    self._set(state, state="done", done=file.size or dest.stat().st_size)
                    continue
                await self._pull(file.url, dest, state, size=file.size, sha256=file.sha256)
            if entry.status(self.root) == "present" and all(
                f.state == "done" for f in self.files if f.name == entry.name
            ):
                self.fetched_kinds.add(entry.kind)
        failed = self.failed()
        if failed:
            log.warning("first-run pull: %d file(s) failed: %s", len(failed), failed[0].error)
        else:
            log.info("first-run pull: the loadout is on disk in %s", self.root)

    async def _pull(
        self, url: str, dest: Path, state: DownloadState, *, size: int | None, sha256: str | None
    ) -> None:
        def progress(done: int, total: int | None) -> None:
            known = total if total is not None else state.total
            self._set(state, state="downloading", done=done, total=known)

        for attempt in range(self.retries + 1):
            try:
                await download(
                    url,
                    dest,
                    sha256=sha256,
                    size=size,
                    progress=progress,
                    client=self.client,
                    timeout_s=self.timeout_s,
                )
            except EngineError as exc:
                if exc.retryable and attempt < self.retries:
                    log.info("%s: %s; resuming in %.1f s", state.file, exc, self.retry_delay_s)
                    await asyncio.sleep(self.retry_delay_s)
                    continue
                self._set(state, state="failed", error=str(exc))
                log.error("could not download %s: %s", state.file, exc)
                return
            except (AriaError, OSError) as exc:
                self._set(state, state="failed", error=str(exc))
                log.error("could not download %s: %s", state.file, exc)
                return
            self._set(state, state="done", done=state.total or state.done)
            return

    def _set(self, file: DownloadState, /, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(file, key, value)
        for listener in list(self.listeners):
            try:
                listener(file)
            except Exception:
                log.exception("a download listener failed")
