"""Tests for aria.types: validation of the core data types and the PCM16 conversions."""

from __future__ import annotations

import time

import numpy as np
import pytest

from aria.errors import InvalidInput
from aria.types import (
    SAMPLE_RATES,
    AudioChunk,
    ImageFrame,
    Message,
    MultimodalInput,
    Transcription,
    VisionEmbedding,
    float32_samples,
    int16_samples,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def pcm_values(payload: bytes) -> list[int]:
    return np.frombuffer(payload, dtype="<i2").tolist()


# -- AudioChunk: validation ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_audio_accepts_float32_and_int16(dtype: type) -> None:
    chunk = AudioChunk(np.zeros(160, dtype=dtype), 16000)
    assert chunk.data.dtype == dtype
    assert chunk.frames == 160
    assert chunk.channels == 1


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, np.int8, ">i2"])
def test_audio_rejects_other_dtypes(dtype: str | type) -> None:
    with pytest.raises(InvalidInput, match="dtype must be float32 or int16"):
        AudioChunk(np.zeros(16, dtype=dtype), 16000)


def test_audio_rejects_non_array_data() -> None:
    with pytest.raises(InvalidInput, match="numpy array, got list"):
        AudioChunk([0.0, 0.1], 16000)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", sorted(SAMPLE_RATES))
def test_audio_accepts_every_listed_sample_rate(rate: int) -> None:
    assert AudioChunk(np.zeros(4, dtype=np.int16), rate).sample_rate == rate


@pytest.mark.parametrize("rate", [0, -16000, 15999, 16001, 96000, 44000])
def test_audio_rejects_unsupported_sample_rate(rate: int) -> None:
    with pytest.raises(InvalidInput, match=f"unsupported sample rate {rate} Hz"):
        AudioChunk(np.zeros(4, dtype=np.int16), rate)


@pytest.mark.parametrize("channels", [0, -1, 9])
def test_audio_rejects_channel_count_out_of_range(channels: int) -> None:
    with pytest.raises(InvalidInput, match=rf"channels must be 1\.\.8, got {channels}"):
        AudioChunk(np.zeros((4, 2), dtype=np.int16), 16000, channels)


@pytest.mark.parametrize(
    ("shape", "channels"),
    [
        ((4, 1), 1),  # mono must be 1-D
        ((4, 2), 1),
        ((8,), 2),  # stereo must be 2-D
        ((4, 3), 2),
        ((4, 2, 1), 2),
        ((2, 480), 2),  # (channels, n) instead of (n, channels)
    ],
)
def test_audio_rejects_shape_that_does_not_match_channels(shape: tuple[int, ...], channels: int) -> None:
    with pytest.raises(InvalidInput, match="does not match"):
        AudioChunk(np.zeros(shape, dtype=np.float32), 16000, channels)


def test_audio_accepts_interleaved_stereo() -> None:
    chunk = AudioChunk(np.zeros((480, 2), dtype=np.int16), 48000, 2)
    assert chunk.frames == 480
    assert chunk.duration == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("frames", "rate", "seconds"),
    [(16000, 16000, 1.0), (320, 16000, 0.02), (0, 16000, 0.0), (441, 44100, 0.01), (12000, 24000, 0.5)],
)
def test_audio_duration_is_frames_over_rate(frames: int, rate: int, seconds: float) -> None:
    assert AudioChunk(np.zeros(frames, dtype=np.float32), rate).duration == pytest.approx(seconds)


def test_audio_stereo_duration_counts_frames_not_samples() -> None:
    chunk = AudioChunk(np.zeros((1600, 2), dtype=np.float32), 16000, 2)
    assert chunk.duration == pytest.approx(0.1)


def test_audio_timestamp_defaults_to_monotonic_now() -> None:
    before = time.monotonic()
    chunk = AudioChunk(np.zeros(4, dtype=np.int16), 16000)
    after = time.monotonic()
    assert before <= chunk.timestamp <= after


def test_audio_is_frozen() -> None:
    chunk = AudioChunk(np.zeros(4, dtype=np.int16), 16000)
    with pytest.raises(AttributeError):
        chunk.sample_rate = 8000  # type: ignore[misc]


# -- AudioChunk: PCM16 ---------------------------------------------------------------------------


