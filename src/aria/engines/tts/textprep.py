"""What every TTS adapter does around its backend: clean the text before synthesis, shape the audio after.

Text (:func:`prepare_text`): markdown and other things that should not be read aloud are removed:
``**bold**``/``*italic*``/``~~strike~~`` markers, inline and fenced code markers, headings, bullet and
numbered-list markers, block quotes, table pipes and rules, HTML tags, emoji; links keep their text and
bare URLs become the word "link"; lines are joined into clauses and whitespace is collapsed. Text with
nothing speakable left (no letter or digit) becomes ``""``, for which adapters yield no audio at all.

Audio (:class:`SpeechShaper`), the same for every backend:

* **level**: peak normalisation to ``target_peak_dbfs`` (-1 dBFS by default). Backends that produce a
  whole sentence at once (Kokoro, Piper) scale each sentence so its peak reaches the target; streamed
  backends set the gain before the sentence (espeak: calibrated once per voice on reference sentences;
  OpenAI: from the peaks of the previous sentences). A soft limiter at the target then keeps every sample
  at or below it, so no output is louder than -1 dBFS and levels match across engines;
* **silence**: leading silence and the backend's own trailing silence (below -50 dBFS) are trimmed;
* **pause**: ``sentence_pause_ms`` of silence is appended after ``. ! ? …`` and ``clause_pause_ms`` after
  ``, ; : —`` (see :func:`pause_ms`), so sentences synthesised one by one sound natural back to back;
* **blocks**: float32 mono blocks of ``block_ms`` (the last one may be shorter);
* **words**: a backend that knows when its words are spoken hands them over with
  :meth:`SpeechShaper.add_words` (times in its own audio); :meth:`SpeechShaper.marked` pairs each block
  with the words that start in it, moved like the audio (trimmed silence out, pauses in), as
  ``AudioChunk.words`` wants them.

:func:`thread_stream` runs a blocking synthesis function in a worker thread and hands its blocks to the
event loop as they are produced, stopping the worker when the consumer stops.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from aria.core.channels import Channel
from aria.engines.base import EngineConfig
from aria.errors import AriaError, EngineError
from aria.types import WordMark

__all__ = [
    "Emit",
    "Float32Array",
    "Marked",
    "ShapingOptions",
    "SpeechShaper",
    "labelled",
    "pause_ms",
    "peak_gain",
    "phoneme_words",
    "prepare_text",
    "soft_limit",
    "thread_stream",
]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
#: A block of audio with the words that start in it (times relative to its first sample).
Marked = tuple[Float32Array, tuple[WordMark, ...]]
_T = TypeVar("_T")

# -- text ------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[\w+#.-]*")
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()\s]|\([^)]*\))*(?:\s+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<(?:https?://|mailto:|www\.)[^>\s]+>", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_BLOCKQUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_TABLE_RULE = re.compile(
    r"^[ \t]*\|?(?:[ \t]*:?-{3,}:?[ \t]*\|)+(?:[ \t]*:?-{3,}:?[ \t]*)?\|?[ \t]*$", re.MULTILINE
)
_BULLET = re.compile(r"^[ \t]*(?:[-*+•‣◦▪]|\d{1,3}[.)])[ \t]+", re.MULTILINE)
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_EM_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_STRAY_STARS = re.compile(r"(?<![\d\s])\*+|\*+(?![\d\s])")
_STRAY_MARKERS = re.compile(r"__+|~~+|`+")
_SNAKE = re.compile(r"(?<=[^\W_])_(?=[^\W_])")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags, supplemental symbols
    "\u2300-\u23ff"  # technical symbols (⌚ ⏰)
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats (☀ ✅ ❤)
    "\u2b00-\u2bff"  # arrows and stars (⭐ ⬆)
    "\ufe00-\ufe0f"  # variation selectors
    "\u200d\u20e3"  # zero-width joiner, keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_TERMINAL = frozenset(".!?…,;:—–")
_SENTENCE_END = frozenset(".!?…")
_CLAUSE_END = frozenset(",;:—–")
_CLOSERS = "\"')]}»”’ "
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?…])")
_REPEATED_COMMA = re.compile(r"([,;:])(?:\s*,)+")
_SPEAKABLE = re.compile(r"[^\W_]")


def prepare_text(text: str) -> str:
    """``text`` as it should be spoken; ``""`` when nothing in it can be spoken."""
    text = html.unescape(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _FENCE.sub("\n", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub("link", text)
    text = _URL.sub("link", text)
    text = _HTML_TAG.sub(" ", text)
    text = _TABLE_RULE.sub("", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub(r"\1", text)
    text = _BLOCKQUOTE.sub("", text)
    text = _BULLET.sub("", text)
    for pattern in (_STRONG, _STRIKE, _EM_STAR, _EM_UNDERSCORE):
        text = pattern.sub(lambda m: m.group(m.lastindex or 0), text)
    text = _STRAY_STARS.sub("", text)
    text = _STRAY_MARKERS.sub("", text)
    text = _SNAKE.sub(" ", text)
    text = _EMOJI.sub(" ", text)
    text = text.replace("\\", " ")
    text = _join_lines(text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMA.sub(r"\1", text)
    text = " ".join(text.split())
    return text if _SPEAKABLE.search(text) else ""


def _join_lines(text: str) -> str:
    """Lines become clauses: a line without final punctuation gets a comma before the next line, or a
    full stop before a paragraph break, so list items and headings do not run together."""
    out: list[str] = []
    blank_before = False
    for raw in text.split("\n"):
        line = " ".join(raw.strip().strip("|").replace("|", ", ").split())
        if not line:
            blank_before = bool(out)
            continue
        if out and out[-1][-1] not in _TERMINAL:
            out[-1] += "." if blank_before else ","
        out.append(line)
        blank_before = False
    return " ".join(out)


def _final_mark(text: str) -> str:
    stripped = text.rstrip(_CLOSERS)
    return stripped[-1] if stripped else ""


def pause_ms(text: str, options: ShapingOptions) -> int:
    """The silence to append after ``text``: the sentence pause after ``. ! ? …``, the clause pause after
    ``, ; : —``, none after a clause cut without punctuation."""
    mark = _final_mark(text)
    if mark in _SENTENCE_END:
        return options.sentence_pause_ms
    if mark in _CLAUSE_END:
        return options.clause_pause_ms
    return 0


# -- audio -----------------------------------------------------------------------------------------


class ShapingOptions(EngineConfig):
    """Output options every TTS adapter's ``Config`` shares."""

    #: Peak level of the output, in dBFS.
    target_peak_dbfs: float = Field(default=-1.0, ge=-40.0, le=0.0)
    #: Silence after sentence-final punctuation (``. ! ? …``).
    sentence_pause_ms: int = Field(default=200, ge=0, le=2000)
    #: Silence after clause punctuation (``, ; : —``).
    clause_pause_ms: int = Field(default=80, ge=0, le=2000)
    #: Length of the audio blocks streamed out.
    block_ms: int = Field(default=20, ge=5, le=200)

    @property
    def target_peak(self) -> float:
        return float(10.0 ** (self.target_peak_dbfs / 20.0))


