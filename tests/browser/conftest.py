"""Fixtures for the browser tests: the real ``aria serve`` in a subprocess and Debian's Chromium driven by
Playwright (as a driver only: never ``playwright install``), with a WAV file as the microphone; or, for the
page's handling of messages the test scripts, a stub server (``stub_server.py``).

See ``../../../shared/recipes/browser-e2e.md`` for the Chromium flags and their pitfalls. Playwright is
imported inside the fixtures, so this file loads (and the module skips) where it is not installed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.stub_server import StubAria, session_message

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
SERVER_START_TIMEOUT_S = 60.0
# What Playwright does not add itself (it adds headless, no-sandbox, no-first-run, mute-audio, a profile).
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def require_browser() -> None:
    """Skip the calling test module unless Debian's Chromium and the playwright package are here."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
    pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing (pip install playwright)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class AriaServer:
    url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def aria_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    """``python -m aria serve`` on a free port with offline engines; waits for ``GET /health``."""
    engines = {
        "ARIA_STT__BACKEND": "pocketsphinx",
        "ARIA_LLM__BACKEND": "builtin",
        "ARIA_TTS__BACKEND": "espeak",
    }
    yield from _serve(tmp_path_factory, engines, "browser-server.log")


# The fake engines of aria.testing: a scripted transcript per utterance (VAD: any loud frame is speech),
# and one reply that a watching mode reads as its condition holding.
FAKE_TRANSCRIPTS = ("Dear team, the build is green.", "We ship on Friday.")
FAKE_ENGINES = {
    "ARIA_VAD__BACKEND": "fake",
    "ARIA_VAD__OPTIONS": json.dumps({"start_frames": 2, "end_frames": 15}),
    "ARIA_STT__BACKEND": "fake",
    "ARIA_STT__FALLBACK": "[]",
    "ARIA_STT__OPTIONS": json.dumps({"texts": FAKE_TRANSCRIPTS}),
    "ARIA_LLM__BACKEND": "fake",
    "ARIA_LLM__FALLBACK": "[]",
    "ARIA_LLM__OPTIONS": json.dumps({"replies": ["YES A person stands at the door."]}),
    "ARIA_TTS__BACKEND": "fake",
    "ARIA_TTS__FALLBACK": "[]",
}


@pytest.fixture(scope="module")
def fake_aria_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AriaServer]:
    """``python -m aria serve`` with the fake engines of ``aria.testing`` (:data:`FAKE_ENGINES`)."""
    yield from _serve(tmp_path_factory, FAKE_ENGINES, "browser-fake-server.log")


def fake_engines(**options: dict[str, Any]) -> dict[str, str]:
    """:data:`FAKE_ENGINES` with other options for some engines: ``fake_engines(stt={"final_delay_s": 1})``
    (each kind's options replace that kind's defaults)."""
    engines = dict(FAKE_ENGINES)
    for kind, values in options.items():
        engines[f"ARIA_{kind.upper()}__OPTIONS"] = json.dumps(values)
    return engines


def serve(
    tmp_path_factory: pytest.TempPathFactory, engines: dict[str, str], log_name: str
) -> Iterator[AriaServer]:
    """``python -m aria serve`` with ``engines`` (environment variables), its log as ``artifacts/<log_name>``;
    for a module's own server fixture (``yield from serve(...)``)."""
    yield from _serve(tmp_path_factory, engines, log_name)


def _serve(
    tmp_path_factory: pytest.TempPathFactory, engines: dict[str, str], log_name: str
) -> Iterator[AriaServer]:
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        "ARIA_DATA_DIR": str(tmp_path_factory.mktemp("aria-data")),
        "HF_HUB_OFFLINE": "1",
        "ARIA_MODELS__OFFLINE": "1",  # no first-run pull: this machine reaches no model host
        **engines,
    }
    env.pop("ARIA_CONFIG", None)
    log_path = ARTIFACTS / log_name
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aria", "serve", "--port", str(port), "--host", "127.0.0.1"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = AriaServer(f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_healthy(proc, server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_healthy(proc: subprocess.Popen[bytes], server: AriaServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"aria serve exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                r = client.get(f"{server.url}/health")
                last = f"{r.status_code} {r.text[:300]}"
                if r.status_code == 200 and r.json().get("status") in ("ok", "degraded"):
                    return
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)  # waiting on another process: nothing to await
    pytest.fail(
        f"aria serve was not healthy within {SERVER_START_TIMEOUT_S:.0f} s ({last}):\n{server.log_tail()}"
    )


