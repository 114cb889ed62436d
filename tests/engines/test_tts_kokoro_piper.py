"""KokoroTTS and PiperTTS: the missing-model paths, configuration, and the real kokoro-onnx / piper-tts
loading and synthesis code run on tiny ONNX models built here at test time.

The tiny models have the real models' inputs and outputs (Kokoro: ``input_ids``, ``style``, ``speed`` ->
``waveform``; Piper: ``input``, ``input_lengths``, ``scales`` [, ``sid``] -> ``output``) and turn each
token into 256 or 600 samples of a tone whose pitch depends on the token (and the speaker), so the
packages' phonemisation, tokenisation, session and post-processing code all runs for real.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from aria.core.aio import closing_stream
from aria.engines.base import TTS
from aria.engines.registry import default_registry
from aria.engines.tts.kokoro import MODEL_FILE, VOICES_FILE, KokoroTTS
from aria.engines.tts.piper import DEFAULT_VOICE, PiperTTS
from aria.errors import ConfigError, EngineUnavailable, InvalidInput
from aria.types import AudioChunk

Audio = npt.NDArray[np.float32]


# -- tiny models -------------------------------------------------------------------------------------


def tone_model(
    path: Path, *, ids: str, extra: list[tuple[str, int, list[int | str]]], output: str, rank3: bool, hop: int
) -> None:
    """An ONNX graph: every token id becomes ``hop`` samples of a tone at 300 Hz x (1 + id / 64 + sid / 2)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    has_sid = any(name == "sid" for name, _, _ in extra)
    nodes = [
        helper.make_node("Cast", [ids], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids_f", "axis2"], ["ids_3"]),
        helper.make_node("Div", ["ids_3", "c64"], ["scaled"]),
        helper.make_node("Add", ["scaled", "one"], ["factor0"]),
    ]
    if has_sid:
        nodes += [
            helper.make_node("Cast", ["sid"], ["sid_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["sid_f", "half"], ["sid_half"]),
            helper.make_node("Add", ["factor0", "sid_half"], ["factor"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["factor0"], ["factor"]))
    nodes += [
        helper.make_node("Mul", ["factor", "ramp"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Mul", ["wave", "half"], ["loud"]),
        helper.make_node("Reshape", ["loud", "shape"], [output]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        numpy_helper.from_array(np.array(64.0, np.float32), "c64"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array((2 * np.pi * 300 / 22050 * np.arange(hop)).astype(np.float32), "ramp"),
        numpy_helper.from_array(np.array([1, 1, -1] if rank3 else [-1], np.int64), "shape"),
    ]
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT64, [1, "n"])]
    inputs += [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in extra]
    out_shape: list[int | str] = [1, 1, "t"] if rank3 else ["t"]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)]
    graph = helper.make_graph(nodes, "tiny_tts", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def tiny_kokoro(folder: Path) -> tuple[Path, Path]:
    from onnx import TensorProto

    folder.mkdir(parents=True, exist_ok=True)
    model, voices = folder / MODEL_FILE, folder / VOICES_FILE
    extra: list[tuple[str, int, list[int | str]]] = [
        ("style", TensorProto.FLOAT, [1, 256]),
        ("speed", TensorProto.FLOAT, [1]),
    ]
    tone_model(model, ids="input_ids", extra=extra, output="waveform", rank3=False, hop=600)
    with voices.open("wb") as f:  # an .npz archive, like the real voices-v1.0.bin
        np.savez(f, af_test=np.zeros((510, 1, 256), np.float32), bm_other=np.ones((510, 1, 256), np.float32))
    return model, voices


def tiny_piper(folder: Path, *, rate: int = 16000, speakers: dict[str, int] | None = None) -> Path:
    from onnx import TensorProto
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / f"{DEFAULT_VOICE}.onnx"
    extra: list[tuple[str, int, list[int | str]]] = [
        ("input_lengths", TensorProto.INT64, [1]),
        ("scales", TensorProto.FLOAT, [3]),
    ]
    if speakers:
        extra.append(("sid", TensorProto.INT64, [1]))
    tone_model(model, ids="input", extra=extra, output="output", rank3=True, hop=256)
    config = {
        "audio": {"sample_rate": rate},
        "espeak": {"voice": "en-us"},
        "num_symbols": 256,
        "num_speakers": len(speakers or {}) or 1,
        "speaker_id_map": speakers or {},
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
        "phoneme_type": "espeak",
    }
    model.with_name(model.name + ".json").write_text(json.dumps(config), encoding="utf-8")
    return model


def joined(chunks: list[AudioChunk]) -> Audio:
    return np.concatenate([c.data for c in chunks])


def trailing_silence_s(audio: Audio, rate: int) -> float:
    loud = np.flatnonzero(np.abs(audio) > 10 ** (-50 / 20))
    return (audio.size - (int(loud[-1]) + 1)) / rate


def zero_crossings(audio: Audio) -> int:
    return int(np.count_nonzero(np.diff(np.signbit(audio[np.abs(audio) > 0.01]))))


async def speak(engine: KokoroTTS | PiperTTS, text: str, voice: str | None = None) -> list[AudioChunk]:
    return [chunk async for chunk in engine.synthesize(text, voice=voice)]


# -- Kokoro ------------------------------------------------------------------------------------------


def test_kokoro_check_names_the_missing_files(tmp_path: Path) -> None:
    config = KokoroTTS.Config(data_dir=tmp_path)
    model, voices = KokoroTTS.paths(config)
    assert model == tmp_path / "models" / "kokoro" / "kokoro-v1.0.onnx"
    assert voices == tmp_path / "models" / "kokoro" / "voices-v1.0.bin"
    availability = KokoroTTS.check(config)
    assert not availability.available
    assert availability.reason == f"Kokoro model files not found at {model}, {voices}"
    assert availability.fix == "run `aria models pull kokoro`"


async def test_kokoro_start_fails_fast_without_files(tmp_path: Path) -> None:
    engine = KokoroTTS(KokoroTTS.Config(data_dir=tmp_path))
    started = time.monotonic()
    with pytest.raises(
        EngineUnavailable, match=r"Kokoro model files not found at .*kokoro-v1\.0\.onnx"
    ) as info:
        await engine.start()
    assert time.monotonic() - started < 1.0
    assert "run `aria models pull kokoro`" in str(info.value)
    assert info.value.engine == "tts:kokoro"
    assert not info.value.retryable
    with pytest.raises(EngineUnavailable):  # synthesize starts the engine and fails the same way
        await speak(engine, "Hello.")


def test_kokoro_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        KokoroTTS.Config(speed=3.0)
    with pytest.raises(ValidationError):
        KokoroTTS.Config(model="x")  # type: ignore[call-arg]
    assert KokoroTTS.Config().voice == "af_heart"
    assert KokoroTTS().capabilities.sample_rate == 24000


def test_kokoro_through_the_registry(tmp_path: Path) -> None:
    registry = default_registry()
    engine = registry.create("tts:kokoro", {"data_dir": str(tmp_path), "voice": "bf_emma"})
    assert isinstance(engine, KokoroTTS)
    assert isinstance(engine, TTS)
    availability = registry.availability("tts:kokoro", {"data_dir": str(tmp_path)})
    assert not availability.available
    assert "aria models pull kokoro" in availability.fix


async def test_kokoro_tiny_model_end_to_end(tmp_path: Path) -> None:
    _model, _voices = tiny_kokoro(tmp_path / "models" / "kokoro")
    config = KokoroTTS.Config(data_dir=tmp_path, voice="af_test")
    assert KokoroTTS.check(config).available
    engine = KokoroTTS(config)
    await engine.start()
    assert engine.capabilities.voices == ("af_test", "bm_other")
    assert (await engine.health()).ok
    chunks = await speak(engine, "**Hello** there, how are you?")
    assert {c.sample_rate for c in chunks} == {24000}
    assert all(c.frames == 480 for c in chunks[:-1])
    audio = joined(chunks)
    assert 20 * np.log10(np.max(np.abs(audio))) == pytest.approx(-1.0, abs=0.3)
    assert trailing_silence_s(audio, 24000) == pytest.approx(0.2, abs=0.015)
    assert audio.size / 24000 > 0.5
    other = joined(await speak(engine, "Hello there, how are you?", voice="bm_other"))
    assert other.size > 0
    with pytest.raises(InvalidInput, match=r"unknown Kokoro voice 'af_nobody'.*af_test"):
        await speak(engine, "Hello.", voice="af_nobody")
    assert await speak(engine, "  🙂 ") == []
    await engine.aclose()


async def test_kokoro_rejects_a_configured_voice_the_file_lacks(tmp_path: Path) -> None:
    model, voices = tiny_kokoro(tmp_path / "k")
    engine = KokoroTTS(KokoroTTS.Config(model_path=model, voices_path=voices, voice="af_heart"))
    with pytest.raises(ConfigError, match="af_heart"):
        await engine.start()


async def test_kokoro_corrupt_model_is_unavailable(tmp_path: Path) -> None:
    _, voices = tiny_kokoro(tmp_path / "k")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    engine = KokoroTTS(KokoroTTS.Config(model_path=broken, voices_path=voices, voice="af_test"))
    with pytest.raises(EngineUnavailable, match="cannot load the Kokoro model"):
        await engine.start()


# -- Piper -------------------------------------------------------------------------------------------


def test_piper_check_names_the_missing_files(tmp_path: Path) -> None:
    config = PiperTTS.Config(data_dir=tmp_path)
    model, voice_config = PiperTTS.paths(config)
    assert model == tmp_path / "models" / "piper" / "en_US-lessac-medium.onnx"
    assert voice_config == tmp_path / "models" / "piper" / "en_US-lessac-medium.onnx.json"
    availability = PiperTTS.check(config)
    assert not availability.available
    assert availability.reason == f"Piper voice files not found at {model}, {voice_config}"
    assert availability.fix == "run `aria models pull piper`"


async def test_piper_start_fails_fast_without_files(tmp_path: Path) -> None:
    engine = PiperTTS(PiperTTS.Config(data_dir=tmp_path, voice="en_GB-alan-low"))
    assert engine.capabilities.sample_rate == 22050  # Piper's usual rate until the voice says otherwise
    started = time.monotonic()
    with pytest.raises(
        EngineUnavailable, match=r"Piper voice files not found at .*en_GB-alan-low\.onnx"
    ) as info:
        await engine.start()
    assert time.monotonic() - started < 1.0
    assert "run `aria models pull piper`" in str(info.value)


def test_piper_config_validation() -> None:
    with pytest.raises(ValidationError):
        PiperTTS.Config(length_scale=0)
    with pytest.raises(ValidationError):
        PiperTTS.Config(noise_scale=5)
    with pytest.raises(ValidationError):
        PiperTTS.Config(speed=1.0)  # type: ignore[call-arg]


async def test_piper_tiny_voice_end_to_end(tmp_path: Path) -> None:
    tiny_piper(tmp_path / "models" / "piper", rate=16000)
    config = PiperTTS.Config(data_dir=tmp_path)
    assert PiperTTS.check(config).available
    engine = PiperTTS(config)
    assert engine.capabilities.sample_rate == 16000  # read from the voice config before start
    await engine.start()
    assert engine.capabilities.voices == (DEFAULT_VOICE,)
    chunks = await speak(engine, "Hello there. How are you today?")
    assert {c.sample_rate for c in chunks} == {16000}
    assert all(c.frames == 320 for c in chunks[:-1])
    audio = joined(chunks)
    assert 20 * np.log10(np.max(np.abs(audio))) == pytest.approx(-1.0, abs=0.3)
    assert trailing_silence_s(audio, 16000) == pytest.approx(0.2, abs=0.015)
    # Piper speaks the two sentences separately: a sentence pause lies between them.
    silent = np.abs(audio) <= 10 ** (-50 / 20)
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))))[::2]
    assert max(runs[:-1]) / 16000 == pytest.approx(0.2, abs=0.015)
    clause = joined(await speak(engine, "Hello there,"))
    assert trailing_silence_s(clause, 16000) == pytest.approx(0.08, abs=0.015)
    assert await speak(engine, "Hello there.", voice=DEFAULT_VOICE)
    with pytest.raises(InvalidInput, match="unknown Piper voice 'someone'"):
        await speak(engine, "Hello.", voice="someone")
    assert await speak(engine, "") == []
    await engine.aclose()


async def test_piper_multi_speaker_voice(tmp_path: Path) -> None:
    model = tiny_piper(tmp_path, rate=22050, speakers={"low": 0, "high": 1})
    engine = PiperTTS(PiperTTS.Config(model_path=model, speaker="low"))
    await engine.start()
    assert engine.capabilities.voices == (DEFAULT_VOICE, "low", "high")
    low = joined(await speak(engine, "Hello there."))
    high = joined(await speak(engine, "Hello there.", voice="high"))
    assert low.size == pytest.approx(high.size, rel=0.02)
    assert zero_crossings(high) > 1.2 * zero_crossings(low)
    with pytest.raises(ConfigError, match="no speaker 'middle'"):
        await PiperTTS(PiperTTS.Config(model_path=model, speaker="middle")).start()


async def test_piper_consumer_stopping_early(tmp_path: Path) -> None:
    model = tiny_piper(tmp_path, rate=22050)
    engine = PiperTTS(PiperTTS.Config(model_path=model))
    await engine.start()
    text = " ".join(f"This is sentence {i}." for i in range(30))
    async with closing_stream(engine.synthesize(text)) as stream:
        first = await anext(stream)
    assert first.frames > 0
    assert await speak(engine, "Still working.")  # the engine is usable right after


async def test_piper_corrupt_voice_is_unavailable(tmp_path: Path) -> None:
    model = tiny_piper(tmp_path)
    model.write_bytes(b"garbage")
    with pytest.raises(EngineUnavailable, match="cannot load the Piper voice"):
        await PiperTTS(PiperTTS.Config(model_path=model)).start()