#: Samples quieter than this (-50 dBFS) count as silence when trimming.
_SILENCE = 10.0 ** (-50.0 / 20.0)
#: Kept before the first audible sample, and of the backend's own tail after the last one.
_PREROLL_S = 0.005
_TAIL_S = 0.010


def soft_limit(samples: Float32Array, ceiling: float) -> Float32Array:
    """Identity below 90 % of ``ceiling``; above it a tanh knee that approaches ``ceiling`` without
    reaching it."""
    knee = 0.9 * ceiling
    magnitude = np.abs(samples)
    over = magnitude > knee
    if not over.any():
        return samples
    out = samples.copy()
    span = ceiling - knee
    out[over] = np.sign(samples[over]) * (knee + span * np.tanh((magnitude[over] - knee) / span))
    return out


class SpeechShaper:
    """Gain, limiter, silence trimming, pauses and fixed-size blocks for a stream of sentences.

    Feed it float32 mono audio with :meth:`push` (any piece size), mark the end of a sentence inside the
    stream with :meth:`pause` (then set the next sentence's ``gain``), and end with :meth:`finish`; each
    returns the blocks now ready. ``gain`` may also change between pushes (streamed backends lower it
    when a louder peak arrives)."""

    def __init__(self, sample_rate: int, options: ShapingOptions, gain: float = 1.0) -> None:
        self.sample_rate = sample_rate
        self.options = options
        self.gain = gain
        self.ceiling = options.target_peak
        self.block = max(1, round(sample_rate * options.block_ms / 1000))
        #: Whether any audible sample has come through.
        self.audible = False
        self._at_start = True  # leading silence is trimmed until the first audible sample
        self._pending = np.zeros(0, np.float32)
        self._tail = np.zeros(0, np.float32)
        # Word placement: input samples pushed, output samples appended to _pending and handed out, where
        # the current sentence's first kept sample came from and went (input, output), and the words
        # (start, end, text) still in input samples and already in output samples.
        self._in = 0
        self._out = 0
        self._taken = 0
        self._sentence: tuple[int, int] | None = None
        self._waiting: list[tuple[int, int, str]] = []
        self._placed: list[tuple[int, int, str]] = []

    def add_words(self, words: Iterable[WordMark], origin_s: float | None = None) -> None:
        """Words of the backend's audio, timed from ``origin_s`` seconds into all the audio pushed (by
        default: from the next sample pushed)."""
        origin = self._in if origin_s is None else round(origin_s * self.sample_rate)
        for word in words:
            start = origin + round(word.start_s * self.sample_rate)
            end = origin + round(word.end_s * self.sample_rate)
            self._waiting.append((start, max(start, end), word.text))
        self._place(closing=False)

    def marked(self, blocks: list[Float32Array]) -> list[Marked]:
        """Each of ``blocks`` (just returned by this shaper, in order) with the words that start in it."""
        out: list[Marked] = []
        for block in blocks:
            begin, end = self._taken, self._taken + block.size
            rate = self.sample_rate
            words = tuple(
                WordMark(text, max(start - begin, 0) / rate, max(stop - begin, 0) / rate)
                for start, stop, text in self._placed
                if start < end
            )
            self._placed = [w for w in self._placed if w[0] >= end]
            self._taken = end
            out.append((block, words))
        return out

    def _place(self, *, closing: bool) -> None:
        """Move waiting words whose audio is kept into output samples; ``closing``: the sentence ends,
        words past its kept audio go to its end."""
        if self._sentence is None:
            return
        from_in, from_out = self._sentence
        limit = self._in if closing else self._in - self._tail.size
        waiting: list[tuple[int, int, str]] = []
        for start, end, text in self._waiting:
            if start >= limit:
                waiting.append((start, end, text))
                continue
            begin = from_out + max(start - from_in, 0)
            stop = begin + end - start
            if closing:
                begin, stop = min(begin, self._out), min(stop, self._out)
            self._placed.append((begin, stop, text))
        self._waiting = waiting

    def _append(self, samples: Float32Array) -> None:
        self._pending = np.concatenate([self._pending, samples])
        self._out += samples.size

    def push(self, samples: npt.NDArray[Any]) -> list[Float32Array]:
        scaled = np.asarray(samples, dtype=np.float32).ravel() * np.float32(self.gain)
        audio = soft_limit(scaled, self.ceiling)
        audio_at = self._in  # input index of audio[0]
        self._in += audio.size
        preroll = round(_PREROLL_S * self.sample_rate)
        if self._at_start:  # the silence kept before the first audible sample, across pieces
            kept = self._tail[-preroll:]
            audio = np.concatenate([kept, audio])
            audio_at -= kept.size
            self._tail = np.zeros(0, np.float32)
        loud = np.flatnonzero(np.abs(audio) > _SILENCE)
        if loud.size == 0:
            self._tail = np.concatenate([self._tail, audio])
            return []
        first = 0
        if self._at_start:
            first = max(0, int(loud[0]) - preroll)
            self._at_start = False
            self.audible = True
            self._sentence = (audio_at + first, self._out)
        last = int(loud[-1]) + 1
        self._append(np.concatenate([self._tail, audio[first:last]]))
        self._tail = audio[last:]
        self._place(closing=False)
        return self._take(whole_only=True)

    def pause(self, pause_ms: int) -> list[Float32Array]:
        """End a sentence inside the stream: trim its tail and add ``pause_ms`` of silence (the next
        sentence's leading silence will be trimmed). Returns whole blocks only."""
        if self._at_start:
            return []
        self._append(self._tail[: round(_TAIL_S * self.sample_rate)])
        self._place(closing=True)
        self._sentence = None
        self._append(np.zeros(round(self.sample_rate * pause_ms / 1000), np.float32))
        self._tail = np.zeros(0, np.float32)
        self._at_start = True
        return self._take(whole_only=True)

    def finish(self, pause_ms: int) -> list[Float32Array]:
        """The rest: the last sentence's tail (trimmed), ``pause_ms`` of silence and the last, possibly
        shorter, block. Nothing at all when no audible sample ever came."""
        if not self.audible:
            return []
        return [*self.pause(pause_ms), *self._take(whole_only=False)]

    def _take(self, *, whole_only: bool) -> list[Float32Array]:
        size = self.block
        count = self._pending.size // size if whole_only else -(-self._pending.size // size)
        blocks = [self._pending[i * size : (i + 1) * size].copy() for i in range(count)]
        self._pending = self._pending[count * size :] if whole_only else np.zeros(0, np.float32)
        return blocks


