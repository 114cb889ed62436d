"""``aria models list`` / ``aria models pull``: the catalog, local status, and pulls from a real local HTTP
server (stdlib http.server in a thread), with the progress bar written to a text stream."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aria.cli import models as models_cli
from aria.cli.models import ProgressBar, format_size, pull_model
from aria.engines.catalog import CATALOG, ModelEntry, ModelFile, find_entry
from aria.engines.models import model_location, models_dir
from aria.errors import InvalidInput
from tests.http_range import send_range

WEIGHTS = bytes(range(256)) * 1200  # 307,200 bytes
CONFIG = b'{"dim": 32}'


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.wfile.write(send_range(self, data))

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = {"/tiny/model.bin": WEIGHTS, "/tiny/config.json": CONFIG}
        self.requests: list[tuple[str, str | None]] = []

    def entry(self) -> ModelEntry:
        base = f"http://127.0.0.1:{self.server_address[1]}/tiny"
        return ModelEntry(
            name="tiny-test",
            kind="vision",
            engine="vision:clip",
            description="a tiny model served locally",
            location="tiny",
            files=(
                ModelFile(
                    f"{base}/model.bin", "tiny/model.bin", len(WEIGHTS), hashlib.sha256(WEIGHTS).hexdigest()
                ),
                ModelFile(f"{base}/config.json", "tiny/config.json", None, None),
            ),
        )


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aria")
    sub = p.add_subparsers(dest="command")
    models_cli.add_parser(sub)
    return p


def run(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    code: int = args.run(args)
    return code


def test_list_json_on_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("models", "list", "--json", "--dir", str(tmp_path)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [e.name for e in CATALOG]
    by_name = {r["name"]: r for r in rows}
    assert {r["status"] for n, r in by_name.items() if n != "silero-vad"} == {"missing"}
    assert by_name["silero-vad"]["status"] == "bundled"
    assert by_name["silero-vad"]["present"]
    kokoro = by_name["kokoro"]
    assert kokoro["size"] == 325_532_387 + 28_214_398
    assert kokoro["path"] == str(tmp_path / "kokoro")
    assert kokoro["files"][0]["url"].startswith("https://github.com/thewh1teagle/kokoro-onnx/releases/")


def test_list_shows_present_and_partial_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for file in find_entry("kokoro").files:  # sparse files of the exact published sizes
        path = file.local_path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            assert file.size is not None
            fh.truncate(file.size)
    piper = find_entry("piper").files[0].local_path(tmp_path)
    piper.parent.mkdir(parents=True)
    piper.with_name(piper.name + ".part").write_bytes(b"x" * 2_500_000)
    assert run("models", "list", "--dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert re.search(r"kokoro\s+tts\s+353\.7 MB\s+present", lines["kokoro"])
    assert "partial (2.5 MB)" in lines["piper-en_US-lessac-medium"]
    assert "missing" in lines["clip-vit-b32"]
    assert re.search(r"silero-vad\s+vad\s+-\s+bundled", lines["silero-vad"])
    assert f"models folder: {tmp_path}" in out


def test_default_folder_follows_aria_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARIA_DATA_DIR", str(tmp_path))
    assert run("models", "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    clip = next(r for r in rows if r["name"] == "clip-vit-b32")
    assert clip["path"] == str(tmp_path / "models" / "clip" / "clip-vit-b32-vision.onnx")
    assert Path(clip["path"]) == model_location("clip") == models_dir() / "clip" / "clip-vit-b32-vision.onnx"


async def test_pull_downloads_verifies_and_draws_a_progress_bar(server: Server, tmp_path: Path) -> None:
    entry = server.entry()
    stream = io.StringIO()
    fetched = await pull_model(entry, tmp_path, stream=stream)
    assert fetched == [tmp_path / "tiny" / "model.bin", tmp_path / "tiny" / "config.json"]
    assert (tmp_path / "tiny" / "model.bin").read_bytes() == WEIGHTS
    assert (tmp_path / "tiny" / "config.json").read_bytes() == CONFIG
    text = stream.getvalue()
    assert text.startswith("\rmodel.bin [")
    assert "100.0%" in text
    assert "307.2 kB/307.2 kB" in text
    assert text.count("\n") == 2  # one finished line per file
    assert entry.status(tmp_path) == "present"
    server.requests.clear()
    assert await pull_model(entry, tmp_path, stream=stream) == []  # present and verified: nothing fetched
    assert server.requests == []
    again = await pull_model(entry, tmp_path, stream=io.StringIO(), force=True)
    assert len(again) == 2
    assert len(server.requests) == 2


async def test_pull_resumes_an_interrupted_file(server: Server, tmp_path: Path) -> None:
    entry = server.entry()
    part = tmp_path / "tiny" / "model.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(WEIGHTS[:100_000])
    assert entry.status(tmp_path) == "partial"
    await pull_model(entry, tmp_path, stream=io.StringIO())
    assert ("/tiny/model.bin", "bytes=100000-") in server.requests
    assert (tmp_path / "tiny" / "model.bin").read_bytes() == WEIGHTS


async def test_pull_replaces_a_corrupt_file(server: Server, tmp_path: Path) -> None:
    entry = server.entry()
    bad = tmp_path / "tiny" / "model.bin"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\0" * len(WEIGHTS))  # right size, wrong bytes
    assert entry.status(tmp_path) == "partial"  # config.json is still missing
    fetched = await pull_model(entry, tmp_path, stream=io.StringIO())
    assert bad in fetched
    assert bad.read_bytes() == WEIGHTS


def test_pull_bundled_and_unknown_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("models", "pull", "silero", "--dir", str(tmp_path)) == 0
    assert "nothing to download" in capsys.readouterr().out
    with pytest.raises(InvalidInput, match="unknown model 'kokoroo'; did you mean 'kokoro'"):
        run("models", "pull", "kokoroo", "--dir", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_throttles_and_ends_the_line() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar("model.bin", stream, width=10, interval_s=0.1, clock=lambda: now[0])
    bar.update(0, 1000)
    now[0] = 0.05
    bar.update(500, 1000)  # too soon: not drawn
    assert stream.getvalue().count("\r") == 1
    now[0] = 0.5
    bar.update(600, 1000)
    now[0] = 0.51
    bar.update(1000, 1000)  # 100% is always drawn
    bar.close()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 3
    assert frames[1].startswith("model.bin [######....]  60.0%  600 B/1.0 kB")
    assert frames[2].startswith("model.bin [##########] 100.0%")
    assert stream.getvalue().endswith("\n")
    unknown = io.StringIO()
    bar = ProgressBar("stream", unknown, clock=lambda: 1.0)
    bar.update(2_000_000, None)
    assert unknown.getvalue().startswith("\rstream 2.0 MB")
    silent = io.StringIO()
    ProgressBar("x", silent).close()
    assert silent.getvalue() == ""


def test_format_size() -> None:
    assert [format_size(n) for n in (None, 0, 999, 1000, 63_201_294, 3_500_000_000)] == [
        "?",
        "0 B",
        "999 B",
        "1.0 kB",
        "63.2 MB",
        "3.5 GB",
    ]


def test_catalog_is_consistent() -> None:
    names = [name for entry in CATALOG for name in (entry.name, *entry.aliases)]
    assert len(names) == len(set(n.lower() for n in names)), "names and aliases must be unique"
    expected = {
        "whisper-base.en",
        "whisper-small",
        "kokoro",
        "piper-en_US-lessac-medium",
        "clip-vit-b32",
        "smart-turn",
        "qwen2.5-1.5b",
        "qwen3-4b",
        "qwen2.5-vl-3b",
        "silero-vad",
    }
    assert {entry.name for entry in CATALOG} == expected
    for entry in CATALOG:
        assert find_entry(entry.name.upper()) is entry
        assert all(find_entry(alias) is entry for alias in entry.aliases)
        if entry.bundled:
            assert entry.files == ()
            continue
        assert entry.files
        assert entry.size is not None
        assert entry.size > 0
        for file in entry.files:
            assert re.match(r"https://(huggingface\.co|github\.com)/", file.url), file.url
            assert file.sha256 is not None
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256)
            assert file.path == entry.location or file.path.startswith(entry.location.rsplit("/", 1)[0] + "/")
    with pytest.raises(ValueError, match="inside the models folder"):
        ModelFile("https://example.org/x", "../escape.bin")


def test_pulled_files_land_where_the_engines_look(tmp_path: Path) -> None:
    """The catalog's paths and the adapters' default paths agree (a pull is useless otherwise)."""
    from aria.engines.stt.whisper import WhisperSTT
    from aria.engines.tts.kokoro import KokoroTTS
    from aria.engines.tts.piper import PiperTTS

    root = models_dir(tmp_path)
    kokoro = [f.local_path(root) for f in find_entry("kokoro").files]
    assert list(KokoroTTS.paths(KokoroTTS.Config(data_dir=tmp_path))) == kokoro
    piper = [f.local_path(root) for f in find_entry("piper").files]
    assert list(PiperTTS.paths(PiperTTS.Config(data_dir=tmp_path))) == piper
    for size in ("base.en", "small"):
        config = WhisperSTT.Config(model=size, data_dir=tmp_path, local_files_only=True)
        assert not WhisperSTT.check(config).available
        for file in find_entry(f"whisper-{size}").files:  # what `aria models pull whisper-<size>` writes
            path = file.local_path(root)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        assert WhisperSTT.check(config).available, size
