#!/usr/bin/env python3
"""The issue's three goals, round by round, from one or more output folders of ``scripts/pipecat/run``.

For each run (folder): each round's Aria / Pipecat-lean ratio on framework-only dispatch, event-loop
CPU per turn (loop thread) and interrupt-by-audio done at sink, the framework-free floor's share of
Pipecat lean on the loop thread, and the run's figure as the harness makes it (the median of Aria's
rounds over the median of Pipecat lean's). Prints one JSON object; with ``--svg`` also draws the rounds
(stdlib only, so it runs with any Python).

    python3 scripts/pipecat/rounds.py /tmp/avp7 /tmp/avp8 /tmp/avp9 --svg docs/bench/aria-vs-pipecat.svg
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import METRICS as ROWS  # beside this script
from run_bench import get

GOAL = 0.33
_PATHS = {label: path for label, path, _unit in ROWS}
#: the issue's goals -> the harness's rows they are read from
METRICS = {
    "dispatch": _PATHS["framework-only dispatch p50"],
    "loop_thread_cpu": _PATHS["event-loop thread CPU per turn p50"],
    "interrupt_done": _PATHS["interrupt by audio: done at sink p50"],
}


def _load(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0])


def run(folder: Path) -> dict:
    rounds, figures = [], {name: {"aria": [], "lean": []} for name in METRICS}
    r = 1
    while (folder / f"run{r}_aria.json").exists() and (folder / f"run{r}_lean.json").exists():
        aria, lean = _load(folder / f"run{r}_aria.json"), _load(folder / f"run{r}_lean.json")
        row: dict[str, float] = {}
        for name, path in METRICS.items():
            a, b = float(get(aria, path)), float(get(lean, path))
            figures[name]["aria"].append(a)
            figures[name]["lean"].append(b)
            row[name] = round(a / b, 3)
        floor = folder / f"floor{r}.json"
        if floor.exists():
            share = json.loads(floor.read_text())["loop_thread_cpu_ms_per_turn_p50"]
            row["floor_loop_thread_cpu"] = round(share / float(get(lean, METRICS["loop_thread_cpu"])), 3)
        rounds.append(row)
        r += 1
    medians = {
        name: round(statistics.median(f["aria"]) / statistics.median(f["lean"]), 3)
        for name, f in figures.items()
        if f["aria"]
    }
    return {
        "folder": str(folder),
        "rounds": rounds,
        "run": medians,
        "met": bool(medians) and all(v <= GOAL for v in medians.values()),
    }


def svg(runs: list[dict]) -> str:
    """Each round's ratio as a dot, the run's figure as a bar, per goal and run; the 0.33 line."""
    colours = {"dispatch": "#3b6fd4", "loop_thread_cpu": "#d4793b", "interrupt_done": "#3ba55c"}
    width, height, left, top, bottom = 760, 330, 50, 40, 60
    plot_h, top_v = height - top - bottom, 0.8
    group = (width - left - 20) / max(len(runs), 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, top_v) / top_v)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">Aria / Pipecat lean, per round (dots) and per run '
        "(bars: median / median); lower is better</text>",
    ]
    for v in (0.0, 0.2, 0.4, 0.6, 0.8):
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    out.append(
        f'<line x1="{left}" x2="{width - 20}" y1="{y(GOAL):.1f}" y2="{y(GOAL):.1f}" '
        'stroke="#c00" stroke-dasharray="5,4"/>'
    )
    out.append(f'<text x="{width - 22}" y="{y(GOAL) - 4:.1f}" text-anchor="end" fill="#c00">goal 0.33</text>')
    for i, result in enumerate(runs):
        x0 = left + i * group + 14
        bar = (group - 40) / len(METRICS)
        for j, name in enumerate(METRICS):
            x = x0 + j * bar
            value = result["run"].get(name)
            if value is not None:
                out.append(
                    f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{bar - 6:.1f}" '
                    f'height="{y(0) - y(value):.1f}" fill="{colours[name]}" fill-opacity="0.35"/>'
                )
                out.append(
                    f'<text x="{x + (bar - 6) / 2:.1f}" y="{y(0) - 6:.1f}" '
                    f'text-anchor="middle" font-size="11" font-weight="bold">{value:.2f}</text>'
                )
            for row in result["rounds"]:
                if name in row:
                    out.append(
                        f'<circle cx="{x + (bar - 6) / 2:.1f}" cy="{y(row[name]):.1f}" r="3.5" '
                        f'fill="{colours[name]}"/>'
                    )
            if name == "loop_thread_cpu":
                for row in result["rounds"]:
                    if "floor_loop_thread_cpu" in row:
                        cy = y(row["floor_loop_thread_cpu"])
                        out.append(
                            f'<path d="M{x + (bar - 6) / 2 - 4:.1f},{cy - 4:.1f} l8,8 m0,-8 l-8,8" '
                            'stroke="#555" stroke-width="1.5"/>'
                        )
        label = f"run {i + 1}: " + ("all three met" if result["met"] else "not met")
        out.append(
            f'<text x="{x0 + (group - 40) / 2:.1f}" y="{height - bottom + 18}" '
            f'text-anchor="middle">{label}</text>'
        )
    legend = [
        ("dispatch", "dispatch"),
        ("loop_thread_cpu", "loop-thread CPU / turn"),
        ("interrupt_done", "interrupt done at sink"),
    ]
    x = left
    for name, text in legend:
        out.append(f'<circle cx="{x + 5}" cy="{height - 14}" r="5" fill="{colours[name]}"/>')
        out.append(f'<text x="{x + 14}" y="{height - 10}">{text}</text>')
        x += 30 + 7 * len(text)
    out.append(f'<path d="M{x},{height - 18} l8,8 m0,-8 l-8,8" stroke="#555" stroke-width="1.5"/>')
    out.append(f'<text x="{x + 14}" y="{height - 10}">floor (no framework), loop thread</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="output folders of scripts/pipecat/run")
    ap.add_argument("--svg", type=Path, help="also draw the rounds here")
    args = ap.parse_args()
    runs = [run(folder) for folder in args.folders]
    if args.svg is not None:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(svg(runs))
    json.dump({"goal": GOAL, "runs": runs}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