@dataclass
class AriaPage:
    """A page of the client, and what went wrong in it (uncaught errors, console errors)."""

    page: Any
    problems: list[str] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        """A snapshot of ``window.ariaTest``."""
        snapshot: dict[str, Any] = self.page.evaluate("() => JSON.parse(JSON.stringify(window.ariaTest))")
        return snapshot

    def wait_for(self, js: str, timeout_s: float, what: str) -> None:
        """Wait until the JS expression (over ``t = window.ariaTest``) is truthy, else fail saying why."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(
                f"() => {{ const t = window.ariaTest; return !!t && ({js}); }}",
                timeout=timeout_s * 1000,
                polling=50,
            )
        except PlaywrightTimeout:
            snap = self.state()
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "browser-failure.json").write_text(json.dumps(snap, indent=1))
            snap["transcripts"] = snap.get("transcripts", [])[-5:]
            snap["sent"] = [m for m in snap.get("sent", []) if m.get("type") != "playback"][-10:]
            snap.pop("received", None)
            pytest.fail(
                f"timed out after {timeout_s} s waiting for {what} ({js});\nariaTest: {snap}\n"
                f"page problems: {self.problems}\n(all of window.ariaTest: artifacts/browser-failure.json)"
            )


OpenPage = Callable[..., AriaPage]


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


def _launch(
    playwright_driver: Any,
    browsers: list[Any],
    url: str,
    wav: Path | None,
    viewport: tuple[int, int],
) -> AriaPage:
    """A fresh Chromium (the fake microphone is a launch flag, so one browser per WAV) showing ``url``,
    once the page has its session."""
    args = list(CHROMIUM_ARGS)
    if wav is not None:
        assert "%" not in str(wav), "Chromium cannot read a fake capture file whose path has a %"
        args.append(f"--use-file-for-fake-audio-capture={wav.resolve()}%noloop")
    browser = playwright_driver.chromium.launch(executable_path=str(CHROMIUM), args=args)
    browsers.append(browser)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.add_init_script("window.ariaTestHooks = true")  # the page loads its test hooks (testhooks.js)
    page = context.new_page()
    aria = AriaPage(page)
    page.on("pageerror", lambda exc: aria.problems.append(f"uncaught: {exc}"))
    page.on("console", lambda m: aria.problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(url)
    aria.wait_for("t.connection === 'open' && t.session !== null", 15, "the session message")
    return aria


@pytest.fixture
def open_page(playwright_driver: Any, aria_server: AriaServer) -> Iterator[OpenPage]:
    """``open_page(wav=None, query="", viewport=(1280, 800))``: a fresh Chromium showing the client of the
    real server; closed after the test."""
    browsers: list[Any] = []

    def open_(wav: Path | None = None, query: str = "", viewport: tuple[int, int] = (1280, 800)) -> AriaPage:
        return _launch(playwright_driver, browsers, f"{aria_server.url}/{query}", wav, viewport)

    yield open_
    for browser in browsers:
        browser.close()


@pytest.fixture
def open_fake_page(playwright_driver: Any, fake_aria_server: AriaServer) -> Iterator[OpenPage]:
    """``open_fake_page(wav=None, query="", viewport=(1280, 800))``: like ``open_page``, on the server with
    the fake engines."""
    browsers: list[Any] = []

    def open_(wav: Path | None = None, query: str = "", viewport: tuple[int, int] = (1280, 800)) -> AriaPage:
        return _launch(playwright_driver, browsers, f"{fake_aria_server.url}/{query}", wav, viewport)

    yield open_
    for browser in browsers:
        browser.close()


@pytest.fixture
def open_browser(playwright_driver: Any) -> Iterator[Callable[..., AriaPage]]:
    """``open_browser(server, wav=None, query="", viewport=(1280, 800))``: a fresh Chromium showing the
    client of ``server`` (a module's own :class:`AriaServer`); closed after the test."""
    browsers: list[Any] = []

    def open_(
        server: AriaServer, wav: Path | None = None, query: str = "", viewport: tuple[int, int] = (1280, 800)
    ) -> AriaPage:
        return _launch(playwright_driver, browsers, f"{server.url}/{query}", wav, viewport)

    yield open_
    for browser in browsers:
        browser.close()


@pytest.fixture
def stub_aria() -> Iterator[StubAria]:
    """A stub server (see ``stub_server.py``) whose session offers every mode of ``stub_server.MODES``,
    starting in voice_chat; set ``stub_aria.session`` before opening a page to change that."""
    with StubAria(session_message()) as stub:
        yield stub
    assert stub.invalid == [], "messages the wire models refuse"


@pytest.fixture
def open_stub_page(playwright_driver: Any, stub_aria: StubAria) -> Iterator[OpenPage]:
    """``open_stub_page(viewport=(1280, 800))``: a fresh Chromium showing the client of the stub server."""
    yield from page_opener(playwright_driver, f"{stub_aria.url}/")


def page_opener(playwright_driver: Any, url: str) -> Iterator[OpenPage]:
    """The body of a page fixture: ``open_(viewport=(1280, 800))`` opens a fresh Chromium at ``url`` (no
    microphone file); every browser it opened is closed after the test."""
    browsers: list[Any] = []

    def open_(viewport: tuple[int, int] = (1280, 800)) -> AriaPage:
        return _launch(playwright_driver, browsers, url, None, viewport)

    yield open_
    for browser in browsers:
        browser.close()