def phoneme_words(phonemes: Iterable[tuple[str, float, float]]) -> list[WordMark]:
    """Words from timed phonemes (``(phoneme, start_s, end_s)``, a ``" "`` between words, as Kokoro and
    Piper give them): each run of phonemes between spaces with a letter in it is a word (its text the
    phonemes; punctuation, Piper's ``^``/``$`` and pauses are not words)."""
    words: list[WordMark] = []
    run: list[tuple[str, float, float]] = []
    for phoneme in [*phonemes, (" ", 0.0, 0.0)]:
        if phoneme[0].isspace():
            spoken = [p for p in run if any(ch.isalpha() for ch in p[0])]
            if spoken:
                words.append(WordMark("".join(p[0] for p in spoken), spoken[0][1], spoken[-1][2]))
            run = []
        else:
            run.append(phoneme)
    return words


def labelled(words: list[WordMark], text: str) -> list[WordMark]:
    """The words with the text's own words as their text when there are as many (else as they are)."""
    written = text.split()
    if len(written) != len(words):
        return words
    return [WordMark(w, m.start_s, m.end_s) for w, m in zip(written, words, strict=True)]


def peak_gain(audio: npt.NDArray[Any], options: ShapingOptions) -> float:
    """The gain that brings ``audio``'s peak to the target (1.0 for silence)."""
    top = float(np.max(np.abs(audio))) if np.size(audio) else 0.0
    return options.target_peak / top if top > 1e-6 else 1.0


