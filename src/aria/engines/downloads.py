"""Resumable, verified model downloads over HTTP(S) with httpx.

:func:`download` streams ``url`` into ``<dest>.part``; when a ``.part`` file is already there (an earlier
download was interrupted) it asks only for the missing bytes with a ``Range`` request, and starts over
cleanly when the server ignores the range (``200`` instead of ``206``). When the body is complete the size
and SHA-256 are checked and the file is renamed to ``dest`` atomically, so ``dest`` is either absent or
whole. Failures are typed and say what to do:

* offline, DNS failure, refused or timed-out connection -> :class:`~aria.errors.EngineUnavailable`
  ("cannot reach HOST: ... (offline?)");
* a connection that breaks or stalls mid-file -> :class:`DownloadError` / :class:`~aria.errors.EngineTimeout`
  (retryable; the ``.part`` file is kept so the next run resumes);
* HTTP 404 and other error statuses -> :class:`DownloadError` naming the URL;
* a size or checksum mismatch -> :class:`DownloadError`, and the bad file is removed.

Why not ``huggingface_hub.hf_hub_download``: it would not make this shorter. Some files come from GitHub
releases, not the Hub; it writes its own cache layout (blobs and symlinks under ``~/.cache/huggingface``)
rather than the file the catalogue names; it checks only LFS files' SHA-256 and against the Hub's metadata,
not the catalogue's pinned size and hash; it reports progress through tqdm and blocks a thread per file;
and its errors would still need translating into the typed ones above.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from aria.errors import DownloadError, EngineTimeout, EngineUnavailable

__all__ = ["DownloadError", "ProgressCallback", "download", "file_matches", "sha256_file"]

logger = logging.getLogger(__name__)

#: ``progress(done_bytes, total_bytes_or_None)``; ``done`` never decreases and ends at the total.
ProgressCallback = Callable[[int, int | None], None]

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")
_HASH_BLOCK = 1 << 20


def _httpx() -> ModuleType:
    try:
        import httpx
    except ImportError as exc:
        raise EngineUnavailable("httpx is needed to download models; pip install httpx") from exc
    return httpx


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks (blocking: call it off the event loop)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_matches(path: Path, *, size: int | None = None, sha256: str | None = None) -> bool:
    """Whether ``path`` exists with the expected size and checksum (each checked only when given)."""
    try:
        if size is not None and path.stat().st_size != size:
            return False
        if not path.is_file():
            return False
    except OSError:
        return False
    return sha256 is None or sha256_file(path) == sha256.lower()


async def download(
    url: str,
    dest: Path | str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: ProgressCallback | None = None,
    client: Any = None,
    timeout_s: float = 30.0,
    chunk_size: int = 1 << 16,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``<dest>.part``), verify it, and return ``dest``.

    ``timeout_s`` bounds connecting (at most 10 s) and each wait for data, not the whole transfer.
    ``client`` may be an ``httpx.AsyncClient`` to reuse; it is left open.
    """
    httpx = _httpx()
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    own_client = client is None
    if own_client:
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        client = httpx.AsyncClient(timeout=timeout, follow_redirects=True)
    try:
        job = _Download(httpx, client, url, part, sha256.lower() if sha256 else None, size, progress)
        done = await job.run(chunk_size)
    finally:
        if own_client:
            await client.aclose()
    await asyncio.to_thread(_finish, part, dest)
    logger.info("downloaded %s (%d bytes) to %s", url, done, dest)
    return dest


def _finish(part: Path, dest: Path) -> None:
    with part.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(part, dest)


