"""What a conversation tells the person about its engines: loads and unloads (as states naming what still
loads; a new engine in a slot of its mode as the mode again), a fallback that took over (at most once a
minute per engine), a restart after a crash (the broken engines restart in their slots, under the same
pipeline), a mode running without one of its engines, a switch to the faster model and back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aria.pipeline.outputs import NoticeOut, StateOut
from aria.pipeline.quality import GovernedLLM, QualityChange
from aria.pipeline.residency import ResidencyEvent

if TYPE_CHECKING:
    from aria.server.conversation.core import Conversation

__all__ = ["FALLBACK_NOTICE_S", "Notices", "blind", "not_looking", "quality", "restarted_notice", "without"]

log = logging.getLogger(__name__)
#: At most one "fallback took over" notice per engine per this many seconds.
FALLBACK_NOTICE_S = 60.0


class Notices:
    """A conversation's notices about its engines, and what they depend on (what is loading, when each
    fallback was told)."""

    def __init__(self, conversation: Conversation, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.conv = conversation
        self._clock = clock
        #: Engine slots loading now.
        self.loading: set[str] = set()
        self._fallback_said: dict[str, float] = {}

    def attach(self) -> None:
        """Hear the runtime's engine loads and fallbacks."""
        self.conv.runtime.listeners.add(self.on_residency)
        self.conv.runtime.fallback_listeners.add(self.on_fallback)

    def detach(self) -> None:
        self.conv.runtime.listeners.discard(self.on_residency)
        self.conv.runtime.fallback_listeners.discard(self.on_fallback)

    def on_residency(self, event: ResidencyEvent) -> None:
        conv = self.conv
        out = self.residency(event, conv.pipeline.state.state.value if conv.pipeline is not None else "idle")
        if out is not None:
            conv.emit(out)
        swapped = event.kind == "loaded" and event.name in conv.parts.slots().values()
        if swapped and conv.pipeline is not None and not conv.switching:
            conv.emit(conv.mode_event())  # a slot of this mode has a new engine (restarted, switched)

    def on_fallback(self, kind: str, engine: str, error: str) -> None:
        notice = self.fallback(kind, engine, error)
        if notice is not None:
            self.conv.emit(notice)

    async def recover(self) -> None:
        """An engine crashed during a turn: the session is saved first, then broken engines restart (in
        their slots: the pipeline goes on with the fresh ones) and the person is told."""
        conv = self.conv
        conv.save()
        restarted = await conv.runtime.recover()
        log.info("after a crash, restarted: %s", restarted or "nothing (the engines report healthy)")
        used = set(conv.parts.slots().values())
        for slot in restarted:
            if slot in used:
                conv.emit(restarted_notice(slot))

    async def quality_news(self, governed: GovernedLLM) -> None:
        """Tell the person when answers move to the faster model and back (between turns)."""
        async for change in governed.changes:
            self.conv.between_turns(quality(change))

    def residency(self, event: ResidencyEvent, state: str) -> StateOut | None:
        """The state to show for a load or unload (``state``: the turn state now), or None."""
        if event.kind == "loading":
            self.loading.add(event.name)
        elif event.kind in ("loaded", "unloaded"):
            self.loading.discard(event.name)
        else:
            return None
        what = event.kind
        reason = f"{what} {event.name}" + (f" {event.reason}" if event.reason and what != "loaded" else "")
        return StateOut(state, reason)

    def fallback(self, kind: str, engine: str, error: str) -> NoticeOut | None:
        """An engine failed and the next in its chain took over: the notice, unless said recently."""
        now = self._clock()
        if now - self._fallback_said.get(engine, -FALLBACK_NOTICE_S) < FALLBACK_NOTICE_S:
            return None
        self._fallback_said[engine] = now
        text = f"The {kind.upper()} engine {engine} failed, so a fallback answered ({error})."
        return NoticeOut(
            text, "warning", {"kind": "fallback", "engine_kind": kind, "engine": engine, "error": error}
        )


def restarted_notice(slot: str) -> NoticeOut:
    return NoticeOut(
        f"The {slot} engine crashed and was restarted; the conversation goes on.",
        "warning",
        {"kind": "restarted", "slot": slot},
    )


def blind(model: str) -> NoticeOut:
    return NoticeOut(
        f"The language model ({model}) cannot see images, so pictures are described to it "
        "as missing; configure a vision model (for example Ollama's llava) to ask about them.",
        "warning",
    )


def without(role: str, why: str) -> NoticeOut:
    return NoticeOut(f"This mode runs without its {role}: {why}", "warning")


def not_looking(mode: str) -> NoticeOut:
    return NoticeOut(
        f"The {mode.replace('_', ' ')} mode does not look at images: answering without it. "
        "Switch to visual chat to ask about a picture.",
        "warning",
    )


def quality(change: QualityChange) -> NoticeOut:
    """The switch to the faster model, or back to the usual one."""
    if change.state == "degraded":
        text = (
            f"Answers are slow (the first words took over {change.bound_ms / 1000:g} s), so I am switching "
            f"to the faster model {change.model} until {change.usual} is quick again."
        )
        return NoticeOut(text, "warning", {"kind": "quality", "state": "degraded", "model": change.model})
    text = f"{change.model} is quick again: switching back to it."
    return NoticeOut(text, "info", {"kind": "quality", "state": "recovered", "model": change.model})
