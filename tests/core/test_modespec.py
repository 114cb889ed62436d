"""Modes as data: the built-in specs, their consistency rules, and ``[modes.*]`` tables from the
configuration (merged over a built-in, or new), with errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aria.core.config import Settings, load_settings
from aria.core.modespec import BUILTIN_MODES, LLMOverride, ModeSpec, resolve_modes
from aria.errors import ConfigError

DEEP_DIVE_PROMPT = BUILTIN_MODES["deep_dive"].llm.system_prompt if BUILTIN_MODES["deep_dive"].llm else None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aria.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, toml), env=env or {})


# -- the built-in modes ----------------------------------------------------------------------------


def test_the_six_builtin_modes_in_order() -> None:
    assert list(BUILTIN_MODES) == [
        "voice_chat",
        "broadcast",
        "visual_chat",
        "active_monitor",
        "router",
        "deep_dive",
    ]
    for name, spec in BUILTIN_MODES.items():
        # Each one is valid as its own dump (what a config file would spell out) and has a label and a
        # description for the mode picker.
        assert ModeSpec.model_validate(spec.model_dump()) == spec, name
        assert spec.label, name
        assert spec.description, name


@pytest.mark.parametrize(
    ("name", "inputs", "trigger", "steps", "outputs"),
    [
        (
            "voice_chat",
            ["audio", "text"],
            "vad_gated",
            ["stt", "llm", "tools", "tts"],
            ["transcript", "text", "audio", "tool_result", "control_signal"],
        ),
        ("broadcast", ["audio"], "vad_gated", ["stt"], ["transcript"]),
        (
            "visual_chat",
            ["audio", "text", "image", "video"],
            "request_response",
            ["stt", "llm", "vision", "tts"],
            ["transcript", "text", "audio"],
        ),
        (
            "active_monitor",
            ["audio", "text", "video"],
            "continuous",
            ["stt", "llm", "vision", "tts"],
            ["transcript", "text", "audio", "notification"],
        ),
        (
            "router",
            ["audio", "text"],
            "vad_gated",
            ["stt", "llm", "router", "tools", "tts"],
            ["transcript", "text", "audio", "tool_result", "control_signal"],
        ),
        (
            "deep_dive",
            ["audio", "text"],
            "vad_gated",
            ["stt", "llm", "tools", "tts"],
            ["transcript", "text", "audio", "tool_result", "control_signal"],
        ),
    ],
)
def test_builtin_mode_shape(
    name: str, inputs: list[str], trigger: str, steps: list[str], outputs: list[str]
) -> None:
    spec = BUILTIN_MODES[name]
    assert (spec.inputs, spec.trigger, spec.steps, spec.outputs) == (inputs, trigger, steps, outputs)


@pytest.mark.parametrize(
    ("name", "answers", "listens", "speaks", "sees", "watches"),
    [
        ("voice_chat", True, True, True, False, False),
        ("broadcast", False, True, False, False, False),
        ("visual_chat", True, True, True, True, False),
        ("active_monitor", True, True, True, True, True),
        ("router", True, True, True, False, False),
        ("deep_dive", True, True, True, False, False),
    ],
)
def test_builtin_mode_derived_flags(
    name: str, answers: bool, listens: bool, speaks: bool, sees: bool, watches: bool
) -> None:
    spec = BUILTIN_MODES[name]
    assert (spec.answers, spec.listens, spec.speaks, spec.sees, spec.watches) == (
        answers,
        listens,
        speaks,
        sees,
        watches,
    )


def test_only_deep_dive_brings_its_own_model_settings() -> None:
    assert {name for name, spec in BUILTIN_MODES.items() if spec.llm is not None} == {"deep_dive"}
    assert all(spec.router is None for spec in BUILTIN_MODES.values())
    deep = BUILTIN_MODES["deep_dive"].llm
    assert deep is not None
    # Request settings only: the deep dive shares the main model unless a configuration names another.
    assert deep.changes().keys() == {"max_tokens", "temperature", "system_prompt"}
    assert deep.max_tokens is not None
    assert deep.max_tokens > Settings().llm.max_tokens
    assert "deep-dive" in (deep.system_prompt or "")


def test_a_continuous_mode_sees_without_the_vision_step() -> None:
    spec = ModeSpec(inputs=["video", "text"], trigger="continuous", steps=["llm"])
    assert spec.sees
    assert spec.watches
    assert spec.outputs == ["text", "notification"]


def test_specs_are_frozen_and_reject_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        BUILTIN_MODES["voice_chat"].label = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="colour"):
        ModeSpec.model_validate({"colour": "red"})
    with pytest.raises(ValidationError, match="temprature"):
        LLMOverride.model_validate({"temprature": 0.1})


# -- consistency -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inputs": ["text"], "steps": ["stt", "llm"]}, "step 'stt' needs 'audio' in inputs"),
        ({"inputs": ["audio"], "steps": ["stt", "tts"]}, "need the 'llm' step"),
        ({"steps": ["stt", "tools"]}, "need the 'llm' step"),
        ({"steps": ["stt", "router"]}, "need the 'llm' step"),
        ({"inputs": ["audio", "image"], "steps": ["stt", "vision"]}, "need the 'llm' step"),
        (
            {"inputs": ["audio", "text"], "trigger": "continuous", "steps": ["stt", "llm"]},
            "add 'video' to inputs",
        ),
        ({"inputs": ["audio", "video"], "trigger": "continuous", "steps": ["stt"]}, "needs the 'llm' step"),
        ({"inputs": ["text"], "steps": ["tools"]}, "need the 'llm' step"),
        ({"inputs": ["text", "image"], "steps": ["vision"]}, "need the 'llm' step"),
        ({"steps": []}, "at least 1 item"),
        ({"inputs": []}, "at least 1 item"),
        ({"steps": ["speak"]}, "'stt', 'llm', 'vision', 'tools', 'router' or 'tts'"),
        ({"trigger": "always"}, "'vad_gated', 'request_response' or 'continuous'"),
        ({"webhook_url": "ftp://example.com/hook"}, "should match pattern"),
        ({"every_s": -1}, "greater than or equal to 0"),
    ],
)
def test_inconsistent_specs_are_refused_with_a_clear_message(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModeSpec.model_validate(fields)


@pytest.mark.parametrize("steps", [["tts"], ["tools", "tts"], ["vision"], ["router"]])
def test_a_mode_without_stt_or_llm_is_refused(steps: list[str]) -> None:
    # Every step besides stt and llm needs llm, so a mode with neither is refused by that rule.
    with pytest.raises(ValidationError, match="need the 'llm' step"):
        ModeSpec.model_validate({"inputs": ["audio", "text", "image"], "steps": steps})
    text_only = ModeSpec(inputs=["text"], steps=["llm"])
    assert (text_only.listens, text_only.answers, text_only.speaks, text_only.outputs) == (
        False,
        True,
        False,
        ["text"],
    )


def test_override_bounds() -> None:
    for fields, message in [
        ({"temperature": 2.5}, "less than or equal to 2"),
        ({"max_tokens": 0}, "greater than or equal to 1"),
        ({"context_tokens": 100}, "greater than or equal to 256"),
        ({"timeout_s": 0}, "greater than 0"),
    ]:
        with pytest.raises(ValidationError, match=message):
            LLMOverride.model_validate(fields)
    assert LLMOverride().changes() == {}
    assert LLMOverride(options={"model": "m"}, temperature=0.0).changes() == {
        "options": {"model": "m"},
        "temperature": 0.0,
    }


# -- resolve_modes -----------------------------------------------------------------------------------


def test_resolve_merges_a_table_over_its_builtin_and_labels_new_modes() -> None:
    resolved = resolve_modes(
        {
            "deep_dive": {"llm": {"options": {"model": "big"}}},
            "french_tutor": {"steps": ["stt", "llm", "tts"]},
            "named": {"label": "My own label", "steps": ["llm"], "inputs": ["text"]},
        }
    )
    deep = ModeSpec.model_validate(resolved["deep_dive"])
    builtin = BUILTIN_MODES["deep_dive"]
    assert builtin.llm is not None
    assert deep.llm is not None
    assert deep.llm.options == {"model": "big"}
    assert (deep.llm.system_prompt, deep.llm.max_tokens, deep.llm.temperature) == (
        builtin.llm.system_prompt,
        builtin.llm.max_tokens,
        builtin.llm.temperature,
    )
    assert (deep.label, deep.steps, deep.description) == (builtin.label, builtin.steps, builtin.description)
    assert resolved["french_tutor"]["label"] == "French tutor"
    assert resolved["named"]["label"] == "My own label"
    assert builtin.llm.options == {}  # the built-in itself is untouched


def test_resolve_passes_specs_and_non_tables_through_for_pydantic() -> None:
    spec = ModeSpec(label="Given", inputs=["text"], steps=["llm"])
    resolved = resolve_modes({"given": spec, "broken": "not a table"})
    assert resolved["given"] is spec
    assert resolved["broken"] == "not a table"


# -- through load_settings -----------------------------------------------------------------------------


def test_config_table_changes_only_the_keys_it_sets(tmp_path: Path) -> None:
    s = load(tmp_path, '[modes.deep_dive.llm]\noptions = { model = "big" }\n')
    deep = s.all_modes()["deep_dive"]
    builtin = BUILTIN_MODES["deep_dive"]
    assert builtin.llm is not None
    assert deep.llm is not None
    assert deep.llm.options == {"model": "big"}
    assert deep.llm.system_prompt == builtin.llm.system_prompt == DEEP_DIVE_PROMPT
    assert (deep.llm.max_tokens, deep.llm.temperature) == (builtin.llm.max_tokens, builtin.llm.temperature)
    assert deep.model_dump(exclude={"llm"}) == builtin.model_dump(exclude={"llm"})
    # Only the configured mode is in ``modes``; all_modes has the six with it applied.
    assert list(s.modes) == ["deep_dive"]
    assert list(s.all_modes()) == list(BUILTIN_MODES)
    assert s.all_modes()["voice_chat"] is BUILTIN_MODES["voice_chat"]


def test_config_table_changes_a_builtin_mode_top_level_key(tmp_path: Path) -> None:
    s = load(tmp_path, '[modes.active_monitor]\nevery_s = 0.5\nwatch = "a cat on the table"\n')
    monitor = s.all_modes()["active_monitor"]
    assert (monitor.every_s, monitor.watch) == (0.5, "a cat on the table")
    assert (monitor.trigger, monitor.inputs, monitor.label) == (
        "continuous",
        ["audio", "text", "video"],
        "Active monitor",
    )


def test_config_defines_a_new_mode_with_a_derived_label(tmp_path: Path) -> None:
    toml = (
        'mode = "french_tutor"\n'
        "[modes.french_tutor]\n"
        'steps = ["stt", "llm", "tts"]\n'
        'llm = { system_prompt = "You are a patient French tutor." }\n'
    )
    s = load(tmp_path, toml)
    tutor = s.all_modes()["french_tutor"]
    assert s.mode == "french_tutor"
    assert tutor.label == "French tutor"
    assert tutor.inputs == ["audio", "text"]  # defaults: a chat mode
    assert tutor.llm == LLMOverride(system_prompt="You are a patient French tutor.")
    assert list(s.all_modes()) == [*BUILTIN_MODES, "french_tutor"]


def test_a_builtin_mode_can_be_made_inconsistent_only_with_an_error(tmp_path: Path) -> None:
    # Narrowing visual_chat's inputs keeps its stt step: refused, naming the mode.
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[modes.visual_chat]\ninputs = ["text", "image"]\n')
    assert err.value.key == "modes.visual_chat"
    assert "step 'stt' needs 'audio' in inputs" in str(err.value)


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        (
            "[modes.deep_dive.llm]\ntemperature = 5\n",
            "modes.deep_dive.llm.temperature",
            "less than or equal to 2",
        ),
        (
            "[modes.deep_dive.llm]\nmax_tokens = 0\n",
            "modes.deep_dive.llm.max_tokens",
            "greater than or equal to 1",
        ),
        ('[modes.router.router]\ntimeout_s = "soon"\n', "modes.router.router.timeout_s", "valid number"),
        ('[modes.custom]\ntrigger = "always"\n', "modes.custom.trigger", "'vad_gated'"),
        ('[modes.custom]\ninputs = ["text"]\nsteps = ["stt"]\n', "modes.custom", "needs 'audio' in inputs"),
        (
            '[modes.custom]\ninputs = ["audio"]\ntrigger = "continuous"\nsteps = ["stt", "llm"]\n',
            "modes.custom",
            "add 'video' to inputs",
        ),
    ],
)
def test_bad_mode_values_name_the_dotted_key_and_the_fix(
    tmp_path: Path, toml: str, key: str, message: str
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert err.value.key == key
    text = str(err.value)
    assert text.startswith(f"invalid setting {key}")
    assert message in text
    assert f"config file {path}" in text
    env_name = "ARIA_" + "__".join(p.upper() for p in key.split("."))
    assert env_name in (err.value.fix or "")


def test_bad_mode_value_fix_names_the_toml_spelling(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[modes.deep_dive.llm]\ntemperature = 5\n")
    assert "[modes.deep_dive.llm] temperature" in (err.value.fix or "")
    assert "ARIA_MODES__DEEP_DIVE__LLM__TEMPERATURE" in (err.value.fix or "")


def test_unknown_key_in_a_mode_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[modes.deep_dive]\ncolour = "red"\n')
    assert err.value.key == "modes.deep_dive.colour"
    assert str(err.value).startswith("unknown setting modes.deep_dive.colour")


def test_misspelt_key_in_a_mode_llm_table_points_at_that_table(tmp_path: Path) -> None:
    """A typo inside ``[modes.deep_dive.llm]`` must be fixed there, not in the main ``[llm]`` section."""
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[modes.deep_dive.llm]\ntemprature = 0.5\n")
    assert err.value.key == "modes.deep_dive.llm.temprature"
    fix = err.value.fix or ""
    assert "[modes.deep_dive.llm] temperature" in fix or "modes.deep_dive.llm.temperature" in fix, fix
    assert "ARIA_LLM__TEMPERATURE" not in fix


def test_unknown_mode_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, 'mode = "unknown"\n')
    assert err.value.key == "mode"
    text = str(err.value)
    assert "unknown mode 'unknown'" in text
    for name in BUILTIN_MODES:
        assert name in text
    with pytest.raises(ConfigError, match="french_tutor"):
        load(tmp_path, 'mode = "nope"\n[modes.french_tutor]\nsteps = ["llm"]\ninputs = ["text"]\n')


def test_unknown_mode_through_overrides_and_env() -> None:
    with pytest.raises(ConfigError, match="unknown mode 'dictation'"):
        load_settings(overrides={"mode": "dictation"}, env={})
    with pytest.raises(ConfigError, match="unknown mode 'dictation'"):
        load_settings(env={"ARIA_MODE": "dictation"})
    assert load_settings(env={"ARIA_MODE": "deep_dive"}).mode == "deep_dive"


# -- the environment -----------------------------------------------------------------------------------


def test_env_sets_one_key_of_a_builtin_mode() -> None:
    s = load_settings(env={"ARIA_MODES__DEEP_DIVE__LLM__OPTIONS": '{"model": "big"}'})
    deep = s.all_modes()["deep_dive"].llm
    assert deep is not None
    assert (deep.options, deep.system_prompt, deep.max_tokens) == ({"model": "big"}, DEEP_DIVE_PROMPT, 2048)
    s = load_settings(env={"ARIA_MODES__DEEP_DIVE__LLM__TEMPERATURE": "0.1"})
    deep = s.all_modes()["deep_dive"].llm
    assert deep is not None
    assert (deep.temperature, deep.max_tokens) == (0.1, 2048)
    s = load_settings(env={"ARIA_MODES__DEEP_DIVE__LLM__OPTIONS__MODEL": "big"})
    deep = s.all_modes()["deep_dive"].llm
    assert deep is not None
    assert deep.options == {"model": "big"}


def test_env_defines_a_mode_as_json_and_selects_it() -> None:
    env = {"ARIA_MODES__TUTOR": '{"steps": ["llm"], "inputs": ["text"]}', "ARIA_MODE": "tutor"}
    s = load_settings(env=env)
    assert s.mode == "tutor"
    assert s.all_modes()["tutor"] == ModeSpec(label="Tutor", inputs=["text"], steps=["llm"])
    s = load_settings(env={"ARIA_MODES": '{"quiet": {"steps": ["stt", "llm"]}}'})
    assert s.all_modes()["quiet"].steps == ["stt", "llm"]
    assert s.all_modes()["quiet"].label == "Quiet"


def test_env_merges_with_the_file_mode_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[modes.deep_dive.llm]\noptions = { model = "file" }\nmax_tokens = 4000\n')
    s = load_settings(path, env={"ARIA_MODES__DEEP_DIVE__LLM__OPTIONS__MODEL": "env"})
    deep = s.all_modes()["deep_dive"].llm
    assert deep is not None
    assert (deep.options, deep.max_tokens, deep.system_prompt) == ({"model": "env"}, 4000, DEEP_DIVE_PROMPT)


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={"ARIA_MODES__DEEP_DIVE__LLM__TEMPERATURE": "9"})
    assert err.value.key == "modes.deep_dive.llm.temperature"
    assert "environment variable ARIA_MODES__DEEP_DIVE__LLM__TEMPERATURE" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(env={"ARIA_MODES": "{not json"})
    assert err.value.key == "modes"
    assert "not valid JSON" in str(err.value)


# -- Settings.with_llm -----------------------------------------------------------------------------------


def test_with_llm_merges_options_and_leaves_the_original_untouched(tmp_path: Path) -> None:
    s = load(
        tmp_path, '[llm]\nbackend = "ollama"\noptions = { model = "small", host = "h" }\ntemperature = 0.6\n'
    )
    before = s.model_dump()
    override = LLMOverride(options={"model": "big"}, max_tokens=2048, system_prompt="Think hard.")
    deep = s.with_llm(override)
    assert deep is not s
    assert deep.llm.options == {"model": "big", "host": "h"}
    assert (deep.llm.max_tokens, deep.llm.system_prompt) == (2048, "Think hard.")
    assert (deep.llm.backend, deep.llm.temperature, deep.llm.fallback) == ("ollama", 0.6, s.llm.fallback)
    assert deep.stt == s.stt
    assert deep.tts == s.tts
    assert deep.mode == s.mode
    assert s.model_dump() == before
    assert s.llm.options == {"model": "small", "host": "h"}


def test_with_llm_without_changes_is_the_same_object() -> None:
    s = load_settings(env={})
    assert s.with_llm(None) is s
    assert s.with_llm(LLMOverride()) is s


def test_with_llm_sets_a_zero_temperature_and_a_backend() -> None:
    s = load_settings(env={})
    changed = s.with_llm(LLMOverride(temperature=0.0, backend="openai", fallback=[]))
    assert (changed.llm.temperature, changed.llm.backend, changed.llm.fallback) == (0.0, "openai", [])
    assert (s.llm.temperature, s.llm.backend, s.llm.fallback) == (0.7, "auto", ["builtin"])
