"""The language model picker's REST side: which models could answer, and switching the live one.

==========================  ===============================================================
``GET /models/llm``          the models on offer, the one answering now marked ``current``: Ollama's
                             pulled models (``GET /api/tags``), GGUF files in the models folder
                             (catalog entries by name, a vision entry with its projector), the configured
                             one; ``sources`` says where each list came from or why it is missing
``GET /models/llm/current``  what answers now and when it was switched (pages poll it)
``POST /models/llm``         ``{"name": ...}`` (a ``name`` from the list): new turns answer with that model;
                             an unknown name is refused (400) and one that fails to load (422) leaves the
                             previous model answering
==========================  ===============================================================

Names: ``ollama:<tag>``, ``gguf:<path under the models folder>``, ``builtin``, and ``configured`` (the
model the server started with). Ollama is looked for at the configured ``llm.options.base_url`` when the
backend is Ollama, else at ``$OLLAMA_HOST`` (Ollama's own variable), else ``127.0.0.1:11434``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aria.core.config import LLMSettings, Settings
from aria.engines.catalog import CATALOG, ModelEntry
from aria.engines.models import models_dir
from aria.errors import AriaError, ResidencyError
from aria.server.runtime import Runtime

__all__ = ["ModelChoice", "choices", "ollama_root", "router", "with_model"]

log = logging.getLogger(__name__)
router = APIRouter()
OLLAMA_DEFAULT = "http://127.0.0.1:11434"
#: Catalog entries with a vision projector: the multimodal chat handler that reads it.
_VISION_HANDLER = {"qwen2.5-vl-3b": "qwen2.5-vl"}


@dataclass(frozen=True)
class ModelChoice:
    """One model the picker offers: its ``name`` on the wire, what to show, and the engine settings."""

    name: str
    label: str
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "configured"
    vision: bool = False
    size: int | None = None

    @property
    def model(self) -> str | None:
        """The model's own name (an Ollama tag, a GGUF's catalog name or file stem), None for builtin."""
        if self.source == "gguf":
            return self.label.removesuffix(" (GGUF)")
        given = self.options.get("model") or self.options.get("model_path")
        return Path(str(given)).stem if self.backend == "llamacpp" and given else given

    def as_dict(self, current: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "model": self.model,
            "backend": self.backend,
            "source": self.source,
            "vision": self.vision,
            "size": self.size,
            "current": current,
        }


def ollama_root(settings: Settings) -> str:
    """Where Ollama answers: the configured backend's URL, ``$OLLAMA_HOST``, or its default port."""
    if settings.llm.backend == "ollama" and settings.llm.options.get("base_url"):
        return str(settings.llm.options["base_url"]).rstrip("/")
    host = os.environ.get("OLLAMA_HOST", "").strip().rstrip("/")
    if not host:
        return OLLAMA_DEFAULT
    return host if "://" in host else f"http://{host}"


async def _ollama_models(root: str) -> list[str]:
    from aria.engines.llm.ollama import OllamaLLM

    engine = OllamaLLM(OllamaLLM.Config(base_url=root, connect_timeout_s=0.5, timeout_s=2.0))
    try:
        return await engine.list_models()
    finally:
        await engine.aclose()


def _ggufs(root: Path) -> list[ModelChoice]:
    """The GGUF chat models in the models folder: catalog entries by their name (a vision entry with its
    projector), any other ``*.gguf`` by its path; projectors (``mmproj*``) are not models of their own."""
    if not root.is_dir():
        return []
    by_location: dict[str, ModelEntry] = {
        e.location: e for e in CATALOG if e.engine == "llm:llamacpp" and e.location
    }
    found: list[ModelChoice] = []
    for path in sorted(root.rglob("*.gguf")):
        relative = path.relative_to(root).as_posix()
        if path.name.lower().startswith("mmproj") or not path.is_file():
            continue
        options: dict[str, Any] = {"model_path": str(path)}
        entry = by_location.get(relative)
        label = f"{entry.name} (GGUF)" if entry is not None else f"{path.stem} (GGUF)"
        vision = False
        if entry is not None:
            projector = next((f for f in entry.files if "mmproj" in f.path.lower()), None)
            if projector is not None and projector.local_path(root).is_file():
                options["clip_model_path"] = str(projector.local_path(root))
                options["vision_handler"] = _VISION_HANDLER.get(entry.name, "llava-1-5")
                vision = True
        found.append(
            ModelChoice(f"gguf:{relative}", label, "llamacpp", options, "gguf", vision, path.stat().st_size)
        )
    return found


def _is_current(choice: ModelChoice, settings: Settings) -> bool:
    llm = settings.llm
    if choice.backend != llm.backend:
        return False
    if choice.backend == "ollama":
        return bool(llm.options.get("model") == choice.options.get("model"))
    if choice.backend == "llamacpp":
        given = llm.options.get("model_path")
        if given is None:
            return False
        path = Path(str(given)).expanduser()
        if not path.is_absolute():
            path = models_dir(settings.data_dir) / path
        return path.resolve() == Path(choice.options["model_path"]).resolve()
    return not choice.options


