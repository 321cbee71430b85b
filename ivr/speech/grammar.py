"""Grammars for phone menus and what to make of the recognised text.

Pure functions, no I/O: the speech service uses them to build Vosk grammars and to strip
garbage-model tokens; the dial-plan engine uses them to map recognised text to a menu phrase or to
digits.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable

UNK = "[unk]"
"""The garbage word appended to every grammar (the service swaps in the model's own spelling)."""

# Tokens recognisers emit for "something, but not a word": never part of the recognised text.
UNKNOWN_TOKENS = frozenset({"[unk]", "<unk>", "<spoken_noise>", "[noise]", "[laughter]", "<sil>", "!sil"})

_PUNCT = re.compile(r"[^\w\s\[\]<>'-]+")
_SPACE = re.compile(r"\s+")

_DIGIT_WORDS: dict[str, dict[str, str]] = {
    # Sino-Korean digits as read in phone numbers: one syllable, one digit. 빵 is the colloquial zero.
    "ko": {"공": "0", "영": "0", "빵": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5",
           "육": "6", "륙": "6", "칠": "7", "팔": "8", "구": "9"},
    "en": {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
           "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"},
}
_EN_REPEAT = {"double": 2, "triple": 3}

DIGIT_LANGUAGES = frozenset(_DIGIT_WORDS)


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation dropped, single spaces: the form grammars and matching use."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def strip_unknown(text: str) -> str:
    """The recognised text without garbage-model tokens (``[unk]``, ``<UNK>``, ...)."""
    return " ".join(w for w in text.split() if w.casefold() not in UNKNOWN_TOKENS)


def grammar_phrases(phrases: Iterable[str]) -> list[str]:
    """Normalised, non-empty, de-duplicated phrases in their first-seen order."""
    seen: dict[str, None] = {}
    for phrase in phrases:
        norm = normalise(phrase)
        if norm and norm not in UNKNOWN_TOKENS:
            seen.setdefault(norm, None)
    return list(seen)


def build_grammar(phrases: Iterable[str], *, unk: str | None = UNK) -> str:
    """The Vosk grammar (a JSON list) restricting recognition to ``phrases`` plus the garbage word.

    The garbage word lets speech outside the menu come out as ``[unk]`` rather than as the closest
    phrase; pass ``unk=None`` for a model that has none.
    """
    words = grammar_phrases(phrases)
    if unk:
        words.append(unk)
    return json.dumps(words, ensure_ascii=False)


def phrase_key(text: str) -> str:
    """What two phrases must share to be the same answer: :func:`normalise` (NFKC, case folded,
    punctuation dropped) without garbage tokens and without spaces. ``check`` refuses two options
    with one key, and a phrase whose key is empty (it can never be matched)."""
    return normalise(strip_unknown(text)).replace(" ", "")


_key = phrase_key


def match_phrase(text: str, phrases: Iterable[str]) -> str | None:
    """The configured phrase (as configured) the recognised ``text`` is, ignoring spacing and case.

    Garbage tokens are ignored (``"[unk] 해지"`` is ``해지``); anything else must match the whole
    phrase: a fragment of a phrase or two phrases together is no match.
    """
    key = _key(text)
    if not key:
        return None
    for phrase in phrases:
        if _key(phrase) == key:
            return phrase
    return None


def digit_words(language: str) -> list[str]:
    """The words of a digits grammar for ``language`` (``ko`` or ``en``, region suffix allowed)."""
    return list(_digit_table(language))


def _digit_table(language: str) -> dict[str, str]:
    lang = language.split("-")[0].split("_")[0].lower()
    try:
        return _DIGIT_WORDS[lang]
    except KeyError:
        raise ValueError(f"spoken digits not supported for language {language!r}") from None


def spoken_digits(text: str, language: str) -> str | None:
    """Digits spoken one word per digit (``"일 이 삼"`` -> ``"123"``), or None if anything else was said.

    Korean digit syllables may also come glued together (``"일이삼"``). English accepts ``oh`` and
    ``zero`` for 0 and ``double``/``triple`` before a digit. Raises ValueError for a language
    without a digit table.
    """
    table = _digit_table(language)
    lang = language.split("-")[0].split("_")[0].lower()
    digits: list[str] = []
    repeat = 1
    for word in normalise(text).split():
        if word in table:
            digits.append(table[word] * repeat)
            repeat = 1
        elif lang == "en" and word in _EN_REPEAT and repeat == 1:
            repeat = _EN_REPEAT[word]
        elif lang == "ko" and len(word) > 1 and all(ch in table for ch in word):
            digits.extend(table[ch] for ch in word)
        else:
            return None
    if repeat != 1 or not digits:
        return None
    return "".join(digits)


def collapse_repeats(text: str) -> str:
    """``text`` with a word said twice in a row, or the whole text said twice, said once.

    Vosk's grammar mode sometimes doubles a word or a phrase (``"해지 해지"``, ``"요금 문의 요금 문의"``);
    garbage tokens are dropped first.
    """
    words: list[str] = []
    for word in strip_unknown(text).split():
        if not words or words[-1] != word:
            words.append(word)
    for size in range(1, len(words) // 2 + 1):
        if len(words) % size == 0 and words == words[:size] * (len(words) // size):
            return " ".join(words[:size])
    return " ".join(words)


def near_phrase(text: str, phrases: Iterable[str]) -> str | None:
    """The phrase ``text`` is (:func:`match_phrase`), or is once its repeats are collapsed."""
    phrases = list(phrases)
    return match_phrase(text, phrases) or match_phrase(collapse_repeats(text), phrases)


def digit_language(phrases: Iterable[str]) -> str | None:
    """The language whose digit words the grammar ``phrases`` holds (a word for each of 0-9), if any."""
    words = set(grammar_phrases(phrases))
    for lang, table in _DIGIT_WORDS.items():
        if {digit for word, digit in table.items() if word in words} == set("0123456789"):
            return lang
    return None
