"""``ivr dialplan check`` agrees with what calls do: phrases as the recogniser matches them, numbers
as the edge compares them, prompts as ``ivr run`` renders them, variables and queues that exist."""

from __future__ import annotations

import struct
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.core.config import DEMO_USERS, Settings
from ivr.dialplan.checks import check_files
from ivr.speech.grammar import match_phrase

SAFE = dict(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def cfg(tmp_path: Path, **extra: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", dialplans_dir=tmp_path / "plans",
                    prompts={"dir": tmp_path / "prompts"}, **extra)  # type: ignore[arg-type]


def check(tmp_path: Path, text: str, *, prompts: bool = False, name: str = "plan.yaml",
          **extra: object) -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return [f"{p.line}:{p.col}: {p.severity}: {p.code}: {p.message}"
            for p in check_files([path], cfg(tmp_path, **extra), prompts=prompts)]


def menu(*says: list[str]) -> str:
    opts = "".join(f"      - {{digit: \"{i + 1}\", say: {say!r}, goto: h}}\n".replace("'", '"')
                   for i, say in enumerate(says))
    return ('name: t\nnumbers: ["1"]\nstart: m\nnodes:\n  m:\n    type: menu\n    prompt: Hi.\n'
            f"    options:\n{opts}  h: {{type: hangup}}\n")


# --- phrases ------------------------------------------------------------------------------------------
def variants(phrase: str) -> st.SearchStrategy[str]:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in phrase)
    return st.sampled_from([phrase.upper(), phrase.title(), f"  {phrase}  ", phrase.replace(" ", "  "),
                            phrase.replace(" ", ""), f"{phrase}!", f"{phrase}?", fullwidth,
                            unicodedata.normalize("NFD", phrase), unicodedata.normalize("NFKD", phrase)])


WORDS = st.sampled_from(["billing", "agent", "요금 문의", "상담원 연결", "café", "ﬁle", "Ａｇｅｎｔ", "해지 신청",
                         "call me back", "ｙｅｓ"])


@given(data=st.data(), phrase=WORDS)
@settings(**SAFE)
def test_phrases_a_call_cannot_tell_apart_are_refused(tmp_path: Path, data: st.DataObject, phrase: str) -> None:
    other = data.draw(variants(phrase))
    assert match_phrase(other, [phrase]) == phrase  # a call takes the one for the other...
    out = check(tmp_path, menu([phrase], [other]))
    assert len(out) == 1 and "are the same answer to a recogniser" in out[0], out  # ...so check refuses both


@pytest.mark.parametrize("phrase", ["!!!", "  ", "[unk]", "...", "<unk>", "?"])
def test_phrases_that_can_never_match_are_refused(tmp_path: Path, phrase: str) -> None:
    out = check(tmp_path, menu(["billing", phrase]))
    assert len(out) == 1 and "has no word a recogniser could match" in out[0]


def test_callback_survey_and_confirm_phrases_too(tmp_path: Path) -> None:
    head = 'name: t\nnumbers: ["1"]\nstart: a\n'
    out = check(tmp_path, head + "nodes:\n  a: {type: callback, queue: q, prompt: x, accept_say: [Yes, 'yes!']}\n")
    assert [o for o in out if ": error: " in o] == []  # one answer spelt twice is fine
    out = check(tmp_path, head + "nodes:\n  a: {type: callback, queue: q, prompt: x, accept_say: [Yes, '?!']}\n")
    assert [o for o in out if ": error: " in o and "has no word a recogniser could match" in o]
    out = check(tmp_path, head + "nodes:\n  a: {type: survey, prompt: x, scale: {'5': [Great], '1': [great]}}\n")
    assert len(out) == 1 and "same answer to a recogniser" in out[0]
    out = check(tmp_path, head + "nodes:\n  a: {type: survey, prompt: x, scale: {'9': [super]}}\n")
    assert len(out) == 1 and "scale keys are the scores 1..5" in out[0]
    out = check(tmp_path, head + "confirm: {yes: {en: [yes]}, no: {en: [YES]}}\nnodes:\n  a: {type: hangup}\n")
    assert len(out) == 1 and "same answer to a recogniser" in out[0]


