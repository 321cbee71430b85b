"""How alike two phrases sound, and the words of a speech model closest to a word it does not know.

Pure functions, no I/O: ``ivr dialplan check`` uses them to warn about menu phrases a recogniser
cannot tell apart and to suggest spellings the model knows (docs/speech.md, "Grammar hygiene").

Phrases are compared in a rough *sound form* (:func:`sound_form`), by edit distance:

* Hangul syllables are split into their letters (jamo, as Unicode NFD does): ``요금`` is
  ``ᄋ ᅭ ᄀ ᅳ ᆷ``. The silent initial ``ᄋ`` is dropped, a final consonant is written as the same
  initial consonant (``안이`` and ``아니`` sound alike and get one form), and vowels Seoul speech no
  longer tells apart are merged (``ㅐ``/``ㅔ``, ``ㅒ``/``ㅖ``, ``ㅙ``/``ㅚ``/``ㅞ``).
* Other scripts are compared letter by letter (NFKC, case folded), with spaces and punctuation
  left out: the recogniser hears no spaces.

Distances are computed with the bit-parallel algorithm of Myers (1999) as given by Hyyrö (2001):
one pass over the longer string whatever the distance, so a hostile 200-character phrase costs
microseconds, not a 200 x 200 table.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from ivr.speech.grammar import normalise

_S_BASE, _S_LAST = 0xAC00, 0xD7A3
_L_COUNT, _V_COUNT, _T_COUNT = 19, 21, 28
_SILENT_LEAD = "\u110b"  # ᄋ: no sound at the start of a syllable
_LEAD_OF_TAIL = {  # a final consonant written as the initial of the same letter (ᆼ: the free ᄋ)
    "\u11a8": "\u1100", "\u11a9": "\u1101", "\u11ab": "\u1102", "\u11ae": "\u1103", "\u11af": "\u1105",
    "\u11b7": "\u1106", "\u11b8": "\u1107", "\u11ba": "\u1109", "\u11bb": "\u110a", "\u11bc": "\u110b",
    "\u11bd": "\u110c", "\u11be": "\u110e", "\u11bf": "\u110f", "\u11c0": "\u1110", "\u11c1": "\u1111",
    "\u11c2": "\u1112",
}
_MERGED_VOWEL = {"\u1162": "\u1166", "\u1164": "\u1168", "\u116b": "\u1170", "\u116c": "\u1170"}

#: Two phrases of different answers whose sound forms differ by at most one sound in this many
#: (of the longer one) are reported. See docs/speech.md ("Why these thresholds") for why.
SIMILAR_ONE_IN = 3
#: ... and so are two phrases whose sound forms differ by this many sounds or fewer, however short.
SIMILAR_EDITS = 1


def _is_syllable(ch: str) -> bool:
    return _S_BASE <= ord(ch) <= _S_LAST


def sound_form(text: str) -> str:
    """The rough sound form of ``text`` that phrases are compared in (see the module's docs)."""
    out: list[str] = []
    for ch in normalise(text):
        if not _is_syllable(ch):
            if not ch.isspace():
                out.append(ch)
            continue
        jamo = unicodedata.normalize("NFD", ch)  # initial, vowel and maybe a final consonant
        if jamo[0] != _SILENT_LEAD:
            out.append(jamo[0])
        out.append(_MERGED_VOWEL.get(jamo[1], jamo[1]))
        out += [_LEAD_OF_TAIL.get(t, t) for t in jamo[2:]]
    return "".join(out)


def distance(a: str, b: str) -> int:
    """The Levenshtein distance between ``a`` and ``b`` (insert, delete, substitute one symbol)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    m = len(b)  # b is the pattern: its positions are the bits of one integer
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    pv, mv, score = mask, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score


def _contains_words(short: str, long: str) -> bool:
    return f" {short} " in f" {long} "


@dataclass(frozen=True)
class Heard:
    """A phrase as :func:`confusion` compares it: its normalised words and its sound form."""

    words: str
    sound: str

    @classmethod
    def of(cls, phrase: str) -> Heard:
        return cls(normalise(phrase), sound_form(phrase))


def confusion(a: str | Heard, b: str | Heard) -> str | None:
    """Why phrases ``a`` and ``b`` may be taken for one another by a recogniser, or None.

    In order: they sound the same; one is a whole-word part of the other (Vosk's grammar mode
    may return a phrase with a word left out); the sound form of one starts or ends the other's; their
    sound forms are within :data:`SIMILAR_EDITS` edits or one in :data:`SIMILAR_ONE_IN` of the longer one.
    Costs at most one pass over the longer sound form (pass :class:`Heard` to compare a phrase many
    times without computing its forms again).
    """
    ha = a if isinstance(a, Heard) else Heard.of(a)
    hb = b if isinstance(b, Heard) else Heard.of(b)
    if not ha.sound or not hb.sound or ha.words == hb.words:
        return None
    if ha.sound == hb.sound:
        return "they sound the same"
    short, long = (ha, hb) if len(ha.words) <= len(hb.words) else (hb, ha)
    if _contains_words(short.words, long.words):
        return f"{short.words!r} is part of {long.words!r} (a recogniser that misses a word hears the other)"
    if (len(ha.sound), ha.sound) > (len(hb.sound), hb.sound):
        ha, hb = hb, ha
    sa, sb = ha.sound, hb.sound
    if sb.startswith(sa) or sb.endswith(sa):
        return f"{ha.words!r} sounds like the {'start' if sb.startswith(sa) else 'end'} of {hb.words!r}"
    longer = len(sb)
    allowed = max(SIMILAR_EDITS, longer // SIMILAR_ONE_IN)
    if longer - len(sa) > allowed:
        return None
    d = distance(sa, sb)
    if d <= allowed:
        return f"they differ by {d} sound{'s' if d > 1 else ''} of {longer}"
    return None


# --- spelling suggestions -----------------------------------------------------------------------
_LEADS = [chr(0x1100 + i) for i in range(_L_COUNT)]
_TAIL_OF_LEAD = {lead: tail for tail, lead in _LEAD_OF_TAIL.items() if lead != _SILENT_LEAD}
_SILENT_INDEX = 11  # index of ᄋ among the initials


def _split(ch: str) -> tuple[int, int, int]:
    n = ord(ch) - _S_BASE
    return n // (_V_COUNT * _T_COUNT), (n // _T_COUNT) % _V_COUNT, n % _T_COUNT


def _join(lead: int, vowel: int, tail: int) -> str:
    return chr(_S_BASE + (lead * _V_COUNT + vowel) * _T_COUNT + tail)


_TAIL_INDEX = {chr(0x11A7 + t): t for t in range(1, _T_COUNT)}


_NOT_HANGUL = re.compile("[^\uac00-\ud7a3]")


def _script(ch: str) -> str:
    return unicodedata.name(ch, "?").split(" ")[0]


class Speller:
    """Words of a model's vocabulary that sound closest to a word it does not know.

    Nothing is built over the whole vocabulary: the set itself is the index. Candidates are made
    from the unknown word by small edits (one or two jamo of a syllable changed, a silent-``ᄋ``
    syllable added or a syllable dropped, a final consonant moved to the next syllable; for other
    scripts one or two letters changed, added, dropped or swapped, with the letters of that script
    the vocabulary uses) and looked up, at most ``budget`` look-ups per word; a word may also be
    two or three known words written together. The candidates found are ranked by the distance of
    their sound forms.
    """

    def __init__(self, words: frozenset[str], *, budget: int = 60_000) -> None:
        self.words = words
        self.budget = budget
        self._alphabets: dict[str, str] | None = None

    def _alphabet(self, script: str) -> str:
        if self._alphabets is None:  # once: the letters of the vocabulary, by script (not Hangul)
            found: dict[str, set[str]] = {}
            for ch in set(_NOT_HANGUL.findall("".join(self.words))):
                if ch.isalpha():
                    found.setdefault(_script(ch), set()).add(ch)
            self._alphabets = {s: "".join(sorted(chars)) for s, chars in found.items()}
        return self._alphabets.get(script, "")[:200]

    def _edits(self, word: str) -> Iterator[str]:
        """Words one small edit away from ``word`` (see the class's docs)."""
        n = len(word)
        for i, ch in enumerate(word):
            head, rest = word[:i], word[i + 1:]
            if _is_syllable(ch):
                lead, vowel, tail = _split(ch)
                for k in range(_L_COUNT):
                    if k != lead:
                        yield head + _join(k, vowel, tail) + rest
                for k in range(_V_COUNT):
                    if k != vowel:
                        yield head + _join(lead, k, tail) + rest
                for k in range(_T_COUNT):
                    if k != tail:
                        yield head + _join(lead, vowel, k) + rest
                yield head + rest
                nxt = word[i + 1] if i + 1 < n else ""
                if nxt and _is_syllable(nxt):
                    lead2, vowel2, tail2 = _split(nxt)
                    moved = _LEAD_OF_TAIL.get(chr(0x11A7 + tail)) if tail else None
                    if moved and lead2 == _SILENT_INDEX and moved != _SILENT_LEAD:  # 안이 -> 아니
                        yield head + _join(lead, vowel, 0) + _join(ord(moved) - 0x1100, vowel2, tail2) + word[i + 2:]
                    back = _TAIL_OF_LEAD.get(_LEADS[lead2])
                    if not tail and back:  # 아니 -> 안이
                        yield (head + _join(lead, vowel, _TAIL_INDEX[back]) + _join(_SILENT_INDEX, vowel2, tail2)
                               + word[i + 2:])
            else:
                yield head + rest
                if i + 1 < n:
                    yield head + word[i + 1] + ch + word[i + 2:]
                if ch.isalpha():
                    for x in self._alphabet(_script(ch)):
                        if x != ch:
                            yield head + x + rest
        scripts = {_script(ch) for ch in word if ch.isalpha() and not _is_syllable(ch)}
        hangul = any(_is_syllable(ch) for ch in word)
        for i in range(n + 1):
            head, rest = word[:i], word[i:]
            if hangul:
                for v in range(_V_COUNT):
                    yield head + _join(_SILENT_INDEX, v, 0) + rest
            for s in sorted(scripts):
                for x in self._alphabet(s):
                    yield head + x + rest

    def _splits(self, word: str) -> list[str]:
        """``word`` as two or three known words of two letters or more (``상담원연결`` -> ``상담원 연결``)."""
        known = self.words
        out: list[str] = []
        if len(word) > 40:
            return out
        for i in range(2, len(word) - 1):
            left, right = word[:i], word[i:]
            if left not in known:
                continue
            if right in known:
                out.append(f"{left} {right}")
            for j in range(2, len(right) - 1):
                if right[:j] in known and right[j:] in known:
                    out.append(f"{left} {right[:j]} {right[j:]}")
        return out

    def suggest(self, word: str, *, limit: int = 3) -> list[str]:
        """Up to ``limit`` spellings the vocabulary knows that sound like ``word`` (best first)."""
        return self.search(word, limit=limit, budget=self.budget)[0]

    def search(self, word: str, *, limit: int = 3, budget: int) -> tuple[list[str], int]:
        """:meth:`suggest` with at most ``budget`` look-ups; also returns how many were made."""
        word = normalise(word).replace(" ", "")
        if not word or len(word) > 40:
            return [], 0
        target = sound_form(word)
        if not target:
            return [], 0
        found: dict[str, int] = {}
        hangul = all(_is_syllable(ch) for ch in word)
        if hangul:  # Korean is often written without the spaces of the model's words
            for split in self._splits(word)[:limit]:
                found[split] = distance(target, sound_form(split))
        allowed = max(SIMILAR_EDITS, min(2, round(0.4 * len(target))))
        spent = 0
        frontier: list[str] = []
        seen: set[str] = {word}
        for cand in itertools.islice(self._edits(word), budget):
            spent += 1
            if cand in seen:
                continue
            seen.add(cand)
            frontier.append(cand)
            if cand in self.words:
                found.setdefault(cand, distance(target, sound_form(cand)))
        if allowed > 1 and not any(d <= 1 for d in found.values()):
            for first in frontier:  # a second edit, while the budget lasts
                if spent >= budget:
                    break
                for cand in itertools.islice(self._edits(first), budget - spent):
                    spent += 1
                    if cand in self.words and cand not in found and cand != word:
                        found[cand] = distance(target, sound_form(cand))
        if not hangul and not found:  # elsewhere two words written together are rarer than a typo
            for split in self._splits(word)[:limit]:
                if split.count(" ") == 1 and min(map(len, split.split())) >= 3:
                    found[split] = distance(target, sound_form(split))
        ranked = sorted((d, abs(len(c) - len(word)), c) for c, d in found.items() if d <= allowed and c != word)
        return [c for _, _, c in ranked[:limit]], spent
