"""First run: the default loadout pulled in the background from a real local HTTP server (files with right
and wrong checksums, a transfer cut mid-file, a server that refuses), ``--offline`` pulling nothing, and
``/health`` showing the progress while the server keeps answering."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aria.cli import serve as serve_cli
from aria.core.config import load_settings
from aria.engines.catalog import ModelEntry, ModelFile, find_entry
from aria.engines.models import Loadout, models_dir
from aria.server import firstrun
from aria.server.app import create_app
from aria.server.firstrun import FirstRunPull, embedded_llm, missing_entries
from tests.http_range import send_range
from tests.server.conftest import FAST_FAKES, free_port, stop_server

GOOD = bytes(range(256)) * 1200  # 307,200 bytes
#: Where a gated transfer waits: whole 64 KiB chunks, which the downloader reports as they arrive.
GATE_AT = 2 * 65536
CUT = bytes(reversed(range(256))) * 1200  # 307,200 bytes: the cut comes after whole 64 KiB chunks
BAD = b"not what the catalog says" * 100


class Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/refuse"):
            self.send_error(403, "Forbidden")
            return
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        body = send_range(self, data)
        if self.path in srv.cut_once:  # send half, then drop the connection
            srv.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path in srv.gated:  # send a part, wait for the test, then the rest
            self.wfile.write(body[:GATE_AT])
            self.wfile.flush()
            srv.gate.wait(10)
            body = body[GATE_AT:]
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = {"/good.gguf": GOOD, "/cut.gguf": CUT, "/bad.gguf": BAD}
        self.cut_once: set[str] = set()
        self.gated: set[str] = set()
        self.gate = threading.Event()
        self.requests: list[tuple[str, str | None]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def entry(
        self, name: str, path: str, data: bytes, *, sha256: str | None = None, engine: str = "llm:llamacpp"
    ) -> ModelEntry:
        digest = sha256 or hashlib.sha256(data).hexdigest()
        return ModelEntry(
            name=name,
            kind=engine.partition(":")[0],
            engine=engine,
            description=f"{name}, served locally",
            location=f"test/{name}.gguf",
            files=(ModelFile(self.url(path), f"test/{name}.gguf", len(data), digest),),
        )


@pytest.fixture
def files() -> Iterator[FileServer]:
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.gate.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


async def test_pull_verifies_resumes_and_records_failures(files: FileServer, tmp_path: Path) -> None:
    files.cut_once.add("/cut.gguf")
    good = files.entry("good", "/good.gguf", GOOD)
    cut = files.entry("cut", "/cut.gguf", CUT)
    bad = files.entry("bad", "/bad.gguf", BAD, sha256="0" * 64)
    refused = files.entry("refused", "/refuse/x.gguf", GOOD)
    pull = FirstRunPull([bad, good, refused, cut], tmp_path, retry_delay_s=0.01, timeout_s=5)
    seen: list[tuple[str, str, int]] = []
    pull.listeners.add(lambda s: seen.append((s.name, s.state, s.done)))
    await pull.run()

    states = {f["name"]: f for f in pull.snapshot()}
    assert states["good"]["state"] == "done"
    assert (tmp_path / "test/good.gguf").read_bytes() == GOOD
    # Cut mid-file, then resumed from where it stopped with a Range request, and verified.
    assert states["cut"]["state"] == "done"
    assert (tmp_path / "test/cut.gguf").read_bytes() == CUT
    cut_requests = [r for p, r in files.requests if p == "/cut.gguf"]
    assert cut_requests[0] is None
    assert cut_requests[-1] is not None
    assert cut_requests[-1].startswith("bytes=")
    assert int(cut_requests[-1][6:-1]) > 0
    # A wrong checksum fails that file (removed), says why, and the pull goes on.
    assert states["bad"]["state"] == "failed"
    assert "checksum mismatch" in states["bad"]["error"]
    assert not (tmp_path / "test/bad.gguf").exists()
    assert not (tmp_path / "test/bad.gguf.part").exists()
    assert states["refused"]["state"] == "failed"
    assert "HTTP 403" in states["refused"]["error"]
    assert [f.name for f in pull.failed()] == ["bad", "refused"]
    assert ("good", "done", len(GOOD)) in seen
    # Run again: what is there is kept, nothing is fetched again.
    before = len([p for p, _ in files.requests if p in ("/good.gguf", "/cut.gguf")])
    await FirstRunPull([good, cut], tmp_path).run()
    assert len([p for p, _ in files.requests if p in ("/good.gguf", "/cut.gguf")]) == before


async def test_unreachable_host_fails_clearly(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    entry = ModelEntry(
        name="gone",
        kind="llm",
        engine="llm:llamacpp",
        description="",
        location="test/gone.gguf",
        files=(ModelFile(f"http://127.0.0.1:{port}/gone.gguf", "test/gone.gguf", 10, None),),
    )
    pull = FirstRunPull([entry], tmp_path, retry_delay_s=0.01, timeout_s=2)
    await pull.run()
    (state,) = pull.snapshot()
    assert state["state"] == "failed"
    assert "cannot reach 127.0.0.1" in state["error"]


def test_offline_and_present_models_pull_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loadout = Loadout("qwen2.5-1.5b", ("qwen2.5-1.5b", "smart-turn"), "4 GB RAM, no GPU")
    monkeypatch.setattr(firstrun, "machine_loadout", lambda **_: loadout)

    class FakeRuntime:
        first_run: Any = None
        preferred_llm: str | None = None

    offline = load_settings(overrides={"data_dir": str(tmp_path), "models.offline": True}, env={})
    runtime = FakeRuntime()
    serve_cli._plan_first_run(runtime, offline)
    assert runtime.first_run is None
    assert runtime.preferred_llm == "qwen2.5-1.5b"

    no_auto = load_settings(overrides={"data_dir": str(tmp_path), "models.auto_pull": False}, env={})
    serve_cli._plan_first_run(runtime, no_auto)
    assert runtime.first_run is None

    online = load_settings(overrides={"data_dir": str(tmp_path)}, env={})
    serve_cli._plan_first_run(runtime, online)
    assert isinstance(runtime.first_run, FirstRunPull)
    assert [e.name for e in runtime.first_run.entries] == ["qwen2.5-1.5b", "smart-turn"]
    assert not list(tmp_path.rglob("*.part"))  # planned, not started

    # With every file present (sparse files of the published sizes) there is nothing to pull.
    root = models_dir(tmp_path)
    for name in loadout.models:
        for file in find_entry(name).files:
            path = file.local_path(root)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as fh:
                assert file.size is not None
                fh.truncate(file.size)
    assert missing_entries(loadout.models, root) == []
    runtime.first_run = None
    serve_cli._plan_first_run(runtime, online)
    assert runtime.first_run is None


def test_offline_flag_sets_the_setting() -> None:
    from aria.cli import build_parser

    args = build_parser().parse_args(["serve", "--offline"])
    assert args.offline is True
    assert build_parser().parse_args(["serve"]).offline is None


def test_embedded_llm_sits_between_a_detected_server_and_builtin(tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": str(tmp_path)}, env={})
    assert embedded_llm(settings) is settings  # nothing on disk: builtin stays the answer
    entry = find_entry("qwen2.5-1.5b")
    path = entry.local_path(models_dir(tmp_path))
    path.parent.mkdir(parents=True)
    with path.open("wb") as fh:
        assert entry.size is not None
        fh.truncate(entry.size)
    chosen = embedded_llm(settings, "qwen3-4b")
    assert chosen.llm.backend == "llamacpp"
    assert chosen.llm.options["model_path"] == str(path)
    assert chosen.llm.fallback == ["builtin"]
    detected = load_settings(overrides={"data_dir": str(tmp_path), "llm.backend": "ollama"}, env={})
    assert embedded_llm(detected) is detected  # a detected (or configured) server comes first


async def test_health_shows_progress_while_the_server_answers(files: FileServer, tmp_path: Path) -> None:
    files.gated.add("/good.gguf")
    settings = load_settings(overrides={**FAST_FAKES, "data_dir": str(tmp_path)}, env={})
    app = create_app(settings)
    runtime = app.state.runtime
    # Only models an engine of the configuration loads are pulled: not one for llm:llamacpp beside the
    # configured fake LLM.
    llm = files.entry("llm", "/good.gguf", GOOD)
    good = files.entry("good", "/good.gguf", GOOD, engine="tts:fake")
    bad = files.entry("bad", "/bad.gguf", BAD, sha256="f" * 64, engine="turn:silence")
    runtime.first_run = FirstRunPull([llm, good, bad], models_dir(tmp_path), retry_delay_s=0.01, timeout_s=5)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(runtime.ready.wait(), 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            body: dict[str, Any] = {}
            for _ in range(250):  # the first half of the file is in
                body = (await client.get("/health")).json()
                if body["downloads"] and body["downloads"][0]["done"] >= GATE_AT:
                    break
                await asyncio.sleep(0.02)
            first, second = body["downloads"]
            assert first == {
                "name": "good",
                "file": "test/good.gguf",
                "done": GATE_AT,
                "total": len(GOOD),
                "state": "downloading",
                "error": None,
            }
            assert second["state"] == "waiting"
            assert body["status"] in ("ok", "degraded")  # answering with what it has meanwhile
            files.gate.set()
            await asyncio.wait_for(runtime.first_run.finished.wait(), 10)
            body = (await client.get("/health")).json()
            first, second = body["downloads"]
            assert first["state"] == "done"
            assert first["done"] == len(GOOD)
            assert second["state"] == "failed"
            assert "checksum mismatch" in second["error"]
            assert body["status"] != "down"  # a failed download never stops the server
            assert runtime.first_run.fetched_kinds == {"tts"}  # and the TTS slot was loaded again
    finally:
        await stop_server(server, task)
    assert (models_dir(tmp_path) / "test/good.gguf").read_bytes() == GOOD
