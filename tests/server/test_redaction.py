"""Credentials in URLs never leak: a password in ``llm.options.base_url`` is masked in ``/health``,
``/config``, ``/models``, the ``session`` message, error messages and the log of a live ``aria serve``;
the redaction itself, the logging filter, and the log levels of normal disconnects and malformed frames.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from aria.core.config import load_settings, redacted
from aria.core.logs import SecretFilter, configure_logging
from aria.core.redact import redact, redact_tree
from aria.server import protocol as proto
from tests.server.conftest import LiveServer, connect
from tests.server.test_limits import Spawned, spawn_serve, stop

PASSWORD = "hunter2-s3cret"


# -- the function --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://ada:pw@host:8080/v1", "http://ada:***@host:8080/v1"),
        ("fetching https://TOKEN@example.com/x failed", "fetching https://***@example.com/x failed"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "GET /ws?session_id=s_1&key=s_1.abc&token=t HTTP/1.1",
            "GET /ws?session_id=s_1&key=***&token=*** HTTP/1.1",
        ),
        ("Authorization: Bearer sk-123", "Authorization: Bearer ***"),
        ("(b'x-aria-session-key', b'a.b,c.d')", "(b'x-aria-session-key', b'***')"),
        ("write to ada@example.com at http://host/v1", "write to ada@example.com at http://host/v1"),
    ],
)
def test_redact_masks_credentials_and_nothing_else(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_redact_tree_masks_secret_keys_and_urls_in_values() -> None:
    tree = {"llm": {"base_url": "http://u:pw@h/v1", "api_key": "sk", "items": ["ftp://a:b@c/"]}, "n": 3}
    assert redact_tree(tree) == {
        "llm": {"base_url": "http://u:***@h/v1", "api_key": "***", "items": ["ftp://a:***@c/"]},
        "n": 3,
    }


def test_the_config_dump_masks_url_passwords() -> None:
    settings = load_settings(
        overrides={"llm.backend": "openai", "llm.options": {"base_url": f"http://ada:{PASSWORD}@h:1/v1"}},
        env={},
    )
    dumped = json.dumps(redacted(settings))
    assert PASSWORD not in dumped
    assert "http://ada:***@h:1/v1" in dumped


def test_the_log_handler_masks_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    aria_logger = logging.getLogger("aria")
    level, handlers = aria_logger.level, list(aria_logger.handlers)
    configure_logging("INFO", stream=stream)
    log = logging.getLogger("aria.test.redaction")
    try:
        log.info("connecting to %s", f"http://ada:{PASSWORD}@h/v1")
        try:
            raise ConnectionError(f"could not reach http://ada:{PASSWORD}@h/v1")
        except ConnectionError:
            log.exception("turn failed")
    finally:  # as it was: other tests read the aria logger's records
        for handler in [h for h in aria_logger.handlers if h not in handlers]:
            aria_logger.removeHandler(handler)
        aria_logger.setLevel(level)
    text = stream.getvalue()
    assert PASSWORD not in text
    assert "http://ada:***@h/v1" in text
    assert "Traceback" in text  # the traceback is kept, masked


def test_the_filter_masks_server_loggers_records() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, "%s", (f"x?token={PASSWORD}",), None
    )
    assert SecretFilter().filter(record)
    assert record.getMessage() == "x?token=***"


def test_wire_errors_and_notices_are_masked() -> None:
    error = proto.ErrorMessage(code="llm_failed", message=f"POST http://a:{PASSWORD}@h/v1 failed")
    assert PASSWORD not in proto.encode(error)
    notice = proto.NotificationMessage(text=f"fell back from http://a:{PASSWORD}@h/v1")
    assert PASSWORD not in proto.encode(notice)


# -- a live server with a password in its LLM URL ------------------------------------------------------


class _FailingLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that lists a model and fails every completion."""

    def do_GET(self) -> None:
        self._reply(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self._reply(500, {"error": {"message": "the model crashed"}})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawned]:
    llm = ThreadingHTTPServer(("127.0.0.1", 0), _FailingLLM)
    thread = threading.Thread(target=llm.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://ada:{PASSWORD}@127.0.0.1:{llm.server_address[1]}/v1"
    env = {
        "ARIA_LLM__BACKEND": "openai",
        "ARIA_LLM__OPTIONS": json.dumps({"base_url": base_url, "model": "tiny", "timeout_s": 5}),
        "ARIA_LOG__LEVEL": "DEBUG",
    }
    spawned = spawn_serve(tmp_path_factory.mktemp("redaction"), env)
    try:
        yield spawned
    finally:
        stop(spawned)
        llm.shutdown()
        llm.server_close()
        thread.join(5)


def test_no_password_in_health_config_or_models(leaky: Spawned) -> None:
    for path in ("/health", "/config", "/models"):
        body = httpx.get(leaky.url + path, timeout=10).text
        assert PASSWORD not in body, path
    assert "ada:***@127.0.0.1" in httpx.get(leaky.url + "/config").text  # masked, not dropped


async def test_no_password_in_errors_or_the_log(leaky: Spawned) -> None:
    live = LiveServer(settings=None, port=leaky.port)  # type: ignore[arg-type]
    ws, client = await connect(live)
    async with ws:
        assert PASSWORD not in json.dumps(client.session)
        await client.send({"type": "text", "text": "hello"})
        error = await client.until("error", within=20)
        await client.until("response_done", within=20)
    seen = json.dumps([m for _, m in client.messages if isinstance(m, dict)])
    assert PASSWORD not in seen
    assert error["code"] in ("llm_failed", "engine_error", "all_engines_failed"), error
    # Resuming puts the session's key in the URL: the request line is logged without it.
    key = client.session["key"]
    ws, again = await connect(live, f"?session_id={client.session['session_id']}&key={key}")
    async with ws:
        assert again.session["resumed"] is True
    log = leaky.logged()
    assert PASSWORD not in log
    assert "ada:***@127.0.0.1" in log  # the URL was logged, masked
    assert key.split(".")[1] not in log


# -- log levels: normal disconnects and malformed frames --------------------------------------------------


async def _raw_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand (the server runs in this loop: no blocking socket calls)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def test_a_normal_close_is_one_info_line(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aria")  # whatever level an earlier in-process CLI left it at
    ws, _client = await connect(live)
    await ws.close()
    await _settle(live)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records)


async def test_an_abrupt_drop_is_info_without_a_traceback(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aria")  # whatever level an earlier in-process CLI left it at
    ws, _client = await connect(live)
    ws.transport.abort()  # type: ignore[attr-defined]
    await _settle(live)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any(r.exc_info for r in caplog.records)
    assert any(r.levelno == logging.INFO and "closed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("server_overrides", [{"tts.options": {"ms_per_char": 40.0}}])
async def test_closing_while_an_answer_plays_is_info_without_a_traceback(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aria")  # whatever level an earlier in-process CLI left it at
    ws, client = await connect(live, max_queue=None)  # reads on while closing: the handshake completes
    await client.send({"type": "text", "text": "tell me something"})
    while not isinstance(await client.next(), bytes):  # its audio is streaming
        pass
    await ws.close()
    assert ws.close_code == 1000  # the server answered the close at once, mid-answer
    await _settle(live)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not any(r.exc_info for r in caplog.records)
    assert any(r.levelno == logging.INFO and "closed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("payload", "words"), [(b"\xff\xfe bad utf-8", "UTF-8"), (b"{not json", "JSON")])
async def test_malformed_frames_are_one_warning_line(
    live: LiveServer, caplog: pytest.LogCaptureFixture, payload: bytes, words: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="aria")  # whatever level an earlier in-process CLI left it at
    reader, writer = await _raw_ws(live.port)
    try:
        await asyncio.wait_for(reader.read(65536), 5)  # the session message
        writer.write(_frame(0x1, payload))
        await asyncio.sleep(0.3)
    finally:
        writer.close()
    await _settle(live)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [(r.name, r.levelname, r.getMessage()) for r in loud]
    assert loud[0].levelno == logging.WARNING
    assert words in loud[0].getMessage()
    assert "\n" not in loud[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


async def _settle(live: LiveServer) -> None:
    """Wait until the server has no connection left (its teardown logged)."""
    for _ in range(200):
        if live.runtime.connections == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
