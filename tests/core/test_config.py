"""Configuration: sources and their precedence, error messages, hot updates, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from aria.core import config
from aria.core.config import HOT_RELOADABLE, Settings, apply_update, load_settings, redacted
from aria.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aria.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings(env={"XDG_DATA_HOME": "/data"})
    assert s.mode == "voice_chat"
    assert s.data_dir == Path("/data/aria")
    assert s.log.level == "INFO"
    assert s.log.json_lines is False
    assert s.vad.backend == "auto"
    assert s.stt.fallback == ["pocketsphinx"]
    assert s.tts.fallback == ["espeak"]
    assert s.vad.threshold == 0.5
    assert s.vad.timeout_s == 1.0
    assert s.stt.timeout_s == 15.0
    assert s.llm.fallback == ["builtin"]
    assert s.llm.temperature == 0.7
    assert s.llm.max_tokens == 512
    assert s.llm.system_prompt.startswith("You are Aria")
    assert s.vision.backend == "none"
    assert s.tts.enabled is True
    assert s.tts.voice is None
    assert s.pipeline.max_chunk_chars == 220
    assert s.resilience.failure_threshold == 3
    assert s.server.port == 8765


def test_data_dir_without_xdg_is_under_home() -> None:
    assert load_settings(env={}).data_dir == Path.home() / ".local" / "share" / "aria"


def test_env_argument_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIA_MODE", "from_os_environ")
    monkeypatch.setenv("ARIA_NOT_A_SETTING", "1")
    assert load_settings(env={}).mode == "voice_chat"
    assert load_settings(env={"ARIA_MODE": "broadcast"}).mode == "broadcast"


def test_os_environ_is_the_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIA_LLM__MAX_TOKENS", "64")
    assert load_settings().llm.max_tokens == 64


def test_precedence_override_env_file_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[llm]\ntemperature = 0.2\nbackend = "file"\nmax_tokens = 100\n')
    env = {"ARIA_LLM__TEMPERATURE": "0.3", "ARIA_LLM__BACKEND": "env"}
    s = load_settings(path, overrides={"llm.temperature": 0.4}, env=env)
    assert s.llm.temperature == 0.4  # override beats env
    assert s.llm.backend == "env"  # env beats file
    assert s.llm.max_tokens == 100  # file beats default
    assert s.llm.timeout_s == 60.0  # default


def test_config_file_from_aria_config(tmp_path: Path) -> None:
    path = write(tmp_path, 'mode = "visual_chat"\n')
    assert load_settings(env={"ARIA_CONFIG": str(path)}).mode == "visual_chat"


def test_env_parsing_nesting_case_and_json() -> None:
    env = {
        "aria_llm__temperature": "1.5",
        "ARIA_LOG__LEVEL": "debug",
        "ARIA_TTS__ENABLED": "false",
        "ARIA_LLM__FALLBACK": '["builtin", "ollama"]',
        "ARIA_LLM__OPTIONS__N_CTX": "4096",
        "ARIA_LLM__OPTIONS__MODEL": "llama3",
        "ARIA_VAD": '{"threshold": 0.25}',
    }
    s = load_settings(env=env)
    assert s.llm.temperature == 1.5
    assert s.log.level == "DEBUG"
    assert s.tts.enabled is False
    assert s.llm.fallback == ["builtin", "ollama"]
    assert s.llm.options == {"n_ctx": 4096, "model": "llama3"}
    assert s.vad.threshold == 0.25


def test_env_option_merges_with_file_options(tmp_path: Path) -> None:
    path = write(tmp_path, '[llm.options]\nmodel = "a"\nhost = "h"\n')
    s = load_settings(path, env={"ARIA_LLM__OPTIONS__MODEL": "b"})
    assert s.llm.options == {"model": "b", "host": "h"}


def test_none_overrides_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, '[stt]\nlanguage = "en"\n')
    s = load_settings(path, overrides={"stt.language": None, "llm.backend": "ollama"}, env={})
    assert s.stt.language == "en"
    assert s.llm.backend == "ollama"


def assert_error(exc: pytest.ExceptionInfo[ConfigError], key: str | None, *needles: str) -> None:
    err = exc.value
    assert err.key == key
    assert err.fix
    for needle in needles:
        assert needle in str(err), (needle, str(err))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "nope.toml", env={})
    assert_error(exc, None, "nope.toml", "does not exist", "Fix:")
    assert isinstance(exc.value.__cause__, FileNotFoundError)


def test_toml_syntax_error_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[llm]\ntemperature = 0.2\nbackend = ollama\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, env={})
    assert_error(exc, "llm.backend", "not valid TOML", "line 3", "Fix:")


@pytest.mark.parametrize(
    ("toml", "env", "overrides", "key", "suggestion", "spelling"),
    [
        ("[llm]\ntemprature = 1\n", {}, {}, "llm.temprature", "llm.temperature", "ARIA_LLM__TEMPERATURE"),
        ("[tts]\nvoise = 'a'\n", {}, {}, "tts.voise", "tts.voice", "[tts] voice"),
        ("", {"ARIA_LLM__TEMPRATURE": "1"}, {}, "llm.temprature", "llm.temperature", "[llm] temperature"),
        ("", {"ARIA_MODEE": "x"}, {}, "modee", "mode", "ARIA_MODE "),
        ("", {"ARIA_LLM_TEMPERATURE": "1"}, {}, "llm_temperature", "llm.temperature", "[llm] temperature"),
        ("", {}, {"server.prot": 1}, "server.prot", "server.port", "ARIA_SERVER__PORT"),
        ("[lm]\nbackend = 'x'\n", {}, {}, "lm", "llm", "ARIA_LLM "),
    ],
)
def test_unknown_keys_suggest_the_closest(
    tmp_path: Path,
    toml: str,
    env: dict[str, str],
    overrides: dict[str, object],
    key: str,
    suggestion: str,
    spelling: str,
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as exc:
        load_settings(path, overrides=overrides, env=env)
    assert_error(exc, key, f"unknown setting {key}", f"did you mean {suggestion}?", spelling)


def test_unknown_key_inside_json_section() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"ARIA_LLM": '{"temprature": 1}'})
    assert_error(exc, "llm.temprature", "did you mean llm.temperature?", "ARIA_LLM")


@pytest.mark.parametrize(
    ("env", "key", "fix"),
    [
        (
            {"ARIA_LLM__TEMPERATURE": "3"},
            "llm.temperature",
            "set [llm] temperature to a number between 0 and 2, or ARIA_LLM__TEMPERATURE",
        ),
        (
            {"ARIA_LLM__TEMPERATURE": "warm"},
            "llm.temperature",
            "set [llm] temperature to a number between 0 and 2, or ARIA_LLM__TEMPERATURE",
        ),
        (
            {"ARIA_SERVER__PORT": "70000"},
            "server.port",
            "an integer between 1 and 65535, or ARIA_SERVER__PORT",
        ),
        ({"ARIA_VAD__MIN_SPEECH_MS": "-1"}, "vad.min_speech_ms", "an integer >= 0"),
        ({"ARIA_STT__TIMEOUT_S": "0"}, "stt.timeout_s", "a number > 0"),
        ({"ARIA_LLM__MAX_TOKENS": "0"}, "llm.max_tokens", "an integer >= 1"),
        ({"ARIA_PIPELINE__PREROLL_MS": "0"}, "pipeline.preroll_ms", "[pipeline] preroll_ms"),
        ({"ARIA_LOG__LEVEL": "verbose"}, "log.level", 'one of "DEBUG", "INFO", "WARNING", "ERROR"'),
        ({"ARIA_TTS__ENABLED": "perhaps"}, "tts.enabled", "true or false"),
        ({"ARIA_LLM__FALLBACK": "[1]"}, "llm.fallback", "a list of strings"),
        ({"ARIA_LLM__FALLBACK": "builtin"}, "llm.fallback", 'ARIA_LLM__FALLBACK=\'["a", "b"]\''),
        ({"ARIA_LLM__OPTIONS": "{oops"}, "llm.options", "[llm] options"),
    ],
)
def test_bad_values_name_key_and_fix(env: dict[str, str], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env=env)
    assert_error(exc, key, key, fix)
    assert exc.value.fix is not None
    assert fix in exc.value.fix
    assert exc.value.__cause__ is not None


def test_bad_value_message_says_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "[vad]\nthreshold = 1.5\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, env={})
    assert_error(
        exc, "vad.threshold", "got 1.5 from config file", "[vad] threshold to a number between 0 and 1"
    )


def test_section_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, "llm = 3\n"), env={})
    assert_error(exc, "llm", "set llm to a table, or ARIA_LLM")


def test_several_bad_values_are_all_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"ARIA_LLM__TEMPERATURE": "9", "ARIA_SERVER__PORT": "0"})
    assert "llm.temperature" in str(exc.value)
    assert "server.port" in str(exc.value)


def test_apply_update_returns_a_new_validated_copy() -> None:
    s = load_settings(env={})
    updated = apply_update(s, {"llm.temperature": 0.1, "tts.voice": "af_heart", "mode": "visual_chat"})
    assert (updated.llm.temperature, updated.tts.voice, updated.mode) == (0.1, "af_heart", "visual_chat")
    assert (s.llm.temperature, s.tts.voice, s.mode) == (0.7, None, "voice_chat")
    assert updated.llm.backend == s.llm.backend
    assert updated.data_dir == s.data_dir


def test_apply_update_does_not_reread_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(env={})
    monkeypatch.setenv("ARIA_LLM__BACKEND", "sneaky")
    monkeypatch.setenv("ARIA_LLM__OPTIONS__X", "1")
    updated = apply_update(s, {"llm.max_tokens": 10})
    assert updated.llm.backend == "auto"
    assert updated.llm.options == {}


def test_apply_update_rejects_keys_that_need_a_restart() -> None:
    with pytest.raises(ConfigError) as exc:
        apply_update(load_settings(env={}), {"llm.backend": "ollama"})
    assert_error(exc, "llm.backend", "restart to change it", "ARIA_LLM__BACKEND")


def test_apply_update_rejects_unknown_keys_and_bad_values() -> None:
    s = load_settings(env={})
    with pytest.raises(ConfigError) as exc:
        apply_update(s, {"llm.temprature": 1.0})
    assert_error(exc, "llm.temprature", "did you mean llm.temperature?")
    with pytest.raises(ConfigError) as exc:
        apply_update(s, {"llm.temperature": 5})
    assert_error(exc, "llm.temperature", "between 0 and 2")
    assert s.llm.temperature == 0.7


def test_hot_reloadable_keys_exist() -> None:
    s = load_settings(env={})
    for key in HOT_RELOADABLE:
        section, _, name = key.rpartition(".")
        assert hasattr(getattr(s, section) if section else s, name)


def test_redacted_masks_secrets_anywhere() -> None:
    s = load_settings(
        env={
            "ARIA_LLM__OPTIONS": '{"api_key": "sk-1", "apiKey": "k", "nested": {"Password": "p"}, '
            '"model": "m"}',
            "ARIA_TTS__OPTIONS__HF_TOKEN": "hf",
            "ARIA_STT__OPTIONS__CLIENT_SECRET": "cs",
        }
    )
    out = redacted(s)
    assert out["llm"]["options"] == {
        "api_key": "***",
        "apiKey": "***",
        "nested": {"Password": "***"},
        "model": "m",
    }
    assert out["tts"]["options"] == {"hf_token": "***"}
    assert out["stt"]["options"] == {"client_secret": "***"}
    assert out["llm"]["max_tokens"] == 512  # not a secret, despite the word
    assert out["llm"]["first_token_timeout_s"] == 15.0
    assert isinstance(out["data_dir"], str)
    assert s.llm.options["api_key"] == "sk-1"


def test_plain_settings_still_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIA_MODE", "broadcast")
    assert Settings().mode == "broadcast"


def test_all_is_complete() -> None:
    defined = {n for n, v in vars(config).items() if getattr(v, "__module__", None) == config.__name__}
    assert {n for n in defined if not n.startswith("_")} <= set(config.__all__)
    assert all(hasattr(config, n) for n in config.__all__)
