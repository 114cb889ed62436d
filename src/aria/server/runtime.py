"""The server's shared state: settings, engines (loaded in the background), sessions and metrics.

Engines are shared by every connection except the VAD, which keeps per-stream state and is created
per connection. While engines load, the page is already usable and ``engine_states`` says what is
still loading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aria.core.config import Settings
from aria.core.metrics import MetricsRegistry
from aria.engines.base import LLM, VAD, EngineKind
from aria.engines.factory import create_engine, resolve_backend
from aria.engines.fallback import FallbackEngine
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AriaError
from aria.pipeline.build import Engines, start_engines
from aria.session.files import FileSnapshotStore
from aria.session.store import SessionStore

__all__ = ["Runtime"]

log = logging.getLogger(__name__)
SHARED_KINDS: tuple[EngineKind, ...] = ("stt", "llm", "tts")


class Runtime:
    def __init__(self, settings: Settings, *, registry: EngineRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.sessions = SessionStore(FileSnapshotStore(settings.data_dir / "sessions"))
        #: With ``aria serve --resume``: the session a client without a session id continues.
        self.resume_id: str | None = None
        self.metrics = MetricsRegistry()
        self.engines: Engines | None = None
        #: The model that summarises old turns (None: they are trimmed instead).
        self.summarizer: LLM | None = None
        self._own_summarizer = False
        self.load_error: str | None = None
        self.ready = asyncio.Event()
        self.started_at = time.time()
        self.connections = 0
        self._loader: asyncio.Task[None] | None = None
        self._states: dict[str, dict[str, Any]] = {}
        self.connections_gauge = self.metrics.gauge("aria_active_connections", "Open WebSocket connections")
        self.sessions_gauge = self.metrics.gauge("aria_sessions", "Sessions held in memory")
        for kind in (*SHARED_KINDS, "vad"):
            self._states[kind] = {"name": None, "state": "loading", "detail": ""}

    async def start(self) -> None:
        """Start loading engines in the background; returns at once."""
        self._loader = asyncio.create_task(self._load(), name="engine-loader")

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.engines = await start_engines(self.settings, kinds=SHARED_KINDS, registry=self.registry)
        except AriaError as exc:
            self.load_error = str(exc)
            log.error("engines failed to load: %s", exc)
        self.summarizer = await self._make_summarizer()
        engines = self.engines
        for kind in SHARED_KINDS:
            engine = getattr(engines, kind, None) if engines else None
            if engine is not None:
                self._states[kind] = {"name": engine.name, "state": "ready", "detail": ""}
            else:
                reason = (engines.problems.get(kind) if engines else self.load_error) or "disabled"
                state = "disabled" if getattr(self.settings, kind).backend == "none" else "unavailable"
                self._states[kind] = {"name": None, "state": state, "detail": reason}
        try:
            vad_name = resolve_backend("vad", self.settings, self.registry)
            self._states["vad"] = {"name": vad_name, "state": "ready", "detail": ""}
        except AriaError as exc:
            self._states["vad"] = {"name": None, "state": "unavailable", "detail": str(exc)}
        log.info("engines ready in %.0f ms: %s", (time.perf_counter() - started) * 1000, self.engine_states())
        self.ready.set()

    async def _make_summarizer(self) -> LLM | None:
        llm = self.settings.llm
        if llm.summary_backend is None:
            # The main model summarises when it is a real one; the rule-based builtin cannot.
            main = self.engines.llm if self.engines else None
            primary = main.chain.engines[0] if isinstance(main, FallbackEngine) else main
            return main if primary is not None and primary.name != "builtin" else None
        try:
            engine = self.registry.create(llm.summary_backend, llm.summary_options, kind="llm")
            await engine.start()
            self._own_summarizer = True
        except AriaError as exc:
            log.warning("no summary model (%s): older turns will be trimmed", exc)
            return None
        assert isinstance(engine, LLM)
        return engine

    def engine_states(self) -> dict[str, dict[str, Any]]:
        return {kind: dict(state) for kind, state in self._states.items()}

    async def new_vad(self) -> VAD | None:
        """A VAD for one connection (VADs keep per-stream state)."""
        try:
            vad = create_engine("vad", self.settings, self.registry)
            if vad is None:
                return None
            await vad.start()
        except AriaError as exc:
            log.warning("no VAD for this connection: %s", exc)
            return None
        assert isinstance(vad, VAD)
        return vad

    def status(self) -> str:
        """``ok`` when every configured engine is ready, ``degraded`` when some are missing but the
        language model works, ``down`` without one (``loading`` before the first load finishes)."""
        if not self.ready.is_set():
            return "loading"
        if self.engines is None or self.engines.llm is None:
            return "down"
        wanted = [k for k in self._states if self._states[k]["state"] != "disabled"]
        return "ok" if all(self._states[k]["state"] == "ready" for k in wanted) else "degraded"

    async def aclose(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
        if self.engines is not None:
            await self.engines.aclose()
        if self.summarizer is not None and self._own_summarizer:
            await self.summarizer.aclose()