def test_from_pcm16_decodes_little_endian_mono() -> None:
    payload = np.array([0, 1, -1, 32767, -32768], dtype="<i2").tobytes()
    chunk = AudioChunk.from_pcm16(payload, 16000)
    assert chunk.data.dtype == np.int16
    assert chunk.data.tolist() == [0, 1, -1, 32767, -32768]
    assert chunk.channels == 1
    assert chunk.frames == 5


def test_from_pcm16_reads_explicit_little_endian_bytes() -> None:
    # 0x0102 little-endian is b"\x02\x01"; -2 is b"\xfe\xff".
    chunk = AudioChunk.from_pcm16(b"\x02\x01\xfe\xff", 8000)
    assert chunk.data.tolist() == [0x0102, -2]
    assert chunk.sample_rate == 8000


def test_from_pcm16_deinterleaves_stereo_frames() -> None:
    payload = np.array([1, -1, 2, -2, 3, -3], dtype="<i2").tobytes()
    chunk = AudioChunk.from_pcm16(payload, 48000, channels=2)
    assert chunk.data.shape == (3, 2)
    assert chunk.data[:, 0].tolist() == [1, 2, 3]
    assert chunk.data[:, 1].tolist() == [-1, -2, -3]
    assert chunk.frames == 3


def test_from_pcm16_passes_keyword_fields_through() -> None:
    chunk = AudioChunk.from_pcm16(b"\x00\x00", 16000, timestamp=12.5, is_speech=True)
    assert chunk.timestamp == 12.5
    assert chunk.is_speech is True


@pytest.mark.parametrize("size", [1, 3, 321])
def test_from_pcm16_rejects_odd_byte_count(size: int) -> None:
    with pytest.raises(InvalidInput, match=f"PCM16 payload of {size} bytes is not a whole number of 2-byte"):
        AudioChunk.from_pcm16(b"\x00" * size, 16000)


def test_from_pcm16_rejects_partial_stereo_frame() -> None:
    # 6 bytes = 3 samples: a whole number of samples but not of 4-byte stereo frames.
    with pytest.raises(InvalidInput, match="not a whole number of 4-byte frames"):
        AudioChunk.from_pcm16(b"\x00" * 6, 16000, channels=2)


@pytest.mark.parametrize("channels", [0, -2, 9])
def test_from_pcm16_rejects_bad_channel_count_as_invalid_input(channels: int) -> None:
    with pytest.raises(InvalidInput, match=r"channels must be 1\.\.8"):
        AudioChunk.from_pcm16(b"\x00" * 36, 16000, channels=channels)


def test_from_pcm16_rejects_bad_sample_rate() -> None:
    with pytest.raises(InvalidInput, match="unsupported sample rate"):
        AudioChunk.from_pcm16(b"\x00\x00", 12345)


def test_from_pcm16_empty_payload_is_an_empty_chunk() -> None:
    chunk = AudioChunk.from_pcm16(b"", 16000)
    assert chunk.frames == 0
    assert chunk.to_pcm16() == b""


def test_int16_pcm_round_trip_is_exact() -> None:
    rng = np.random.default_rng(7)
    samples = rng.integers(-32768, 32768, size=(257, 2), dtype=np.int16)
    payload = samples.astype("<i2").tobytes()
    chunk = AudioChunk.from_pcm16(payload, 24000, channels=2)
    assert chunk.to_pcm16() == payload
    np.testing.assert_array_equal(chunk.data, samples)


def test_float_to_pcm16_scales_by_32767() -> None:
    chunk = AudioChunk(f32(0.0, 1.0, -1.0, 0.5, -0.5), 16000)
    assert pcm_values(chunk.to_pcm16()) == [0, 32767, -32767, 16383, -16383]


def test_to_pcm16_clips_out_of_range_floats() -> None:
    chunk = AudioChunk(f32(2.0, -3.5, 1.0001, -1.0001, 1e9, -1e9), 16000)
    assert pcm_values(chunk.to_pcm16()) == [32767, -32767, 32767, -32767, 32767, -32767]


def test_to_pcm16_maps_non_finite_samples_into_range() -> None:
    chunk = AudioChunk(f32(np.inf, -np.inf, np.nan, 0.25), 16000)
    values = pcm_values(chunk.to_pcm16())  # no RuntimeWarning (warnings are errors here)
    assert values == [32767, -32767, 0, 8191]


