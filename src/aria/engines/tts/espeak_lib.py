"""A ctypes binding to libespeak-ng, from the ``espeakng-loader`` wheel (no system package needed).

libespeak-ng keeps global state and is not thread-safe: every call holds one process-wide lock.
Synthesis runs synchronously and hands 16-bit PCM blocks to a callback as they are produced, so a caller
in a worker thread can stream them out sentence by sentence. The callback also gets espeak's events;
word events (``espeakEVENT_WORD``: where the word is in the text, in characters, and when it starts, in
milliseconds of the synthesis's audio) are handed on so callers can time the words.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from aria.errors import EngineError, EngineUnavailable, InvalidInput

__all__ = ["EspeakLibrary", "OnWord", "espeak_available"]

log = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH = 1, 2, 3
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # characters from the start of the text, 1-based
        ("length", ctypes.c_int),  # of the word, in characters
        ("audio_position", ctypes.c_int),  # ms into the synthesis's audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),  # a union of an int, a char pointer and char[8]
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)
#: ``on_word(char_offset, length, audio_ms)``: a word starts at ``char_offset`` (0-based) of the text.
OnWord = Callable[[int, int, int], None]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


def espeak_available() -> tuple[bool, str]:
    """Whether the espeakng-loader wheel is installed (without loading the library)."""
    if importlib.util.find_spec("espeakng_loader") is None:
        return False, "the espeakng-loader package is not installed"
    return True, ""


class EspeakLibrary:
    """The process-wide libespeak-ng instance. Use :meth:`get`."""

    _instance: EspeakLibrary | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EngineUnavailable(
                "espeak-ng is not installed; pip install 'aria-assistant[tts]'", engine="tts:espeak"
            ) from exc
        self._lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
        data = str(espeakng_loader.get_data_path()).encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, ctypes.c_char_p(data), 0)
        if rate <= 0:
            raise EngineUnavailable(f"espeak-ng failed to initialise ({rate})", engine="tts:espeak")
        self.sample_rate: int = rate
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self._sink: Callable[[npt.NDArray[np.int16]], bool] | None = None
        self._sink_error: BaseException | None = None
        self._on_word: OnWord | None = None
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: C holds a pointer to it
        self._lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> EspeakLibrary:
        if cls._instance is not None:  # no lock: a running synthesis holds it
            return cls._instance
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[_Event]
    ) -> int:
        try:
            if events and self._on_word is not None:  # before the audio: a word may start in this block
                index = 0
                while (event := events[index]).type != _EVENT_LIST_TERMINATED:
                    if event.type == _EVENT_WORD:
                        self._on_word(event.text_position - 1, event.length, event.audio_position)
                    index += 1
            if not wav or count <= 0 or self._sink is None:
                return 0
            block = np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16)  # copy out of C memory
            return 0 if self._sink(block) else 1
        except BaseException as exc:  # ctypes would print and ignore it: stop and re-raise it instead
            self._sink_error = exc
            return 1

    def voices(self) -> list[str]:
        with self._lock:
            table = self._lib.espeak_ListVoices(None)
            names: list[str] = []
            index = 0
            while table[index]:
                voice = table[index].contents
                if voice.identifier:
                    names.append(voice.identifier.decode(errors="replace"))
                index += 1
            return names

    def synthesize(
        self,
        text: str,
        on_audio: Callable[[npt.NDArray[np.int16]], bool],
        *,
        voice: str = "en-us",
        rate_wpm: int = 175,
        pitch: int = 50,
        volume: int = 100,
        on_word: OnWord | None = None,
    ) -> None:
        """Speak ``text``; ``on_audio(block)`` gets int16 blocks and returns False to stop early;
        ``on_word``, when given, each word's start (see :data:`OnWord`) before the block it starts in."""
        payload = text.encode("utf-8") + b"\0"
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise InvalidInput(f"espeak-ng has no voice {voice!r}")
            self._lib.espeak_SetParameter(_RATE, rate_wpm, 0)
            self._lib.espeak_SetParameter(_PITCH, pitch, 0)
            self._lib.espeak_SetParameter(_VOLUME, volume, 0)
            self._sink, self._sink_error, self._on_word = on_audio, None, on_word
            try:
                err = self._lib.espeak_Synth(
                    payload, len(payload), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                self._lib.espeak_Synchronize()
            finally:
                self._sink, sink_error, self._sink_error, self._on_word = None, self._sink_error, None, None
        if sink_error is not None:
            raise sink_error
        if err != 0:
            raise EngineError(f"espeak-ng synthesis failed (error {err})", engine="tts:espeak")
