"""``scripts/pipecat/rounds.py``: the issue's three goals per round and per run, from the harness's files."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pipecat" / "rounds.py"


@pytest.fixture(scope="module")
def rounds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipecat_rounds", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(dispatch: float, loop: float, interrupt: float) -> str:
    """One line as the benches write it (further lines, if any, are ignored)."""
    return (
        json.dumps(
            {
                "turn": {
                    "breakdown_ms": {"framework_only": {"p50": dispatch}},
                    "loop_thread_cpu_ms_per_turn": {"p50": loop},
                },
                "interruption": {"broadcast": {"interruption_frame_at_sink_ms": {"p50": interrupt}}},
            }
        )
        + "\n"
    )


def write_run(
    folder: Path, rows: list[tuple[tuple[float, float, float], tuple[float, float, float], float]]
) -> Path:
    folder.mkdir()
    for r, (aria, lean, floor) in enumerate(rows, start=1):
        (folder / f"run{r}_aria.json").write_text(bench(*aria))
        (folder / f"run{r}_lean.json").write_text(bench(*lean))
        (folder / f"floor{r}.json").write_text(json.dumps({"loop_thread_cpu_ms_per_turn_p50": floor}))
    return folder


def test_each_round_and_the_run_as_the_harness_makes_it(rounds: ModuleType, tmp_path: Path) -> None:
    folder = write_run(
        tmp_path / "run",
        [
            ((0.3, 8.0, 0.1), (1.0, 20.0, 0.5), 6.0),
            ((0.2, 4.0, 0.1), (0.8, 16.0, 0.4), 2.0),
            ((0.25, 5.0, 0.2), (0.9, 18.0, 0.6), 3.0),
        ],
    )
    result = rounds.run(folder)
    assert result["rounds"][0] == {
        "dispatch": 0.3,
        "loop_thread_cpu": 0.4,
        "interrupt_done": 0.2,
        "floor_loop_thread_cpu": 0.3,
    }
    assert [row["loop_thread_cpu"] for row in result["rounds"]] == [0.4, 0.25, 0.278]
    # the median of Aria's rounds over the median of Pipecat lean's, not the median of the ratios
    assert result["run"] == {"dispatch": 0.278, "loop_thread_cpu": 0.278, "interrupt_done": 0.2}
    assert result["met"] is True


def test_one_goal_over_a_third_is_not_met(rounds: ModuleType, tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", [((0.3, 8.0, 0.1), (1.0, 20.0, 0.5), 6.0)])
    assert rounds.run(folder)["run"]["loop_thread_cpu"] == 0.4
    assert rounds.run(folder)["met"] is False


def test_an_empty_folder_meets_nothing(rounds: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert rounds.run(tmp_path / "empty") == {
        "folder": str(tmp_path / "empty"),
        "rounds": [],
        "run": {},
        "met": False,
    }


def test_the_drawing_is_svg_with_a_dot_per_round_and_goal(rounds: ModuleType, tmp_path: Path) -> None:
    runs = [
        rounds.run(write_run(tmp_path / "a", [((0.3, 8.0, 0.1), (1.0, 20.0, 0.5), 6.0)] * 3)),
        rounds.run(write_run(tmp_path / "b", [((0.2, 4.0, 0.1), (0.8, 16.0, 0.4), 2.0)] * 2)),
    ]
    root = ET.fromstring(rounds.svg(runs))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    dots = root.findall(f"{ns}circle")
    assert len(dots) == (3 + 2) * 3 + 3  # every round's three ratios, and the legend's three
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "run 1: not met" in texts
    assert "run 2: all three met" in texts
    assert "goal 0.33" in texts