def test_to_pcm16_does_not_modify_the_chunk() -> None:
    data = f32(2.0, -2.0)
    chunk = AudioChunk(data, 16000)
    chunk.to_pcm16()
    assert chunk.data.tolist() == [2.0, -2.0]


def test_to_pcm16_of_stereo_float_is_interleaved() -> None:
    data = np.array([[0.5, -0.5], [1.0, -1.0]], dtype=np.float32)
    chunk = AudioChunk(data, 16000, 2)
    assert pcm_values(chunk.to_pcm16()) == [16383, -16383, 32767, -32767]


def test_float_pcm16_round_trip_is_within_one_step() -> None:
    rng = np.random.default_rng(3)
    data = rng.uniform(-1.0, 1.0, size=1000).astype(np.float32)
    back = AudioChunk.from_pcm16(AudioChunk(data, 16000).to_pcm16(), 16000).as_float32()
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, data, atol=2.0 / 32768)


def test_as_float32_scales_int16_by_32768() -> None:
    chunk = AudioChunk(np.array([0, 16384, -32768, 32767], dtype=np.int16), 16000)
    values = chunk.as_float32()
    assert values.dtype == np.float32
    assert values.tolist() == [0.0, 0.5, -1.0, pytest.approx(32767 / 32768)]


def test_as_float32_returns_float_data_itself() -> None:
    data = f32(0.1, 0.2)
    assert AudioChunk(data, 16000).as_float32() is data


# -- AudioChunk: to_mono --------------------------------------------------------------------------


def test_to_mono_of_mono_is_the_same_chunk() -> None:
    chunk = AudioChunk(f32(0.1, 0.2), 16000)
    assert chunk.to_mono() is chunk


def test_to_mono_averages_channels_and_keeps_metadata() -> None:
    data = np.array([[0.5, -0.5], [1.0, 0.0], [0.25, 0.75]], dtype=np.float32)
    chunk = AudioChunk(data, 48000, 2, timestamp=3.0, is_speech=False)
    mono = chunk.to_mono()
    assert mono.channels == 1
    assert mono.data.shape == (3,)
    assert mono.data.dtype == np.float32
    assert mono.data.tolist() == [0.0, 0.5, 0.5]
    assert (mono.sample_rate, mono.timestamp, mono.is_speech) == (48000, 3.0, False)
    assert mono.duration == chunk.duration


def test_to_mono_of_int16_converts_to_float() -> None:
    data = np.array([[16384, 16384], [-32768, 0], [8192, -8192]], dtype=np.int16)
    mono = AudioChunk(data, 16000, 2).to_mono()
    assert mono.data.dtype == np.float32
    assert mono.data.tolist() == [0.5, -0.5, 0.0]


def test_to_mono_of_four_channels() -> None:
    data = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    mono = AudioChunk(data, 16000, 4).to_mono()
    assert mono.data.tolist() == [pytest.approx(0.25)]


# -- ImageFrame -----------------------------------------------------------------------------------


def test_jpeg_bytes_are_accepted_and_kept() -> None:
    frame = ImageFrame(JPEG, "JPEG", 640, 480)
    assert frame.encoded is True
    assert frame.data == JPEG
    assert (frame.width, frame.height) == (640, 480)


def test_png_bytes_are_accepted_with_unknown_size() -> None:
    frame = ImageFrame(PNG, "PNG")
    assert frame.encoded is True
    assert (frame.width, frame.height) == (0, 0)


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_encoded_bytes_like_data_is_stored_as_bytes(wrap: type) -> None:
    frame = ImageFrame(wrap(JPEG), "JPEG")
    assert type(frame.data) is bytes
    assert frame.data == JPEG
    assert frame.encoded is True