# --- numbers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("number,hint", [
    ("1 000", "'1000'"), ("+1-555-0100", "'+15550100'"), ("(02) 1234", "'021234'"), ("１０００", "'1000'"),
    ("", None), ("abc", None), ("+", None), ("++1", None), ("1000;x", None), ("*1", None), ("1" * 33, None),
    ("sip:1000@host", None), ("10\t00", "'1000'")])
def test_numbers_are_digits_with_an_optional_plus(tmp_path: Path, number: str, hint: str | None) -> None:
    text = f'name: t\nnumbers: ["1", {number!r}]\nstart: h\nnodes:\n  h: {{type: hangup}}\n'.replace("'", '"')
    out = check(tmp_path, text)
    assert len(out) == 1 and "is not a dialled number" in out[0], out
    assert (f"(write {hint})" in out[0]) if hint else "(write" not in out[0]


@given(number=st.from_regex(r"\A\+?[0-9]{1,32}\Z"))
@settings(**SAFE)
def test_well_formed_numbers_pass(tmp_path: Path, number: str) -> None:
    assert check(tmp_path, f'name: t\nnumbers: ["{number}", "*"]\nstart: h\nnodes:\n  h: {{type: hangup}}\n') == []


def test_a_new_file_is_checked_against_the_numbers_already_in_service(tmp_path: Path) -> None:
    live = tmp_path / "plans"
    live.mkdir()
    (live / "hotline.yaml").write_text('name: live\nnumbers: ["1000"]\nstart: h\nnodes:\n  h: {type: hangup}\n')
    (live / "broken.yaml").write_text("name: [")
    new = 'name: new\nnumbers: ["2000", "1000"]\nstart: h\nnodes:\n  h: {type: hangup}\n'
    out = check(tmp_path, new)
    assert out == [f"2:19: error: dialplan.duplicate_number: number '1000' is already answered by "
                   f"{live / 'hotline.yaml'} (in service)"]
    (live / "hotline.yaml").write_text(new)  # the file in service itself, checked again: no conflict
    path = live / "hotline.yaml"
    assert check_files([path], cfg(tmp_path), prompts=False) == []


# --- prompts as `ivr run` renders them -------------------------------------------------------------------
def test_text_prompts_in_a_language_without_a_voice_are_errors_even_without_prompt_rendering(
        tmp_path: Path) -> None:
    text = ('name: t\nnumbers: ["1"]\nstart: l\nnodes:\n  l: {type: language, language: fr, next: h}\n'
            '  h: {type: hangup, prompt: "Goodbye."}\n')
    for prompts in (False, True):
        out = check(tmp_path, text, prompts=prompts)
        assert out == ["6:21: error: prompt.no_voice: nodes.h.prompt: no speech voice for language 'fr' "
                       "(prompts.voices has: en, ko); callers in 'fr' would hear nothing"]


@pytest.mark.parametrize("text", ["...", "!?", "  -  ", "{{}}"])
def test_texts_with_nothing_to_speak_are_errors(tmp_path: Path, text: str) -> None:
    out = check(tmp_path, f'name: t\nnumbers: ["1"]\nstart: h\nnodes:\n  h: {{type: hangup, prompt: "{text}"}}\n')
    assert len(out) == 1 and "prompt.tts_failed" in out[0] and "nothing to speak" in out[0]


# --- variables and queues ---------------------------------------------------------------------------------
def test_template_variables_never_set_are_warnings(tmp_path: Path) -> None:
    text = ('name: t\nnumbers: ["1"]\nvariables: {brand: X}\nstart: l\nnodes:\n'
            '  l: {type: lookup, url: "https://crm.example/x?c={caller}", prefix: crm, store: {tier: a.b}, next: s}\n'
            '  s: {type: set, variables: {reason: "{brand} {crm.name} {tier}"}, next: h}\n'
            '  h: {type: hangup, prompt: "Bye {reason} {acount} {phrase}"}\n')
    out = check(tmp_path, text, dialplan={"lookup_hosts": ["crm.example"]})
    assert out == ["8:21: warning: dialplan.template_variable: nodes.h.prompt.text: {acount} is never set by "
                   "this plan (renders as an empty text)",
                   "8:21: warning: dialplan.template_variable: nodes.h.prompt.text: {phrase} is set only in the "
                   "confirm prompt (renders empty here)"]


