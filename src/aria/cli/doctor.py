"""``aria doctor``: which engines can run on this machine, which are selected, and why not."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aria.cli.common import settings_from_args
from aria.core.config import Settings
from aria.engines.base import KINDS
from aria.engines.factory import detect_llm, resolve_backend
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AriaError

__all__ = ["add_parser", "diagnose"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("doctor", help="say which engines are available and why not")
    p.add_argument("--json", action="store_true", help='print {"engines": [...]} as JSON')
    p.add_argument("--all", action="store_true", help="include the fake engines used by tests")
    p.set_defaults(run=_run)


def diagnose(
    settings: Settings, registry: EngineRegistry | None = None, *, include_fakes: bool = False
) -> dict[str, Any]:
    """Every registered engine with ``name``, ``kind``, ``available`` and, when not, ``reason`` and
    ``fix``; plus what the configuration selects for each kind."""
    registry = registry or default_registry()
    selected: dict[str, str | None] = {}
    problems: dict[str, str] = {}
    for kind in KINDS:
        section = getattr(settings, kind)
        if section.backend == "none":
            selected[kind] = None
            continue
        try:
            selected[kind] = registry.qualify(resolve_backend(kind, settings, registry), kind)
        except AriaError as exc:
            selected[kind] = None
            problems[kind] = str(exc)
    engines = []
    for name in registry.names():
        spec = registry.spec(name)
        if spec.backend == "fake" and not include_fakes:
            continue
        section = getattr(settings, spec.kind)
        options = section.options if name == selected.get(spec.kind) else {}
        found = registry.availability(name, options)
        entry: dict[str, Any] = {
            "name": name,
            "kind": spec.kind,
            "available": found.available,
            "selected": name == selected.get(spec.kind),
            "origin": spec.origin,
        }
        if not found.available:
            entry["reason"] = found.reason
            entry["fix"] = found.fix
        elif found.reason:
            entry["note"] = found.reason
        engines.append(entry)
    return {"engines": engines, "selected": selected, "problems": problems}


def _run(args: argparse.Namespace) -> int:
    from aria.server.firstrun import machine_loadout

    settings = asyncio.run(detect_llm(settings_from_args(args)))
    report = diagnose(settings, include_fakes=args.all)
    loadout = machine_loadout()
    report["loadout"] = {"llm": loadout.llm, "models": list(loadout.models), "reason": loadout.reason}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len(e["name"]) for e in report["engines"])
    for entry in report["engines"]:
        mark = "ok " if entry["available"] else "-- "
        chosen = " (selected)" if entry["selected"] else ""
        detail = entry.get("note", "") if entry["available"] else f"{entry['reason']}"
        print(f"{mark} {entry['name']:<{width}}{chosen}  {detail}".rstrip())
        if not entry["available"] and entry.get("fix"):
            print(f"    {'':<{width}} fix: {entry['fix']}")
    for kind, problem in report["problems"].items():
        print(f"!! {kind}: {problem}")
    print(f"default loadout: {loadout.describe()}")
    return 0
