"""Quality rules on a transcript: required phrases, forbidden words, dead air, overtalk, talk ratio.

Pure functions of a :class:`Transcript` (the words of each channel with their times) and the
queue's :class:`~ivr.core.config.QualityRules`; :func:`evaluate` gives each check (passed or not,
its weight, what was found) and :func:`score` the call's score and flags. Speech time comes from
the words' times: words of one channel less than ``JOIN_S`` apart are one stretch of speech.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ivr.core.config import QualityRules, RequiredPhrase

Channel = Literal["caller", "agent"]
CHANNELS: tuple[Channel, Channel] = ("caller", "agent")
JOIN_S = 0.6  # words of one side closer than this are one stretch of speech
_NOT_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> list[str]:
    """Words as the index and the rules compare them: NFC, case-folded, punctuation as spaces."""
    return [w for w in _NOT_WORD.sub(" ", unicodedata.normalize("NFC", text).casefold()).split() if w]


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the recording
    end: float
    conf: float = 1.0

    def as_list(self) -> list[Any]:
        return [self.word, round(self.start, 2), round(self.end, 2), round(self.conf, 3)]

    @classmethod
    def from_list(cls, raw: Sequence[Any]) -> Word:
        return cls(str(raw[0]), float(raw[1]), float(raw[2]), float(raw[3]) if len(raw) > 3 else 1.0)


@dataclass(frozen=True)
class Transcript:
    """What each side said, with times; ``duration_s`` of the recording; ``pauses`` the spans (s)
    the recording was paused (silence by design, not dead air)."""

    caller: tuple[Word, ...] = ()
    agent: tuple[Word, ...] = ()
    duration_s: float = 0.0
    pauses: tuple[tuple[float, float], ...] = ()

    def words(self, channel: Channel) -> tuple[Word, ...]:
        return self.caller if channel == "caller" else self.agent

    def text(self, channel: Channel) -> str:
        return " ".join(w for word in self.words(channel) for w in normalise(word.word))


@dataclass(frozen=True)
class Check:
    """One rule applied to one call: ``name`` is the flag when it fails."""

    name: str
    kind: Literal["required", "forbidden", "silence", "overtalk", "talk_ratio"]
    passed: bool
    weight: int
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "passed": self.passed, "weight": self.weight, **self.detail}


@dataclass(frozen=True)
class Match:
    channel: Channel
    start: float
    end: float


def find_phrase(words: Sequence[Word], phrase: str) -> list[tuple[float, float]]:
    """Where ``phrase`` is said in ``words``: (start, end) of each run of words whose letters, spaces
    left out, contain it (the model's word boundaries need not be the phrase's)."""
    target = "".join(normalise(phrase))
    if not target:
        return []
    letters: list[str] = []
    owner: list[int] = []  # which word each letter comes from
    for i, w in enumerate(words):
        for ch in "".join(normalise(w.word)):
            letters.append(ch)
            owner.append(i)
    text = "".join(letters)
    found, at = [], text.find(target)
    while at >= 0:
        first, last = owner[at], owner[at + len(target) - 1]
        found.append((words[first].start, words[last].end))
        at = text.find(target, at + 1)
    return found


def speech_spans(words: Iterable[Word], join_s: float = JOIN_S) -> list[tuple[float, float]]:
    """The stretches of speech of one side: word times merged when less than ``join_s`` apart."""
    spans: list[tuple[float, float]] = []
    for w in sorted(words, key=lambda w: w.start):
        if spans and w.start - spans[-1][1] < join_s:
            spans[-1] = (spans[-1][0], max(spans[-1][1], w.end))
        else:
            spans.append((w.start, w.end))
    return spans


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def total(spans: Iterable[tuple[float, float]]) -> float:
    return sum(b - a for a, b in spans)


def overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans both ``a`` and ``b`` cover (each sorted, non-overlapping)."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def longest_silence(t: Transcript) -> tuple[float, float]:
    """The longest dead air (start, length in s): nobody speaks and the recording is not paused, from
    the start of the recording to the last word (what follows the last word is the hang-up)."""
    busy = _merge([*speech_spans(t.caller), *speech_spans(t.agent), *t.pauses])
    end = max((w.end for w in (*t.caller, *t.agent)), default=t.duration_s)
    best, at, cursor = 0.0, 0.0, 0.0
    for a, b in busy:
        if a >= end:
            break
        if a - cursor > best:
            best, at = a - cursor, cursor
        cursor = max(cursor, b)
    if end - cursor > best:
        best, at = end - cursor, cursor
    return at, best


def _required(t: Transcript, r: RequiredPhrase) -> Check:
    hits = find_phrase(t.words(r.channel), r.phrase)
    end = t.duration_s or max((w.end for w in t.words(r.channel)), default=0.0)
    if r.within_s is not None:
        hits = [h for h in hits if h[0] <= r.within_s]
    elif r.last_s is not None:
        hits = [h for h in hits if h[1] >= end - r.last_s]
    detail: dict[str, Any] = {"channel": r.channel, "phrase": r.phrase}
    if hits:
        detail["at_s"] = round(hits[0][0], 2)
    return Check(r.name, "required", bool(hits), r.weight, detail)


def evaluate(t: Transcript, rules: QualityRules) -> list[Check]:
    """Every check of ``rules`` on ``t``, in the order of the rules."""
    checks = [_required(t, r) for r in rules.required]
    if rules.forbidden:
        sides: tuple[Channel, ...] = CHANNELS if rules.forbidden_channel == "both" else (rules.forbidden_channel,)
        hits = sorted((round(h[0], 2), f, ch) for f in rules.forbidden for ch in sides
                      for h in find_phrase(t.words(ch), f))
        said = [{"word": f, "channel": ch, "at_s": at} for at, f, ch in hits]
        checks.append(Check("forbidden", "forbidden", not said, rules.forbidden_weight,
                            {"found": said[:20], "count": len(said)}))
    if rules.max_silence_s is not None:
        at, length = longest_silence(t)
        checks.append(Check("silence", "silence", length <= rules.max_silence_s, rules.silence_weight,
                            {"longest_s": round(length, 2), "at_s": round(at, 2), "max_s": rules.max_silence_s}))
    caller, agent = speech_spans(t.caller), speech_spans(t.agent)
    if rules.max_overtalk_s is not None:
        both = overlap(caller, agent)
        checks.append(Check("overtalk", "overtalk", total(both) <= rules.max_overtalk_s, rules.overtalk_weight,
                            {"total_s": round(total(both), 2), "times": len(both), "max_s": rules.max_overtalk_s}))
    if rules.talk_ratio is not None:
        a, c = total(agent), total(caller)
        ratio = a / (a + c) if a + c > 0 else None
        low, high = rules.talk_ratio
        checks.append(Check("talk_ratio", "talk_ratio", ratio is not None and low <= ratio <= high,
                            rules.talk_ratio_weight,
                            {"ratio": None if ratio is None else round(ratio, 3), "agent_s": round(a, 2),
                             "caller_s": round(c, 2), "min": low, "max": high}))
    return checks


def score(checks: Sequence[Check]) -> tuple[int, list[str]]:
    """The call's score, 0-100 (the weight of the passed checks over the weight of all; 100 with no
    weighted check) and its flags (the names of the failed checks, weighted or not)."""
    weight = sum(c.weight for c in checks)
    passed = sum(c.weight for c in checks if c.passed)
    value = 100 if weight == 0 else round(100 * passed / weight)
    return value, [c.name for c in checks if not c.passed]
