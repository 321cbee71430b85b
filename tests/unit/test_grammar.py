"""Grammar helpers: building Vosk grammars, matching phrases, spoken numbers to digits."""

from __future__ import annotations

import json

import pytest

from ivr.speech.grammar import (
    build_grammar,
    collapse_repeats,
    digit_language,
    digit_words,
    grammar_phrases,
    match_phrase,
    near_phrase,
    normalise,
    spoken_digits,
    strip_unknown,
)


def test_normalise_case_spacing_punctuation() -> None:
    assert normalise("  Talk   to an AGENT! ") == "talk to an agent"
    assert normalise("상담원,  연결.") == "상담원 연결"
    assert normalise("[unk]") == "[unk]"


def test_build_grammar_normalises_dedupes_and_appends_unk() -> None:
    grammar = build_grammar(["요금 문의", "상담원  연결", "Billing", "billing", "해지", "요금 문의", " "])
    assert json.loads(grammar) == ["요금 문의", "상담원 연결", "billing", "해지", "[unk]"]
    assert "\\u" not in grammar  # Hangul stays readable in logs and in Vosk


def test_build_grammar_unk_given_once_and_replaceable() -> None:
    assert json.loads(build_grammar(["yes", "[unk]", "no"])) == ["yes", "no", "[unk]"]
    assert json.loads(build_grammar(["yes"], unk="<UNK>")) == ["yes", "<UNK>"]
    assert json.loads(build_grammar(["yes"], unk=None)) == ["yes"]
    assert grammar_phrases(["", "  ", "[UNK]"]) == []


def test_strip_unknown() -> None:
    assert strip_unknown("<UNK> 해지 [unk]") == "해지"
    assert strip_unknown("[unk]") == ""
    assert strip_unknown("[10] 억") == "[10] 억"  # bracketed words of a model are words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("상담원 연결", "상담원 연결"),
        ("상담원연결", "상담원 연결"),
        ("상 담원 연 결", "상담원 연결"),
        ("요금 문의", "요금문의"),  # configured without a space: returned as configured
        ("<UNK> 해지", "해지"),
        ("TALK TO AN AGENT", "talk to an agent"),
    ],
)
def test_match_phrase_tolerates_spacing_case_and_garbage(text: str, expected: str) -> None:
    assert match_phrase(text, ["요금문의", "상담원 연결", "해지", "talk to an agent"]) == expected


@pytest.mark.parametrize("text", ["", "[unk]", "연결", "해지 해지", "요금문의 해지", "상담원 연결 해지"])
def test_match_phrase_rejects_fragments_and_combinations(text: str) -> None:
    assert match_phrase(text, ["요금문의", "상담원 연결", "해지"]) is None


def test_match_phrase_without_phrases() -> None:
    assert match_phrase("해지", []) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("일 이 삼", "123"),
        ("공 일 공", "010"),
        ("영 구 팔 칠 육 오 사", "0987654"),
        ("일이삼사", "1234"),
        ("빵 칠", "07"),
        ("  일,  이. ", "12"),
    ],
)
def test_spoken_digits_korean(text: str, expected: str) -> None:
    assert spoken_digits(text, "ko") == expected
    assert spoken_digits(text, "ko-KR") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("one two three", "123"),
        ("Oh Nine Zero", "090"),
        ("double five six", "556"),
        ("triple oh", "000"),
        ("four", "4"),
    ],
)
def test_spoken_digits_english(text: str, expected: str) -> None:
    assert spoken_digits(text, "en") == expected
    assert spoken_digits(text, "en-US") == expected


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("", "ko"),
        ("[unk]", "ko"),
        ("일 이 [unk]", "ko"),
        ("상담원", "ko"),
        ("일이삼요", "ko"),
        ("one two", "ko"),
        ("일 이", "en"),
        ("one twenty", "en"),
        ("double", "en"),
        ("five double", "en"),
        ("double double five", "en"),
    ],
)
def test_spoken_digits_rejects_anything_else(text: str, language: str) -> None:
    assert spoken_digits(text, language) is None


def test_spoken_digits_unknown_language() -> None:
    with pytest.raises(ValueError, match="fr"):
        spoken_digits("un deux", "fr")


def test_digit_words_make_a_digits_grammar() -> None:
    words = digit_words("ko")
    assert {"공", "영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"} <= set(words)
    assert all(spoken_digits(w, "ko") is not None for w in words)
    assert spoken_digits(" ".join(digit_words("en")), "en") is not None


def test_collapse_repeats() -> None:
    assert collapse_repeats("해지 해지") == "해지"
    assert collapse_repeats("[unk] 해지 <UNK> 해지 해지") == "해지"
    assert collapse_repeats("요금 문의 요금 문의 요금 문의") == "요금 문의"
    assert collapse_repeats("요금 요금 문의") == "요금 문의"
    assert collapse_repeats("요금 문의 해지") == "요금 문의 해지"
    assert collapse_repeats("") == ""


def test_near_phrase_takes_repeats_but_never_fragments() -> None:
    menu = ["요금 문의", "상담원 연결", "해지"]
    assert near_phrase("해지 해지", menu) == "해지"
    assert near_phrase("요금문의 요금문의", ["요금문의"]) == "요금문의"
    assert near_phrase("상담원", menu) is None
    assert near_phrase("연결 문의", menu) is None
    assert near_phrase("해지 요금 문의", menu) is None


def test_digit_language_needs_a_word_for_every_digit() -> None:
    assert digit_language(["상담원 연결", *digit_words("ko")]) == "ko"
    assert digit_language(digit_words("en")) == "en"
    assert digit_language(["일", "이", "삼"]) is None
    assert digit_language(["요금 문의", "해지"]) is None
