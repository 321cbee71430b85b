"""Dial-plan validation: every kind of problem, at its exact file:line:col; the shipped plans pass."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import pytest

from ivr.core.config import Settings
from ivr.core.errors import DialplanError
from ivr.dialplan.checks import check_files, transfer_allowed
from ivr.dialplan.loader import Problem, load_plan, plan_files, read_plan
from ivr.dialplan.lookup import host_allowed
from ivr.dialplan.model import NODE_TYPES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dialplans" / "examples"


def settings_for(tmp_path: Path, **dialplan: list[str]) -> Settings:
    return Settings(var_dir=tmp_path / "var", dialplans_dir=tmp_path, prompts={"dir": tmp_path / "prompts"},
                    dialplan=dialplan)


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    """Write a plan given as indented test text: the ``nodes:`` entries end up indented by two."""
    text = textwrap.dedent(text).lstrip("\n")
    head, sep, body = text.partition("nodes:\n")
    if sep:
        text = head + sep + textwrap.indent(textwrap.dedent(body.lstrip("\n")), "  ")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, *, prompts: bool = True, **dialplan: list[str]) -> list[str]:
    path = write(tmp_path, text)
    return [f"{p.line}:{p.col}: {p.severity}: {p.code}: {p.message}"
            for p in check_files([path], settings_for(tmp_path, **dialplan), prompts=prompts)]


HEAD = """
name: t
numbers: ["1"]
start: m
nodes:
"""


def test_yaml_syntax_error_has_its_line_and_column(tmp_path: Path) -> None:
    out = problems(tmp_path, "name: x\nnodes: [\n")
    assert len(out) == 1 and out[0].startswith("3:1: error: dialplan.yaml: YAML: ")


def test_empty_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "# nothing\n") == [
        "1:1: error: dialplan.yaml: the file is empty: a dial plan needs name, numbers, start and nodes"]


def test_duplicate_key_is_an_error_at_the_second_key(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      m:
        type: hangup
        prompt: {text: hi}
        prompt: {text: bye}
    """)
    assert out == ["8:5: error: dialplan.duplicate_key: duplicate key 'prompt' (first at line 7, column 5); "
                   "YAML keeps only this last one"]


def test_duplicate_node_name_and_merge_keys(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      base: &base {type: hangup}
      m: {<<: *base, prompt: hi}
      m: {type: hangup}
    """)
    assert "7:3: error: dialplan.duplicate_key: duplicate key 'm' (first at line 6, column 3); " \
           "YAML keeps only this last one" in out
    assert not [o for o in out if "'<<'" in o]  # a merge key is not a duplicate


def test_unknown_node_type_lists_the_valid_types(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + "  m: {type: teleport}\n")
    valid = ", ".join(sorted(NODE_TYPES))
    assert out == [f"5:13: error: dialplan.unknown_type: nodes.m: unknown node type 'teleport' (valid: {valid})"]
    out = problems(tmp_path, HEAD + "  m: {prompt: hi}\n")
    assert out == [f"5:3: error: dialplan.unknown_type: nodes.m: a node needs a type (valid: {valid})"]


def test_unknown_field_lists_the_valid_fields(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      m:
        type: play
        prompt: hi
        colour: red
    """)
    assert out == ["8:5: error: dialplan.unknown_field: nodes.m: unknown field 'colour' (valid: type, prompt, next)"]
    out = problems(tmp_path, HEAD + """
      m:
        type: branch
        rules:
          - if: {time: {from: "09:00", until: "10:00"}}
            goto: m
        default: m
    """)
    assert out == ["8:36: error: dialplan.unknown_field: nodes.m.rules.0.if.time: unknown field 'until' "
                   "(valid: days, from, to, timezone)"]


def test_top_level_unknown_field_and_missing_fields(tmp_path: Path) -> None:
    out = problems(tmp_path, 'name: t\nnumber: ["1"]\nstart: m\nnodes:\n  m: {type: collect, prompt: hi}\n')
    assert "1:1: error: dialplan.missing_field: missing field 'numbers'" in out
    assert any(o.startswith("2:1: error: dialplan.unknown_field: unknown field 'number' (valid: name, numbers,")
               for o in out)
    assert "5:3: error: dialplan.missing_field: nodes.m: missing field 'variable'" in out


