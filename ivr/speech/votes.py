"""Several decodes of one utterance vote on what was said.

Pure functions, no I/O. The speech service decodes an utterance more than once (the same audio at
small time shifts); with a small grammar Vosk's single decode is nearly all-or-nothing in its
confidence and now and then lands on a wrong phrase, or on one for speech outside the menu. Decodes
that go wrong mostly go wrong differently, so the fraction of decodes that agree is what tells a
trustworthy answer from a lucky one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher

from ivr.speech.grammar import near_phrase, spoken_digits


@dataclass(frozen=True, slots=True)
class Decode:
    """One decode: its text without garbage tokens and its mean word confidence."""

    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Vote:
    text: str
    confidence: float
    phrase: str | None
    digits: str | None
    agreement: float
    digit_agreement: tuple[float, ...] = ()


def answer_of(text: str, phrases: list[str], digit_language: str | None) -> tuple[str | None, str | None]:
    """What one decode says: ``(phrase, digits)``.

    With a digits grammar a text of digit words only is a number (``"이 이"`` is 22, never the
    phrase ``이`` said twice); otherwise the phrase the text is, a word or the whole phrase said
    twice counting as the phrase once (:func:`~ivr.speech.grammar.near_phrase`).
    """
    if not text:
        return None, None
    if digit_language is not None:
        digits = spoken_digits(text, digit_language)
        if digits is not None:
            words = text.split()
            return (near_phrase(text, phrases) if len(words) == 1 else None), digits
    return near_phrase(text, phrases), None


def vote(decodes: list[Decode], phrases: list[str], digit_language: str | None = None) -> Vote:
    """The answer most decodes give (the earliest decode's on a tie; the first decode is the one
    that streamed), and the fraction of decodes that give it.

    The text and confidence reported are those of the decodes that voted for the answer (the text
    of the earliest, the mean confidence); without any answer, the first decode's.
    """
    if not decodes:
        raise ValueError("no decode to vote on")
    answers = [answer_of(d.text, phrases, digit_language) for d in decodes]
    counts = Counter(a for a in answers if a != (None, None))
    if not counts:
        first = decodes[0]
        return Vote(first.text, first.confidence, None, None, 0.0)
    best = max(counts.values())
    winner = next(a for a in answers if counts.get(a) == best)
    voters = [d for d, a in zip(decodes, answers, strict=True) if a == winner]
    phrase, digits = winner
    per_digit: tuple[float, ...] = ()
    if digits is not None:
        per_digit = digit_agreement(digits, [a[1] for a in answers])
    return Vote(text=voters[0].text, confidence=sum(d.confidence for d in voters) / len(voters), phrase=phrase,
                digits=digits, agreement=best / len(decodes), digit_agreement=per_digit)


def digit_agreement(digits: str, others: list[str | None]) -> tuple[float, ...]:
    """For each digit of ``digits``: the fraction of ``others`` (each decode's digits, None for a
    decode that heard no number) that have that digit there, aligned so that a digit dropped or
    added elsewhere in a decode does not shift the rest."""
    agree = [0] * len(digits)
    for other in others:
        if not other:
            continue
        for block in SequenceMatcher(None, digits, other, autojunk=False).get_matching_blocks():
            for i in range(block.a, block.a + block.size):
                agree[i] += 1
    return tuple(n / len(others) for n in agree)
