"""What the transcript so far says about the end of a turn: a small, rule-based signal.

The audio model hears intonation and timing; the words add what it cannot always hear. A cue is a shift of
the completion probability in log-odds (added to ``logit(p)``), so a confident audio score survives a weak
cue and an unsure one follows a strong cue:

====================================================  =======  ==========================================
the transcript ends with                              shift    example
====================================================  =======  ==========================================
a conjunction, article, possessive or hesitation      -4.0     "Can you tell me about the", "... if"
a preposition (not in a question, which may end on    -3.5     "I'm looking for a recipe with"
one: "where are you from")
an unfinished clause (a verb still waiting for its    -3.5     "I would like to know", "I was wondering",
object: "tell me", "remind us"; a copula after a               "What I really want is"
noun or verb, not after "it", "that", "this" ...)
a comma, colon, semicolon, dash or ellipsis           -3.5     "First of all,", "Actually,"
"?" or "!"                                            +1.0     "What time is it?"
"."                                                   +0.5     "Turn off the lights."
no punctuation, but is a short question (3-8 words    +0.5     "what time is it"
starting with a question word)
====================================================  =======  ==========================================

Only the strongest negative cue counts; a negative cue wins over a positive one ("I would like to know,"
is unfinished whatever its comma). Word lists are per language in :data:`LEXICONS` (English first, with
German, French and Spanish); for another language only the punctuation rules apply. Speech recognisers
add a final full stop to nearly everything, which is why "." counts for little.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["GRAMMAR_SHIFT", "LEXICONS", "UNFINISHED_CAP", "Lexicon", "TextCue", "combine", "text_cue"]


@dataclass(frozen=True, slots=True)
class Lexicon:
    """A language's words for :func:`text_cue` (all lower case)."""

    #: Words a sentence hardly ever ends on: conjunctions, articles, possessives, hesitations.
    trailing: frozenset[str]
    #: Prepositions: a weaker cue, and none in a question, which may end on one ("where are you from").
    prepositions: frozenset[str]
    #: Endings that leave a clause unfinished ("i would like to know").
    unfinished: tuple[str, ...]
    #: Words that open a question.
    question: frozenset[str]
    #: Complete endings whose last word is also in ``trailing`` ("i think so").
    complete: tuple[str, ...] = ()
    #: Verbs that take a person and then a thing: "tell me" waits for what to tell.
    two_objects: frozenset[str] = frozenset()
    #: Object pronouns after those verbs.
    objects: frozenset[str] = frozenset()
    #: Copulas: a clause ending on one waits for its complement ("what I want is").
    copulas: frozenset[str] = frozenset()
    #: Words after which a final copula ends the clause ("that's what it is").
    copula_ok: frozenset[str] = frozenset()


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


LEXICONS: dict[str, Lexicon] = {
    "en": Lexicon(
        trailing=_set(
            "and but or so because since although though if unless than whose the a an my your our their "
            "its every each another next such very um uh er"
        ),
        prepositions=_set(
            "to of with for from at by about into onto under between through like as without within"
        ),
        complete=("think so", "hope so", "guess so", "believe so", "said so", "say so", "or so", "and so on"),
        unfinished=(
            "i would like to know",
            "i'd like to know",
            "i want to know",
            "i would like",
            "i'd like",
            "i was wondering",
            "i wonder",
            "let me think",
            "let me see",
            "can you tell me",
            "could you tell me",
            "the thing is",
            "find out",
            "figure out",
            "look up",
        ),
        two_objects=_set("tell remind show give send teach ask bring get buy let"),
        objects=_set("me us him her them"),
        copulas=_set("is are was were am be"),
        copula_ok=_set("it that this there he she they what who where here so i we you"),
        question=_set(
            "what when where who whom whose which why how is are was were do does did can could will "
            "would should shall may might have has"
        ),
    ),
    "de": Lexicon(
        trailing=_set(
            "und aber oder denn weil dass ob wenn sondern der die das den dem des ein eine einen einem "
            "einer mein meine dein deine äh ähm"
        ),
        prepositions=_set("zu von mit für aus im am auf bei nach über unter um durch ohne"),
        unfinished=("ich möchte wissen", "ich würde gerne", "ich frage mich", "sag mir"),
        question=_set("was wann wo wer wie warum wieso welche welcher welches ist sind kannst kann"),
    ),
    "fr": Lexicon(
        trailing=_set(
            "et mais ou donc car parce que quand si comme le la les un une des du au aux mon ma mes "
            "ton ta tes son sa ses euh"
        ),
        prepositions=_set("de à avec pour dans sur sous par sans chez vers entre"),
        unfinished=("je voudrais savoir", "je veux savoir", "je me demande", "dis-moi"),
        question=_set("quoi quand où qui comment pourquoi quel quelle quels quelles est-ce"),
    ),
    "es": Lexicon(
        trailing=_set(
            "y e pero o u porque que si cuando como el la los las un una unos unas mi mis tu tus su sus "
            "eh este"
        ),
        prepositions=_set("a al de del con para por en sobre sin entre hasta desde"),
        unfinished=("me gustaría saber", "quiero saber", "me pregunto", "dime"),
        question=_set("qué cuándo dónde quién quiénes cómo cuál cuáles cuánto"),
    ),
}

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_PAUSING = (",", ":", ";", "-", "–", "—", "...", "…")