def test_value_errors_point_at_the_value(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      m:
        type: menu
        prompt: hi
        retries: 11
        options:
          - {digit: "1", goto: m}
          - {digit: "x", goto: m}
    """)
    assert out == [
        "8:14: error: dialplan.invalid: nodes.m.retries: Input should be less than or equal to 10",
        "11:17: error: dialplan.invalid: nodes.m.options.1.digit: String should match pattern '^[0-9*#]$'",
    ]
    out = problems(tmp_path, HEAD + """
      m:
        type: menu
        prompt: hi
        options:
          - {digit: "1", goto: m}
          - {digit: "1", goto: m}
    """)  # a whole-node rule: shown at the node's name
    assert out == ["5:3: error: dialplan.invalid: nodes.m: digit(s) ['1'] used by more than one option"]


def test_union_members_do_not_add_noise(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      m:
        type: branch
        rules:
          - if: {time: {from: "25:00"}}
            goto: h
        default: h
      h:
        type: hangup
        prompt: {text: {en: 5}}
    """)
    assert len(out) == 2
    assert out[0].startswith("8:27: error: dialplan.invalid: nodes.m.rules.0.if.time.from: Input should be in a "
                             "valid time format")
    assert out[1] == "13:25: error: dialplan.invalid: nodes.h.prompt.text.en: Input should be a valid string"


def test_yaml_1_2_scalars_times_and_words_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + """
      m:
        type: branch
        rules:
          - if: {time: {from: 09:30, to: 18:00}}
            goto: y
        default: y
      y:
        type: menu
        prompt: hi
        options:
          - {say: [yes, on], goto: h}
          - {say: [no, off], goto: h}
        barge_in: false
      h: {type: hangup}
    """)
    loaded = load_plan(path)
    rule = loaded.plan.nodes["m"].rules[0]  # type: ignore[union-attr]
    assert str(rule.when.time.end) == "18:00:00" and str(rule.when.time.start) == "09:30:00"  # type: ignore[union-attr]
    menu = loaded.plan.nodes["y"]
    assert [o.say for o in menu.options] == [["yes", "on"], ["no", "off"]]  # type: ignore[union-attr]
    assert menu.barge_in is False  # type: ignore[union-attr]


def test_dangling_references_and_start(tmp_path: Path) -> None:
    out = problems(tmp_path, """
    name: t
    numbers: ["1"]
    start: begin
    nodes:
      m:
        type: menu
        prompt: hi
        options: [{digit: "1", goto: nowhere}]
        on_failure: lost
      q: {type: queue, queue: sales, max_wait_s: 5, on_timeout: gone, after: m}
    """)
    assert out == [
        "3:8: error: dialplan.dangling: start -> begin: no node named 'begin'",
        "8:34: error: dialplan.dangling: m -> nowhere: options.0.goto names no node 'nowhere'",
        "9:17: error: dialplan.dangling: m -> lost: on_failure names no node 'lost'",
        "10:61: error: dialplan.dangling: q -> gone: on_timeout names no node 'gone'",
    ]


