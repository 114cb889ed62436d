"""Logging: JSON lines that parse and carry context, and a configure step that can run twice."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator

import pytest

from aria.core.logs import JsonLinesFormatter, configure_logging


@pytest.fixture(autouse=True)
def restore_aria_logger() -> Iterator[None]:
    logger = logging.getLogger("aria")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def test_json_lines_carry_core_fields_and_extras() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", json_lines=True, stream=stream)
    logging.getLogger("aria.pipeline").info(
        "turn %s done", "t1", extra={"turn_id": "t1", "engine": "llm:builtin", "ms": 12.5, "obj": Opaque()}
    )
    (record,) = lines(stream)
    assert record["level"] == "INFO"
    assert record["logger"] == "aria.pipeline"
    assert record["msg"] == "turn t1 done"
    assert (record["turn_id"], record["engine"], record["ms"], record["obj"]) == (
        "t1",
        "llm:builtin",
        12.5,
        "<Opaque>",
    )
    ts = dt.datetime.fromisoformat(str(record["ts"]))
    assert ts.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - ts).total_seconds()) < 60
    assert "exc" not in record


def test_json_lines_include_the_traceback() -> None:
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("aria.engines").exception("engine failed", extra={"engine": "tts:kokoro"})
    (record,) = lines(stream)
    assert record["level"] == "ERROR"
    assert record["engine"] == "tts:kokoro"
    assert "Traceback" in str(record["exc"])
    assert "RuntimeError: boom" in str(record["exc"])


def test_extras_do_not_overwrite_core_fields() -> None:
    record = logging.LogRecord("aria.x", logging.INFO, __file__, 1, "hello", None, None)
    record.level = "custom"
    out = json.loads(JsonLinesFormatter().format(record))
    assert out["level"] == "INFO"
    assert out["extra_level"] == "custom"


def test_one_record_is_one_line() -> None:
    record = logging.LogRecord("aria.x", logging.INFO, __file__, 1, "two\nlines", None, None)
    text = JsonLinesFormatter().format(record)
    assert "\n" not in text
    assert json.loads(text)["msg"] == "two\nlines"


def test_configure_is_idempotent_and_replaces_its_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    logger = logging.getLogger("aria")
    before = len(logger.handlers)
    configure_logging("INFO", stream=first)
    configure_logging("INFO", stream=second)
    assert len(logger.handlers) == before + 1
    logging.getLogger("aria.core").warning("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_plain_format_and_level_filtering() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    log = logging.getLogger("aria.session")
    log.info("hidden")
    log.warning("shown %d", 3)
    text = stream.getvalue()
    assert "hidden" not in text
    assert text.rstrip().endswith("WARNING aria.session: shown 3")


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")
