"""The model files Aria's engine adapters need, where they come from and where they go.

Every entry names the engine that reads it, the files to fetch (the publisher's own URL on Hugging Face or
GitHub, pinned to a revision or release where the publisher has one, with the size and SHA-256 of that
exact file), and the path under :func:`~aria.engines.models.models_dir` the engine loads (``location``).
``aria models list`` shows them and ``aria models pull NAME`` fetches them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from aria.errors import InvalidInput

__all__ = ["CATALOG", "ModelEntry", "ModelFile", "ModelStatus", "find_entry"]

ModelStatus = Literal["bundled", "present", "partial", "missing"]


@dataclass(frozen=True, slots=True)
class ModelFile:
    url: str
    #: Where the file goes, relative to the models folder (POSIX separators).
    path: str
    #: Size in bytes and SHA-256 hex digest of the published file, when known.
    size: int | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        relative = PurePosixPath(self.path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"model file path must be relative and inside the models folder: {self.path!r}")

    def local_path(self, root: Path) -> Path:
        return root.joinpath(*PurePosixPath(self.path).parts)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    #: Engine kind (``stt``, ``llm``, ``tts``, ``vision``, ``vad``, ``turn``) and the engine that loads it.
    kind: str
    engine: str
    description: str
    files: tuple[ModelFile, ...] = ()
    #: The file or folder the engine loads, relative to the models folder ("" for bundled models).
    location: str = ""
    aliases: tuple[str, ...] = ()
    #: Shipped inside a Python package: nothing to download.
    bundled: bool = False

    @property
    def size(self) -> int | None:
        """Total download size in bytes, or None when a file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def local_path(self, root: Path) -> Path:
        return root.joinpath(*PurePosixPath(self.location).parts) if self.location else root

    def status(self, root: Path) -> ModelStatus:
        """``present`` when every file is there with its expected size (checksums are not read here)."""
        if self.bundled:
            return "bundled"
        complete = 0
        started = False
        for file in self.files:
            path = file.local_path(root)
            if path.is_file() and (file.size is None or path.stat().st_size == file.size):
                complete += 1
            elif path.exists() or path.with_name(path.name + ".part").exists():
                started = True
        if complete == len(self.files):
            return "present"
        return "partial" if complete or started else "missing"

    def local_size(self, root: Path) -> int:
        """Bytes of this model's files (and partial downloads) on disk now."""
        total = 0
        for file in self.files:
            path = file.local_path(root)
            for candidate in (path, path.with_name(path.name + ".part")):
                if candidate.is_file():
                    total += candidate.stat().st_size
        return total


_HF = "https://huggingface.co"
_WHISPER_BASE_EN = f"{_HF}/Systran/faster-whisper-base.en/resolve/3d3d5dee26484f91867d81cb899cfcf72b96be6c"
_WHISPER_SMALL = f"{_HF}/Systran/faster-whisper-small/resolve/536b0662742c02347bc0e980a01041f333bce120"
_KOKORO = "https://github.com/thewh1teagle/kokoro-onnx/releases/download/model-files-v1.0"
_PIPER = f"{_HF}/rhasspy/piper-voices/resolve/v1.0.0/en/en_US/lessac/medium"
_CLIP = f"{_HF}/Qdrant/clip-ViT-B-32-vision/resolve/e0c24ed0fa57fa3e4f97f30de74c51d944036ace"
# The revision is the one other projects pin for this file with this size and checksum (found in public
# sources, not checked against Hugging Face from here); the download is verified by the checksum either way.
_SMART_TURN = f"{_HF}/pipecat-ai/smart-turn-v3/resolve/f766f81d3cfdf7737ac64aad813d91bbfd56bf93"
# GGUF chat models for llm:llamacpp. Sizes and SHA-256 (Hugging Face's LFS oids) as several public projects
# pin them at these revisions; not checked against Hugging Face from here, but every download is verified
# against them, so a wrong pin fails loudly instead of loading another file.
_QWEN25_1_5B = f"{_HF}/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/91cad51170dc346986eccefdc2dd33a9da36ead9"
# Bartowski's quantisation (imatrix) of the publisher's Qwen3-4B-Instruct-2507, at a pinned revision; the
# publisher has no GGUF of this model, and unsloth's changes under resolve/main (2,497,281,120 bytes,
# sha256 3605803b...) without a revision we could pin.
_QWEN3_4B = (
    f"{_HF}/bartowski/Qwen_Qwen3-4B-Instruct-2507-GGUF/resolve/ae44f08e1392f39c0e474af10c3ff8355c8b6688"
)
# ggml-org's conversion of Qwen2.5-VL-3B-Instruct with its vision projector (llama-cpp-python's
# Qwen25VLChatHandler reads it).
_QWEN25_VL_3B = f"{_HF}/ggml-org/Qwen2.5-VL-3B-Instruct-GGUF/resolve/5037fcf163dd95d1e41d1974465f0898ed108ca2"


