"""Word marks from the TTS engines (AudioChunk.words): espeak-ng's word events on real synthesis, checked
against the audio envelope; Kokoro and Piper on the tiny test models; the shaper's placement of words
through trimmed silence and pauses."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest

from aria.engines.tts.espeak import EspeakTTS
from aria.engines.tts.espeak_lib import espeak_available
from aria.engines.tts.textprep import ShapingOptions, SpeechShaper, labelled, phoneme_words
from aria.types import AudioChunk, WordMark

SURE = "Sure, here is the answer to your question."


def placed(chunks: list[AudioChunk]) -> list[WordMark]:
    """Every chunk's words, moved to the time in the whole audio."""
    out: list[WordMark] = []
    at = 0.0
    for chunk in chunks:
        out += [w.shifted(at) for w in chunk.words]
        at += chunk.duration
    return out


def onsets_after_pauses(audio: npt.NDArray[np.float32], rate: int, pause_s: float = 0.06) -> list[float]:
    """Where the energy comes back after at least ``pause_s`` of quiet (5 ms frames, -40 dB re peak)."""
    frame = rate // 200
    count = audio.size // frame
    rms = np.sqrt((audio[: count * frame].reshape(count, frame) ** 2).mean(axis=1))
    loud = rms > np.max(rms) * 10 ** (-40 / 20)
    onsets: list[float] = []
    quiet = 0
    for i, is_loud in enumerate(loud):
        if is_loud:
            if quiet * 0.005 >= pause_s:
                onsets.append(i * 0.005)
            quiet = 0
        else:
            quiet += 1
    return onsets


espeak = pytest.mark.skipif(not espeak_available()[0], reason="espeakng-loader is not installed")


@espeak
async def test_espeak_marks_every_word_in_order_inside_the_audio() -> None:
    engine = EspeakTTS()
    for text in (SURE, "Well. After a long pause, the next sentence; and then: the end!"):
        chunks = [c async for c in engine.synthesize(text)]
        words = placed(chunks)
        total = sum(c.duration for c in chunks)
        assert [w.text for w in words] == text.split()
        starts = [w.start_s for w in words]
        assert starts == sorted(starts)
        assert len(set(starts)) == len(starts)
        assert all(0 <= w.start_s < total and w.end_s == w.start_s for w in words)
        for chunk in chunks:  # a chunk carries the words that start in it
            assert all(0 <= w.start_s < chunk.duration for w in chunk.words)


@espeak
@pytest.mark.parametrize("rate", [None, 16000])
async def test_espeak_word_starts_land_on_the_energy_after_a_pause(rate: int | None) -> None:
    engine = EspeakTTS(EspeakTTS.Config(sample_rate=rate))
    text = "Sure, here it is. Then, after that; we go on: to the end."
    chunks = [c async for c in engine.synthesize(text)]
    sample_rate = chunks[0].sample_rate
    audio = np.concatenate([c.as_float32() for c in chunks])
    words = placed(chunks)
    onsets = onsets_after_pauses(audio, sample_rate)
    # The words right after a punctuation pause: each starts within 60 ms of an onset of energy.
    after_pause = [w for prev, w in itertools.pairwise(words) if prev.text[-1] in ",.;:"]
    assert len(after_pause) == 5
    errors = [min(abs(w.start_s - o) for o in onsets) for w in after_pause]
    assert max(errors) < 0.06, (errors, [w.start_s for w in after_pause], onsets)
    assert words[0].start_s == pytest.approx(0.0, abs=0.01)  # leading silence is trimmed


@espeak
async def test_espeak_numbers_and_markup() -> None:
    engine = EspeakTTS()
    chunks = [c async for c in engine.synthesize("It costs **42** dollars.")]
    assert [w.text for w in placed(chunks)] == ["It", "costs", "42", "2", "dollars."]  # forty two


