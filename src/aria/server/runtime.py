"""The server's shared state: settings, engines (loaded in the background, kept within a memory budget
by the residency manager), modes, sessions and metrics.

Engines live in named slots of a :class:`~aria.pipeline.residency.ResidencyManager`: ``stt``, ``llm`` and
``tts`` for the main loadout, plus ``llm:<mode>`` / ``router:<mode>`` for modes configured with another
model. Each connection *holds* the slots of its current mode (:meth:`Runtime.acquire`); a mode switch makes
that set resident, unloading what no connection holds when the budget needs the room, and every load and
unload is passed to the connections' listeners so the client hears why it waits. The VAD keeps
per-stream state and is created per connection. While engines load, the page is already usable and
``engine_states`` says what is still loading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aria.core.config import Settings
from aria.core.metrics import MetricsRegistry
from aria.core.modes import ModeSpec
from aria.engines.base import LLM, STT, TTS, VAD, Engine, EngineKind, TurnDetector
from aria.engines.factory import create_engine, detect_llm, resolve_backend
from aria.engines.fallback import FallbackEngine, primary, serving
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AriaError, ModeUnavailable, ResidencyError
from aria.pipeline.build import Engines
from aria.pipeline.memory import gpu_memory_mb, total_memory_mb
from aria.pipeline.modes import Loadout, engine_key, loadout_slots
from aria.pipeline.residency import ResidencyEvent, ResidencyManager
from aria.server.firstrun import FirstRunPull, embedded_llm
from aria.server.honesty import LIMITED, Limitation, limitation, mode_availability
from aria.session.backends import prune_forever, session_store

__all__ = ["FAST_SLOT", "ModeUnavailable", "Runtime"]

log = logging.getLogger(__name__)
MAIN_KINDS: tuple[EngineKind, ...] = ("stt", "llm", "tts")
#: The slot of ``resilience.fast_llm``, the model answers fall back to while the usual one is too slow.
FAST_SLOT = "llm:fast"
_STARTUP = object()
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


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
        self._holders: dict[object, set[str]] = {}
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
        self._states: dict[str, dict[str, Any]] = {}
        self._limited: dict[tuple[str, str, tuple[tuple[str, str], ...]], Limitation | None] = {}
        self.connections_gauge = self.metrics.gauge("aria_active_connections", "Open WebSocket connections")
        self.sessions_gauge = self.metrics.gauge("aria_sessions", "Sessions held in memory")
        self.resident_gauge = self.metrics.gauge("aria_resident_model_mb", "Memory of resident engines (MB)")
        self.breaker_gauge = self.metrics.gauge(
            "aria_breaker_state", "Breaker per engine: 0 closed, 1 half-open, 2 open", ("slot", "engine")
        )
        self.breaker_opened = self.metrics.gauge(
            "aria_breaker_opened", "Times each engine's breaker has opened", ("slot", "engine")
        )
        self.healthy_gauge = self.metrics.gauge(
            "aria_engine_healthy", "Last health probe per loaded engine (1 healthy)", ("slot",)
        )
        #: The last health probe of each loaded slot: ok, detail, when.
        self.probes: dict[str, dict[str, Any]] = {}
        self._prober: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        #: With ``aria serve`` on a machine missing models: the background pull of the default loadout
        #: (set before start; ``/health`` shows its ``downloads``), and the chat model it prefers.
        self.first_run: FirstRunPull | None = None
        self.preferred_llm: str | None = None
        for kind in (*MAIN_KINDS, "vad"):
            self._states[kind] = {"name": None, "state": "loading", "detail": ""}

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
                self._states[kind] = {"name": None, "state": state, "detail": self.problems.get(kind, "")}
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
            self._states["vad"] = {"name": vad_name, "state": "ready", "detail": ""}
        except AriaError as exc:
            self._states["vad"] = {"name": None, "state": "unavailable", "detail": str(exc)}
        log.info("engines ready in %.0f ms: %s", (time.perf_counter() - started) * 1000, self.engine_states())
        self.ready.set()
        if self.first_run is not None:
            self.first_run.keep_used(self.engine_settings)  # e.g. no LLM to pull beside a detected server
            self.first_run.start(on_done=self._models_pulled)
        if self.settings.resilience.probe_interval_s > 0:
            self._prober = asyncio.create_task(self._probe_forever(), name="engine-prober")

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

    # -- modes and residency -----------------------------------------------------------------------

    async def acquire(self, holder: object, mode: str, *, extra: tuple[str, ...] = ()) -> Loadout:
        """Make ``mode``'s engines resident for ``holder`` (a connection) and return them. What other
        holders use stays; the rest may be unloaded for room. Raises :class:`ResidencyError` when the
        set does not fit the budget (the holder keeps its previous engines) and :class:`ModeUnavailable`
        when the mode's language model cannot load. Other engines that fail are left out (``problems``)."""
        spec = self.modes[mode]
        plan = loadout_slots(mode, spec, self.engine_settings)
        names = [p.name for p in plan.values() if self.residency.registered(p.name)]
        names += [n for n in extra if self.residency.registered(n) and n not in names]
        previous = self._holders.get(holder)
        self._holders[holder] = set(names)
        wanted = self._wanted()
        try:
            try:
                await self.residency.ensure(wanted, reason=f"for {mode.replace('_', ' ')}")
            except ResidencyError as exc:
                if not any(_out_of_memory(e) for e in exc.errors.values()):
                    raise
                # Out of memory while loading: free everything this set does not need, then try once more.
                log.error("out of memory loading %s; unloading the rest and retrying", ", ".join(exc.errors))
                await self.residency.ensure(wanted, exclusive=True, reason="retrying: out of memory")
        except ResidencyError as exc:
            if not exc.errors:  # does not fit: nothing changed
                if previous is None:
                    self._holders.pop(holder, None)
                else:
                    self._holders[holder] = previous
                raise
            for name, error in exc.errors.items():
                self.problems[name] = str(error)
                log.warning("%s could not load: %s", name, error)
        loadout = Loadout()
        for role, p in plan.items():
            engine = self.residency.engine(p.name)
            if engine is None:
                loadout.problems[role] = self.problems.get(p.name, f"{p.name} is not available")
                continue
            setattr(loadout, role, self.residency.handle(p.name))  # follows a restart of the slot
            loadout.slots[role] = p.name
        if "llm" in plan and loadout.llm is None:
            raise ModeUnavailable(
                f"the {mode} mode's language model could not start: {loadout.problems.get('llm')}"
            )
        return loadout

    async def fast_llm(self, holder: object) -> LLM | None:
        """Load the faster model for ``holder`` beside what it holds (None when none is configured or it
        cannot load)."""
        if not self.residency.registered(FAST_SLOT):
            return None
        names = self._holders.setdefault(holder, set())
        names.add(FAST_SLOT)
        try:
            await self.residency.ensure(
                sorted(set().union(*self._holders.values())), reason="answers are slow"
            )
        except ResidencyError as exc:
            names.discard(FAST_SLOT)
            log.warning("the faster model could not load: %s", exc)
            return None
        engine = self.residency.engine(FAST_SLOT)
        return engine if isinstance(engine, LLM) else None

    def drop_fast_llm(self, holder: object) -> None:
        self._holders.get(holder, set()).discard(FAST_SLOT)

    def _wanted(self) -> list[str]:
        """Every slot some holder needs."""
        return sorted(set().union(*self._holders.values()))

    def release(self, holder: object) -> None:
        """``holder`` no longer needs its engines (they stay loaded until the memory is wanted)."""
        self._holders.pop(holder, None)

    def _on_residency(self, event: ResidencyEvent) -> None:
        kind = event.name if event.name in MAIN_KINDS else None
        if kind is not None:
            state = {"loading": "loading", "loaded": "ready", "unloading": "ready", "unloaded": "unloaded"}
            engine = self.residency.engine(kind)
            self._states[kind] = {
                "name": engine.name if engine is not None else self._states[kind].get("name"),
                "state": state[event.kind],
                "detail": event.reason if event.kind != "loaded" else "",
            }
            if event.kind == "unloaded" and event.reason.startswith("load failed"):
                self._states[kind]["state"] = "unavailable"
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a residency listener failed")

    # -- health ------------------------------------------------------------------------------------

    async def probe(self) -> dict[str, dict[str, Any]]:
        """Ask every loaded engine for its health (each bounded to 2 s); keep and return the answers."""

        async def one(name: str, engine: Engine) -> None:
            try:
                status = await asyncio.wait_for(engine.health(), 2.0)
                ok, detail = status.ok, status.detail
            except Exception as exc:  # a probe that fails says the engine is not healthy
                ok, detail = False, f"health probe failed: {type(exc).__name__}: {exc}"
            before = self.probes.get(name, {}).get("ok")
            if before is not None and before != ok:
                log.warning("%s is %s: %s", name, "healthy again" if ok else "unhealthy", detail)
            self.probes[name] = {"ok": ok, "detail": detail, "at": time.time()}
            self.healthy_gauge.labels(slot=name).set(1.0 if ok else 0.0)

        loaded = [(n, e) for n in self.residency.resident() if (e := self.residency.engine(n)) is not None]
        await asyncio.gather(*(one(name, engine) for name, engine in loaded))
        for name in list(self.probes):
            if self.residency.engine(name) is None:
                del self.probes[name]
        return {name: dict(probe) for name, probe in self.probes.items()}

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resilience.probe_interval_s)
            try:
                await self.probe()
            except Exception:
                log.exception("probing engine health failed")

    def breakers(self) -> dict[str, list[dict[str, Any]]]:
        """Each loaded slot's fallback chain: per member, its breaker state, failures in a row, times
        opened, seconds until it may be tried again, calls in flight; members that never started are
        listed as ``unavailable``."""
        result: dict[str, list[dict[str, Any]]] = {}
        for name in self.residency.resident():
            engine = self.residency.engine(name)
            if not isinstance(engine, FallbackEngine):
                continue
            chain = engine.chain
            members: list[dict[str, Any]] = []
            for member in chain.engines:
                breaker = chain.breakers[member.name]
                state = str(breaker.state)
                members.append(
                    {
                        "engine": member.name,
                        "state": state,
                        "failures": breaker.failures,
                        "opened": breaker.opened_count,
                        "retry_after_s": round(breaker.retry_after, 2),
                        "in_use": chain.in_use(member.name),
                    }
                )
            members += [
                {"engine": member, "state": "unavailable", "detail": why}
                for member, why in engine.unavailable.items()
            ]
            result[name] = members
        return result

    def refresh_gauges(self) -> None:
        """Bring the gauges read at scrape time up to date (breakers, sessions, resident memory)."""
        self.sessions_gauge.set(len(self.sessions))
        self.resident_gauge.set(self.residency.resident_mb())
        for slot, members in self.breakers().items():
            for member in members:
                if member["state"] == "unavailable":
                    continue
                labels = {"slot": slot, "engine": member["engine"]}
                self.breaker_gauge.labels(**labels).set(_BREAKER_VALUE[member["state"]])
                self.breaker_opened.labels(**labels).set(float(member["opened"]))

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

    def engine_states(self) -> dict[str, dict[str, Any]]:
        """Each kind's engine: ``name`` is the member of its chain that serves (``chain`` the whole chain
        where it has more than one member), ``limited`` whether that is a last resort (:meth:`limited`)."""
        states = {kind: dict(state) for kind, state in self._states.items()}
        limited = {lim.slot for lim in self.limited()}
        for kind in MAIN_KINDS:
            engine = self.residency.engine(kind)
            if engine is None:
                continue
            states[kind]["name"] = serving(engine).name
            if engine.name != states[kind]["name"]:
                states[kind]["chain"] = engine.name
            states[kind]["limited"] = kind in limited
        return states

    def limited(self) -> list[Limitation]:
        """The main loadout's engines of limited quality that serve now, each with why and the fix."""
        found: list[Limitation] = []
        for kind in MAIN_KINDS:
            engine = self.residency.engine(kind)
            if engine is None:
                continue
            unavailable = getattr(engine, "unavailable", {}) if isinstance(engine, FallbackEngine) else {}
            key = (kind, serving(engine).name, tuple(unavailable.items()))
            if key not in self._limited:
                self._limited[key] = limitation(
                    kind, engine, registry=self.registry, options=self._better_options(kind, key[1])
                )
            if (known := self._limited[key]) is not None:
                found.append(known)
        return found

    def _better_options(self, kind: str, name: str) -> dict[str, Any] | None:
        """The configured options of the engine that would replace a last resort, when it is configured."""
        known = LIMITED.get(f"{kind}:{name}")
        section = getattr(self.engine_settings, kind)
        if known is None or f"{kind}:{section.backend}" != known.better:
            return None
        return dict(section.options)

    def mode_availability(self) -> dict[str, tuple[bool, str]]:
        """Per mode: whether it can work with the engines loaded now and, when not, why (a mode whose
        model is not loaded yet counts as available)."""
        result: dict[str, tuple[bool, str]] = {}
        for name, spec in self.modes.items():
            plan = loadout_slots(name, spec, self.engine_settings).get("llm")
            engine = self.residency.engine(plan.name) if plan is not None else None
            if plan is not None and engine is None and plan.name in self.problems:
                result[name] = (False, f"Its language model could not load: {self.problems[plan.name]}")
                continue
            result[name] = mode_availability(spec, engine)
        return result

    async def _make_turn_detector(self) -> TurnDetector | None:
        """The end-of-turn model, shared by every connection (it keeps no per-stream state)."""
        try:
            detector = create_engine("turn", self.settings, self.registry)
            if detector is None:
                return None
            await detector.start()
        except AriaError as exc:
            log.warning("no end-of-turn model: every pause ends the turn (%s)", exc)
            self._states["turn"] = {"name": None, "state": "unavailable", "detail": str(exc)}
            return None
        assert isinstance(detector, TurnDetector)
        self._states["turn"] = {"name": detector.name, "state": "ready", "detail": ""}
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
        try:
            vad = create_engine("vad", self.vad_settings(), self.registry)
            if vad is None:
                return None
            await vad.start()
        except AriaError as exc:
            log.warning("no VAD for this connection: %s", exc)
            return None
        assert isinstance(vad, VAD)
        return vad

    def status(self) -> str:
        """``ok`` when every configured engine works, ``degraded`` when some are missing, failing or of
        limited quality (:meth:`limited`) but a language model works, ``down`` without one (``loading``
        before the first load finishes). An engine unloaded to make room for another mode's is not a
        fault."""
        if not self.ready.is_set():
            return "loading"
        if self.load_error is not None and not any(
            self.residency.engine(name) is not None
            for name in self.residency.resident()
            if name == "llm" or name.startswith("llm:")
        ):
            return "down"
        wanted = [k for k in self._states if self._states[k]["state"] != "disabled"]
        fine = ("ready", "unloaded", "loading")
        if not all(self._states[k]["state"] in fine for k in wanted):
            return "degraded"
        tripped = any(m.get("state") in ("open", "half_open") for c in self.breakers().values() for m in c)
        unhealthy = any(not probe["ok"] for probe in self.probes.values())
        return "degraded" if tripped or unhealthy or self.limited() else "ok"

    async def aclose(self) -> None:
        if self.first_run is not None:
            await self.first_run.aclose()
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
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


def _out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or an engine error caused by one or saying so (CUDA's "out of memory")."""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return True
    nested = [*getattr(exc, "errors", ()), exc.__cause__]
    return any(_out_of_memory(e) for e in nested if isinstance(e, BaseException) and e is not exc)


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
