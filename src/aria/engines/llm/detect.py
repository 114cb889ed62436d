"""Find a language model server already running on this machine.

:func:`detect_local_llm` probes, all at once and with a short timeout:

* Ollama at ``/api/tags`` (it must have at least one model pulled; embedding models are passed over);
* OpenAI-compatible servers at ``/v1/models`` on the usual local ports: 8080 (llama.cpp's
  ``llama-server``, llamafile), 8000 (vLLM), 1234 (LM Studio), 5000 and 5001 (text-generation-webui,
  KoboldCpp).

Ollama wins, then the OpenAI-compatible servers in port order. The answer is a backend name and the options
for it (``("ollama", {"base_url": ..., "model": ...})``), ready for the engine registry. Nothing listening
costs one refused connection per port, so detection on a machine without a server is a few milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["OLLAMA_PORTS", "OPENAI_PORTS", "detect_local_llm", "pick_model"]

log = logging.getLogger(__name__)

OLLAMA_PORTS: tuple[int, ...] = (11434,)
OPENAI_PORTS: tuple[int, ...] = (8080, 8000, 1234, 5000, 5001)
_NOT_CHAT = ("embed", "bge-", "rerank", "whisper", "clip")


def pick_model(names: Sequence[str]) -> str | None:
    """The first name that looks like a chat model (not an embedding, reranking or speech model)."""
    for name in names:
        if not any(marker in name.lower() for marker in _NOT_CHAT):
            return name
    return None


async def _get(client: httpx.AsyncClient, url: str) -> Any:
    """The JSON at ``url``, or None for anything else (refused, timed out, an error status, not JSON)."""
    import httpx

    try:
        response = await client.get(url)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.debug("no language model server at %s (%s)", url, type(exc).__name__)
        return None


async def _ollama(client: httpx.AsyncClient, root: str) -> tuple[str, dict[str, str]] | None:
    payload = await _get(client, f"{root}/api/tags")
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), list):
        return None
    model = pick_model([str(m.get("name")) for m in payload["models"] if isinstance(m, dict)])
    return None if model is None else ("ollama", {"base_url": root, "model": model})


async def _openai(client: httpx.AsyncClient, root: str) -> tuple[str, dict[str, str]] | None:
    payload = await _get(client, f"{root}/v1/models")
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    model = pick_model([str(m.get("id")) for m in payload["data"] if isinstance(m, dict)])
    return None if model is None else ("openai", {"base_url": f"{root}/v1", "model": model})


async def detect_local_llm(
    timeout_s: float = 0.3,
    *,
    host: str = "127.0.0.1",
    ollama_ports: Sequence[int] = OLLAMA_PORTS,
    openai_ports: Sequence[int] = OPENAI_PORTS,
) -> tuple[str, dict[str, str]] | None:
    """``(backend, options)`` for the best local server found within ``timeout_s``, or None."""
    if importlib.util.find_spec("httpx") is None:
        log.info("httpx is not installed: cannot look for a local language model server")
        return None
    import httpx

    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        where = f"[{host}]" if ":" in host else host  # an IPv6 address goes in brackets
        probes = [_ollama(client, f"http://{where}:{port}") for port in ollama_ports]
        probes += [_openai(client, f"http://{where}:{port}") for port in openai_ports]
        try:
            async with asyncio.timeout(timeout_s * 2 + 0.5):  # a backstop: httpx's timeouts come first
                found = await asyncio.gather(*probes)
        except TimeoutError:
            log.warning("looking for a local language model server took over %.1f s", timeout_s * 2 + 0.5)
            return None
    for result in found:
        if result is not None:
            backend, options = result
            log.info(
                "found a local %s server at %s (model %s)", backend, options["base_url"], options["model"]
            )
            return result
    return None
