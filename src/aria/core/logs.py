"""Logging set-up: plain text for people, JSON lines for machines.

Every module logs through ``logging.getLogger(__name__)``; :func:`configure_logging` installs one handler on
the ``aria`` logger. Context goes in ``extra=`` (``log.info("turn done", extra={"turn_id": tid})``) and
becomes top-level fields of the JSON object.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

from aria.core.redact import redact

__all__ = ["PLAIN_FORMAT", "JsonLinesFormatter", "SecretFilter", "configure_logging", "redact_secrets"]

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_aria_handler"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``msg``, the ``extra=``
    fields, and ``exc`` (the formatted traceback) when there is one. Unserialisable values are repr()'d."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS:
                payload[key if key not in payload else f"extra_{key}"] = value
        if record.exc_text:  # set (and redacted) by SecretFilter
            payload["exc"] = record.exc_text
        elif record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=repr, ensure_ascii=False)


#: Loggers of the libraries under the server, which log request lines and headers.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets", "websockets.server", "httpx")


def redact_secrets(text: str) -> str:
    """``text`` with credentials masked (:func:`aria.core.redact.redact`): ``token=``/``api_key=``...
    values, ``Authorization`` headers and passwords in URLs."""
    return redact(text)


class SecretFilter(logging.Filter):
    """Masks credentials in a record's message and traceback (request lines with ``?token=``, logged
    headers, URLs with a password)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        clean = redact_secrets(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:  # handlers reuse exc_text once it is set
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        return True

    @classmethod
    def install(cls, names: tuple[str, ...] = SERVER_LOGGERS) -> None:
        """Add the filter (once) to each named logger."""
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())


def configure_logging(level: str = "INFO", json_lines: bool = False, stream: TextIO | None = None) -> None:
    """Send the ``aria`` logger's records at ``level`` and above to ``stream`` (default ``sys.stderr``).

    Calling it again replaces the handler it installed before, so there is only ever one.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    logger = logging.getLogger("aria")
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonLinesFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(SecretFilter())  # every aria.* record passes this handler, child loggers' too
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.setLevel(numeric)
