"""The human-readable table of ``aria bench embedded`` (:mod:`aria.bench.embedded`): where the time goes."""

from __future__ import annotations

from typing import Any

__all__ = ["format_report"]


def format_report(result: dict[str, Any]) -> str:
    """A human-readable table of where the time goes."""
    llm, lines = result["llm"], []
    lines.append(
        f"aria bench embedded{' --quick' if result['quick'] else ''} on {result['machine']['cpus']} CPUs"
    )
    lines.append(f"{'stage':<34}{'ms':>10}{'share':>8}{'cpu ms':>10}")
    for key, value in result["stages"].items():
        cpu = result["stages_cpu_ms"][key]
        lines.append(f"{key:<34}{value:>10.1f}{result['share'].get(key, 0):>8.0%}{cpu:>10.1f}")
    total, cpu_total = result["voice_to_voice_ms"], result["voice_to_voice_cpu_ms"]
    lines.append(f"{'voice_to_voice_ms':<34}{total:>10.1f}{'':>8}{cpu_total:>10.1f}")
    verdict = "met" if result["goal_met"] else "NOT met"
    lines.append(f"goal < {result['goal_ms']:.0f} ms with the cached prefix: {verdict}")
    lines.append(f"  ({result['formula']})")
    for name in ("uncached", "cached"):
        t = llm[name]
        lines.append(
            f"LLM {name:<9} prompt {t['prompt_tokens']:>5} tok, prefilled {t['prefilled_tokens']:>5}: "
            f"TTFT {t['ttft_ms']:>8.1f} ms, first clause {t['first_clause_ms']:>8.1f} ms, "
            f"{t['tokens_per_s']} tok/s"
        )
    lines.append(f"voice_to_voice without the cached prefix: {result['voice_to_voice_uncached_ms']:.1f} ms")
    piped = llm["pipelined"]
    lines.append(
        f"voice_to_voice pipelined (TTS while the LLM decodes): {result['voice_to_voice_pipelined_ms']:.1f}"
        f" ms (first clause {piped['first_clause_ms']:.1f} ms, TTS {piped['tts_first_audio_ms']:.1f} ms)"
    )
    load = result["machine"]["loadavg_1m"]
    lines.append(f"load average (1 min) before / after: {load[0]} / {load[1]}")
    return "\n".join(lines)
