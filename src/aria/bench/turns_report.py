"""The report of ``aria bench turns``: figures from the scenes' results, goals, and a short table."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from aria.bench.turns_corpus import BACKCHANNELS, BARGE_INS, norm_words

__all__ = ["build_report", "format_report"]


def build_report(bench: Any, by: dict[str, list[dict[str, Any]]], seconds: float) -> dict[str, Any]:
    """The figures, what each was measured on, the goals met, and the details behind them."""
    paused, pre, nopre = by.get("paused", []), by.get("complete_pre", []), by.get("complete_nopre", [])
    barge, echo, over = by.get("barge", []), by.get("echo", []), by.get("over_echo", [])
    backs = by.get("backchannel", [])
    eot = [r["eot_ms"] for r in pre if r["eot_ms"] is not None]
    savings = [
        b["first_token_ms"] - a["first_token_ms"]
        for a, b in zip(pre, nopre, strict=True)
        if a["first_token_ms"] is not None and b["first_token_ms"] is not None
    ]
    lost: list[int] = []
    errors: list[int] = []
    missing: list[int] = []
    for r, text in zip(barge, [BARGE_INS[i % len(BARGE_INS)] for i in range(len(barge))], strict=True):
        words = norm_words(text)
        best = max((_matched(words, norm_words(f)) for f in r["finals"]), default=0)
        lost.append(len(words) - best)
        anywhere = {w for f in r["finals"] for w in norm_words(f)}
        missing.append(sum(w not in anywhere for w in words))
        truth, stored = r.get("played_words", []), norm_words(r["heard_text"])
        errors.append(_word_errors(norm_words(" ".join(truth)), stored))
    voices = sorted({s.voice for s in bench.speech})
    rates = [s.rate_wpm for s in bench.speech]
    result: dict[str, Any] = {
        "false_cutoff_rate": _ratio(sum(r["split"] for r in paused), len(paused)),
        "eot_latency_ms_p50": _pct(eot, 50),
        "eot_latency_ms_p95": _pct(eot, 95),
        "preemptive_saving_ms_p50": _pct(savings, 50),
        "words_lost_at_bargein": sum(lost),
        "heard_text_error_words": max(errors, default=0),
        "self_interruptions_from_echo": sum(r["interrupted"] or bool(r["finals"]) for r in echo),
        "bargein_recall_over_echo": _ratio(sum(r["interrupted"] for r in over), len(over)),
        "false_interruptions_from_backchannels": sum(r["interrupted"] for r in backs),
        "echo_guard_us_per_frame": _pct(bench.guard_us, 50),
        "turn_model_ms_per_call": _pct(bench.detector.ms if bench.detector else [], 50),
    }
    result["measured_on"] = {
        "false_cutoff_rate": f"{len(paused)} questions with a mid-sentence pause of "
        f"{_span([r['pause_s'] for r in paused])} s",
        "eot_latency_ms": f"{len(eot)} complete questions, from the last loud sample to the final transcript",
        "preemptive_saving_ms_p50": f"{len(savings)} questions run with and without preemptive "
        f"(fake LLM first token after {bench.ttft_s * 1000:.0f} ms)",
        "words_lost_at_bargein": f"{len(barge)} barge-ins {_span([r['offset_s'] for r in barge])} s into "
        "a fake-TTS answer",
        "heard_text_error_words": f"max over {len(barge)} barge-ins (total {sum(errors)}): "
        "stored answer vs words at least half played",
        "self_interruptions_from_echo": f"{len(echo)} espeak answers echoed at -6..-20 dB, 20-200 ms, "
        "-60 dBFS noise",
        "bargein_recall_over_echo": f"{len(over)} utterances over such an echo",
        "false_interruptions_from_backchannels": f"{len(backs)} sounds over an answer: "
        + ", ".join(
            str(BACKCHANNELS[i % len(BACKCHANNELS)] if not bench.quick else ("yeah", "cough")[i % 2]).replace(
                "None", "cough"
            )
            for i in range(len(backs))
        ),
        "echo_guard_us_per_frame": f"p50 of {len(bench.guard_us)} 32 ms blocks while the guard was active",
        "turn_model_ms_per_call": f"p50 of {len(bench.detector.ms if bench.detector else [])} calls "
        "(wall time, worker thread included, shared by the items running at once)",
    }
    result["corpus"] = {
        "utterances": len(bench.speech),
        "voices": voices,
        "rates_wpm": [min(rates), max(rates)] if rates else [],
        "items_at_once": bench.concurrency,
        "quick": bench.quick,
        "seed": bench.seed,
        "seconds": round(seconds, 1),
    }
    result["goals"] = {
        "false_cutoff_rate": result["false_cutoff_rate"] == 0,
        "eot_latency_ms_p50": result["eot_latency_ms_p50"] is not None
        and result["eot_latency_ms_p50"] <= 250,
        "words_lost_at_bargein": result["words_lost_at_bargein"] == 0,
        "heard_text_error_words": result["heard_text_error_words"] <= 1,
        "self_interruptions_from_echo": result["self_interruptions_from_echo"] == 0,
        "bargein_recall_over_echo": (result["bargein_recall_over_echo"] or 0) >= 0.95,
        "false_interruptions_from_backchannels": result["false_interruptions_from_backchannels"] == 0,
    }
    result["details"] = {
        "false_cutoffs": sum(r["split"] for r in paused),
        "paused_finals": [r["finals"] for r in paused if r["split"]],
        "echo_answer_pauses": sum(r["pauses"] for r in echo),
        "barge_in_lost_words": lost,
        "barge_in_words_in_no_transcript": missing,
        "barge_in_finals": [r["finals"] for r in barge],
        "barge_in_heard_errors": errors,
        "barge_in_not_interrupted": sum(not r["interrupted"] for r in barge),
        "over_echo_interrupted": [r["interrupted"] for r in over],
        "backchannel_finished": [r["finished"] for r in backs],
    }
    return result


def _matched(words: list[str], heard: list[str]) -> int:
    matcher = difflib.SequenceMatcher(None, words, heard, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks())


def _word_errors(truth: list[str], stored: list[str]) -> int:
    """Words substituted, missing or extra between the two texts."""
    matcher = difflib.SequenceMatcher(None, truth, stored, autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), q)), 1)


def _ratio(part: float, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def format_report(result: dict[str, Any]) -> str:
    """A short table: each figure, its goal met or not, and what it was measured on."""
    goals, on = result["goals"], result["measured_on"]
    rows = [
        ("false_cutoff_rate", "0", "false_cutoff_rate"),
        ("eot_latency_ms_p50", "<= 250", "eot_latency_ms"),
        ("eot_latency_ms_p95", "", "eot_latency_ms"),
        ("preemptive_saving_ms_p50", "", "preemptive_saving_ms_p50"),
        ("words_lost_at_bargein", "0", "words_lost_at_bargein"),
        ("heard_text_error_words", "<= 1", "heard_text_error_words"),
        ("self_interruptions_from_echo", "0", "self_interruptions_from_echo"),
        ("bargein_recall_over_echo", ">= 0.95", "bargein_recall_over_echo"),
        ("false_interruptions_from_backchannels", "0", "false_interruptions_from_backchannels"),
        ("echo_guard_us_per_frame", "", "echo_guard_us_per_frame"),
        ("turn_model_ms_per_call", "", "turn_model_ms_per_call"),
    ]
    lines = [f"{'figure':38} {'value':>9} {'goal':>8}  measured on"]
    for key, goal, about in rows:
        met = "" if key not in goals else (" ok" if goals[key] else " MISSED")
        value = result[key]
        shown = "-" if value is None else f"{value}"
        lines.append(f"{key:38} {shown:>9} {goal:>8}{met:7} {on[about]}")
    c = result["corpus"]
    lines.append(
        f"corpus: {c['utterances']} utterances, voices {', '.join(c['voices'])}, rates {c['rates_wpm']} wpm, "
        f"{c['items_at_once']} items at once, {c['seconds']} s"
    )
    return "\n".join(lines)
