"""When speech over an answer ends it: the interruption policy (pure, no I/O).

Speech that starts while the assistant is answering is not always a barge-in: a cough, a chair, "mm-hm",
"yeah" or "okay" are the listener's side of a conversation, not a new turn. The policy judges the words
heard so far of such an utterance:

``immediate``
    any speech start ends the answer (the behaviour of most pipelines; needs a clean microphone).
``adaptive``
    the answer pauses at once; words end it, a backchannel or no words within ``resume_ms`` let it go on
    from where it paused. Words end it once ``min_words`` words that are not a backchannel have been
    recognised, or when the utterance ends with any such word ("Stop." is one word and a clear order).
``off``
    speech never ends an answer; it is heard once the answer is over (push-to-talk style clients).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BACKCHANNELS", "InterruptionMode", "InterruptionPolicy", "Verdict"]

#: Listener noises and acknowledgements that do not take the turn, per language.
DEFAULT_BACKCHANNELS: Mapping[str, tuple[str, ...]] = {
    "en": (
        "mm-hm", "mhm", "mm", "hmm", "uh-huh", "uh huh", "yeah", "yes", "yep", "okay", "ok", "right",
        "sure", "i see", "got it", "aha", "oh", "ah", "uh", "um", "huh", "cool", "nice", "alright",
    ),
    "de": ("mhm", "ja", "genau", "okay", "ok", "aha", "stimmt", "richtig", "hm"),
    "fr": ("mhm", "oui", "ouais", "d'accord", "ok", "okay", "ah", "hum", "voilà"),
    "es": ("mhm", "sí", "si", "vale", "claro", "ok", "okay", "ajá", "ya"),
}  # fmt: skip

_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


class InterruptionMode(enum.StrEnum):
    ADAPTIVE = "adaptive"
    IMMEDIATE = "immediate"
    OFF = "off"


class Verdict(enum.StrEnum):
    #: End the answer: the person is taking the turn.
    INTERRUPT = "interrupt"
    #: Not decided yet: keep the answer paused and keep listening.
    WAIT = "wait"
    #: Let the answer go on (a backchannel, a noise, nothing recognised).
    RESUME = "resume"


def _words(text: str) -> list[str]:
    return [w.lower().strip("-'’") for w in _WORD.findall(text)]


@dataclass(frozen=True, slots=True)
class InterruptionPolicy:
    mode: InterruptionMode = InterruptionMode.ADAPTIVE
    min_words: int = 2
    #: How long a paused answer waits for words before it goes on.
    resume_ms: int = 1200
    backchannels: Mapping[str, Sequence[str]] = field(default_factory=lambda: DEFAULT_BACKCHANNELS)

    def _phrases(self, language: str | None) -> set[tuple[str, ...]]:
        langs = [language.split("-")[0].lower()] if language else []
        if not langs or langs[0] not in self.backchannels:
            langs = list(self.backchannels)  # unknown language: any list's phrases count
        return {tuple(_words(p)) for lang in langs for p in self.backchannels.get(lang, ())}

    def content_words(self, text: str, language: str | None = None) -> list[str]:
        """The words of ``text`` that are not backchannel phrases ("yeah okay so wait" -> so, wait)."""
        words, phrases = _words(text), self._phrases(language)
        longest = max((len(p) for p in phrases), default=1)
        kept: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(longest, len(words) - i), 0, -1):
                if tuple(words[i : i + n]) in phrases:
                    i += n
                    break
            else:
                kept.append(words[i])
                i += 1
        return kept

    def judge(self, text: str, *, final: bool, elapsed_ms: float, language: str | None = None) -> Verdict:
        """What to do with the answer, given the words recognised so far of speech over it.

        ``final``: the utterance has ended (a pause); ``elapsed_ms``: since the speech started."""
        if self.mode is InterruptionMode.IMMEDIATE:
            return Verdict.INTERRUPT
        if self.mode is InterruptionMode.OFF:
            return Verdict.RESUME
        content = self.content_words(text, language)
        if len(content) >= self.min_words or (final and content):
            return Verdict.INTERRUPT
        if final or elapsed_ms >= self.resume_ms:
            return Verdict.RESUME
        return Verdict.WAIT
