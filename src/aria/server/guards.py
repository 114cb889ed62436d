"""Who may talk to the server: the origin of a browser, the ``Host`` a request was addressed to (against
DNS rebinding), and the server's token. Shared by the HTTP routes and both WebSocket shells."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["host_allowed", "origin_allowed", "token_ok"]

_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Browsers always send Origin: only the server's own origin or a configured one may connect.
    Non-browser clients (no Origin header) are allowed; the token protects non-loopback servers."""
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.netloc == host and parts.scheme in ("http", "https")


def host_allowed(host: str | None, bound: str, allowed: list[str]) -> bool:
    """Against DNS rebinding: a server bound to loopback answers only requests addressed to a loopback
    name (or one of ``allowed``); a server bound elsewhere answers any ``Host`` unless ``allowed`` lists
    some (it is protected by its token)."""
    if host is None:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower()
    if name in _LOOPBACK_NAMES or name in (a.lower() for a in allowed) or "*" in allowed:
        return True
    if bound in _LOOPBACK_NAMES:
        return False
    return not allowed or name == bound.lower()


def token_ok(query: Mapping[str, str], headers: Mapping[str, str], token: str | None) -> bool:
    """Whether a request carries the server's token (``?token=`` or ``Authorization: Bearer``)."""
    if not token:
        return True
    offered = query.get("token") or ""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        offered = auth[7:].strip()
    return hmac.compare_digest(offered.encode(), token.encode())