@dataclass(frozen=True, slots=True)
class TextCue:
    """A shift of the completion probability, in log-odds, and why."""

    shift: float
    reason: str


def _lexicon(language: str | None) -> Lexicon | None:
    return LEXICONS.get((language or "en").lower().replace("_", "-").split("-")[0])


def _ends_with(tail: str, phrase: str) -> bool:
    return tail == phrase or tail.endswith(" " + phrase)


def text_cue(text: str | None, language: str | None = "en") -> TextCue | None:
    """The transcript's cue about the end of the turn (see the module docstring), or None when it has
    nothing to say (no text, or nothing recognised)."""
    stripped = (text or "").strip().strip("\"'“”)»").strip()
    if not stripped:
        return None
    words = [w.lower().replace("’", "'") for w in _WORD.findall(stripped)]
    lexicon = _lexicon(language)
    if lexicon is not None and words:
        tail = " ".join(words[-5:])
        fixed = any(_ends_with(tail, phrase) for phrase in lexicon.complete)
        if words[-1] in lexicon.trailing and not fixed:
            return TextCue(-4.0, f"ends with {words[-1]!r}")
        if words[-1] in lexicon.prepositions and words[0] not in lexicon.question:
            return TextCue(-3.5, f"ends with {words[-1]!r}")
        for phrase in lexicon.unfinished:
            if _ends_with(tail, phrase):
                return TextCue(-3.5, f"unfinished: {phrase!r}")
        if len(words) >= 2 and words[-1] in lexicon.objects and words[-2] in lexicon.two_objects:
            return TextCue(-3.5, f"unfinished: {words[-2]} {words[-1]} ...")
        if len(words) >= 3 and words[-1] in lexicon.copulas and words[-2] not in lexicon.copula_ok:
            return TextCue(-3.5, f"unfinished: ... {words[-1]}")
    if stripped.endswith(_PAUSING):
        return TextCue(-3.5, f"ends with {stripped[-1]!r}")
    if stripped.endswith(("?", "!", "¿", "¡")):
        return TextCue(1.0, f"ends with {stripped[-1]!r}")
    if stripped.endswith("."):
        return TextCue(0.5, "ends with '.'")
    if lexicon is not None and 3 <= len(words) <= 8 and words[0] in lexicon.question:
        return TextCue(0.5, "a short question")
    return None


#: A cue this strong is grammar, not a hint: the clause cannot be over ("... remind me", "... if"), so the
#: result stays at or under :data:`UNFINISHED_CAP` whatever the audio model heard.
GRAMMAR_SHIFT = -3.5
UNFINISHED_CAP = 0.25


def combine(probability: float, cue: TextCue | None) -> float:
    """``probability`` shifted by ``cue`` in log-odds (clamped to [0, 1]); an unfinished clause (a cue
    of :data:`GRAMMAR_SHIFT` or stronger) caps it at :data:`UNFINISHED_CAP`: an audio model trained on
    natural speech is often sure of a turn's end on synthetic or flat speech, and the words are not."""
    p = min(1.0, max(0.0, probability))
    if cue is None or cue.shift == 0:
        return p
    p = min(1.0 - 1e-6, max(1e-6, p))
    logit = math.log(p / (1.0 - p)) + cue.shift
    shifted = 1.0 / (1.0 + math.exp(-logit))
    return min(shifted, UNFINISHED_CAP) if cue.shift <= GRAMMAR_SHIFT else shifted
