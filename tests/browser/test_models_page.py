"""The model picker switches the live model: the real ``aria serve`` with the fake engines, a real HTTP
server speaking Ollama's API on 127.0.0.1 (``OLLAMA_HOST``) and a GGUF file that cannot load in its models
folder, driven by Debian's Chromium. The picker lists them with the configured model selected; choosing
Ollama's model makes the next answer come from it (the answer and the engine line say so); choosing the
broken GGUF is refused with the reason and the picker goes back to the model still answering."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import uvicorn

from aria.core.config import load_settings
from aria.engines.catalog import ModelEntry, ModelFile
from aria.server.app import create_app
from aria.server.firstrun import FirstRunPull
from aria.server.runtime import Runtime
from tests.browser.conftest import (
    FAKE_ENGINES,
    AriaPage,
    AriaServer,
    OpenPage,
    _launch,
    _serve,
    page_opener,
    require_browser,
)
from tests.engines.llm_servers import OllamaServer, Script
from tests.http_range import send_range
from tests.server.conftest import FAST_FAKES, free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
require_browser()

pytestmark = pytest.mark.timeout(90)
FAKE_REPLY = "YES A person stands at the door."


@pytest.fixture(scope="module")
def ollama() -> Iterator[OllamaServer]:
    with OllamaServer(Script(tokens=["Bonjour", " from", " Ollama", "."], models=["tiny-chat"])) as server:
        yield server


@pytest.fixture(scope="module")
def picker_server(tmp_path_factory: pytest.TempPathFactory, ollama: OllamaServer) -> Iterator[AriaServer]:
    data = tmp_path_factory.mktemp("picker-data")
    (data / "models" / "llm").mkdir(parents=True)
    (data / "models" / "llm" / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    engines = {**FAKE_ENGINES, "ARIA_DATA_DIR": str(data), "OLLAMA_HOST": ollama.base_url}
    yield from _serve(tmp_path_factory, engines, "browser-models-server.log")


@pytest.fixture
def open_picker_page(playwright_driver: Any, picker_server: AriaServer) -> Iterator[OpenPage]:
    yield from page_opener(playwright_driver, f"{picker_server.url}/")


def ask(aria: AriaPage, text: str, answers: int) -> dict[str, Any]:
    aria.page.fill("#text-input", text)
    aria.page.press("#text-input", "Enter")
    aria.wait_for(f"t.metrics.length >= {answers}", 15, f"answer {answers}")
    return aria.state()["responses"][-1]  # type: ignore[no-any-return]


def test_picking_a_model_switches_what_answers_and_a_broken_one_is_refused(
    open_picker_page: OpenPage,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    aria = open_picker_page()
    page = aria.page
    aria.wait_for("t.models && t.models.models.length >= 4", 10, "the model list")
    picker = page.locator("#model-select")
    assert picker.is_enabled()
    values = picker.locator("option").evaluate_all("(os) => os.map((o) => o.value)")
    assert values == ["configured", "ollama:tiny-chat", "gguf:llm/broken.gguf", "builtin"]
    assert picker.input_value() == "configured"
    groups = picker.locator("optgroup").evaluate_all("(gs) => gs.map((g) => g.label)")
    assert groups == ["Configured", "Ollama", "Downloaded (GGUF)", "Without a model"]

    ask(aria, "hello", 1)
    first = page.locator("#log li.assistant").last
    assert FAKE_REPLY in first.inner_text()
    assert first.get_attribute("data-model") == "fake"

    picker.select_option("ollama:tiny-chat")
    aria.wait_for("t.models.current === 'ollama:tiny-chat'", 15, "the switch to Ollama")
    assert picker.input_value() == "ollama:tiny-chat"
    page.wait_for_function(
        "() => document.querySelector('#engines').textContent.includes('ollama (tiny-chat)')", timeout=5000
    )
    assert "New answers come from tiny-chat (Ollama)" in page.locator("#alerts").inner_text()
    assert "crashed" not in page.locator("#alerts").inner_text()  # a switch is not a crash
    ask(aria, "and now?", 2)
    second = page.locator("#log li.assistant").last
    assert "Bonjour from Ollama." in second.inner_text()
    assert second.get_attribute("data-model") == "ollama (tiny-chat)"
    page.screenshot(path=str(ARTIFACTS / "models-picker-switched.png"), full_page=True)

    picker.select_option("gguf:llm/broken.gguf")
    aria.wait_for("(t.modelErrors || []).length === 1", 15, "the refused switch")
    error = aria.state()["modelErrors"][0]
    assert error["code"] == "model_failed"
    assert "still answers" in page.locator("#alerts").inner_text()
    aria.wait_for("t.models.current === 'ollama:tiny-chat'", 5, "the picker back on the model answering")
    assert picker.input_value() == "ollama:tiny-chat"
    assert picker.is_enabled()
    page.screenshot(path=str(ARTIFACTS / "models-picker-refused.png"), full_page=True)
    ask(aria, "still you?", 3)
    assert "Bonjour from Ollama." in page.locator("#log li.assistant").last.inner_text()
    unexpected = [p for p in aria.problems if "status of 422" not in p]  # the refused switch's own answer
    assert not unexpected, unexpected


def test_another_page_hears_of_the_switch(open_picker_page: OpenPage) -> None:
    watcher, switcher = open_picker_page(), open_picker_page()
    for aria in (watcher, switcher):
        aria.wait_for("t.models && t.models.models.length >= 4", 10, "the model list")
    target = "configured" if switcher.state()["models"]["current"] != "configured" else "builtin"
    switcher.page.locator("#model-select").select_option(target)
    switcher.wait_for(f"t.models.current === '{target}'", 15, "the switch")
    watcher.page.evaluate("() => window.ariaTest.checkModel()")  # what its 5 s poll does
    watcher.page.wait_for_function(
        "() => document.querySelector('#alerts').textContent.includes('switched on the server')", timeout=5000
    )
    assert "crashed" not in watcher.page.locator("#alerts").inner_text()
    assert watcher.page.locator("#model-select").input_value() == target


class _SlowFiles(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) in 16 KiB pieces, 40 ms apart: a pull the page can watch."""

    files: ClassVar[dict[str, bytes]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        body = send_range(self, data)
        try:
            for start in range(0, len(body), 16384):
                self.wfile.write(body[start : start + 16384])
                self.wfile.flush()
                time.sleep(0.04)  # the other end of a slow link (a server thread, not the code under test)
        except (BrokenPipeError, ConnectionResetError):
            pass


def digest(data: bytes, wrong: bool) -> str:
    return hashlib.sha256(data + (b"!" if wrong else b"")).hexdigest()


@pytest.fixture
def corrupt() -> bool:
    """Whether the second file's published checksum is wrong (its download fails for good)."""
    return False


@pytest.fixture
def pulling_server(tmp_path: Path, corrupt: bool) -> Iterator[str]:
    """An in-process server (fake engines) whose first-run pull fetches two files from a slow local HTTP
    server; yields its URL."""
    files = {"/a.bin": bytes(range(256)) * 3072, "/b.bin": b"aria" * 131072}  # 768 KiB, 512 KiB
    _SlowFiles.files = files
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowFiles)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{origin.server_address[1]}"
    entries = [
        ModelEntry(
            name=name,
            kind="stt",
            engine="stt:fake",
            description="a test file",
            location=f"stt/{name}.bin",
            files=(
                ModelFile(
                    f"{base}{path}",
                    f"stt/{name}.bin",
                    len(data),
                    digest(data, corrupt and name.endswith("b")),
                ),
            ),
        )
        for name, (path, data) in zip(("speech-a", "speech-b"), files.items(), strict=True)
    ]
    settings = load_settings(overrides={**FAST_FAKES, "data_dir": str(tmp_path)}, env={})
    runtime = Runtime(settings)
    runtime.first_run = FirstRunPull(entries, tmp_path / "models", retries=0)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, runtime=runtime), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        origin.shutdown()
        origin.server_close()


