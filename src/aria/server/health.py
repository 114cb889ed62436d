"""Engine health for ``/health`` and ``/metrics``: health probes of the loaded engines, each chain's
breakers, the gauges read at scrape time, engines of limited quality, what each mode can do, and the
overall status."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aria.engines.base import Engine, EngineKind
from aria.engines.chain import FallbackEngine, serving
from aria.pipeline.mode_pipelines import loadout_slots
from aria.server.honesty import LIMITED, Limitation, limitation, mode_availability

if TYPE_CHECKING:
    from aria.server.runtime import Runtime

__all__ = ["MAIN_KINDS", "Health"]

log = logging.getLogger(__name__)
MAIN_KINDS: tuple[EngineKind, ...] = ("stt", "llm", "tts")
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


class Health:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        metrics = runtime.metrics
        self.sessions_gauge = metrics.gauge("aria_sessions", "Sessions held in memory")
        self.resident_gauge = metrics.gauge("aria_resident_model_mb", "Memory of resident engines (MB)")
        self.breaker_gauge = metrics.gauge(
            "aria_breaker_state", "Breaker per engine: 0 closed, 1 half-open, 2 open", ("slot", "engine")
        )
        self.breaker_opened = metrics.gauge(
            "aria_breaker_opened", "Times each engine's breaker has opened", ("slot", "engine")
        )
        self.healthy_gauge = metrics.gauge(
            "aria_engine_healthy", "Last health probe per loaded engine (1 healthy)", ("slot",)
        )
        #: The last health probe of each loaded slot: ok, detail, when.
        self.probes: dict[str, dict[str, Any]] = {}
        self._prober: asyncio.Task[None] | None = None
        self._limited: dict[tuple[str, str, tuple[tuple[str, str], ...]], Limitation | None] = {}

    def start_probing(self, interval_s: float) -> None:
        """Probe every ``interval_s`` seconds in the background."""
        self._prober = asyncio.create_task(self._probe_forever(interval_s), name="engine-prober")

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)

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

        loaded = [
            (n, e) for n in self.rt.residency.resident() if (e := self.rt.residency.engine(n)) is not None
        ]
        await asyncio.gather(*(one(name, engine) for name, engine in loaded))
        for name in list(self.probes):
            if self.rt.residency.engine(name) is None:
                del self.probes[name]
        return {name: dict(probe) for name, probe in self.probes.items()}

    async def _probe_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.probe()
            except Exception:
                log.exception("probing engine health failed")

    def breakers(self) -> dict[str, list[dict[str, Any]]]:
        """Each loaded slot's fallback chain: per member, its breaker state, failures in a row, times
        opened, seconds until it may be tried again, calls in flight; members that never started are
        listed as ``unavailable``."""
        result: dict[str, list[dict[str, Any]]] = {}
        for name in self.rt.residency.resident():
            engine = self.rt.residency.engine(name)
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
        self.sessions_gauge.set(len(self.rt.sessions))
        self.resident_gauge.set(self.rt.residency.resident_mb())
        for slot, members in self.breakers().items():
            for member in members:
                if member["state"] == "unavailable":
                    continue
                labels = {"slot": slot, "engine": member["engine"]}
                self.breaker_gauge.labels(**labels).set(_BREAKER_VALUE[member["state"]])
                self.breaker_opened.labels(**labels).set(float(member["opened"]))

    def engine_states(self) -> dict[str, dict[str, Any]]:
        """Each kind's engine: ``name`` is the member of its chain that serves (``chain`` the whole chain
        where it has more than one member), ``limited`` whether that is a last resort (:meth:`limited`)."""
        states = {kind: dict(state) for kind, state in self.rt.states.items()}
        limited = {lim.slot for lim in self.limited()}
        for kind in MAIN_KINDS:
            engine = self.rt.residency.engine(kind)
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
            engine = self.rt.residency.engine(kind)
            if engine is None:
                continue
            unavailable = getattr(engine, "unavailable", {}) if isinstance(engine, FallbackEngine) else {}
            key = (kind, serving(engine).name, tuple(unavailable.items()))
            if key not in self._limited:
                self._limited[key] = limitation(
                    kind, engine, registry=self.rt.registry, options=self._better_options(kind, key[1])
                )
            if (known := self._limited[key]) is not None:
                found.append(known)
        return found

    def _better_options(self, kind: str, name: str) -> dict[str, Any] | None:
        """The configured options of the engine that would replace a last resort, when it is configured."""
        known = LIMITED.get(f"{kind}:{name}")
        section = getattr(self.rt.engine_settings, kind)
        if known is None or f"{kind}:{section.backend}" != known.better:
            return None
        return dict(section.options)

    def mode_availability(self) -> dict[str, tuple[bool, str]]:
        """Per mode: whether it can work with the engines loaded now and, when not, why (a mode whose
        model is not loaded yet counts as available)."""
        result: dict[str, tuple[bool, str]] = {}
        for name, spec in self.rt.modes.items():
            plan = loadout_slots(name, spec, self.rt.engine_settings).get("llm")
            engine = self.rt.residency.engine(plan.name) if plan is not None else None
            if plan is not None and engine is None and plan.name in self.rt.problems:
                result[name] = (False, f"Its language model could not load: {self.rt.problems[plan.name]}")
                continue
            result[name] = mode_availability(spec, engine)
        return result

    def status(self) -> str:
        """``ok`` when every configured engine works, ``degraded`` when some are missing, failing or of
        limited quality (:meth:`limited`) but a language model works, ``down`` without one (``loading``
        before the first load finishes). An engine unloaded to make room for another mode's is not a
        fault."""
        if not self.rt.ready.is_set():
            return "loading"
        if self.rt.load_error is not None and not any(
            self.rt.residency.engine(name) is not None
            for name in self.rt.residency.resident()
            if name == "llm" or name.startswith("llm:")
        ):
            return "down"
        wanted = [k for k in self.rt.states if self.rt.states[k]["state"] != "disabled"]
        fine = ("ready", "unloaded", "loading")
        if not all(self.rt.states[k]["state"] in fine for k in wanted):
            return "degraded"
        tripped = any(m.get("state") in ("open", "half_open") for c in self.breakers().values() for m in c)
        unhealthy = any(not probe["ok"] for probe in self.probes.values())
        return "degraded" if tripped or unhealthy or self.limited() else "ok"
