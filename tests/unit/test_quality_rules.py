"""The quality rules on hand-made transcripts: required phrases in their windows, forbidden words,
dead air (pauses of the recording excepted), overtalk, the talk ratio, and the score and flags."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ivr.core.config import QualityRules, QualitySettings, RequiredPhrase
from ivr.quality.rules import Transcript, Word, evaluate, find_phrase, longest_silence, normalise, score, speech_spans


def said(*items: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(w, a, b, 0.9) for w, a, b in items)


CALL = Transcript(
    agent=said(("여보세요", 0.5, 1.2), ("고객", 1.3, 1.6), ("센터", 1.6, 2.0), ("입니다", 2.0, 2.4),
               ("감사합니다", 28.0, 29.0)),
    caller=said(("요금", 3.0, 3.4), ("문의", 3.4, 3.9), ("드립니다", 3.9, 4.5), ("네", 26.0, 26.3)),
    duration_s=30.0)

NO_CHECKS = {"max_silence_s": None, "max_overtalk_s": None, "talk_ratio": None}


def checks_of(t: Transcript, **rules: object) -> dict[str, object]:
    return {c.name: c for c in evaluate(t, QualityRules.model_validate({**NO_CHECKS, **rules}))}


def test_words_are_normalised_and_a_phrase_matches_across_the_models_word_boundaries() -> None:
    assert normalise(" Hello,  WORLD! 여보세요.") == ["hello", "world", "여보세요"]
    assert find_phrase(CALL.agent, "고객센터") == [(1.3, 2.0)]          # two model words, one phrase
    assert find_phrase(CALL.agent, "고객 센터 입니다") == [(1.3, 2.4)]   # spaces do not matter
    assert find_phrase(CALL.agent, "요금") == [] and find_phrase(CALL.caller, "요금 문의") == [(3.0, 3.9)]


def test_a_required_phrase_counts_only_on_its_channel_and_in_its_window() -> None:
    greeting = {"name": "greeting", "phrase": "여보세요", "within_s": 5}
    closing = {"name": "closing", "phrase": "감사합니다", "last_s": 5}
    checks = checks_of(CALL, required=[greeting, closing,
                                       {"name": "late", "phrase": "감사합니다", "within_s": 10},
                                       {"name": "wrong_side", "phrase": "요금", "channel": "agent"},
                                       {"name": "caller_asks", "phrase": "요금 문의", "channel": "caller"}])
    assert checks["greeting"].passed and checks["greeting"].detail["at_s"] == 0.5  # type: ignore[attr-defined]
    assert checks["closing"].passed and checks["caller_asks"].passed  # type: ignore[attr-defined]
    assert not checks["late"].passed and not checks["wrong_side"].passed  # type: ignore[attr-defined]


def test_forbidden_words_are_flagged_with_where_they_were_said() -> None:
    c = checks_of(CALL, forbidden=["입니다", "바보"])["forbidden"]
    assert not c.passed and c.detail["found"] == [{"word": "입니다", "channel": "agent", "at_s": 2.0}]  # type: ignore[attr-defined]
    assert checks_of(CALL, forbidden=["요금"])["forbidden"].passed  # type: ignore[attr-defined]  # the caller said it
    assert not checks_of(CALL, forbidden=["요금"], forbidden_channel="both")["forbidden"].passed  # type: ignore[attr-defined]


def test_dead_air_is_the_longest_gap_nobody_speaks_before_the_last_word_pauses_excepted() -> None:
    assert longest_silence(CALL) == (4.5, 21.5)  # 4.5 .. 26.0
    paused = Transcript(CALL.caller, CALL.agent, 30.0, pauses=((10.0, 20.0),))
    at, length = longest_silence(paused)
    assert (at, round(length, 2)) == (20.0, 6.0)
    assert not checks_of(CALL, max_silence_s=15)["silence"].passed  # type: ignore[attr-defined]
    assert checks_of(paused, max_silence_s=15)["silence"].passed  # type: ignore[attr-defined]
    lead = Transcript(agent=said(("여보세요", 12.0, 12.5)), duration_s=20.0)
    assert longest_silence(lead) == (0.0, 12.0)  # nobody answered for 12 s: dead air too


def test_overtalk_is_the_time_both_sides_speak_at_once() -> None:
    t = Transcript(agent=said(("a", 0.0, 1.0), ("b", 1.2, 3.0), ("c", 10.0, 12.0)),
                   caller=said(("x", 2.0, 4.0), ("y", 11.0, 11.5)), duration_s=12.0)
    assert speech_spans(t.agent) == [(0.0, 3.0), (10.0, 12.0)]
    c = checks_of(t, max_overtalk_s=1.0)["overtalk"]
    assert not c.passed and c.detail == {"total_s": 1.5, "times": 2, "max_s": 1.0}  # type: ignore[attr-defined]
    assert checks_of(t, max_overtalk_s=2.0)["overtalk"].passed  # type: ignore[attr-defined]


def test_the_talk_ratio_is_the_agents_share_of_the_talk_time() -> None:
    c = checks_of(CALL, talk_ratio=(0.2, 0.8))["talk_ratio"]
    assert c.detail["agent_s"] == 2.9 and c.detail["caller_s"] == 1.8 and c.passed  # type: ignore[attr-defined]
    assert not checks_of(CALL, talk_ratio=(0.7, 1.0))["talk_ratio"].passed  # type: ignore[attr-defined]
    silent = checks_of(Transcript(duration_s=5.0), talk_ratio=(0.0, 1.0))["talk_ratio"]
    assert not silent.passed and silent.detail["ratio"] is None  # type: ignore[attr-defined]  # nobody spoke


def test_the_score_is_the_passed_weight_over_all_and_the_flags_name_the_failed_checks() -> None:
    rules = QualityRules(required=[RequiredPhrase(name="greeting", phrase="여보세요", within_s=5, weight=40),
                                   RequiredPhrase(name="closing", phrase="안녕히", last_s=5, weight=20)],
                         forbidden=["바보"], forbidden_weight=20, max_silence_s=15, silence_weight=20,
                         max_overtalk_s=None, talk_ratio=None)
    value, flags = score(evaluate(CALL, rules))
    assert (value, flags) == (60, ["closing", "silence"])  # 40 + 20 of 100
    assert score([]) == (100, [])
    assert score(evaluate(CALL, QualityRules(**NO_CHECKS, required=[
        RequiredPhrase(name="x", phrase="없는말", weight=0)]))) == (100, ["x"])  # unweighted: a flag only


def test_rules_are_validated_and_a_queue_without_rules_gets_the_default() -> None:
    with pytest.raises(ValidationError, match="within_s or last_s"):
        RequiredPhrase(name="g", phrase="x", within_s=1, last_s=1)
    with pytest.raises(ValidationError, match="talk_ratio"):
        QualityRules(talk_ratio=(0.9, 0.1))
    with pytest.raises(ValidationError, match="distinct names"):
        QualityRules(required=[RequiredPhrase(name="g", phrase="a"), RequiredPhrase(name="g", phrase="b")])
    q = QualitySettings(rules={"billing": QualityRules(forbidden=["바보"])})
    assert q.rules_for("billing")[0] == "billing" and q.rules_for("sales") == ("default", q.default_rules)
