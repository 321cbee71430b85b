"""``ivr dialplan check`` and speech: phrases too similar to tell apart, spellings the model knows
for words it does not, and a clear word when the model cannot be read (docs/speech.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.core.config import Settings
from ivr.dialplan import checks
from ivr.dialplan.checks import check_files

ROOT = Path(__file__).resolve().parents[2]


def cfg(tmp_path: Path, **extra: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", dialplans_dir=tmp_path / "plans",
                    prompts={"dir": tmp_path / "prompts"}, **extra)  # type: ignore[arg-type]


def check(tmp_path: Path, text: str, *, prompts: bool = False, **extra: object) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return [f"{p.line}:{p.col}: {p.severity}: {p.code}: {p.message}"
            for p in check_files([path], cfg(tmp_path, **extra), prompts=prompts)]


def menu(*says: list[str], listen: str = "") -> str:
    digit = [f'digit: "{i + 1}", ' if i < 9 else "" for i in range(len(says))]
    opts = "".join(f"      - {{{digit[i]}say: {json.dumps(say, ensure_ascii=False)}, goto: h}}\n"
                   for i, say in enumerate(says))
    return (f'name: t\nnumbers: ["1"]\nstart: m\nnodes:\n  m:\n    type: menu\n    prompt: Hi.\n{listen}'
            f"    options:\n{opts}  h: {{type: hangup}}\n")


def model(tmp_path: Path, words: list[str]) -> Path:
    path = tmp_path / "model"
    (path / "graph").mkdir(parents=True)
    (path / "graph" / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(["<eps>", *words])))
    return path


# --- phrases too similar to tell apart ------------------------------------------------------------
def test_korean_phrases_of_different_options_that_sound_alike_are_warnings(tmp_path: Path) -> None:
    out = check(tmp_path, menu(["요금", "청구서"], ["요금 조회"], ["해지"], ["해제"], ["상담원 연결"]))
    assert out == [
        "10:28: warning: speech.similar_phrases: nodes.m: '요금' (options.0.say.0) and '요금 조회' "
        "(options.1.say.0) may be taken for one another: '요금' is part of '요금 조회' (a recogniser that misses "
        "a word hears the other); use phrases that sound more different (keys still work)",
        "12:28: warning: speech.similar_phrases: nodes.m: '해지' (options.2.say.0) and '해제' (options.3.say.0) "
        "may be taken for one another: they differ by 1 sound of 4; use phrases that sound more different "
        "(keys still work)",
    ]


def test_english_phrases_that_sound_alike_are_warnings(tmp_path: Path) -> None:
    out = check(tmp_path, menu(["billing"], ["filling", "support"], ["card"], ["cart"], ["accounts", "sales"]))
    assert [o.split(": ", 3)[3].split(" may be")[0] for o in out] == [
        "nodes.m: 'billing' (options.0.say.0) and 'filling' (options.1.say.0)",
        "nodes.m: 'card' (options.2.say.0) and 'cart' (options.3.say.0)",
    ]


@pytest.mark.parametrize("says", [
    [["요금", "요금 조회"], ["상담원 연결", "상담원"]],   # alike within one option: the same answer
    [["sales"], ["billing", "invoice"], ["support"]],
    [["네"], ["아니요"]],
    [["카드 분실"], ["카드 결제"]],
])
def test_phrases_that_sound_different_or_lead_to_one_option_are_fine(tmp_path: Path,
                                                                     says: list[list[str]]) -> None:
    assert check(tmp_path, menu(*says)) == []


def test_a_menu_that_does_not_listen_is_not_checked(tmp_path: Path) -> None:
    assert check(tmp_path, menu(["해지"], ["해제"], listen="    listen: {enabled: false}\n")) == []


def test_survey_scores_and_the_confirmation_words(tmp_path: Path) -> None:
    plan = ('name: t\nnumbers: ["1"]\nstart: s\nlanguage: ko\n'
            'confirm:\n  yes: {ko: [네, 맞아요], en: ["yes"]}\n  no: {ko: [내, 아니요], en: ["yes please"]}\n'
            'nodes:\n  s:\n    type: survey\n    prompt: 점수를 말씀하세요.\n'
            '    scale: {"5": [매우 만족], "4": [만족], "1": [불만]}\n')
    out = check(tmp_path, plan)
    assert out == [
        "7:13: warning: speech.similar_phrases: confirm (ko): '네' (confirm.yes) and '내' (confirm.no) may be taken "
        "for one another: they sound the same; use phrases that sound more different (keys still work)",
        "7:27: warning: speech.similar_phrases: confirm (en): 'yes' (confirm.yes) and 'yes please' (confirm.no) may "
        "be taken for one another: 'yes' is part of 'yes please' (a recogniser that misses a word hears the "
        "other); use phrases that sound more different (keys still work)",
        "12:33: warning: speech.similar_phrases: nodes.s: '매우 만족' (scale.5.0) and '만족' (scale.4.0) may be taken "
        "for one another: '만족' is part of '매우 만족' (a recogniser that misses a word hears the other); use "
        "phrases that sound more different (keys still work)",
    ]
    # no node listens for speech: no confirmation is ever asked, its words are not compared
    quiet = plan.replace("    scale:", "    listen: {enabled: false}\n    scale:")
    assert check(tmp_path, quiet) == []


# --- words the model does not know, with spellings it does -----------------------------------------
def test_unknown_words_come_with_spellings_the_model_knows(tmp_path: Path) -> None:
    words = model(tmp_path, ["상담원", "연결", "요금", "조회", "결제", "billing", "support"])
    out = check(tmp_path, menu(["상담원연결"], ["결재 조회"], ["biling", "suport"], ["xyzzy"]), prompts=True,
                speech={"model_dir": words})
    assert [o.split(": ", 3)[3] for o in out] == [
        "nodes.m.options.0.say.0: '상담원연결' not in the speech model's vocabulary: the phrase is left out of the "
        "grammar and never recognised (is the model for this language?); the model knows '상담원연결' -> "
        "'상담원 연결'",
        "nodes.m.options.1.say.0: '결재' not in the speech model's vocabulary: the phrase is left out of the "
        "grammar and never recognised (is the model for this language?); the model knows '결재' -> '결제'",
        "nodes.m.options.2.say.0: 'biling' not in the speech model's vocabulary: the phrase is left out of the "
        "grammar and never recognised (is the model for this language?); the model knows 'biling' -> 'billing'",
        "nodes.m.options.2.say.1: 'suport' not in the speech model's vocabulary: the phrase is left out of the "
        "grammar and never recognised (is the model for this language?); the model knows 'suport' -> 'support'",
        "nodes.m.options.3.say.0: 'xyzzy' not in the speech model's vocabulary: the phrase is left out of the "
        "grammar and never recognised (is the model for this language?)",
    ]


def test_suggestions_stop_after_a_bounded_number_of_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "MAX_SUGGESTED", 2)
    words = model(tmp_path, ["billing", "support", "sales"])
    out = check(tmp_path, menu(["biling"], ["suport"], ["sals"]), prompts=True, speech={"model_dir": words})
    assert ["the model knows" in o for o in out] == [True, True, False]


def test_the_installed_korean_model_suggests_its_spacing(tmp_path: Path) -> None:
    out = check(tmp_path, menu(["상담원연결"], ["요금 조회"]), prompts=True)
    assert len(out) == 1 and out[0].endswith("the model knows '상담원연결' -> '상담원 연결'"), out


MODEL_FILES: dict[str, tuple[str | None, bytes]] = {
    "missing": (None, b""),
    "empty directory": ("", b""),
    "damaged Gr.fst": ("graph/Gr.fst", b"\x00" * 10),
    "empty words.txt": ("graph/words.txt", b""),
    "undecodable words.txt": ("graph/words.txt", b"\xff\xfe\x00 1\n" * 3),
}


@pytest.mark.parametrize(("case", "why"), [
    ("missing", "is not a directory"),
    ("empty directory", "holds no word list (graph/words.txt, graph/Gr.fst or graph/G.fst): is it a Vosk model?"),
    ("damaged Gr.fst", "the speech model's word list is damaged"),
    ("empty words.txt", "has an empty word list"),
    ("undecodable words.txt", None),
])
def test_a_missing_or_damaged_model_is_a_clear_warning(tmp_path: Path, case: str, why: str | None) -> None:
    model_dir = tmp_path / "m"
    name, data = MODEL_FILES[case]
    if name is not None:
        model_dir.mkdir()
    if name:
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / name).write_bytes(data)
    out = check(tmp_path, menu(["billing"], ["sales"]), prompts=True, speech={"model_dir": model_dir})
    if why is None:  # undecodable bytes are replaced, not fatal: the phrases are checked as usual
        assert len(out) == 2 and all("not in the speech model's vocabulary" in o for o in out)
        return
    assert len(out) == 1 and out[0].startswith("9:28: warning: speech.vocabulary_unavailable: the phrases were not "
                                               "checked against the speech model's vocabulary: "), out
    assert why in out[0]


def test_the_cli_reports_a_missing_model_in_words_and_does_not_fail(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(menu(["해지"], ["해제"]), encoding="utf-8")
    config = tmp_path / "settings.yaml"
    config.write_text(f"var_dir: {tmp_path / 'var'}\nspeech: {{model_dir: {tmp_path / 'none'}}}\n"
                      f"prompts: {{dir: {tmp_path / 'prompts'}}}\n")
    run = subprocess.run([sys.executable, "-m", "ivr.cli", "dialplan", "check", "--config", str(config), str(plan)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1] == f"{plan}: ok"
    assert any("speech.vocabulary_unavailable" not in line and "'해지' (options.0.say.0) and '해제'" in line
               for line in lines)
    assert any("is not a directory" in line and str(tmp_path / "none") in line for line in lines)


# --- hostile plans --------------------------------------------------------------------------------
def test_a_huge_menu_is_compared_within_bounded_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "MAX_WORK", 190 * (16 + 8))  # the pairs of the first 20 phrases
    says = [[f"option number {i:04d}"] for i in range(60)]  # 1,770 pairs of 16 sounds, all close
    out = check(tmp_path, menu(*says))
    capped = [o for o in out if "looked for among" in o]
    assert capped == ["9:28: warning: speech.similar_phrases: nodes.m: similar phrases were looked for among the "
                      "first 20 of its 60 phrases only (the plan has too many or too long phrases)"]
    more = [o for o in out if "more pairs of phrases" in o]
    assert more == ["9:28: warning: speech.similar_phrases: nodes.m: 170 more pairs of phrases may be taken for one "
                    "another (the first 20 are shown)"]
    assert len(out) == 22
    shown = [o.split("nodes.m: ")[1].split(" may be")[0] for o in out if "may be taken for one another:" in o]
    assert shown[:2] == ["'option number 0000' (options.0.say.0) and 'option number 0001' (options.1.say.0)",
                         "'option number 0000' (options.0.say.0) and 'option number 0002' (options.2.say.0)"]


def test_the_longest_phrases_of_a_full_menu_are_compared_within_the_default_bound(tmp_path: Path) -> None:
    says = [[f"{chr(0xAC00 + i)}{'가나다라마바사아자차' * 19}"] for i in range(100)]  # 191 syllables each
    out = check(tmp_path, menu(*says))
    assert len(out) > 1 and any("looked for among the first" in o for o in out)


def test_weird_unicode_in_phrases_gets_clear_answers(tmp_path: Path) -> None:
    # zero-width and direction marks are not heard: these two are one answer, which the schema refuses
    out = check(tmp_path, menu(["요\u200b금"], ["요금\u200f"]))
    assert len(out) == 1 and "are the same answer to a recogniser" in out[0]
    # a phrase of nothing but combining marks and invisible characters, an empty phrase
    for bad in ("\u0301\u0302\u200d", ""):
        out = check(tmp_path, menu([bad], ["sales"]))
        assert len(out) == 1 and "has no word a recogniser could match" in out[0], out
    # right-to-left letters are letters: compared like any others
    out = check(tmp_path, menu(["\u202eשלום"], ["שלוםם"], ["مرحبا"]))
    assert len(out) == 1 and "'שלום' sounds like the start of 'שלוםם'" in out[0]
