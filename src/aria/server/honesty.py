"""What the server says about itself: which engines of limited quality answer, and which modes cannot work
with the engines at hand. ``GET /health`` lists the first under ``limited`` (and is ``degraded`` while any
serves), the page shows them in a banner, and ``session.mode_details`` marks the second unavailable.

Three engines are last resorts that work anywhere but answer poorly: the rule-based ``llm:builtin``,
PocketSphinx and espeak. Each limitation names what is limited, why the better engine is not serving (the
error it failed to start with, or its availability check) and the one command that fixes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aria.core.modespec import ModeSpec
from aria.engines.base import Engine
from aria.engines.chain import FallbackEngine, serving
from aria.engines.registry import EngineRegistry

__all__ = ["LIMITED", "Limitation", "LimitedEngine", "limitation", "mode_availability"]

#: A command in backticks in an engine's error or fix: the one to show.
_COMMAND = re.compile(r"`((?:aria models pull|pip install|ollama) [^`]+)`")


@dataclass(frozen=True, slots=True)
class LimitedEngine:
    """A last-resort engine: what it cannot do, the engine that would do better, and its usual fix."""

    what: str
    #: The engine that would do better, checked for why it cannot (empty: no cheap check, e.g. a server).
    better: str
    command: str
    fix: str


#: Last-resort engines by ``kind:backend``.
LIMITED: Mapping[str, LimitedEngine] = {
    "llm:builtin": LimitedEngine(
        what="No language model is available: the built-in responder only tells the time and the date "
        "and does simple arithmetic.",
        better="",
        command="aria models pull --loadout default",
        fix="Run `aria models pull --loadout default` (an embedded model sized to this machine; `aria serve` "
        "does it by itself when online), then restart Aria. Or run a local Ollama (`ollama pull llama3.2`): "
        'Aria finds it at start. Or set llm.backend = "llamacpp" with options.model_path naming a GGUF file.',
    ),
    "stt:pocketsphinx": LimitedEngine(
        what="Speech is recognised by PocketSphinx, a small offline recogniser that often mishears.",
        better="stt:whisper",
        command="aria models pull whisper-base.en",
        fix="Run `aria models pull whisper-base.en`, then restart Aria to recognise speech with Whisper.",
    ),
    "tts:espeak": LimitedEngine(
        what="Answers are spoken by espeak, a robotic synthetic voice.",
        better="tts:kokoro",
        command="aria models pull kokoro",
        fix="Run `aria models pull kokoro`, then restart Aria to speak with Kokoro's natural voices.",
    ),
}


@dataclass(frozen=True, slots=True)
class Limitation:
    """One limited engine that serves now, as ``/health`` lists it."""

    slot: str
    kind: str
    #: The member that serves.
    engine: str
    #: What is limited, in a sentence.
    reason: str
    #: Why the better engine does not serve (its start-up error, its breaker, its availability check).
    detail: str
    #: How to fix it, in a sentence ...
    fix: str
    #: ... and the one command that does.
    command: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def limitation(
    slot: str,
    engine: Engine,
    *,
    registry: EngineRegistry,
    options: Mapping[str, Any] | None = None,
) -> Limitation | None:
    """The limitation of the engine serving ``slot`` (None when it is not a last resort). ``options`` are the
    configured options of the better engine, for its availability check (files and packages only)."""
    member = serving(engine)
    kind = str(getattr(engine, "kind", slot.split(":", 1)[0]))
    known = LIMITED.get(f"{kind}:{member.name}")
    if known is None:
        return None
    why, command, fix = "", known.command, known.fix
    first = engine.chain.engines[0] if isinstance(engine, FallbackEngine) else engine
    failed = engine.unavailable if isinstance(engine, FallbackEngine) else {}
    if failed:
        name, detail = next(iter(failed.items()))
        detail = detail.removeprefix(f"{kind}:{name}: ")
        why = f"{name.capitalize()} could not start: {detail}"
    elif first is not member:
        why = f"{first.name.capitalize()} is failing, so {member.name} answers."
    elif known.better:
        found = registry.availability(known.better, options)
        if not found.available:
            why = f"{known.better.partition(':')[2].capitalize()} cannot run here: {found.reason}"
            fix = found.fix or fix
    offered = _COMMAND.search(f"{why} `{fix}`")
    if offered is not None:
        command = offered.group(1)
    return Limitation(
        slot=slot, kind=kind, engine=member.name, reason=known.what, detail=why, fix=fix, command=command
    )


def mode_availability(spec: ModeSpec, llm: Engine | None) -> tuple[bool, str]:
    """Whether a mode can work with ``llm`` (its language model as loaded; None: not known yet) and, when
    not, why. A mode that looks at pictures or watches the camera needs a model that can see."""
    if not (spec.sees or spec.watches) or llm is None:
        return True, ""
    if llm.capabilities.vision:
        return True, ""
    name = serving(llm).name
    what = "watches the camera" if spec.watches else "answers about pictures"
    return False, (
        f"It {what}, and the language model ({name}) cannot see images: configure a vision model "
        '(for example [llm] backend = "ollama", options = { model = "llava" }).'
    )
