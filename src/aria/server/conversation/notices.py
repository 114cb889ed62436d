"""What a conversation tells the person about its engines: loads and unloads (as states naming what still
loads), a fallback that took over (at most once a minute per engine), a restart after a crash, a mode
running without one of its engines, a switch to the faster model and back."""

from __future__ import annotations

import time
from collections.abc import Callable

from aria.pipeline.outputs import NoticeOut, StateOut
from aria.pipeline.quality import QualityChange
from aria.pipeline.residency import ResidencyEvent

__all__ = ["FALLBACK_NOTICE_S", "Notices", "blind", "not_looking", "quality", "restarted", "without"]

#: At most one "fallback took over" notice per engine per this many seconds.
FALLBACK_NOTICE_S = 60.0


class Notices:
    """Builds the notices and keeps what they depend on (what is loading, when each fallback was told)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: Engine slots loading now.
        self.loading: set[str] = set()
        self._fallback_said: dict[str, float] = {}

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


def restarted(slot: str) -> NoticeOut:
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
