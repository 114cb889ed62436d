"""Model residency: which engines are loaded, under one memory budget.

A mode needs a set of engines; :meth:`ResidencyManager.ensure` makes that set resident and returns it.
When the set does not fit beside what is already loaded, engines it does not need are unloaded, least
recently used first. *Sticky* engines (STT and TTS: small, and slow to bring back) go last, and only when
a required engine that is not loaded yet still lacks memory. A required engine is never unloaded, and a
required set bigger than the whole budget is refused before anything changes.

An engine costs the larger of its estimate (``estimate_mb``, else ``capabilities.memory_mb``) and the
resident memory its last load added, so a model bigger than announced is budgeted at its real size from
then on.

The missing engines load concurrently, except GPU ones, which load one at a time (concurrent GPU loads
contend for device memory and staging buffers, and one running out of memory takes the other down).
The resident set size cannot tell concurrent loads apart: when several engines load in one batch, the
batch's growth is split between them in proportion to their estimates, and :meth:`usage` marks them
``shared``.

Every load and unload is announced through ``on_event``: ``loading`` then ``loaded``, ``unloading`` then
``unloaded``; a load that fails or is cancelled ends with ``unloaded`` and a reason saying so. A server
turns these into ``state`` messages, so a client knows why it waits.

A slot is a stable place for its engine: :meth:`ResidencyManager.handle` gives an engine of the slot's
kind that calls whichever engine the slot holds at the time, so :meth:`ResidencyManager.reload` (a restart
after a crash, a newly downloaded model) swaps the engine under every pipeline that uses the slot, with
nothing to rebuild and no one to notify.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from aria.engines.base import Engine, EngineKind
from aria.errors import ResidencyError
from aria.pipeline.memory import process_rss_mb
from aria.pipeline.slots import HANDLES, SlotEngine, SlotLLM, SlotSTT, SlotTTS

__all__ = [
    "Device",
    "ResidencyError",
    "ResidencyEvent",
    "ResidencyEventKind",
    "ResidencyManager",
    "SlotEngine",
    "SlotLLM",
    "SlotSTT",
    "SlotTTS",
]

log = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]
ResidencyEventKind = Literal["loading", "loaded", "unloading", "unloaded"]


@dataclass(frozen=True, slots=True)
class ResidencyEvent:
    """A load or unload. ``mb``: the budgeted cost when loading and unloading, the measured growth once
    loaded (0.0 after a failed load)."""

    kind: ResidencyEventKind
    name: str
    mb: float
    reason: str = ""


@dataclass(slots=True)
class _Slot:
    name: str
    kind: EngineKind
    device: Device
    sticky: bool
    estimate_mb: float | None
    factory: Callable[[], Engine] | None
    engine: Engine | None
    resident: bool = False
    measured_mb: float | None = None
    shared: bool = False
    last_used: int = 0
    loads: int = 0
    #: The estimate is the engine's own (``capabilities.memory_mb``), refreshed after each start: an
    #: engine may only learn its model's size then (Ollama's reported size, say).
    engine_estimate: bool = False

    @property
    def cost_mb(self) -> float:
        return max(self.estimate_mb or 0.0, self.measured_mb or 0.0)


class ResidencyManager:
    """Named engine slots under a memory budget in MiB. ``measure`` reads the process's resident memory
    (injectable for tests); ``on_event`` hears every load and unload and must not block."""

    def __init__(
        self,
        budget_mb: float,
        *,
        on_event: Callable[[ResidencyEvent], None] | None = None,
        measure: Callable[[], float] = process_rss_mb,
    ) -> None:
        if budget_mb <= 0:
            raise ValueError(f"the memory budget must be positive, not {budget_mb} MB")
        self.budget_mb = float(budget_mb)
        self._on_event = on_event
        self._measure = measure
        self._slots: dict[str, _Slot] = {}
        self._lock = asyncio.Lock()
        self._clock = itertools.count(1)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def register(
        self,
        name: str,
        engine: Engine | Callable[[], Engine],
        *,
        kind: EngineKind,
        estimate_mb: float | None = None,
        sticky: bool = False,
        device: Device = "cpu",
    ) -> None:
        """Add a slot. ``engine`` is an engine (started again after each unload) or a factory (a class,
        say) called for a fresh engine at each load: prefer a factory for engines that cannot start again
        once closed. Without ``estimate_mb`` the estimate is the engine's ``capabilities.memory_mb``, read
        when the engine is created. ``device`` "gpu" engines load one at a time."""
        if name in self._slots:
            raise ResidencyError(f"an engine named {name!r} is already registered", engines=(name,))
        if estimate_mb is not None and estimate_mb < 0:
            raise ValueError(f"{name}: estimate_mb must not be negative, not {estimate_mb}")
        if device not in ("cpu", "gpu"):
            raise ValueError(f"{name}: device must be 'cpu' or 'gpu', not {device!r}")
        if not isinstance(engine, type) and isinstance(engine, Engine):
            instance, factory = engine, None
        elif callable(engine):
            instance, factory = None, engine
        else:
            raise TypeError(f"{name}: expected an engine or a factory of one, got {type(engine).__name__}")
        slot = _Slot(name, kind, device, sticky, estimate_mb, factory, None)
        if instance is not None:
            self._adopt(slot, instance)
        self._slots[name] = slot

    async def ensure(
        self, names: Sequence[str], *, exclusive: bool = False, reason: str = ""
    ) -> dict[str, Engine]:
        """Make the named engines resident and return them by name, in the order given. Engines not
        named are unloaded when the budget needs their memory (or, with ``exclusive``, when they are not
        sticky, whether it does or not). ``reason`` goes into the ``loading`` events. One call runs at a
        time; others wait their turn."""
        if isinstance(names, str):
            raise TypeError("ensure() takes a sequence of engine names, not one string")
        required = list(dict.fromkeys(names))
        async with self._lock:
            unknown = [name for name in required if name not in self._slots]
            if unknown:
                raise ResidencyError(
                    f"unknown engine {', '.join(unknown)}; registered: {', '.join(self._slots) or 'none'}",
                    engines=unknown,
                )
            slots = [self._slots[name] for name in required]
            missing = [slot for slot in slots if not slot.resident]
            for slot in missing:
                self._create(slot)
            self._check_fits(slots)
            keep = set(required)
            if exclusive:
                for slot in self._lru(keep):
                    if not slot.sticky:
                        await self._unload(slot, "not needed by the current mode")
            loading = {slot.name for slot in missing}
            planned = sum(s.cost_mb for s in self._slots.values() if s.resident or s.name in loading)
            over = planned - self.budget_mb
            if over > 0:
                wanted = ", ".join(s.name for s in missing)
                why = f"making room for {wanted} ({over:.0f} MB over budget)" if missing else "over budget"
                await self._evict(keep, over, sticky_too=bool(missing), reason=why)
            await self._load(missing, reason or "required")
            if missing:
                over = self.resident_mb() - self.budget_mb
                if over > 0:
                    why = f"over budget by {over:.0f} MB after loading (measured)"
                    await self._evict(keep, over, sticky_too=True, reason=why)
            for slot in slots:
                slot.last_used = next(self._clock)
            return {slot.name: self._engine(slot) for slot in slots}

    async def reload(self, name: str, *, reason: str) -> Engine:
        """Unload the named engine (if resident) and load a fresh one: after it crashed, say. Raises
        :class:`ResidencyError` when the new one fails to load."""
        async with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                raise ResidencyError(f"unknown engine {name}", engines=(name,))
            if slot.resident:
                await self._unload(slot, reason)
            self._create(slot)
            await self._load([slot], reason)
            slot.last_used = next(self._clock)
            return self._engine(slot)

    def handle(self, name: str) -> Engine:
        """A stable engine for the named slot: an :class:`SlotLLM`, :class:`SlotSTT` or :class:`SlotTTS`
        (other kinds: the engine itself, which must be resident) whose calls go to the slot's engine of
        the moment; a call while the slot is not resident raises :class:`EngineUnavailable`."""
        slot = self._slots.get(name)
        if slot is None:
            raise ResidencyError(f"unknown engine {name}", engines=(name,))
        kind = HANDLES.get(slot.kind)
        if kind is None:
            return self._engine(slot)
        return kind(self.engine, name)

    def touch(self, name: str) -> None:
        """Mark an engine as just used, so it is the last to be unloaded for room."""
        slot = self._slots.get(name)
        if slot is None:
            raise ResidencyError(f"unknown engine {name}", engines=(name,))
        slot.last_used = next(self._clock)

    def engine(self, name: str) -> Engine | None:
        """The named engine when it is resident, else None."""
        slot = self._slots.get(name)
        return slot.engine if slot is not None and slot.resident else None

    def registered(self, name: str) -> bool:
        return name in self._slots

    def resident(self) -> list[str]:
        """Names of the resident engines, least recently used first."""
        return [slot.name for slot in self._lru(set())]

    def resident_mb(self) -> float:
        """What the resident engines cost against the budget."""
        return sum(slot.cost_mb for slot in self._slots.values() if slot.resident)

    def usage(self) -> dict[str, Any]:
        """Budget, totals and, per engine, its estimate, the memory its last load measurably added
        (None before a load), the cost counted against the budget, and whether it is resident."""
        resident = [slot for slot in self._slots.values() if slot.resident]
        return {
            "budget_mb": self.budget_mb,
            "resident_mb": self.resident_mb(),
            "estimated_mb": sum(slot.estimate_mb or 0.0 for slot in resident),
            "measured_mb": sum(slot.measured_mb or 0.0 for slot in resident),
            "rss_mb": self._measure(),
            "engines": {
                slot.name: {
                    "kind": slot.kind,
                    "device": slot.device,
                    "sticky": slot.sticky,
                    "resident": slot.resident,
                    "estimate_mb": slot.estimate_mb,
                    "measured_mb": slot.measured_mb,
                    "shared": slot.shared,
                    "cost_mb": slot.cost_mb,
                    "loads": slot.loads,
                }
                for slot in self._slots.values()
            },
        }

    async def aclose(self) -> None:
        """Unload every resident engine, least recently used first."""
        async with self._lock:
            for slot in self._lru(set()):
                await self._unload(slot, "shutting down")

    # -- internals ---------------------------------------------------------------------------------

    def _adopt(self, slot: _Slot, engine: Engine) -> None:
        actual = getattr(engine, "kind", slot.kind)
        if actual != slot.kind:
            raise ResidencyError(
                f"{slot.name} is registered as {slot.kind} but its engine is {actual}", engines=(slot.name,)
            )
        slot.engine = engine
        if slot.estimate_mb is None:
            slot.estimate_mb = float(engine.capabilities.memory_mb)
            slot.engine_estimate = True

    def _create(self, slot: _Slot) -> None:
        if slot.engine is not None or slot.factory is None:
            return
        try:
            engine = slot.factory()
        except Exception as exc:
            raise ResidencyError(
                f"could not create {slot.name}: {exc}", engines=(slot.name,), errors={slot.name: exc}
            ) from exc
        self._adopt(slot, engine)

    def _engine(self, slot: _Slot) -> Engine:
        if slot.engine is None:  # a resident slot always holds its engine
            raise AssertionError(f"{slot.name} has no engine")
        return slot.engine

    def _check_fits(self, slots: list[_Slot]) -> None:
        total = sum(slot.cost_mb for slot in slots)
        if total <= self.budget_mb:
            return
        over = total - self.budget_mb
        detail = ", ".join(f"{s.name} ({s.cost_mb:.0f} MB)" for s in sorted(slots, key=lambda s: -s.cost_mb))
        raise ResidencyError(
            f"the required engines {detail} need {total:.0f} MB, {over:.0f} MB over the "
            f"{self.budget_mb:.0f} MB memory budget; raise the budget or choose smaller models",
            engines=[slot.name for slot in slots],
            over_by_mb=over,
        )

    def _lru(self, keep: set[str]) -> list[_Slot]:
        """Resident engines outside ``keep``, least recently used first."""
        slots = [s for s in self._slots.values() if s.resident and s.name not in keep]
        return sorted(slots, key=lambda s: s.last_used)

    async def _evict(self, keep: set[str], over_mb: float, *, sticky_too: bool, reason: str) -> None:
        candidates = self._lru(keep)
        order = [s for s in candidates if not s.sticky] + (
            [s for s in candidates if s.sticky] if sticky_too else []
        )
        for slot in order:
            if over_mb <= 0:
                break
            over_mb -= slot.cost_mb
            await self._unload(slot, reason)
        if over_mb > 0:
            log.warning("engines use %.0f MB more than the %.0f MB budget", over_mb, self.budget_mb)

    async def _unload(self, slot: _Slot, reason: str) -> None:
        engine, mb = self._engine(slot), slot.cost_mb
        self._emit("unloading", slot.name, mb, reason)
        try:
            await engine.aclose()
        except Exception:
            log.warning("closing %s failed; counting it as unloaded", slot.name, exc_info=True)
        finally:
            self._release(slot)
            self._emit("unloaded", slot.name, mb, reason)

    def _release(self, slot: _Slot) -> None:
        slot.resident = False
        if slot.factory is not None:
            slot.engine = None  # a fresh one at the next load

    async def _load(self, missing: list[_Slot], reason: str) -> None:
        if not missing:
            return
        for slot in missing:
            self._emit("loading", slot.name, slot.cost_mb, reason)
        loaded: list[_Slot] = []
        failures: dict[str, BaseException] = {}

        async def gpu_chain(slots: list[_Slot]) -> None:
            for slot in slots:
                await self._start(slot, loaded, failures)

        jobs = [self._start(s, loaded, failures) for s in missing if s.device == "cpu"]
        gpu = [s for s in missing if s.device == "gpu"]
        if gpu:
            jobs.append(gpu_chain(gpu))
        before = self._measure()
        try:
            await asyncio.gather(*jobs)
        finally:
            self._record(loaded, max(0.0, self._measure() - before), shared=len(missing) > 1)
        if failures:
            detail = "; ".join(
                str(exc) if str(exc).startswith(f"{name}:") else f"{name}: {exc}"
                for name, exc in failures.items()
            )
            raise ResidencyError(
                f"could not load {', '.join(failures)} ({detail})", engines=list(failures), errors=failures
            ) from next(iter(failures.values()))

    async def _start(self, slot: _Slot, loaded: list[_Slot], failures: dict[str, BaseException]) -> None:
        engine = self._engine(slot)
        try:
            await engine.start()
        except Exception as exc:
            failures[slot.name] = exc
            await self._discard(slot, engine, f"load failed: {exc}")
            return
        except BaseException:
            await self._discard(slot, engine, "load cancelled")
            raise
        slot.resident = True
        slot.loads += 1
        if slot.engine_estimate:
            slot.estimate_mb = max(slot.estimate_mb or 0.0, float(engine.capabilities.memory_mb))
        loaded.append(slot)

    async def _discard(self, slot: _Slot, engine: Engine, reason: str) -> None:
        """Free what a failed or cancelled start may have taken; the slot stays not resident."""
        try:
            await engine.aclose()
        except Exception:
            log.warning("cleaning up %s after its load failed also failed", slot.name, exc_info=True)
        finally:
            self._release(slot)
            self._emit("unloaded", slot.name, 0.0, reason)

    def _record(self, loaded: list[_Slot], grown_mb: float, *, shared: bool) -> None:
        weights = [slot.estimate_mb or 0.0 for slot in loaded]
        total = sum(weights)
        for slot, weight in zip(loaded, weights, strict=True):
            share = weight / total if total > 0 else 1 / len(loaded)
            slot.measured_mb = grown_mb * share if shared else grown_mb
            slot.shared = shared
            self._emit("loaded", slot.name, slot.measured_mb, "ready")

    def _emit(self, kind: ResidencyEventKind, name: str, mb: float, reason: str) -> None:
        if kind in ("loading", "unloading"):
            log.info("%s %s (%.0f MB): %s", kind, name, mb, reason)
        if self._on_event is None:
            return
        try:
            self._on_event(ResidencyEvent(kind, name, mb, reason))
        except Exception:
            log.exception("a residency event listener failed on %s %s", kind, name)
