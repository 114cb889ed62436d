"""download() against a real HTTP server on 127.0.0.1 (stdlib http.server in a thread) that honours Range
requests, or is told to ignore them, cut the body short, answer 404/500, redirect, or stall."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aria.engines.downloads import DownloadError, download, file_matches, sha256_file
from aria.errors import EngineTimeout, EngineUnavailable

PAYLOAD = hashlib.sha256(b"seed").digest() * 10_000  # 320,000 bytes, not compressible by accident
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Behaviour:
    ignore_range: bool = False
    #: Send only this many body bytes of the next response(s), then close the connection.
    cut_after: int | None = None
    status: int | None = None
    stall_s: float = 0.0
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        behaviour.requests.append((self.path, self.headers.get("Range")))
        if behaviour.stall_s:
            time.sleep(behaviour.stall_s)
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/files/" + self.path.removeprefix("/redirect/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.server.files.get(self.path)
        if behaviour.status is not None or data is None:
            self.send_error(behaviour.status or 404)
            return
        status, body, headers = 200, data, {}
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not behaviour.ignore_range:
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, body = 206, data[start:]
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour.cut_after is not None:
            self.wfile.write(body[: behaviour.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {"/files/model.bin": PAYLOAD}
        self.behaviour = Behaviour()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (timeout tests) leaves a broken pipe behind: expected here

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))

    def check(self, total: int) -> None:
        done = [d for d, _ in self.calls]
        assert done == sorted(done), "progress went backwards"
        assert self.calls[-1] == (total, total)


async def test_full_download_with_checksum(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "model.bin"
    progress = Progress()
    result = await download(
        f"{server.base}/files/model.bin",
        dest,
        sha256=DIGEST,
        size=len(PAYLOAD),
        progress=progress,
        chunk_size=8192,
    )
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("model.bin.part").exists()
    assert server.behaviour.requests == [("/files/model.bin", None)]
    progress.check(len(PAYLOAD))
    assert progress.calls[0] == (0, len(PAYLOAD))
    assert len(progress.calls) > 10  # reported while streaming, not only at the end


async def test_resume_from_a_partial_file(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    dest.with_name("model.bin.part").write_bytes(PAYLOAD[:100_000])
    progress = Progress()
    await download(f"{server.base}/files/model.bin", dest, sha256=DIGEST, progress=progress)
    assert server.behaviour.requests == [("/files/model.bin", "bytes=100000-")]
    assert dest.read_bytes() == PAYLOAD
    assert progress.calls[0] == (100_000, len(PAYLOAD))  # total from Content-Range
    progress.check(len(PAYLOAD))


async def test_server_ignoring_range_restarts_cleanly(server: FileServer, tmp_path: Path) -> None:
    server.behaviour.ignore_range = True
    dest = tmp_path / "model.bin"
    dest.with_name("model.bin.part").write_bytes(b"stale bytes from another version" * 100)
    progress = Progress()
    await download(
        f"{server.base}/files/model.bin", dest, sha256=DIGEST, size=len(PAYLOAD), progress=progress
    )
    assert server.behaviour.requests == [("/files/model.bin", "bytes=3200-")]
    assert dest.read_bytes() == PAYLOAD
    assert progress.calls[0] == (0, len(PAYLOAD))
    progress.check(len(PAYLOAD))


async def test_checksum_mismatch_removes_the_file(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        await download(f"{server.base}/files/model.bin", dest, sha256="0" * 64)
    assert DIGEST in str(info.value)
    assert not dest.exists()
    assert not dest.with_name("model.bin.part").exists()


async def test_404_names_the_url(server: FileServer, tmp_path: Path) -> None:
    url = f"{server.base}/files/missing.bin"
    with pytest.raises(DownloadError, match="not found") as info:
        await download(url, tmp_path / "missing.bin")
    assert url in str(info.value)
    assert "404" in str(info.value)
    assert not info.value.retryable
    assert not (tmp_path / "missing.bin").exists()
    assert not (tmp_path / "missing.bin.part").exists()


async def test_server_error_is_retryable(server: FileServer, tmp_path: Path) -> None:
    server.behaviour.status = 503
    with pytest.raises(DownloadError, match="HTTP 503") as info:
        await download(f"{server.base}/files/model.bin", tmp_path / "model.bin")
    assert info.value.retryable


async def test_refused_connection_fails_fast_and_clearly(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=rf"cannot reach 127\.0\.0\.1:{port}: .*\(offline\?\)"):
        await download(f"http://127.0.0.1:{port}/model.bin", tmp_path / "model.bin")
    assert time.monotonic() - started < 2.0


async def test_stalled_server_times_out(server: FileServer, tmp_path: Path) -> None:
    server.behaviour.stall_s = 1.0
    started = time.monotonic()
    with pytest.raises(EngineTimeout, match="run the same command again"):
        await download(f"{server.base}/files/model.bin", tmp_path / "model.bin", timeout_s=0.2)
    assert time.monotonic() - started < 0.9


async def test_cut_transfer_keeps_the_part_file_and_the_next_run_resumes(
    server: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "model.bin"
    url = f"{server.base}/files/model.bin"
    server.behaviour.cut_after = 120_000
    with pytest.raises(DownloadError, match=r"broke after .* run the same command again") as info:
        await download(url, dest, sha256=DIGEST, size=len(PAYLOAD))
    assert info.value.retryable
    part = dest.with_name("model.bin.part")
    kept = part.stat().st_size
    assert 0 < kept <= 120_000
    assert not dest.exists()
    server.behaviour.cut_after = None
    progress = Progress()
    await download(url, dest, sha256=DIGEST, size=len(PAYLOAD), progress=progress)
    assert server.behaviour.requests[-1] == ("/files/model.bin", f"bytes={kept}-")
    assert dest.read_bytes() == PAYLOAD
    progress.check(len(PAYLOAD))


async def test_redirects_are_followed_with_the_range(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    dest.with_name("model.bin.part").write_bytes(PAYLOAD[:5000])
    await download(f"{server.base}/redirect/model.bin", dest, sha256=DIGEST)
    assert server.behaviour.requests == [
        ("/redirect/model.bin", "bytes=5000-"),
        ("/files/model.bin", "bytes=5000-"),
    ]
    assert dest.read_bytes() == PAYLOAD


async def test_complete_part_file_is_verified_without_downloading_again(
    server: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "model.bin"
    part = dest.with_name("model.bin.part")
    part.write_bytes(PAYLOAD)
    await download(f"{server.base}/files/model.bin", dest, sha256=DIGEST, size=len(PAYLOAD))
    assert server.behaviour.requests == []  # known size: no request at all
    assert dest.read_bytes() == PAYLOAD
    dest.unlink()
    part.write_bytes(PAYLOAD)
    await download(f"{server.base}/files/model.bin", dest, sha256=DIGEST)  # size unknown: one 416
    assert server.behaviour.requests == [("/files/model.bin", f"bytes={len(PAYLOAD)}-")]
    assert dest.read_bytes() == PAYLOAD


async def test_wrong_expected_size_is_refused_before_downloading(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"is {len(PAYLOAD)} bytes but 1000 were expected"):
        await download(f"{server.base}/files/model.bin", tmp_path / "model.bin", size=1000)
    assert not (tmp_path / "model.bin").exists()


async def test_oversized_part_file_starts_over(server: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    dest.with_name("model.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    await download(f"{server.base}/files/model.bin", dest, sha256=DIGEST, size=len(PAYLOAD))
    assert server.behaviour.requests == [("/files/model.bin", None)]
    assert dest.read_bytes() == PAYLOAD


def test_file_matches(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    assert not file_matches(path)
    path.write_bytes(PAYLOAD)
    assert sha256_file(path) == DIGEST
    assert file_matches(path, size=len(PAYLOAD), sha256=DIGEST.upper())
    assert not file_matches(path, size=len(PAYLOAD) - 1)
    assert not file_matches(path, sha256="0" * 64)