# -- worker thread -> event loop --------------------------------------------------------------------

Emit = Callable[[Float32Array], bool]


async def thread_stream(
    work: Callable[[Callable[[_T], bool], threading.Event], None], *, engine: str, stop_timeout_s: float = 2.0
) -> AsyncGenerator[_T, None]:
    """Run ``work(emit, stop)`` in a worker thread and yield what it emits, as it emits it.

    ``emit(block)`` returns False once the consumer has gone (then ``work`` should return soon);
    ``stop`` is set at the same moment. An exception raised by ``work`` reaches the consumer after the
    blocks emitted before it, translated to :class:`~aria.errors.EngineError` unless it is already an
    Aria error. When the consumer stops early the worker is told to stop and waited for (at most
    ``stop_timeout_s``), so the backend is free again when this generator's ``aclose`` returns."""
    loop = asyncio.get_running_loop()
    channel: Channel[_T] = Channel(maxsize=None, name=f"{engine} audio")
    stop = threading.Event()

    def deliver(block: _T) -> None:
        if not channel.closed:
            channel.send_nowait(block)

    def finish(error: BaseException | None) -> None:
        channel.close(error)

    def emit(block: _T) -> bool:
        if stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(deliver, block)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            stop.set()
            return False
        return True

    def run() -> None:
        error: BaseException | None = None
        try:
            work(emit, stop)
        except AriaError as exc:
            error = exc
        except Exception as exc:
            log.exception("%s synthesis failed", engine)
            error = EngineError(f"synthesis failed: {type(exc).__name__}: {exc}", engine=engine)
            error.__cause__ = exc
        try:
            loop.call_soon_threadsafe(finish, error)
        except RuntimeError:
            stop.set()

    worker = loop.run_in_executor(None, run)
    try:
        async for block in channel:
            yield block
    finally:
        stop.set()
        if not worker.done():
            done, _ = await asyncio.wait({worker}, timeout=stop_timeout_s)
            if not done:
                log.warning("%s synthesis did not stop within %.1f s", engine, stop_timeout_s)
