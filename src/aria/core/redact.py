"""Credentials masked out of everything Aria shows or logs: one function, :func:`redact`, for text, and
:func:`redact_tree` for JSON-like values (the configuration dump, ``/health``, ``/models``).

What is masked (replaced by ``***``):

* the password of a URL's user information, anywhere in a text: ``http://ada:s3cret@host/v1`` becomes
  ``http://ada:***@host/v1``; user information without a password (``https://TOKEN@host``) is masked
  whole, since it is often a token;
* the value of query or ``key=value`` parameters named like a credential: ``token``, ``access_token``,
  ``api_key``/``apikey``, ``key``, ``password``, ``secret``, ``sig``/``signature``;
* the value of ``Authorization``, ``Proxy-Authorization`` and ``X-Api-Key`` headers (and of Aria's own
  ``X-Aria-Session-Key``), as they appear in logged header lists;
* in :func:`redact_tree`, the whole value of any mapping key named like a secret (``api_key``,
  ``apiKey``, ``token``, ``secret``, ``password``...).

Used by the configuration dump (:func:`aria.core.config.redacted`), the server's ``/health`` and error
messages, and the logging filter (:class:`aria.core.logs.SecretFilter`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_key", "redact", "redact_tree"]

MASK = "***"

# scheme://user:password@  or  scheme://token@ (user information cannot hold / ? # or whitespace).
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:\"'<>]*)(?::(?P<password>[^\s/?#@\"'<>]*))?@"
)
_PARAMS = re.compile(
    r"(?i)((?:[?&;]|\b)(?:token|access_token|refresh_token|api_key|apikey|key|password|passwd|secret"
    r"|client_secret|sig|signature)=)[^&\s\"'#]+"
)
_HEADERS = re.compile(
    r"(?i)((?:authorization|proxy-authorization|x-api-key)[\"']?\s*[:=,]\s*(?:b?[\"'])?"
    r"(?:bearer\s+|basic\s+|token\s+)?)[^\s\"',)]+"
    r"|(x-aria-session-key[\"']?\s*[:=,]\s*(?:b?[\"'])?)[^\s\"')]+"  # a comma-separated list of keys
)
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:api_?key|access_?key|key_?hash|token|secret|secret_?key|password|passwd|session_?key)$"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _userinfo(match: re.Match[str]) -> str:
    if match.group("password") is not None:
        return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
    return f"{match.group('scheme')}{MASK}@"


def redact(text: str) -> str:
    """``text`` with the credentials listed in the module docstring masked; the rest is unchanged."""
    if "@" in text:
        text = _URL_USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _PARAMS.sub(lambda m: m.group(1) + MASK, text)
    if ":" in text or "=" in text or "," in text:
        text = _HEADERS.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)
    return text


def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a secret (``api_key``, ``apiKey``, ``token``, ``password``...)."""
    snake = _CAMEL.sub("_", name).lower().replace("-", "_")
    return bool(_SECRET_KEY.search(snake))


def redact_tree(value: Any) -> Any:
    """A copy of a JSON-like ``value`` (dicts, lists, scalars) with secret-named keys' values masked and
    :func:`redact` applied to every string, keys included."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {
            redact(str(key)): MASK if is_secret_key(str(key)) else redact_tree(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_tree(item) for item in value]
    return value
