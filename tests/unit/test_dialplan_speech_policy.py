"""The speech policy of dial plans alone: the decision table (take / confirm / no match), the read-back
prompts of spoken digits and the options suggested after a wrong answer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ivr.dialplan.engine import decide
from ivr.dialplan.model import Confirm, Listen, MenuNode, Plan, Prompt
from ivr.dialplan.spoken import SpokenDigit, generated_prompts, read_back, suggestion_text

L = Listen()


def test_defaults_are_the_benchmarked_ones() -> None:
    assert (L.accept, L.agree, L.confirm) == (0.96, 1.0, 0.45)


@pytest.mark.parametrize(("confidence", "agreement", "decodes", "verdict"), [
    (1.0, 1.0, 1, "take"),             # one decode, sure
    (0.96, 1.0, 5, "take"),            # sure, and every decode agrees: taken
    (1.0, 0.8, 5, "confirm"),          # sure but one decode of five disagrees: confirm, never take
    (1.0, 0.2, 8, "confirm"),          # out-of-grammar speech forced onto a phrase at 1.0 by one decode
    (0.959, 1.0, 8, "confirm"),        # just below accept
    (0.45, 0.0, 8, "confirm"),         # confirm boundary, no agreement
    (0.449, 1.0, 8, "confirm"),        # unsure, but all decodes agreed: worth one question
    (0.449, 0.875, 8, "no_match"),     # unsure and not all agreed
    (0.449, 1.0, 1, "no_match"),       # one decode always agrees with itself: no evidence
    (0.0, 0.0, 1, "no_match"),
])
def test_decision_table(confidence: float, agreement: float, decodes: int, verdict: str) -> None:
    assert decide(confidence, agreement, L, decodes) == verdict


def test_thresholds_of_a_node_are_used() -> None:
    strict = Listen(accept=1.0, agree=1.0, confirm=0.9)
    assert decide(0.99, 1.0, strict) == "confirm" and decide(0.89, 1.0, strict) == "no_match"
    assert decide(1.0, 0.875, strict, 8) == "confirm" and decide(1.0, 1.0, strict, 8) == "take"
    lax = Listen(accept=0.5, agree=0.0, confirm=0.0)
    assert decide(0.5, 0.0, lax) == "take" and decide(0.0, 0.0, lax) == "confirm"


@pytest.mark.parametrize("bad", [{"agree": 1.1}, {"agree": -0.1}, {"confirm": 0.97}, {"accept": 0.4}])
def test_listen_refuses_out_of_range_or_crossed_thresholds(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Listen.model_validate(bad)


def test_read_back_speaks_each_digit_as_its_own_prompt() -> None:
    c = Confirm()
    prompts = read_back(c.read_back, "9070", "en", "en")
    assert [p.text for p in prompts] == ["I heard ", "nine", "zero", "seven", "zero",
                                         "Press 1 or say yes if that is right, otherwise press 2 or say no."]
    assert [type(p) is SpokenDigit for p in prompts] == [False, True, True, True, True, False]
    ko = read_back(c.read_back, "35", "ko", "en")
    assert [p.text for p in ko][:2] == ["삼", "오"] and ko[2].text.startswith("라고 들었습니다")
    other = read_back(c.read_back, "12", "fr", "en")   # no digit words: the digit itself, English text
    assert [p.text for p in other][1:3] == ["1", "2"]


def test_read_back_with_a_recording_plays_the_digits_then_the_recording() -> None:
    rec = Prompt(file="is-that-right")
    prompts = read_back(rec, "12", "en", "en")
    assert [p.text for p in prompts[:2]] == ["one", "two"] and prompts[2] is rec


@pytest.mark.parametrize("text", ["No digits here.", {"en": "I heard {digits}.", "ko": "맞습니까?"},
                                  "{digits} and {digits}"])
def test_a_read_back_text_needs_its_digits_placeholder_once(text: str | dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="digits"):
        Confirm(read_back=Prompt(text=text))


def menu(**kw: object) -> MenuNode:
    data = {"type": "menu", "prompt": "Menu.", "options": [
        {"digit": "1", "say": ["billing", "요금 문의"], "goto": "a"},
        {"digit": "2", "say": ["상담원 연결", "support"], "goto": "b"},
        {"digit": "3", "goto": "c"},
        {"say": ["fraud"], "goto": "d"}], **kw}
    return MenuNode.model_validate(data)


def test_suggestion_names_phrases_in_the_callers_language_and_the_keys() -> None:
    assert suggestion_text(menu(), "en") == "You can say billing, support or fraud, or press 1, 2 or 3."
    assert suggestion_text(menu(), "ko") == ("요금 문의, 상담원 연결, fraud 중 하나를 말씀하시거나, "
                                             "1, 2, 3번을 누르세요.")
    assert suggestion_text(menu(), "de").startswith("You can say billing")   # other languages: English


def test_suggestion_without_speech_or_without_keys() -> None:
    assert suggestion_text(menu(listen={"enabled": False}), "en") == "You can press 1, 2 or 3."
    keys = MenuNode.model_validate({"type": "menu", "prompt": "M", "options": [{"digit": "5", "goto": "a"}]})
    assert suggestion_text(keys, "ko") == "5번을 누르세요."
    said = MenuNode.model_validate({"type": "menu", "prompt": "M", "options": [{"say": ["a {b}"], "goto": "a"}]})
    assert suggestion_text(said, "en") == "You can say a {{b}}."   # a phrase is not a template


def test_the_build_gets_every_generated_prompt_of_a_plan() -> None:
    plan = Plan.model_validate({"name": "p", "numbers": ["1"], "start": "m", "nodes": {
        "m": {"type": "menu", "prompt": "M", "options": [{"digit": "1", "say": ["one"], "goto": "c"}]},
        "n": {"type": "menu", "prompt": "M", "no_match": "No.", "options": [{"digit": "1", "goto": "c"}]},
        "c": {"type": "collect", "prompt": "Digits?", "variable": "x", "next": "l"},
        "l": {"type": "language", "language": "ko"}}})
    got = [(node, lang, p.text) for node, _field, lang, p in generated_prompts(plan)]
    assert ("m", "en", "You can say one, or press 1.") in got and not [g for g in got if g[0] == "n"]
    assert {t for _n, lang, t in got if lang == "ko"} >= {"공", "구", "라고 들었습니다. 맞으면 1번 또는 네, "
                                                             "아니면 2번 또는 아니요 라고 말씀하세요."}
    assert len([g for g in got if g[0] == "-" and g[1] == "en"]) == 12   # I heard, ten digits, the question
