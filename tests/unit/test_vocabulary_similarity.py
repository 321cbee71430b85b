"""How alike phrases sound (ivr.speech.similarity): the distance, the confusable pairs ``ivr dialplan
check`` warns about, and the spellings it suggests from a model's vocabulary."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.speech.similarity import Speller, confusion, distance, sound_form


def table_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


TEXT = st.text(alphabet="abcᄀᄂ가각ᅡ", max_size=12) | st.text(max_size=90)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_the_bit_parallel_distance_is_the_edit_distance(a: str, b: str) -> None:
    assert distance(a, b) == table_distance(a, b) == distance(b, a)


def test_distance_of_long_strings_beyond_one_machine_word() -> None:
    a = "가나다라" * 50
    b = a[:100] + "x" + a[101:150] + a[151:] + "yz"
    assert distance(a, b) == table_distance(a, b) == 4


def test_the_sound_form_splits_hangul_into_jamo_and_ignores_what_is_not_heard() -> None:
    assert sound_form("요금") == "\u116d\u1100\u1173\u1106"  # silent ᄋ dropped; final ᆷ written as ᄆ
    assert sound_form("아니") == sound_form("안이") == sound_form(" 아 니 ")  # linking: one form
    assert sound_form("네") == sound_form("내")  # ㅔ/ㅐ are one vowel in Seoul speech
    assert sound_form("Billing!") == "billing"
    assert sound_form("요\u200b금") == sound_form("요금\u200f") == sound_form("요금")  # zero width, RTL mark
    assert sound_form("ｂｉｌｌ") == "bill"  # full width (NFKC)
    assert sound_form("") == sound_form("\u0301\u200d") == ""


@pytest.mark.parametrize(("a", "b", "why"), [
    ("요금", "요금 조회", "'요금' is part of '요금 조회'"),
    ("상담", "상담원", "'상담' sounds like the start of '상담원'"),
    ("해지", "해제", "they differ by 1 sound of 4"),
    ("일번", "이번", "they differ by 1 sound of 5"),
    ("네", "내", "they sound the same"),
    ("아니요", "안이요", "they sound the same"),
    ("환불", "환율", "they differ by 2 sounds of 6"),  # one in three: 6 swaps in 18 (bench/phrase_confusion.py)
    ("결제", "결정", "they differ by 2 sounds of 6"),
    ("billing", "filling", "they differ by 1 sound of 7"),
    ("card", "cart", "they differ by 1 sound of 4"),
    ("account", "accounts", "'account' sounds like the start of 'accounts'"),
    ("poor", "very poor", "'poor' is part of 'very poor'"),
    ("payment status", "payment stats", "they differ by 1 sound of 13"),
    ("שלום", "שלוםם", "'שלום' sounds like the start of 'שלוםם'"),
])
def test_phrases_a_recogniser_may_confuse(a: str, b: str, why: str) -> None:
    found = confusion(a, b)
    assert found is not None and found.startswith(why), found
    assert confusion(b, a) == found


@pytest.mark.parametrize(("a", "b"), [
    ("sales", "support"), ("billing", "support"), ("yes", "no"), ("one", "two"), ("cancel", "balance"),
    ("네", "아니요"), ("예", "아니요"), ("요금 문의", "상담원 연결"), ("카드 분실", "카드 결제"),
    ("해지", "요금"), ("상담원", "영어"), ("billing", "Billing"), ("", "요금"), ("\u200b", "x"),
    ("일번", "삼번"), ("요금 문의", "요금 납부"), ("balance", "cancel"),
])
def test_phrases_that_sound_different_enough(a: str, b: str) -> None:
    assert confusion(a, b) is None


def test_confusion_of_long_hostile_phrases_is_bounded_and_total() -> None:
    a, b = "가" * 200, "가" * 199 + "나"
    assert confusion(a, b) == "they differ by 1 sound of 400"  # 가: two jamo
    assert confusion("\u202e" + "x" * 200, "y" * 200) is None
    assert confusion("e\u0301" * 50, "é" * 50) is None  # the same text once composed


KO = frozenset({"상담원", "연결", "요금", "조회", "결제", "초콜렛", "아니요", "해지", "신청", "네"})
EN = frozenset({"billing", "support", "agent", "call", "back", "sales", "fraud"})


@pytest.mark.parametrize(("words", "word", "expected"), [
    (KO, "상담원연결", ["상담원 연결"]),          # written together: the model's words apart
    (KO, "해지신청", ["해지 신청"]),
    (KO, "결재", ["결제"]),                      # one jamo (ㅐ/ㅔ)
    (KO, "쵸콜렛", ["초콜렛"]),                  # one jamo
    (KO, "안이요", ["아니요"]),                  # a final consonant moved to the next syllable
    (KO, "상담윈", ["상담원"]),
    (KO, "요굼", ["요금"]),
    (EN, "biling", ["billing"]),
    (EN, "suport", ["support"]),
    (EN, "agnet", ["agent"]),                   # two letters swapped
    (EN, "frauds", ["fraud"]),
    (EN, "callback", ["call back"]),
    (EN, "zzzz", []),
    (KO, "햏햏햏", []),
    (EN, "", []),
    (EN, "\u200b\u0301", []),
    (EN, "x" * 500, []),
])
def test_spellings_the_model_knows(words: frozenset[str], word: str, expected: list[str]) -> None:
    assert Speller(words).suggest(word) == expected


def test_suggestions_for_other_scripts_use_that_scripts_letters() -> None:
    words = frozenset({"مرحبا", "שלום", "привет", "billing"})
    speller = Speller(words)
    assert speller.suggest("مرحب") == ["مرحبا"]
    assert speller.suggest("שלומ") == ["שלום"]  # ם/מ: final and plain mem
    assert speller.suggest("привет\u200f") == []  # known once the RTL mark is gone: nothing to suggest
    assert speller.suggest("прывет") == ["привет"]


def test_the_search_stops_at_its_budget() -> None:
    words = frozenset({"상담원", "연결", "요금"})
    assert Speller(words, budget=1).suggest("상담윈") == []  # the one look-up allowed finds nothing
    assert Speller(words, budget=0).suggest("상담원연결") == ["상담원 연결"]  # splits cost no edits
    assert Speller(words).suggest("상담윈") == ["상담원"]


def test_suggestions_from_the_installed_korean_model() -> None:
    from ivr.speech.server import default_model_dir
    from ivr.speech.vocabulary import model_words

    words = model_words(default_model_dir())
    assert words is not None and len(words) > 100_000
    speller = Speller(words)
    assert speller.suggest("상담원연결") == ["상담원 연결"]
    assert speller.suggest("요금조회")[0] == "요금 조회"
    assert "결제" in speller.suggest("결재")
    assert "support" in speller.suggest("supprt")


HOSTILE = (st.text(st.characters(codec="utf-8"), max_size=60)
           | st.text(alphabet="가각갃\u1100\u1161\u11a8\u0301\u200b\u200f\u202e ab", max_size=30))
SMALL = Speller(KO | EN | frozenset({"a", "ab", "가", "각"}), budget=2_000)


@settings(max_examples=150, deadline=None)
@given(HOSTILE, HOSTILE)
def test_any_text_gets_an_answer(a: str, b: str) -> None:
    why = confusion(a, b)
    assert why is None or why == confusion(b, a)
    for word in (a, b):
        found = SMALL.suggest(word)
        assert len(found) <= 3 and all(all(w in SMALL.words for w in f.split()) for f in found)