def test_unreachable_nodes_are_errors(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      m: {type: play, prompt: hi, next: h}
      h: {type: hangup}
      island: {type: hangup}
      other:
        type: play
        prompt: x
        next: island
    """)
    assert out == [
        "7:3: error: dialplan.unreachable: node 'island' cannot be reached from start 'm'",
        "8:3: error: dialplan.unreachable: node 'other' cannot be reached from start 'm'",
    ]


def test_loop_with_no_exit_names_its_nodes(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + """
      m: {type: play, prompt: hi, next: a}
      a: {type: set, variables: {x: 1}, next: b}
      b:
        type: branch
        rules: [{if: {var: x, equals: 1}, goto: a}]
        default: c
      c: {type: play, prompt: again, next: a}
    """)
    assert out == ["6:3: error: dialplan.loop: loop with no exit: a -> b -> c never reach a node where the call "
                   "ends (hangup, queue, transfer, or a node without next)"]


def test_a_loop_with_an_exit_is_fine(tmp_path: Path) -> None:
    assert problems(tmp_path, HEAD + """
      m:
        type: menu
        prompt: hi
        options: [{digit: "1", goto: again}, {digit: "2", goto: h}]
        on_failure: m2
      again: {type: play, prompt: once more, next: m}
      m2: {type: play, prompt: last try, next: m}
      h: {type: hangup}
    """) == []


def test_unknown_holiday_calendar(tmp_path: Path) -> None:
    out = problems(tmp_path, """
    name: t
    numbers: ["1"]
    start: m
    calendars: {kr: [2026-01-01]}
    nodes:
      m:
        type: branch
        rules:
          - {if: {holiday: kr}, goto: h}
          - {if: {holiday: us}, goto: h}
        default: h
      h: {type: hangup}
    """)
    assert out == ["10:24: error: dialplan.calendar: m: unknown holiday calendar 'us' (calendars: kr)"]


def test_business_hours_need_known_calendars_and_open_needs_hours(tmp_path: Path) -> None:
    out = problems(tmp_path, """
    name: t
    numbers: ["1"]
    start: m
    calendars: {kr: [2026-01-01]}
    hours:
      open: [{days: [mon-fri], from: "09:00", to: "18:00"}]
      holidays: us
    nodes:
      m:
        type: branch
        rules:
          - {if: {open: true}, goto: h}
        default: h
      h: {type: hangup}
    """)
    assert out == ["7:13: error: dialplan.calendar: hours: unknown holiday calendar 'us' (calendars: kr)"]
    out = problems(tmp_path, """
    name: t
    numbers: ["1"]
    start: m
    nodes:
      m:
        type: branch
        rules:
          - {if: {var: x, exists: true}, goto: h}
          - {if: {open: false, caller: "+1*"}, goto: h}
        default: h
      h: {type: hangup}
    """)
    assert out == ["9:21: error: dialplan.hours: m: open: tests the plan's business hours, but the plan has no "
                   "hours: (add hours: {open: [...]} at the top level)"]
    with pytest.raises(DialplanError, match="no hours"):
        load_plan(tmp_path / "plan.yaml")


LOOKUP = HEAD + """
  m:
    type: lookup
    url: "{url}"
    next: h
  h: {{type: hangup}}
"""


@pytest.mark.parametrize(("url", "allowed", "ok"), [
    ("https://crm.example.com/c?p={caller}", ["crm.example.com"], True),
    ("https://crm.example.com:8443/c", ["crm.example.com"], True),
    ("https://crm.example.com:8443/c", ["crm.example.com:8443"], True),
    ("https://crm.example.com/c", ["crm.example.com:443"], True),
    ("https://crm.example.com:8443/c", ["crm.example.com:443"], False),
    ("http://CRM.Example.com/c", ["crm.example.com"], True),
    ("https://evil.example.com/c", ["crm.example.com"], False),
    ("https://crm.example.com.evil.example/c", ["crm.example.com"], False),
    ("https://crm.example.com/c", [], False),
])
def test_lookup_hosts(tmp_path: Path, url: str, allowed: list[str], ok: bool) -> None:
    assert host_allowed(url, allowed) is ok
    out = problems(tmp_path, LOOKUP.format(url=url), lookup_hosts=allowed)
    if ok:
        assert out == []
    else:
        assert len(out) == 1 and out[0].startswith("7:10: error: dialplan.lookup_host: m: lookup host ")
        assert "is not in dialplan.lookup_hosts" in out[0]


def test_the_case_namespace_of_a_repeat_caller_is_known(tmp_path: Path) -> None:
    """case.* is set by the worker when the caller has an unfinished case: no "never set" warning."""
    out = problems(tmp_path, HEAD + """
      m:
        type: branch
        rules: [{if: {var: case.overdue, equals: "true"}, goto: q}]
        default: h
      q: {type: queue, queue: complaints, tier: "{case.tier}", prompt: {text: "Case {case.id}, {cases.x}"}}
      h: {type: hangup}
    """)
    assert out == ["9:75: warning: dialplan.template_variable: nodes.q.prompt.text: {cases.x} is never set by "
                   "this plan (renders as an empty text)"]


def test_transfer_destinations(tmp_path: Path) -> None:
    allow = ["sip:*@pbx.example.com", "+8210*"]
    assert transfer_allowed("+821012345678", allow) and not transfer_allowed("+15550100", allow)
    out = problems(tmp_path, HEAD + """
      m: {type: transfer, to: "sip:desk@pbx.example.com", on_failure: a}
      a: {type: transfer, to: "+821099990000", on_failure: b}
      b: {type: transfer, to: "{crm.desk}", on_failure: c}
      c: {type: transfer, to: "sip:desk@elsewhere.example"}
    """, transfer_allow=allow)
    assert out == ["7:27: warning: dialplan.template_variable: nodes.b.to: {crm.desk} is never set by this plan "
                   "(renders as an empty text)",
                   "8:27: error: dialplan.transfer: c: transfer destination 'sip:desk@elsewhere.example' "
                   "matches no glob of dialplan.transfer_allow (sip:*@pbx.example.com, +8210*)"]


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5))) for i in range(1600)))


def test_prompt_files_exist_and_decode_in_every_language(tmp_path: Path) -> None:
    _wav(tmp_path / "prompts" / "en" / "hello.wav")
    _wav(tmp_path / "prompts" / "ko" / "hello.wav")
    _wav(tmp_path / "prompts" / "en" / "bye.wav")
    (tmp_path / "prompts" / "en" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    text = HEAD + """
      m: {type: play, prompt: {file: hello}, next: ko}
      ko: {type: language, language: ko, next: b}
      b: {type: play, prompt: {file: bye.wav}, next: h}
      h:
        type: hangup
        prompt:
          file: broken.wav
    """
    out = problems(tmp_path, text)
    assert len(out) == 3, out
    assert out[0].startswith("7:34: error: prompt.missing: nodes.b.prompt: prompt file 'bye.wav' not found for "
                             "language 'ko'")
    assert out[1].startswith("11:13: error: prompt.missing: nodes.h.prompt: prompt file 'broken.wav' not found "
                             "for language 'ko'")
    assert out[2].startswith("11:13: error: prompt.corrupt: nodes.h.prompt: prompt file ")
    assert "is not decodable audio" in out[2]
    assert list((tmp_path / "var" / "prompt-cache").glob("*.wav"))  # rendered like `ivr prompts build`
    assert problems(tmp_path, text, prompts=False) == []


def test_texts_per_language(tmp_path: Path) -> None:
    out = problems(tmp_path, """
    name: t
    numbers: ["1"]
    language: ko
    start: m
    confirm:
      prompt: {text: {en: "Did you say {phrase}?"}}
    nodes:
      m: {type: play, prompt: {text: {ko: 안녕하세요}}, next: en}
      en: {type: language, language: en, next: h}
      h: {type: hangup, prompt: {text: {en: Bye}}}
    """)
    assert out == [
        "6:12: error: dialplan.prompt_language: confirm.prompt: no text for the plan's language 'ko' (has: en)",
        "8:28: warning: dialplan.prompt_language: nodes.m.prompt: no text for 'en', callers in 'en' hear the "
        "'ko' text",
        "10:30: error: dialplan.prompt_language: nodes.h.prompt: no text for the plan's language 'ko' (has: en)",
    ]


def test_numbers_answered_twice(tmp_path: Path) -> None:
    plan = 'name: t\nnumbers: ["{a}", "{b}"]\nstart: h\nnodes:\n  h: {{type: hangup}}\n'
    a = write(tmp_path, plan.format(a="100", b="200"), "a.yaml")
    b = write(tmp_path, plan.format(a="300", b="200"), "b.yaml")
    c = write(tmp_path, plan.format(a="400", b="400"), "c.yaml")
    out = check_files([a, b, c], settings_for(tmp_path))
    assert [str(p) for p in out] == [
        f"{b}:2:18: error: number '200' is also answered by {a}",
        f"{c}:2:18: error: number '400' is listed twice",
    ]


def test_warnings_do_not_fail_and_problems_sort() -> None:
    ps = sorted([Problem("b", 1, 1, "x"), Problem("a", 2, 1, "y", severity="warning"), Problem("a", 1, 9, "z")])
    assert [str(p) for p in ps] == ["a:1:9: error: z", "a:2:1: warning: y", "b:1:1: error: x"]
    assert ps[1].to_dict() == {"file": "a", "line": 2, "col": 1, "code": "dialplan.invalid",
                               "severity": "warning", "message": "y"}


def test_load_plan_refuses_every_error_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + """
      m: {type: play, prompt: hi, next: nowhere}
      x: {type: hangup}
    """)
    with pytest.raises(DialplanError) as e:
        load_plan(path)
    assert e.value.code == "dialplan.dangling"
    assert e.value.message.splitlines() == [
        f"{path}:5:37: error: m -> nowhere: next names no node 'nowhere'",
        f"{path}:6:3: error: node 'x' cannot be reached from start 'm'",
    ]
    loaded, found = read_plan(path)  # schema only: the graph is the checks' business
    assert loaded is not None and found == []


def test_shipped_plans_and_examples_pass(tmp_path: Path) -> None:
    files = [*plan_files(ROOT / "dialplans"), *sorted(EXAMPLES.glob("*.yaml"))]
    assert len(files) >= 3
    settings = Settings(var_dir=tmp_path / "var", _env_file=None,  # type: ignore[call-arg]
                        dialplan={"lookup_hosts": ["crm.example.com", "accounts.bank.example:8443"],
                                  "transfer_allow": ["sip:*@pbx.example.com", "+8210*", "+1555???????"]})
    found = check_files(files, settings)
    assert [p for p in found if p.severity == "error"] == []
    # example queues no demo agent serves; English phrases the default (Korean) speech model does not know;
    # the usual five-step satisfaction scale (만족 / 매우 만족 / 불만족) has phrases inside one another
    assert {p.code for p in found} <= {"dialplan.queue_unknown", "speech.unknown_word", "speech.similar_phrases"}
    used = {type(n).__name__ for f in files for n in load_plan(f).plan.nodes.values()}
    assert used == {t.__name__ for t in NODE_TYPES.values()}  # the examples show every node type
    hotline = load_plan(ROOT / "dialplans" / "hotline.yaml").plan
    assert hotline.numbers == ["1000", "+15550100"] and hotline.start == "welcome"
    assert [(o.digit, o.goto) for o in hotline.nodes["welcome"].options] == [  # type: ignore[union-attr]
        ("1", "sales"), ("2", "billing"), ("3", "support")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", "dialplan", "check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_exit_codes_and_output(tmp_path: Path) -> None:
    good = _cli("--config", "dialplans/examples/settings.yml", "dialplans/hotline.yaml",
                *[str(p.relative_to(ROOT)) for p in sorted(EXAMPLES.glob("*.yaml"))])
    assert good.returncode == 0, good.stdout + good.stderr
    assert "dialplans/hotline.yaml: ok" in good.stdout.splitlines()
    bad = write(tmp_path, HEAD + "  m: {type: play, prompt: hi, next: gone}\n")
    out = _cli("--no-prompts", "dialplans/hotline.yaml", str(bad))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [f"{bad}:5:37: error: m -> gone: next names no node 'gone'",
                                       "dialplans/hotline.yaml: ok"]
    out = _cli("--format", "json", str(bad))
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False
    assert report["problems"] == [{"file": str(bad), "line": 5, "col": 37, "code": "dialplan.dangling",
                                   "severity": "error", "message": "m -> gone: next names no node 'gone'"}]


def test_cli_default_files_come_from_the_settings(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    (plans / "sub").mkdir(parents=True)
    write(plans, 'name: t\nnumbers: ["1"]\nstart: h\nnodes:\n  h: {type: hangup}\n', "a.yaml")
    write(plans / "sub", "broken: [", "ignored.yaml")  # only top-level files are plans
    config = tmp_path / "settings.yaml"
    config.write_text(f"dialplans_dir: {plans}\nvar_dir: {tmp_path / 'var'}\n")
    out = _cli("--config", str(config))
    assert out.returncode == 0 and out.stdout.splitlines() == [f"{plans / 'a.yaml'}: ok"]
    (plans / "a.yaml").unlink()
    out = _cli("--config", str(config))
    assert out.returncode == 1 and "no dial plans in" in out.stderr