def test_queues_routing_does_not_know_and_no_agent_serves_are_warnings(tmp_path: Path) -> None:
    text = ('name: t\nnumbers: ["1"]\nstart: a\nnodes:\n  a: {type: queue, queue: billing, keys: [{digit: "1", '
            'goto: b}]}\n  b: {type: queue, queue: biling, keys: [{digit: "1", goto: c}]}\n'
            '  c: {type: queue, queue: vip, skills: [billing], keys: [{digit: "1", goto: d}]}\n'
            '  d: {type: callback, queue: routed, prompt: x}\n')
    out = check(tmp_path, text, routing={"queues": {"routed": {"skills": ["billing"]}}}, users=DEMO_USERS)
    assert out == ["6:27: warning: dialplan.queue_unknown: b: queue 'biling' is not in routing.queues and no agent "
                   "has the skill 'biling': callers would wait for nobody"]
    # with no agents in the configuration (a default install makes its own; admins add more over the
    # API) nothing can tell who serves a queue: no warning
    assert check(tmp_path, text, routing={"queues": {"routed": {"skills": ["billing"]}}}) == []


# --- speech: words the model knows ----------------------------------------------------------------------
def fst_with_words(words: list[str], *, both_tables: bool = True) -> bytes:
    def string(b: bytes) -> bytes:
        return struct.pack("<i", len(b)) + b

    def table() -> bytes:
        body = b"".join(string(w.encode()) + struct.pack("<q", i) for i, w in enumerate(words))
        return struct.pack("<i", 2125658996) + string(b"words.txt") + struct.pack("<qq", len(words), len(words)) + body

    flags = 3 if both_tables else 2
    head = (struct.pack("<i", 2125659606) + string(b"vector") + string(b"standard") + struct.pack("<ii", 2, flags)
            + struct.pack("<Qqqq", 0, 0, 1, 0))
    return head + (table() if both_tables else b"") + table() + b"\x00" * 64


@pytest.mark.parametrize("layout", ["words.txt", "Gr.fst", "Gr.fst-output-only"])
def test_phrases_with_words_outside_the_models_vocabulary_are_warnings(tmp_path: Path, layout: str) -> None:
    model = tmp_path / f"model-{layout}"
    (model / "graph").mkdir(parents=True)
    words = ["<eps>", "billing", "agent", "yes", "상담원", "연결"]
    if layout == "words.txt":
        (model / "graph" / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(words)))
    else:
        (model / "graph" / "Gr.fst").write_bytes(fst_with_words(words, both_tables=layout == "Gr.fst"))
    out = check(tmp_path, menu(["Billing", "billing info"], ["상담원 연결"], ["agent", "fraud"]), prompts=True,
                speech={"model_dir": model})
    assert out == ["9:39: warning: speech.unknown_word: nodes.m.options.0.say.1: 'info' not in the speech model's "
                   "vocabulary: the phrase is left out of the grammar and never recognised (is the model for this "
                   "language?)",
                   "11:37: warning: speech.unknown_word: nodes.m.options.2.say.1: 'fraud' not in the speech model's "
                   "vocabulary: the phrase is left out of the grammar and never recognised (is the model for this "
                   "language?)"]


def test_the_installed_korean_model_knows_korean_menu_words_and_not_english_ones(tmp_path: Path) -> None:
    out = check(tmp_path, menu(["상담원 연결", "요금"], ["billing"]), prompts=True)
    assert len(out) == 1 and "'billing' not in the speech model's vocabulary" in out[0]


@pytest.mark.parametrize("raw", [b"", b"\x00" * 10, struct.pack("<i", 2125659606) + struct.pack("<i", 10**6),
                                 fst_with_words(["a"])[:60]])
def test_a_damaged_word_list_is_an_error_not_a_crash(tmp_path: Path, raw: bytes) -> None:
    from ivr.speech.vocabulary import VocabularyError, fst_output_words

    path = tmp_path / "Gr.fst"
    path.write_bytes(raw)
    with pytest.raises(VocabularyError):
        fst_output_words(path)
