"""Serving a file over HTTP with ``Range`` support, for the tests' local model servers."""

from __future__ import annotations

import http.server
import re


def send_range(handler: http.server.BaseHTTPRequestHandler, data: bytes) -> bytes:
    """Send the status and headers for ``data`` (206 from the ``Range: bytes=N-`` start when asked, else
    200); returns the body to write."""
    start = 0
    match = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
    if match:
        start = int(match[1])
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
        handler.send_response(200)
    handler.send_header("Content-Length", str(len(data) - start))
    handler.end_headers()
    return data[start:]