@pytest.mark.parametrize(
    ("payload", "fmt", "message"),
    [
        (PNG, "JPEG", "not a JPEG"),
        (b"\xff\xd8", "JPEG", "not a JPEG"),  # truncated marker
        (b"", "JPEG", "not a JPEG"),
        (JPEG, "PNG", "not a PNG"),
        (b"\x89PNG\r\n", "PNG", "not a PNG"),
        (b"", "PNG", "not a PNG"),
    ],
)
def test_encoded_bytes_need_the_right_magic(payload: bytes, fmt: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ImageFrame(payload, fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["RGB", "BGR", "RGBA", "GRAY"])
def test_encoded_bytes_need_an_encoded_format(fmt: str) -> None:
    with pytest.raises(InvalidInput, match=f"need format JPEG or PNG, got {fmt}"):
        ImageFrame(JPEG, fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize(("width", "height"), [(-1, 10), (10, -1)])
def test_encoded_bytes_reject_negative_size(width: int, height: int) -> None:
    with pytest.raises(InvalidInput, match="must not be negative"):
        ImageFrame(JPEG, "JPEG", width, height)


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [("RGB", (4, 6, 3)), ("BGR", (4, 6, 3)), ("RGBA", (4, 6, 4)), ("GRAY", (4, 6))],
)
def test_array_images_take_size_from_the_array(fmt: str, shape: tuple[int, ...]) -> None:
    frame = ImageFrame(np.zeros(shape, dtype=np.uint8), fmt)  # type: ignore[arg-type]
    assert frame.encoded is False
    assert (frame.width, frame.height) == (6, 4)


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        ("RGB", (4, 6)),
        ("RGB", (4, 6, 4)),
        ("RGB", (4, 6, 1)),
        ("BGR", (4, 6, 4)),
        ("RGBA", (4, 6, 3)),
        ("RGBA", (4, 6)),
        ("GRAY", (4, 6, 1)),
        ("GRAY", (4, 6, 3)),
        ("GRAY", (24,)),
    ],
)
def test_array_images_reject_shapes_that_do_not_fit_the_format(fmt: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match="image must have shape"):
        ImageFrame(np.zeros(shape, dtype=np.uint8), fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_array_images_reject_encoded_formats(fmt: str) -> None:
    with pytest.raises(InvalidInput, match=f"need format RGB, BGR, RGBA or GRAY, got {fmt}"):
        ImageFrame(np.zeros((2, 2, 3), dtype=np.uint8), fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int8])
def test_array_images_must_be_uint8(dtype: type) -> None:
    with pytest.raises(InvalidInput, match="dtype must be uint8"):
        ImageFrame(np.zeros((2, 2, 3), dtype=dtype))


def test_image_data_must_be_bytes_or_array() -> None:
    with pytest.raises(InvalidInput, match="bytes or a numpy array, got str"):
        ImageFrame("not an image")  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "shape"), [("RGB", (0, 5, 3)), ("RGB", (5, 0, 3)), ("GRAY", (0, 0))])
def test_empty_array_images_are_rejected(fmt: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match="must not be empty"):
        ImageFrame(np.zeros(shape, dtype=np.uint8), fmt)  # type: ignore[arg-type]


def test_declared_size_matching_the_array_is_accepted() -> None:
    frame = ImageFrame(np.zeros((3, 5, 3), dtype=np.uint8), width=5, height=3)
    assert (frame.width, frame.height) == (5, 3)


def test_declared_width_only_is_checked_and_height_filled_in() -> None:
    frame = ImageFrame(np.zeros((3, 5, 3), dtype=np.uint8), width=5)
    assert (frame.width, frame.height) == (5, 3)


@pytest.mark.parametrize(("width", "height"), [(3, 5), (6, 3), (5, 4), (0, 4), (4, 0)])
def test_declared_size_mismatch_is_rejected(width: int, height: int) -> None:
    with pytest.raises(InvalidInput, match=rf"declared size {width}x{height} does not match array 5x3"):
        ImageFrame(np.zeros((3, 5, 3), dtype=np.uint8), width=width, height=height)


def test_image_frames_get_distinct_ids() -> None:
    frames = [ImageFrame(JPEG, "JPEG") for _ in range(50)]
    ids = {f.frame_id for f in frames}
    assert len(ids) == 50
    assert all(len(i) == 32 for i in ids)


# -- Transcription --------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.0, 0.5, 1.0])
def test_transcription_confidence_bounds_are_inclusive(confidence: float) -> None:
    assert Transcription("hi", confidence=confidence).confidence == confidence


@pytest.mark.parametrize("confidence", [-0.01, 1.01, -1.0, 2.0, float("nan"), float("inf")])
def test_transcription_confidence_out_of_range_is_rejected(confidence: float) -> None:
    with pytest.raises(InvalidInput, match=r"confidence must be within \[0, 1\]"):
        Transcription("hi", confidence=confidence)


