"""The GGUF chat models in the catalogue, ``aria models list --json``, the default loadout sized to the
machine, ``aria models pull --loadout default`` (against a local HTTP server) and ``aria doctor``'s line."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from aria.cli import main
from aria.cli import models as models_cli
from aria.engines.catalog import CATALOG, find_entry
from aria.engines.models import DEFAULT_LLM, SMALL_LLM, Loadout, default_loadout
from aria.server import firstrun
from tests.cli.test_models_cli import WEIGHTS, Server, run, server  # noqa: F401  (server is a fixture)

_PINNED = re.compile(r"/resolve/[0-9a-f]{40}/")


def test_catalogue_has_pinned_checksummed_ggufs() -> None:
    llms = {e.name: e for e in CATALOG if e.engine == "llm:llamacpp"}
    assert set(llms) == {"qwen2.5-1.5b", "qwen3-4b", "qwen2.5-vl-3b"}
    for entry in llms.values():
        assert entry.kind == "llm"
        for file in entry.files:
            assert _PINNED.search(file.url), file.url
            assert file.path.endswith(".gguf")
            assert file.size is not None
            assert file.size > 100_000_000
            assert file.sha256 is not None
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256)
    assert any("mmproj" in f.path for f in llms["qwen2.5-vl-3b"].files)
    assert find_entry("default-llm").name == DEFAULT_LLM


def test_list_json_has_name_kind_engine_size_sha256_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("models", "list", "--json", "--dir", str(tmp_path)) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    qwen = rows["qwen3-4b"]
    assert {k: qwen[k] for k in ("name", "kind", "engine", "size", "status")} == {
        "name": "qwen3-4b",
        "kind": "llm",
        "engine": "llm:llamacpp",
        "size": 2_497_280_736,
        "status": "missing",
    }
    assert qwen["sha256"] == ["2fde00ce69dd4899c70d020845e2638353015bba0fdf161b3eb965f2bca4464e"]
    assert len(rows["qwen2.5-vl-3b"]["sha256"]) == 2


@pytest.mark.parametrize(
    ("ram_mb", "gpu_mb", "llm", "described"),
    [
        (16 * 1024, None, DEFAULT_LLM, "qwen3-4b (16 GB RAM, no GPU)"),
        (4 * 1024, None, SMALL_LLM, "qwen2.5-1.5b (4 GB RAM, no GPU)"),
        (7.6 * 1024, None, DEFAULT_LLM, "qwen3-4b (8 GB RAM, no GPU)"),
        (4 * 1024, 8 * 1024, DEFAULT_LLM, "qwen3-4b (4 GB RAM, 8 GB GPU)"),
    ],
)
def test_default_loadout_is_sized_to_the_machine(
    ram_mb: float, gpu_mb: float | None, llm: str, described: str
) -> None:
    loadout = default_loadout(ram_mb, gpu_mb)
    assert loadout.llm == llm
    assert loadout.models == (llm, "whisper-base.en", "kokoro", "smart-turn")
    assert loadout.describe() == described
    for name in loadout.models:
        find_entry(name)  # every member is in the catalogue


def test_pull_loadout_fetches_every_member(
    server: Server,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tiny = server.entry()
    monkeypatch.setattr(firstrun, "machine_loadout", lambda **_: Loadout("tiny-test", ("tiny-test",), "x"))
    monkeypatch.setattr(models_cli, "find_entry", lambda name: tiny)
    assert run("models", "pull", "--loadout", "default", "--dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "default loadout: tiny-test (x): tiny-test" in out
    assert "tiny-test: downloaded 2 file(s)" in out
    assert (tmp_path / "tiny/model.bin").read_bytes() == WEIGHTS
    assert run("models", "pull", "--loadout", "default", "--dir", str(tmp_path)) == 0
    assert "already present" in capsys.readouterr().out


def test_pull_needs_a_name_or_the_loadout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull"]) == 1
    assert "--loadout default" in capsys.readouterr().err


def test_doctor_explains_the_default_loadout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARIA_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(firstrun, "machine_loadout", lambda **_: default_loadout(16 * 1024, None))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["doctor"]) == 0
    assert "default loadout: qwen3-4b (16 GB RAM, no GPU)" in out.getvalue().splitlines()