def _configured(settings: Settings) -> ModelChoice:
    llm = settings.llm
    model = llm.options.get("model") or llm.options.get("model_path")
    what = f"{llm.backend} ({Path(str(model)).name})" if model else llm.backend
    if llm.backend == "auto":  # nothing detected or on disk when it started: the chain's last resort
        what = "automatic choice"
    return ModelChoice("configured", f"{what}: as started", llm.backend, dict(llm.options))


async def choices(rt: Runtime, started: Settings) -> tuple[list[ModelChoice], dict[str, Any]]:
    """Every model on offer (the configured one first), and where each list came from."""
    root = ollama_root(rt.engine_settings)
    sources: dict[str, Any] = {"ollama": {"url": root, "error": None}}
    offered: list[ModelChoice] = [_configured(started)]
    try:
        tags = await _ollama_models(root)
    except AriaError as exc:
        sources["ollama"]["error"] = f"Ollama is not reachable at {root}: {exc}"
        tags = []
    for tag in tags:
        offered.append(ModelChoice(f"ollama:{tag}", f"{tag} (Ollama)", "ollama", {"model": tag}, "ollama"))
    folder = models_dir(rt.settings.data_dir)
    sources["gguf"] = {"folder": str(folder)}
    offered += await asyncio.to_thread(_ggufs, folder)
    offered.append(ModelChoice("builtin", "builtin (no language model: limited)", "builtin", {}, "builtin"))
    return offered, sources


def with_model(settings: Settings, choice: ModelChoice, *, ollama: str) -> Settings:
    """``settings`` answering with ``choice`` (options kept where the backend stays the same)."""
    options = dict(choice.options)
    if choice.backend == "ollama":
        options.setdefault("base_url", ollama)
    if choice.backend == settings.llm.backend:
        options = {**settings.llm.options, **options}
    # Validated as a section, not as Settings (which would read the environment's options back in).
    llm = settings.llm.model_dump() | {"backend": choice.backend, "options": options}
    return settings.model_copy(update={"llm": LLMSettings.model_validate(llm)})


def _started(request: Request, rt: Runtime) -> Settings:
    """The engine settings the server started with (before the first switch)."""
    state = request.app.state
    if getattr(state, "llm_started", None) is None:
        state.llm_started = rt.engine_settings
    started: Settings = state.llm_started
    return started


@router.get("/models/llm")
async def _list_llms(request: Request) -> dict[str, Any]:
    rt: Runtime = request.app.state.runtime
    started = _started(request, rt)
    offered, sources = await choices(rt, started)
    current_settings = rt.engine_settings
    marked = [c for c in offered[1:] if _is_current(c, current_settings)]
    chosen = marked[0] if marked else offered[0]
    current = chosen.name
    engine = rt.engine_states().get("llm", {})
    return {
        "current": current,
        "label": chosen.label,
        "model": chosen.model,
        "serving": engine.get("name"),
        "state": engine.get("state"),
        "switched_at": getattr(request.app.state, "llm_switched_at", None),
        "models": [c.as_dict(c.name == current) for c in offered],
        "sources": sources,
    }


@router.get("/models/llm/current")
async def _current_llm(request: Request) -> dict[str, Any]:
    """What answers now and when it was last switched (cheap: no listing; pages poll it)."""
    rt: Runtime = request.app.state.runtime
    state = request.app.state
    chosen: dict[str, Any] = getattr(state, "llm_current", None) or {"current": "configured"}
    return {
        **chosen,
        "serving": rt.engine_states().get("llm", {}).get("name"),
        "switched_at": getattr(state, "llm_switched_at", None),
    }


@router.post("/models/llm")
async def _switch_llm(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
        return JSONResponse(
            {"code": "invalid_message", "message": 'send {"name": "..."}, a name from GET /models/llm'}, 400
        )
    name = body["name"]
    started = _started(request, rt)
    offered, sources = await choices(rt, started)
    choice = next((c for c in offered if c.name == name), None)
    if choice is None:
        known = ", ".join(c.name for c in offered)
        return JSONResponse(
            {"code": "unknown_model", "message": f"no language model {name!r} here; known: {known}"}, 400
        )
    if not rt.ready.is_set():
        return JSONResponse({"code": "loading", "message": "the engines are still loading; try again"}, 503)
    settings = started
    if choice.name != "configured":
        settings = with_model(started, choice, ollama=sources["ollama"]["url"])
    state = request.app.state
    if getattr(state, "llm_switching", None) is None:
        state.llm_switching = asyncio.Lock()  # one switch at a time
    async with state.llm_switching:
        began = time.perf_counter()
        try:
            await rt.switch_llm(settings)
        except ResidencyError as exc:
            log.warning("switching the language model to %s failed: %s", name, exc)
            serving = rt.engine_states().get("llm", {}).get("name")
            return JSONResponse(
                {
                    "code": "model_failed",
                    "message": f"{choice.label} could not start, so {serving or 'the previous model'} "
                    f"still answers: {exc}",
                    "serving": serving,
                },
                422,
            )
    state.llm_switched_at = time.time()
    state.llm_current = {"current": name, "label": choice.label, "model": choice.model}
    log.info("language model switched to %s in %.0f ms", name, (time.perf_counter() - began) * 1000)
    engine = rt.engine_states().get("llm", {})
    return JSONResponse(
        {"current": name, "label": choice.label, "model": choice.model, "serving": engine.get("name")}
    )