# (file name, size, sha256) of the faster-whisper conversions at the pinned revisions.
_BASE_EN_FILES = (
    ("config.json", 2227, "f3bc3821e9fc76a27bae538e11ae5b677dcdd352b4600429ce7951d398569aeb"),
    ("model.bin", 145216508, "2a166925539a16005f14ff328359f9b9adb9dc4fb631bb3b227526862e93e2ef"),
    ("tokenizer.json", 2128466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
    ("vocabulary.txt", 422309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
)
_SMALL_FILES = (
    ("config.json", 2370, "b55496ac7940a7ae47d2c01eab40edfd8701feec1229d9cce3b40014383fb828"),
    ("model.bin", 483546902, "3e305921506d8872816023e4c273e75d2419fb89b24da97b4fe7bce14170d671"),
    ("tokenizer.json", 2203239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
    ("vocabulary.txt", 459861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
)


def _whisper(base: str, folder: str, files: tuple[tuple[str, int, str], ...]) -> tuple[ModelFile, ...]:
    return tuple(ModelFile(f"{base}/{name}", f"{folder}/{name}", size, sha) for name, size, sha in files)


CATALOG: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="whisper-base.en",
        kind="stt",
        engine="stt:whisper",
        description="Whisper base, English only, CTranslate2 format for faster-whisper",
        location="whisper/base.en",
        aliases=("whisper", "base.en"),
        files=_whisper(_WHISPER_BASE_EN, "whisper/base.en", _BASE_EN_FILES),
    ),
    ModelEntry(
        name="whisper-small",
        kind="stt",
        engine="stt:whisper",
        description="Whisper small, multilingual, CTranslate2 format for faster-whisper",
        location="whisper/small",
        aliases=("small",),
        files=_whisper(_WHISPER_SMALL, "whisper/small", _SMALL_FILES),
    ),
    ModelEntry(
        name="kokoro",
        kind="tts",
        engine="tts:kokoro",
        description="Kokoro-82M v1.0 voice model (ONNX) and its 54 voices, for kokoro-onnx",
        location="kokoro",
        aliases=("kokoro-v1.0",),
        files=(
            ModelFile(
                f"{_KOKORO}/kokoro-v1.0.onnx",
                "kokoro/kokoro-v1.0.onnx",
                325532387,
                "7d5df8ecf7d4b1878015a32686053fd0eebe2bc377234608764cc0ef3636a6c5",
            ),
            ModelFile(
                f"{_KOKORO}/voices-v1.0.bin",
                "kokoro/voices-v1.0.bin",
                28214398,
                "bca610b8308e8d99f32e6fe4197e7ec01679264efed0cac9140fe9c29f1fbf7d",
            ),
        ),
    ),
    ModelEntry(
        name="piper-en_US-lessac-medium",
        kind="tts",
        engine="tts:piper",
        description="Piper voice en_US lessac, medium quality, 22.05 kHz",
        location="piper/en_US-lessac-medium.onnx",
        aliases=("piper", "lessac"),
        files=(
            ModelFile(
                f"{_PIPER}/en_US-lessac-medium.onnx",
                "piper/en_US-lessac-medium.onnx",
                63201294,
                "5efe09e69902187827af646e1a6e9d269dee769f9877d17b16b1b46eeaaf019f",
            ),
            ModelFile(
                f"{_PIPER}/en_US-lessac-medium.onnx.json",
                "piper/en_US-lessac-medium.onnx.json",
                4885,
                "efe19c417bed055f2d69908248c6ba650fa135bc868b0e6abb3da181dab690a0",
            ),
        ),
    ),
    ModelEntry(
        name="clip-vit-b32",
        kind="vision",
        engine="vision:clip",
        description="CLIP ViT-B/32 image encoder (ONNX, 512-d embeddings), Qdrant's export",
        location="clip/clip-vit-b32-vision.onnx",
        aliases=("clip",),
        files=(
            ModelFile(
                f"{_CLIP}/model.onnx",
                "clip/clip-vit-b32-vision.onnx",
                351686194,
                "c68d3d9a200ddd2a8c8a5510b576d4c94d1ae383bf8b36dd8c084f94e1fb4d63",
            ),
        ),
    ),
    ModelEntry(
        name="smart-turn",
        kind="turn",
        engine="turn:smart_turn",
        description="Smart Turn v3.2 end-of-turn model (ONNX, int8, CPU); also inside the pipecat-ai wheel",
        location="smart-turn/smart-turn-v3.2-cpu.onnx",
        aliases=("smart-turn-v3", "smart-turn-v3.2"),
        files=(
            ModelFile(
                f"{_SMART_TURN}/smart-turn-v3.2-cpu.onnx",
                "smart-turn/smart-turn-v3.2-cpu.onnx",
                8679182,
                "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
            ),
        ),
    ),
    ModelEntry(
        name="qwen2.5-1.5b",
        kind="llm",
        engine="llm:llamacpp",
        description="Qwen2.5-1.5B-Instruct, Q4_K_M GGUF: the small chat model (machines under 8 GB of RAM)",
        location="llm/qwen2.5-1.5b-instruct-q4_k_m.gguf",
        aliases=("qwen2.5-1.5b-instruct", "small-llm"),
        files=(
            ModelFile(
                f"{_QWEN25_1_5B}/qwen2.5-1.5b-instruct-q4_k_m.gguf",
                "llm/qwen2.5-1.5b-instruct-q4_k_m.gguf",
                1117320736,
                "6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
            ),
        ),
    ),
    ModelEntry(
        name="qwen3-4b",
        kind="llm",
        engine="llm:llamacpp",
        description="Qwen3-4B-Instruct-2507 (no thinking), Q4_K_M GGUF: the default chat model",
        location="llm/Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
        aliases=("qwen3-4b-instruct-2507", "default-llm"),
        files=(
            ModelFile(
                f"{_QWEN3_4B}/Qwen_Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
                "llm/Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
                2497280736,
                "2fde00ce69dd4899c70d020845e2638353015bba0fdf161b3eb965f2bca4464e",
            ),
        ),
    ),
    ModelEntry(
        name="qwen2.5-vl-3b",
        kind="llm",
        engine="llm:llamacpp",
        description="Qwen2.5-VL-3B-Instruct, Q4_K_M GGUF with its Q8_0 vision projector (vision_handler "
        "qwen2.5-vl): sees images",
        location="llm/Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
        aliases=("qwen2.5-vl", "vision-llm"),
        files=(
            ModelFile(
                f"{_QWEN25_VL_3B}/Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
                "llm/Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
                1929901056,
                "d02fe9b69ad8cadbbd228e387667af66612c44bed29ffc8eb1e7caf9ac486c12",
            ),
            ModelFile(
                f"{_QWEN25_VL_3B}/mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
                "llm/mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
                844757728,
                "980c9b2f78c04e6cff93d277ada09e768394f112d75db3b4e9dea8a69f9fb904",
            ),
        ),
    ),
    ModelEntry(
        name="silero-vad",
        kind="vad",
        engine="vad:silero",
        description="Silero VAD (ONNX), bundled with the silero-vad package: nothing to download",
        aliases=("silero",),
        bundled=True,
    ),
)


def find_entry(name: str, catalog: tuple[ModelEntry, ...] = CATALOG) -> ModelEntry:
    """The entry called ``name`` (or one of its aliases), case-insensitively."""
    wanted = name.strip().lower()
    for entry in catalog:
        if wanted == entry.name.lower() or wanted in (a.lower() for a in entry.aliases):
            return entry
    names = [entry.name for entry in catalog]
    close = difflib.get_close_matches(wanted, names + [a for e in catalog for a in e.aliases], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InvalidInput(f"unknown model {name!r}{hint} (known: {', '.join(names)})")
