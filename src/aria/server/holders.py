"""Who holds which engine slots: each conversation holds the slots of its mode, and what no one holds may
be unloaded when the memory budget needs the room (see :class:`~aria.pipeline.residency.ResidencyManager`).
A model that runs out of memory while loading is loaded again once everything else its set does not need
is unloaded."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aria.engines.base import LLM
from aria.errors import ModeUnavailable, ResidencyError
from aria.pipeline.mode_pipelines import Loadout, loadout_slots

if TYPE_CHECKING:
    from aria.server.runtime import Runtime

__all__ = ["FAST_SLOT", "Holders"]

log = logging.getLogger(__name__)
#: The slot of ``resilience.fast_llm``, the model answers fall back to while the usual one is too slow.
FAST_SLOT = "llm:fast"


class Holders:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._holders: dict[object, set[str]] = {}

    async def acquire(self, holder: object, mode: str, *, extra: tuple[str, ...] = ()) -> Loadout:
        """Make ``mode``'s engines resident for ``holder`` (a connection) and return them. What other
        holders use stays; the rest may be unloaded for room. Raises :class:`ResidencyError` when the
        set does not fit the budget (the holder keeps its previous engines) and :class:`ModeUnavailable`
        when the mode's language model cannot load. Other engines that fail are left out (``problems``)."""
        spec = self.rt.modes[mode]
        plan = loadout_slots(mode, spec, self.rt.engine_settings)
        names = [p.name for p in plan.values() if self.rt.residency.registered(p.name)]
        names += [n for n in extra if self.rt.residency.registered(n) and n not in names]
        previous = self._holders.get(holder)
        self._holders[holder] = set(names)
        wanted = self._wanted()
        try:
            try:
                await self.rt.residency.ensure(wanted, reason=f"for {mode.replace('_', ' ')}")
            except ResidencyError as exc:
                if not any(_out_of_memory(e) for e in exc.errors.values()):
                    raise
                # Out of memory while loading: free everything this set does not need, then try once more.
                log.error("out of memory loading %s; unloading the rest and retrying", ", ".join(exc.errors))
                await self.rt.residency.ensure(wanted, exclusive=True, reason="retrying: out of memory")
        except ResidencyError as exc:
            if not exc.errors:  # does not fit: nothing changed
                if previous is None:
                    self._holders.pop(holder, None)
                else:
                    self._holders[holder] = previous
                raise
            for name, error in exc.errors.items():
                self.rt.problems[name] = str(error)
                log.warning("%s could not load: %s", name, error)
        loadout = Loadout()
        for role, p in plan.items():
            engine = self.rt.residency.engine(p.name)
            if engine is None:
                loadout.problems[role] = self.rt.problems.get(p.name, f"{p.name} is not available")
                continue
            setattr(loadout, role, self.rt.residency.handle(p.name))  # follows a restart of the slot
            loadout.slots[role] = p.name
        if "llm" in plan and loadout.llm is None:
            raise ModeUnavailable(
                f"the {mode} mode's language model could not start: {loadout.problems.get('llm')}"
            )
        return loadout

    async def fast_llm(self, holder: object) -> LLM | None:
        """Load the faster model for ``holder`` beside what it holds (None when none is configured or it
        cannot load)."""
        if not self.rt.residency.registered(FAST_SLOT):
            return None
        names = self._holders.setdefault(holder, set())
        names.add(FAST_SLOT)
        try:
            await self.rt.residency.ensure(
                sorted(set().union(*self._holders.values())), reason="answers are slow"
            )
        except ResidencyError as exc:
            names.discard(FAST_SLOT)
            log.warning("the faster model could not load: %s", exc)
            return None
        if self.rt.residency.engine(FAST_SLOT) is None:
            return None
        engine = self.rt.residency.handle(FAST_SLOT)  # a call after it was unloaded fails clearly
        return engine if isinstance(engine, LLM) else None

    def drop_fast_llm(self, holder: object) -> None:
        self._holders.get(holder, set()).discard(FAST_SLOT)

    def _wanted(self) -> list[str]:
        """Every slot some holder needs."""
        return sorted(set().union(*self._holders.values()))

    def release(self, holder: object) -> None:
        """``holder`` no longer needs its engines (they stay loaded until the memory is wanted)."""
        self._holders.pop(holder, None)


def _out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or an engine error caused by one or saying so (CUDA's "out of memory")."""
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return True
    nested = [*getattr(exc, "errors", ()), exc.__cause__]
    return any(_out_of_memory(e) for e in nested if isinstance(e, BaseException) and e is not exc)