def test_the_first_run_pull_shows_a_progress_bar_per_file_until_done(
    playwright_driver: Any, pulling_server: str
) -> None:
    browsers: list[Any] = []
    try:
        aria = _launch(playwright_driver, browsers, f"{pulling_server}/", None, (1280, 800))
        page = aria.page
        page.wait_for_selector("#downloads:not([hidden]) progress", timeout=10000)
        # A bar part way: more than nothing, less than all (the file arrives over about two seconds).
        page.wait_for_function(
            "() => [...document.querySelectorAll('#downloads progress')]"
            ".some((p) => p.value > 0 && p.value < p.max)",
            timeout=10000,
            polling=50,
        )
        files = page.locator("#download-list li").evaluate_all("(items) => items.map((i) => i.dataset.file)")
        assert files[-1] == "stt/speech-b.bin"  # the second waits its turn (the first may be done already)
        words = page.locator("#download-list").inner_text()
        assert "%" in words or "waiting" in words
        assert "Downloading models" in page.locator("#downloads-title").inner_text()
        page.screenshot(path=str(ARTIFACTS / "downloads-progress.png"))
        page.wait_for_selector("#downloads", state="hidden", timeout=20000)
        downloads = aria.state()["downloads"]
        assert [(d["file"], d["state"]) for d in downloads] == [
            ("stt/speech-a.bin", "done"),
            ("stt/speech-b.bin", "done"),
        ]
        assert all(d["done"] == d["total"] for d in downloads)
        assert not aria.problems, aria.problems
    finally:
        for browser in browsers:
            browser.close()


@pytest.mark.parametrize("corrupt", [True])
def test_a_file_that_fails_stays_with_the_reason(playwright_driver: Any, pulling_server: str) -> None:
    browsers: list[Any] = []
    try:
        aria = _launch(playwright_driver, browsers, f"{pulling_server}/", None, (1280, 800))
        page = aria.page
        page.wait_for_selector("#download-list li.failed", timeout=20000)
        page.wait_for_function(
            "() => !document.querySelector('#download-list li:not(.failed)')", timeout=5000
        )
        failed = page.locator("#download-list li.failed")
        assert failed.get_attribute("data-file") == "stt/speech-b.bin"  # the good one is done and gone
        assert "failed:" in failed.inner_text()
        assert "checksum" in failed.inner_text().lower() or "sha" in failed.inner_text().lower()
        assert page.locator("#downloads-title").inner_text() == "Some model files could not be downloaded"
        assert "Retry with: aria models pull speech-b" in failed.inner_text()
        page.screenshot(path=str(ARTIFACTS / "downloads-failed.png"))
        page.click("#downloads-close")
        assert page.locator("#downloads").is_hidden()
        page.evaluate("() => window.ariaTest.refreshHealth()")  # awaited: the next poll keeps it dismissed
        assert page.locator("#downloads").is_hidden()
        states = [(d["file"], d["state"]) for d in aria.state()["downloads"]]
        assert states == [("stt/speech-a.bin", "done"), ("stt/speech-b.bin", "failed")]
        assert not aria.problems, aria.problems
    finally:
        for browser in browsers:
            browser.close()