class _Download:
    """One download's state: where the ``.part`` file stands, what the server said, what was received."""

    def __init__(
        self,
        httpx: ModuleType,
        client: Any,
        url: str,
        part: Path,
        sha256: str | None,
        size: int | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.httpx = httpx
        self.client = client
        self.url = url
        self.host = urlsplit(url).netloc or url
        self.part = part
        self.sha256 = sha256
        self.size = size
        self.progress = progress
        self.done = 0
        self.reported = -1

    async def run(self, chunk_size: int) -> int:
        for _ in range(3):  # a stale or oversized .part file costs at most a restart or two
            offset = await asyncio.to_thread(_part_size, self.part)
            if self.size is not None and offset > self.size:
                logger.info("%s is larger than expected; starting over", self.part)
                await asyncio.to_thread(self.part.unlink, True)
                offset = 0
            if self.size is not None and offset == self.size:
                self._report(offset, self.size)
                await self._verify(offset, self.size, None)
                return offset
            complete = await self._request(offset, chunk_size)
            if complete is not None:
                return complete
        raise DownloadError(f"could not resume {self.url}; delete {self.part} and try again", retryable=False)

    async def _request(self, offset: int, chunk_size: int) -> int | None:
        """Fetch from ``offset``; the final size when done, ``None`` to start over without the part file."""
        headers = {"Accept-Encoding": "identity"}  # byte ranges must count the file's own bytes
        if offset:
            headers["Range"] = f"bytes={offset}-"
        httpx = self.httpx
        try:
            async with self.client.stream(
                "GET", self.url, headers=headers, follow_redirects=True
            ) as response:
                return await self._receive(response, offset, chunk_size)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            host = self._host_of(exc)
            raise EngineUnavailable(f"cannot reach {host}: {_describe(exc)} (offline?)") from exc
        except httpx.TimeoutException as exc:
            raise EngineTimeout(
                f"{self._host_of(exc)} stopped sending {self.url} after {self.done} bytes "
                f"({_describe(exc)}); run the same command again to resume"
            ) from exc
        except OSError as exc:  # writing the part file: disk full, permissions
            raise DownloadError(f"cannot write {self.part}: {exc}", retryable=False) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise DownloadError(f"cannot download {self.url}: {_describe(exc)}", retryable=False) from exc
        except httpx.HTTPError as exc:
            raise DownloadError(
                f"connection to {self._host_of(exc)} broke after {self.done} bytes of {self.url} "
                f"({_describe(exc)}); "
                "run the same command again to resume",
                retryable=True,
            ) from exc

    def _host_of(self, exc: Exception) -> str:
        """The host the failed request went to (after redirects, e.g. a CDN), else the URL's."""
        try:
            url = exc.request.url  # type: ignore[attr-defined]  # httpx.RequestError
            return f"{url.host}:{url.port}" if url.port else str(url.host)
        except (AttributeError, RuntimeError):  # no request attached
            return self.host

    async def _receive(self, response: Any, offset: int, chunk_size: int) -> int | None:
        status = int(response.status_code)
        if status == 416 and offset:
            total = _content_range(response.headers.get("content-range", ""))[1]
            if total is not None and total == offset:  # the part file already holds everything
                self._report(offset, total)
                await self._verify(offset, total, None)
                return offset
            logger.info("server refused range %d- for %s; starting over", offset, self.url)
            await asyncio.to_thread(self.part.unlink, True)
            return None
        if status == 404:
            raise DownloadError(f"{self.url} was not found (HTTP 404)", retryable=False)
        if status >= 400:
            reason = getattr(response, "reason_phrase", "") or ""
            raise DownloadError(
                f"HTTP {status} {reason} from {self.url}".replace("  ", " "),
                retryable=status >= 500 or status == 429,
            )
        if status == 206:
            start, total = _content_range(response.headers.get("content-range", ""))
            if start != offset:
                logger.warning("%s answered range %d- from byte %s; starting over", self.host, offset, start)
                await asyncio.to_thread(self.part.unlink, True)
                return None
        else:
            if offset:
                logger.info(
                    "%s ignored the range request; downloading %s from the start", self.host, self.url
                )
            offset = 0
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
        if self.size is not None and total is not None and total != self.size:
            raise DownloadError(
                f"{self.url} is {total} bytes but {self.size} were expected; the model catalog may be out "
                "of date",
                retryable=False,
            )
        expected = self.size if self.size is not None else total
        hasher = hashlib.sha256() if self.sha256 else None
        if hasher is not None and offset:
            await asyncio.to_thread(_hash_prefix, hasher, self.part, offset)
        self.done = offset
        self._report(offset, expected)
        fh = await asyncio.to_thread(self.part.open, "ab" if offset else "wb")
        try:
            async for chunk in response.aiter_raw(chunk_size):
                fh.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                self.done += len(chunk)
                if expected is not None and self.done > expected:
                    break
                self._report(self.done, expected)
        finally:
            fh.close()
        await self._verify(self.done, expected, hasher)
        return self.done

    async def _verify(self, done: int, expected: int | None, hasher: Any) -> None:
        if expected is not None and done < expected:
            raise DownloadError(
                f"{self.url} ended after {done} of {expected} bytes; run the same command again to resume",
                retryable=True,
            )
        if expected is not None and done > expected:
            await asyncio.to_thread(self.part.unlink, True)
            raise DownloadError(
                f"{self.url} sent more than the expected {expected} bytes; the partial file was removed",
                retryable=False,
            )
        if self.sha256 is not None:
            actual = (
                hasher.hexdigest() if hasher is not None else await asyncio.to_thread(sha256_file, self.part)
            )
            if actual != self.sha256:
                await asyncio.to_thread(self.part.unlink, True)
                raise DownloadError(
                    f"checksum mismatch for {self.url}: expected sha256 {self.sha256}, got {actual}; "
                    "the downloaded file was removed",
                    retryable=False,
                )
        self._report(done, done)

    def _report(self, done: int, total: int | None) -> None:
        if self.progress is not None and done >= self.reported:
            self.reported = done
            self.progress(done, total)


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _hash_prefix(hasher: Any, path: Path, length: int) -> None:
    with path.open("rb") as fh:
        remaining = length
        while remaining > 0:
            block = fh.read(min(_HASH_BLOCK, remaining))
            if not block:
                raise DownloadError(f"{path} shrank while resuming; delete it and try again", retryable=False)
            hasher.update(block)
            remaining -= len(block)


def _content_range(header: str) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` from ``Content-Range: bytes 100-199/1000`` (``*`` parts are None)."""
    match = _CONTENT_RANGE.search(header)
    if match is None:
        return None, None
    start = int(match[1]) if match[1] is not None else None
    total = int(match[3]) if match[3] != "*" else None
    return start, total


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
