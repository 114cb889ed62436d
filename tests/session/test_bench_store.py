"""``aria bench store``: the cost of saving a turn as the conversation grows, by store."""

from __future__ import annotations

import json
import subprocess
import sys

from aria.session.bench import format_report, store_bench


def test_the_store_bench_measures_each_length_with_the_journal_and_whole_snapshots() -> None:
    result = store_bench((10, 400), turns=4)
    assert result["bench"] == "store"
    assert [row["messages"] for row in result["sizes"]] == [10, 400]
    for row in result["sizes"]:
        for figure in ("loop_ms", "durable_ms", "whole_ms"):
            assert 0 < row[figure]["p50"] <= row[figure]["p95"]
        assert row["loop_ms"]["p50"] <= row["durable_ms"]["p50"]  # the loop never waits for the disk
    assert result["loop_p50_largest_over_smallest"] > 0
    assert "400 messages" in format_report(result)


def test_aria_bench_store_prints_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aria", "bench", "store", "--sizes", "10", "50", "--turns", "2", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert [row["messages"] for row in result["sizes"]] == [10, 50]
