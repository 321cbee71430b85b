"""Voting of several decodes of one utterance, and the result as it travels on the wire."""

from __future__ import annotations

import pytest

from ivr.speech.client import RecognitionResult
from ivr.speech.grammar import digit_words
from ivr.speech.votes import Decode, answer_of, digit_agreement, vote

MENU = ["요금 문의", "상담원 연결", "해지"]
DIGITS = ["상담원 연결", *digit_words("ko")]


def decodes(*texts: str, conf: float = 1.0) -> list[Decode]:
    return [Decode(t, conf) for t in texts]


def test_the_phrase_most_decodes_give_wins_with_its_share() -> None:
    v = vote(decodes("해지", "요금 문의", "해지", "해지", ""), MENU)
    assert (v.phrase, v.agreement, v.text) == ("해지", 0.6, "해지")


def test_a_tie_goes_to_the_streaming_decode() -> None:
    v = vote(decodes("요금 문의", "해지", "해지", "요금 문의"), MENU)
    assert (v.phrase, v.agreement) == ("요금 문의", 0.5)


def test_out_of_grammar_speech_scatters_so_agreement_stays_low() -> None:
    v = vote(decodes("연결 문의", "요금 문의", "해지", "문의", "상담원"), MENU)
    assert v.phrase == "요금 문의" and v.agreement == 0.2
    nothing = vote(decodes("연결 문의", "문의", "", "요금", "상담원"), MENU)
    assert (nothing.phrase, nothing.agreement, nothing.text) == (None, 0.0, "연결 문의")


def test_one_decode_agrees_with_itself() -> None:
    assert vote(decodes("상담원 연결"), MENU).agreement == 1.0
    assert vote(decodes("상담원"), MENU).agreement == 0.0


def test_confidence_is_the_mean_of_the_decodes_that_voted_for_the_answer() -> None:
    v = vote([Decode("해지", 0.9), Decode("요금 문의", 1.0), Decode("해지", 0.7)], MENU)
    assert v.confidence == pytest.approx(0.8)


def test_a_word_or_phrase_said_twice_counts_as_the_phrase() -> None:
    assert answer_of("해지 해지", MENU, None) == ("해지", None)
    assert answer_of("요금 문의 요금 문의", MENU, None) == ("요금 문의", None)
    assert answer_of("상담원 상담원 연결", MENU, None) == ("상담원 연결", None)
    # a fragment, or two different phrases, is still no phrase
    assert answer_of("상담원", MENU, None) == (None, None)
    assert answer_of("해지 요금 문의", MENU, None) == (None, None)
    assert answer_of("요금 해지 요금", MENU, None) == (None, None)


def test_digits_vote_as_a_number_with_agreement_per_digit() -> None:
    v = vote(decodes("일 이 삼 사", "일 이 삼 사", "일 이 사", "칠 이 삼 사", "상담원 연결"), DIGITS, "ko")
    assert (v.digits, v.phrase, v.agreement) == ("1234", None, 0.4)
    # position by position, a dropped digit does not shift the rest
    assert v.digit_agreement == (0.6, 0.8, 0.6, 0.8)


def test_a_digit_said_twice_is_two_digits_not_one_phrase() -> None:
    assert answer_of("이 이", DIGITS, "ko") == (None, "22")
    assert answer_of("삼", DIGITS, "ko") == ("삼", "3")
    assert answer_of("상담원 연결", DIGITS, "ko") == ("상담원 연결", None)
    v = vote(decodes("삼", "삼", "사"), DIGITS, "ko")
    assert (v.digits, v.phrase, v.digit_agreement) == ("3", "삼", (2 / 3,))


def test_digit_agreement_alignment() -> None:
    assert digit_agreement("1234", ["1234", None, "12345", "0234"]) == (0.5, 0.75, 0.75, 0.75)


def test_vote_needs_a_decode() -> None:
    with pytest.raises(ValueError):
        vote([], MENU)


def test_result_round_trips_on_the_wire() -> None:
    result = RecognitionResult(text="일 이", confidence=0.9, phrase=None, reason="speech", agreement=0.8,
                               decodes=5, digits="12", digit_agreement=(1.0, 0.8))
    assert RecognitionResult.from_message(result.to_message()) == result


def test_a_final_from_a_service_without_voting_still_parses() -> None:
    old = {"type": "final", "text": "해지", "confidence": 0.97, "phrase": "해지", "reason": "speech"}
    assert RecognitionResult.from_message(old) == RecognitionResult(
        text="해지", confidence=0.97, phrase="해지", reason="speech", agreement=1.0, decodes=1, digits=None)
    nothing = RecognitionResult.from_message({**old, "text": "", "phrase": None})
    assert (nothing.agreement, nothing.decodes, nothing.digit_agreement) == (0.0, 1, ())


@pytest.mark.parametrize("bad", [{"digits": "12a"}, {"digits": 12}, {"digits": "١٢"},
                                 {"digit_agreement": "1"}, {"agreement": "x"}])
def test_a_malformed_final_is_refused(bad: dict[str, object]) -> None:
    msg = {"type": "final", "text": "", "confidence": 0.0, "phrase": None, "reason": "speech", **bad}
    with pytest.raises(ValueError):
        RecognitionResult.from_message(msg)