def test_transcription_defaults() -> None:
    t = Transcription("hello")
    assert (t.is_final, t.confidence, t.language, t.alternatives) == (False, 1.0, None, ())


# -- VisionEmbedding ------------------------------------------------------------------------------


def test_embedding_dimension() -> None:
    emb = VisionEmbedding(np.ones(512, dtype=np.float32), "img-1")
    assert emb.dimension == 512
    assert emb.image_id == "img-1"
    assert dict(emb.metadata) == {}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_embedding_rejects_non_finite_values(bad: float) -> None:
    vector = np.zeros(8, dtype=np.float32)
    vector[5] = bad
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        VisionEmbedding(vector, "img")


@pytest.mark.parametrize("vector", [np.zeros(0, np.float32), np.zeros((2, 4), np.float32), np.float32(1.0)])
def test_embedding_must_be_non_empty_1d(vector: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match="non-empty 1-D"):
        VisionEmbedding(vector, "img")


def test_embedding_must_be_an_array() -> None:
    with pytest.raises(InvalidInput, match="non-empty 1-D numpy array"):
        VisionEmbedding([0.1, 0.2], "img")  # type: ignore[arg-type]


def test_default_metadata_is_read_only() -> None:
    emb = VisionEmbedding(np.ones(2, dtype=np.float32), "img")
    with pytest.raises(TypeError):
        emb.metadata["x"] = 1  # type: ignore[index]


# -- Message --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_message_accepts_known_roles(role: str) -> None:
    message = Message(role, "hi")  # type: ignore[arg-type]
    assert message.role == role
    assert (message.modality, message.interrupted, message.images) == ("text", False, ())


@pytest.mark.parametrize("role", ["User", "bot", "", "function"])
def test_message_rejects_unknown_roles(role: str) -> None:
    with pytest.raises(InvalidInput, match=f"unknown message role {role!r}"):
        Message(role, "hi")  # type: ignore[arg-type]


@pytest.mark.parametrize("modality", ["text", "audio", "image"])
def test_message_accepts_known_modalities(modality: str) -> None:
    assert Message("user", "x", modality).modality == modality  # type: ignore[arg-type]


def test_message_rejects_unknown_modality() -> None:
    with pytest.raises(InvalidInput, match="unknown message modality 'video'"):
        Message("user", "x", "video")  # type: ignore[arg-type]


def test_message_timestamp_is_wall_clock() -> None:
    before = time.time()
    message = Message("user", "x")
    assert before <= message.timestamp <= time.time()


# -- MultimodalInput ------------------------------------------------------------------------------


def test_multimodal_input_needs_some_content() -> None:
    with pytest.raises(InvalidInput, match="needs text, an image or an embedding"):
        MultimodalInput()


def test_multimodal_input_with_only_history_or_prompt_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="needs text"):
        MultimodalInput(history=(Message("user", "earlier"),), system_prompt="be brief")


def test_multimodal_input_with_text() -> None:
    assert MultimodalInput(text="what is this?").text == "what is this?"


def test_multimodal_input_with_only_an_image() -> None:
    frame = ImageFrame(JPEG, "JPEG")
    assert MultimodalInput(images=(frame,)).images == (frame,)


def test_multimodal_input_with_only_an_embedding() -> None:
    emb = VisionEmbedding(np.ones(4, dtype=np.float32), "img")
    assert MultimodalInput(vision_embedding=emb).vision_embedding is emb


def test_int16_and_float32_samples_convert_both_ways_as_the_wire_does() -> None:
    pcm = int16_samples(f32(0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, float("nan")))
    assert pcm.dtype == np.dtype("<i2")
    assert pcm.tolist() == [0, 16383, -16383, 32767, -32767, 32767, -32767, 0]  # clipped; NaN is silence
    ints = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    assert int16_samples(ints).tolist() == ints.tolist()
    back = float32_samples(ints)
    assert back.dtype == np.float32
    assert back.tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    floats = f32(0.25)
    assert float32_samples(floats) is floats  # already float32: a view, no copy
    # The chunk's own conversion is the same one.
    chunk = AudioChunk(f32(0.5, float("nan"), 4.0), 16000)
    assert pcm_values(chunk.to_pcm16()) == [16383, 0, 32767]