def test_the_shaper_moves_words_with_the_audio() -> None:
    rate = 16000
    shaper = SpeechShaper(rate, ShapingOptions(block_ms=20))
    tone = (0.5 * np.sin(np.arange(rate // 2) * 0.1)).astype(np.float32)
    silence = np.zeros(rate // 4, np.float32)
    # Sentence 1: 0.25 s of leading silence (trimmed), a word at 0.25 s and one at 0.5 s.
    shaper.add_words([WordMark("one", 0.25, 0.5), WordMark("two", 0.5, 0.75)])
    blocks = shaper.push(np.concatenate([silence, tone, silence]))
    blocks += shaper.pause(100)
    # Sentence 2, its words given before its audio, relative to it.
    shaper.add_words([WordMark("three", 0.25, 0.75)])
    blocks += shaper.push(np.concatenate([silence, tone]))
    blocks += shaper.finish(0)
    chunks = [AudioChunk(b, rate, words=w) for b, w in shaper.marked(blocks)]
    words = placed(chunks)
    assert [w.text for w in words] == ["one", "two", "three"]
    preroll = 0.005
    assert words[0].start_s == pytest.approx(preroll, abs=1e-3)
    assert words[1].start_s == pytest.approx(preroll + 0.25, abs=1e-3)
    # After the first sentence's kept audio (0.5 s + preroll + 10 ms tail) and the 100 ms pause.
    second = preroll + 0.5 + 0.010 + 0.1
    assert words[2].start_s == pytest.approx(second + preroll, abs=2e-3)
    assert words[2].end_s - words[2].start_s == pytest.approx(0.5, abs=1e-3)


# -- Kokoro and Piper ------------------------------------------------------------------------------


def test_phoneme_words_and_labels() -> None:
    timed = [("^", 0.0, 0.1), ("h", 0.1, 0.2), ("ɛ", 0.2, 0.3), (",", 0.3, 0.4), (" ", 0.4, 0.5)]
    timed += [("j", 0.5, 0.6), ("ʊ", 0.6, 0.7), (" ", 0.7, 0.8), (".", 0.8, 0.9), ("$", 0.9, 1.0)]
    words = phoneme_words(timed)
    assert words == [WordMark("hɛ", 0.1, 0.3), WordMark("jʊ", 0.5, 0.7)]
    assert [w.text for w in labelled(words, "Hey, you.")] == ["Hey,", "you."]
    assert labelled(words, "Hey there you.") == words


async def test_kokoro_tiny_model_gives_marks_or_none(tmp_path: Path) -> None:
    pytest.importorskip("kokoro_onnx")
    from aria.engines.tts.kokoro import KokoroTTS
    from tests.engines.test_tts_kokoro_piper import tiny_kokoro

    tiny_kokoro(tmp_path / "models" / "kokoro")
    engine = KokoroTTS(KokoroTTS.Config(data_dir=tmp_path, voice="af_test"))
    await engine.start()
    chunks = [c async for c in engine.synthesize("Hello there, how are you?")]
    words = placed(chunks)
    # The tiny model reports no durations: no marks, and the pipeline splits the clause by characters.
    assert not engine._kokoro.has_timings
    assert words == []
    await engine.aclose()


async def test_piper_tiny_voice_gives_marks_or_none(tmp_path: Path) -> None:
    pytest.importorskip("piper")
    from aria.engines.tts.piper import PiperTTS
    from tests.engines.test_tts_kokoro_piper import tiny_piper

    model = tiny_piper(tmp_path, rate=16000)
    engine = PiperTTS(PiperTTS.Config(model_path=model))
    await engine.start()
    chunks = [c async for c in engine.synthesize("Hello there. How are you today?")]
    total = sum(c.duration for c in chunks)
    words = placed(chunks)
    if words:  # a voice with alignments
        assert [w.text for w in words] == ["Hello", "there.", "How", "are", "you", "today?"]
        assert all(0 <= w.start_s <= w.end_s <= total for w in words)
    await engine.aclose()


def test_piper_alignments_become_words() -> None:
    pytest.importorskip("piper")
    from aria.engines.tts.piper import _sentence_words

    rate = 1000
    alignments = [SimpleNamespace(phoneme=p, num_samples=n) for p, n in [("^", 50), ("h", 100), ("i", 100)]]
    alignments += [SimpleNamespace(phoneme=p, num_samples=n) for p, n in [(" ", 20), ("j", 80), (".", 30)]]
    words = _sentence_words(SimpleNamespace(phoneme_alignments=alignments), rate)
    assert words == [WordMark("hi", 0.05, 0.25), WordMark("j", 0.27, 0.35)]
    assert _sentence_words(SimpleNamespace(phoneme_alignments=None), rate) == []
