"""The server's shared state: settings, engines (loaded in the background, kept within a memory budget
by the residency manager), modes, sessions and metrics.

Engines live in named slots of a :class:`~aria.pipeline.residency.ResidencyManager`: ``stt``, ``llm`` and
``tts`` for the main loadout, plus ``llm:<mode>`` / ``router:<mode>`` for modes configured with another
model. Each conversation *holds* the slots of its mode (:mod:`aria.server.holders`); a mode switch makes
that set resident, unloading what no one holds when the budget needs the room, and every load and unload
reaches the conversations' listeners so the client hears why it waits. Pipelines hold slot handles, so a
restart or a model switch swaps the engine under them. Health views live in :mod:`aria.server.health`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aria.core.config import Settings
from aria.core.metrics import MetricsRegistry
from aria.core.modespec import ModeSpec
from aria.engines.base import LLM, STT, TTS, VAD, Engine, EngineKind, TurnDetector
from aria.engines.chain import FallbackEngine, primary
from aria.engines.factory import create_engine, detect_llm, resolve_backend, start_vad
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AriaError, ModeUnavailable, ResidencyError
from aria.pipeline.build import Engines
from aria.pipeline.memory import gpu_memory_mb, total_memory_mb
from aria.pipeline.mode_pipelines import Loadout, engine_key, loadout_slots
from aria.pipeline.residency import ResidencyEvent, ResidencyManager
from aria.server.firstrun import FirstRunPull, embedded_llm
from aria.server.health import MAIN_KINDS, Health
from aria.server.holders import FAST_SLOT, Holders
from aria.server.honesty import Limitation
from aria.session.backends import prune_forever, session_store

__all__ = ["FAST_SLOT", "ModeUnavailable", "Runtime"]

log = logging.getLogger(__name__)
_STARTUP = object()


class Runtime:
    def __init__(self, settings: Settings, *, registry: EngineRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.modes: dict[str, ModeSpec] = settings.all_modes()
        self.sessions = session_store(settings.session, settings.data_dir)
        #: With ``aria serve --resume``: the session a client without a session id continues.
        self.resume_id: str | None = None
        self.metrics = MetricsRegistry()
        #: The settings engines are made from: ``settings`` with an auto-detected LLM server filled in.
        self.engine_settings = settings
        self.residency = ResidencyManager(_budget_mb(settings), on_event=self._on_residency)
        #: Hear every load and unload (connections turn them into ``state`` messages).
        self.listeners: set[Callable[[ResidencyEvent], None]] = set()
        #: Hear each engine that failed and was passed over for the next in its chain.
        self.fallback_listeners: set[Callable[[str, str, str], None]] = set()
        self._recovering = asyncio.Lock()
        #: Which conversation holds which engine slots (:meth:`acquire`).
        self.holders = Holders(self)
        #: Why an engine slot is missing, by slot name.
        self.problems: dict[str, str] = {}
        #: The model that summarises old turns (None: they are trimmed instead).
        self.summarizer: LLM | None = None
        #: The end-of-turn model (None: every pause ends the turn).
        self.turn_detector: TurnDetector | None = None
        self._own_summarizer = False
        self.load_error: str | None = None
        self.ready = asyncio.Event()
        self.started_at = time.time()
        self.connections = 0
        self._loader: asyncio.Task[None] | None = None
        #: Each kind's engine for /health: name, state, detail.
        self.states: dict[str, dict[str, Any]] = {}
        self.connections_gauge = self.metrics.gauge("aria_active_connections", "Open WebSocket connections")
        #: Probes, breakers and gauges for /health and /metrics.
        self.health = Health(self)
        self._retention: asyncio.Task[None] | None = None
        #: With ``aria serve`` on a machine missing models: the background pull of the default loadout
        #: (set before start; ``/health`` shows its ``downloads``), and the chat model it prefers.
        self.first_run: FirstRunPull | None = None
        self.preferred_llm: str | None = None
        for kind in (*MAIN_KINDS, "vad"):
            self.states[kind] = {"name": None, "state": "loading", "detail": ""}

    async def start(self) -> None:
        """Start loading engines in the background; returns at once."""
        self._loader = asyncio.create_task(self._load(), name="engine-loader")
        retention = prune_forever(self.sessions, self.settings.session.retention_days)
        self._retention = asyncio.create_task(retention, name="session-retention")

    async def _load(self) -> None:
        started = time.perf_counter()
        # The language model chain: a detected local server, else the embedded model on disk, else builtin.
        self.engine_settings = embedded_llm(await detect_llm(self.settings), self.preferred_llm)
        self._register_slots()
        for kind in MAIN_KINDS:
            if not self.residency.registered(kind):
                state = "disabled" if getattr(self.settings, kind).backend == "none" else "unavailable"
                self.states[kind] = {"name": None, "state": state, "detail": self.problems.get(kind, "")}
        # Start with the main loadout and the start-up mode's; afterwards connections hold what they use.
        try:
            await self.acquire(_STARTUP, self.settings.mode, extra=MAIN_KINDS)
        except AriaError as exc:
            self.load_error = str(exc)
            log.error("engines failed to load: %s", exc)
        finally:
            self.release(_STARTUP)
        if self.residency.engine("llm") is None and self.load_error is None:
            self.load_error = self.problems.get("llm", "no language model")
        self.summarizer = await self._make_summarizer()
        self.turn_detector = await self._make_turn_detector()
        try:
            vad_name = resolve_backend("vad", self.settings, self.registry)
            self.states["vad"] = {"name": vad_name, "state": "ready", "detail": ""}
        except AriaError as exc:
            self.states["vad"] = {"name": None, "state": "unavailable", "detail": str(exc)}
        log.info("engines ready in %.0f ms: %s", (time.perf_counter() - started) * 1000, self.engine_states())
        self.ready.set()
        if self.first_run is not None:
            self.first_run.keep_used(self.engine_settings)  # e.g. no LLM to pull beside a detected server
            self.first_run.start(on_done=self._models_pulled)
        if self.settings.resilience.probe_interval_s > 0:
            self.health.start_probing(self.settings.resilience.probe_interval_s)

    def _register_slots(self) -> None:
        planned: dict[str, tuple[EngineKind, Settings]] = {}
        for kind in MAIN_KINDS:
            planned[kind] = (kind, self.engine_settings)
        for name, spec in self.modes.items():
            for plan in loadout_slots(name, spec, self.engine_settings).values():
                planned.setdefault(plan.name, (plan.kind, plan.settings))
        fast = self.engine_settings.with_llm(self.settings.resilience.fast_llm)
        if fast is not self.engine_settings and engine_key(fast) != engine_key(self.engine_settings):
            planned[FAST_SLOT] = ("llm", fast)
        for slot, (kind, settings) in planned.items():
            section = getattr(settings, kind)
            if section.backend == "none" or (kind == "tts" and not settings.tts.enabled):
                continue
            self.residency.register(
                slot,
                self._factory(kind, None if slot in MAIN_KINDS else settings),
                kind=kind,
                estimate_mb=section.memory_mb,
                sticky=kind in ("stt", "tts"),
            )

    def _factory(self, kind: EngineKind, settings: Settings | None) -> Callable[[], Engine]:
        """A slot's engine factory; with ``settings`` None it reads ``engine_settings`` at each load (the
        main slots, which a finished first-run pull reloads with the models it brought)."""

        def create() -> Engine:
            chosen = settings if settings is not None else self.engine_settings
            engine = create_engine(kind, chosen, self.registry, on_fallback=self._on_fallback)
            if engine is None:
                raise AriaError(f"{kind} is disabled")
            return engine

        return create

    def _on_fallback(self, kind: str, engine: str, exc: BaseException) -> None:
        log.warning("%s engine %s failed; falling back: %s", kind, engine, exc)
        for listener in list(self.fallback_listeners):
            try:
                listener(kind, engine, str(exc))
            except Exception:
                log.exception("a fallback listener failed")

    async def _models_pulled(self) -> None:
        """After the first-run pull: load the main engines again, so the models it brought serve (open
        pipelines follow: they hold the slots)."""
        fetched = self.first_run.fetched_kinds if self.first_run is not None else set()
        self.engine_settings = embedded_llm(self.engine_settings, self.preferred_llm)
        for name in MAIN_KINDS:
            if name not in fetched or name not in self.residency.resident():
                continue
            try:
                await self.residency.reload(name, reason="the downloaded model is ready")
            except ResidencyError as exc:
                self.problems[name] = str(exc)
                log.error("%s could not load after the download: %s", name, exc)
                continue
        if "turn" in fetched and (
            self.turn_detector is None or self.turn_detector.name.startswith("silence")
        ):
            previous, self.turn_detector = self.turn_detector, await self._make_turn_detector()
            if previous is not None:
                await previous.aclose()

    async def switch_llm(self, settings: Settings) -> Engine:
        """Serve new turns with the language model of ``settings``: the main ``llm`` slot loads it (open
        pipelines follow: they hold the slot, not the engine). When it cannot start (a chain that
        passed over it counts), the previous model is loaded back and :class:`ResidencyError` raised."""
        previous, self.engine_settings = self.engine_settings, settings
        try:
            engine = await self.residency.reload("llm", reason="switching the language model")
            first = getattr(engine, "engines", [engine])[0].name
            if first in (failed := getattr(engine, "unavailable", {})):
                raise ResidencyError(f"{first} could not start: {failed[first]}", engines=("llm",))
        except ResidencyError:
            self.engine_settings = previous
            await self.residency.reload("llm", reason="the chosen language model could not start")
            raise
        finally:
            if not self._own_summarizer:  # the main model summarises: the one loaded now
                self.summarizer = await self._make_summarizer()
        self.problems.pop("llm", None)
        return engine

    def downloads(self) -> list[dict[str, Any]]:
        """The first-run pull's files with their progress (empty when nothing is pulled)."""
        return self.first_run.snapshot() if self.first_run is not None else []

    async def recover(self) -> list[str]:
        """After a crash: restart every loaded engine slot with a member that reports itself unhealthy
        (a fresh engine from its factory, swapped in under the pipelines that hold the slot). Returns the
        restarted slots."""
        async with self._recovering:
            restarted: list[str] = []
            for name in self.residency.resident():
                engine = self.residency.engine(name)
                if engine is None or await _healthy(engine):
                    continue
                log.warning("restarting %s after a crash", name)
                try:
                    await self.residency.reload(name, reason="restarting after a crash")
                except ResidencyError as exc:
                    self.problems[name] = str(exc)
                    log.error("%s could not be restarted: %s", name, exc)
                    continue
                restarted.append(name)
            return restarted

    # -- holders and health (see holders.py, health.py) ---------------------------------------------

    async def acquire(self, holder: object, mode: str, *, extra: tuple[str, ...] = ()) -> Loadout:
        """Make ``mode``'s engines resident for ``holder`` and return them (:meth:`Holders.acquire`)."""
        return await self.holders.acquire(holder, mode, extra=extra)

    async def fast_llm(self, holder: object) -> LLM | None:
        return await self.holders.fast_llm(holder)

    def drop_fast_llm(self, holder: object) -> None:
        self.holders.drop_fast_llm(holder)

    def release(self, holder: object) -> None:
        self.holders.release(holder)

    @property
    def probes(self) -> dict[str, dict[str, Any]]:
        return self.health.probes

    async def probe(self) -> dict[str, dict[str, Any]]:
        return await self.health.probe()

    def breakers(self) -> dict[str, list[dict[str, Any]]]:
        return self.health.breakers()

    def refresh_gauges(self) -> None:
        self.health.refresh_gauges()

    def engine_states(self) -> dict[str, dict[str, Any]]:
        return self.health.engine_states()

    def limited(self) -> list[Limitation]:
        return self.health.limited()

    def mode_availability(self) -> dict[str, tuple[bool, str]]:
        return self.health.mode_availability()

    def status(self) -> str:
        return self.health.status()

    def _on_residency(self, event: ResidencyEvent) -> None:
        kind = event.name if event.name in MAIN_KINDS else None
        if kind is not None:
            state = {"loading": "loading", "loaded": "ready", "unloading": "ready", "unloaded": "unloaded"}
            engine = self.residency.engine(kind)
            self.states[kind] = {
                "name": engine.name if engine is not None else self.states[kind].get("name"),
                "state": state[event.kind],
                "detail": event.reason if event.kind != "loaded" else "",
            }
            if event.kind == "unloaded" and event.reason.startswith("load failed"):
                self.states[kind]["state"] = "unavailable"
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a residency listener failed")

    # -- views -------------------------------------------------------------------------------------

    @property
    def engines(self) -> Engines:
        """The main loadout's resident engines."""
        stt, llm, tts = (self.residency.engine(k) for k in MAIN_KINDS)
        return Engines(
            stt=stt if isinstance(stt, STT) else None,
            llm=llm if isinstance(llm, LLM) else None,
            tts=tts if isinstance(tts, TTS) else None,
            problems={k: v for k, v in self.problems.items() if k in MAIN_KINDS},
        )

    async def _make_summarizer(self) -> LLM | None:
        llm = self.settings.llm
        if llm.summary_backend is None:
            # The main model summarises when it is a real one; the rule-based builtin cannot. Through the
            # slot's handle: a model reloaded (a switch, a restart) summarises for pipelines already built.
            main = self.engines.llm
            if main is None or primary(main).name == "builtin":
                return None
            handle = self.residency.handle("llm")
            return handle if isinstance(handle, LLM) else main
        try:
            engine = self.registry.create(llm.summary_backend, llm.summary_options, kind="llm")
            await engine.start()
            self._own_summarizer = True
        except AriaError as exc:
            log.warning("no summary model (%s): older turns will be trimmed", exc)
            return None
        assert isinstance(engine, LLM)
        return engine

    async def _make_turn_detector(self) -> TurnDetector | None:
        """The end-of-turn model, shared by every connection (it keeps no per-stream state)."""
        try:
            detector = create_engine("turn", self.settings, self.registry)
            if detector is None:
                return None
            await detector.start()
        except AriaError as exc:
            log.warning("no end-of-turn model: every pause ends the turn (%s)", exc)
            self.states["turn"] = {"name": None, "state": "unavailable", "detail": str(exc)}
            return None
        assert isinstance(detector, TurnDetector)
        self.states["turn"] = {"name": detector.name, "state": "ready", "detail": ""}
        return detector

    def vad_settings(self) -> Settings:
        """With an end-of-turn model, the VAD reports a pause after ``turn.pause_ms`` of silence (the
        model decides whether it ends the turn); without one, after ``vad.min_silence_ms``."""
        if self.turn_detector is None or self.turn_detector.name.startswith("silence"):
            return self.settings
        vad = self.settings.vad.model_copy(update={"min_silence_ms": self.settings.turn.pause_ms})
        return self.settings.model_copy(update={"vad": vad})

    async def new_vad(self) -> VAD | None:
        """A VAD for one connection (VADs keep per-stream state)."""
        return await start_vad(self.vad_settings(), self.registry, purpose="this connection")

    async def aclose(self) -> None:
        if self.first_run is not None:
            await self.first_run.aclose()
        await self.health.aclose()
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await asyncio.to_thread(self.sessions.close)  # what is queued is written; leases given back
        await self.residency.aclose()
        if self.turn_detector is not None:
            await self.turn_detector.aclose()
        if self.summarizer is not None and self._own_summarizer:
            await self.summarizer.aclose()


async def _healthy(engine: Engine) -> bool:
    """Whether every member of the engine (its chain's, or itself) says it is healthy."""
    members: list[Engine] = list(engine.chain.engines) if isinstance(engine, FallbackEngine) else [engine]
    for member in members:
        try:
            if not (await asyncio.wait_for(member.health(), 2.0)).ok:
                return False
        except Exception:
            return False
    return True


def _budget_mb(settings: Settings) -> float:
    """``residency.budget_mb``, else three quarters of the machine's memory (GPU memory when there is a
    GPU, since that is what large models fill; else RAM)."""
    if settings.residency.budget_mb > 0:
        return settings.residency.budget_mb
    gpus = gpu_memory_mb(timeout_s=1.0)
    total = sum(g.total_mb for g in gpus) if gpus else total_memory_mb()
    return max(256.0, 0.75 * total)
