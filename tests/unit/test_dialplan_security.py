"""Security boundaries of dial plans, enforced by ``check`` and again at call time.

Prompt files stay under ``prompts/<language>/``; secrets (``sensitive`` collects) keep their
protection when copied or templated; built-in variables are read-only; the transfer allow-list is
matched part by part; lookup URLs carry no credentials; host checks run even when a file has other
schema errors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.core.config import DialplanSettings, Settings
from ivr.core.errors import PromptError
from ivr.dialplan.checks import check_files
from ivr.dialplan.destinations import transfer_allowed
from ivr.dialplan.lookup import host_allowed
from ivr.dialplan.model import BUILTIN_VARIABLES, Prompt
from ivr.prompts.library import PromptLibrary, PromptSpec
from tests.unit.test_dialplan_engine import FakeCall, FakeData, run

SAFE = dict(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def cfg(tmp_path: Path, **dialplan: list[str]) -> Settings:
    return Settings(var_dir=tmp_path / "var", dialplans_dir=tmp_path, prompts={"dir": tmp_path / "prompts"},
                    dialplan=dialplan)


def check(tmp_path: Path, text: str, *, prompts: bool = False, **dialplan: list[str]) -> list[str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return [f"{p.line}:{p.col}: {p.severity}: {p.code}: {p.message}"
            for p in check_files([path], cfg(tmp_path, **dialplan), prompts=prompts)]


def plan(nodes: str, start: str = "a", extra: str = "") -> str:
    return f'name: t\nnumbers: ["1"]\n{extra}start: {start}\nnodes:\n{nodes}'


# --- prompt files stay under prompts/<language>/ -----------------------------------------------------
ESCAPES = ["../secret", "../../var/voicemail/x.wav", "/etc/passwd", "/var/vm/caller.wav", "a/../../b",
           "..", ".", "./x", "a\\..\\b", "C:/x", "~/x.wav", ".hidden", "a//b", "a/", "x\x00.wav", "",
           "en/../../../x"]


@pytest.mark.parametrize("name", ESCAPES)
def test_prompt_file_names_that_leave_the_language_directory_are_schema_errors(tmp_path: Path,
                                                                              name: str) -> None:
    text = plan(f'  a: {{type: hangup, prompt: {{file: "{name.replace(chr(92), chr(92) * 2)}"}}}}\n'.replace(
        "\x00", "\\0"))
    out = check(tmp_path, text)
    assert len(out) == 1 and "dialplan.invalid" in out[0] and out[0].startswith("5:")
    assert re.search(r"prompt file|a prompt needs a file", out[0])


@given(parts=st.lists(st.sampled_from(["..", ".", "", "x", "/", "\\", "~", "a..b", "%2e%2e", "..\u2215"]),
                      min_size=1, max_size=6))
@settings(**SAFE)
def test_generated_file_names_never_escape(tmp_path_factory: pytest.TempPathFactory, parts: list[str]) -> None:
    root = tmp_path_factory.mktemp("lib")
    (root / "prompts" / "en").mkdir(parents=True)
    (root / "secret.wav").write_bytes(b"RIFF")
    library = PromptLibrary(root / "prompts", root / "cache")
    name = "/".join(parts)
    try:
        found = library.source_file(PromptSpec(file=name), "en")
    except PromptError as exc:
        assert exc.code in ("prompt.outside", "prompt.missing", "prompt.invalid")
    else:
        assert found is not None and found.resolve().is_relative_to((root / "prompts" / "en").resolve())
    try:
        Prompt(file=name)
    except ValueError:
        return
    assert ".." not in name.split("/") and not name.startswith("/") and "\\" not in name


def test_the_library_refuses_paths_and_links_out_of_the_language_directory(tmp_path: Path) -> None:
    (tmp_path / "prompts" / "en").mkdir(parents=True)
    outside = tmp_path / "voicemail" / "other-caller.wav"
    outside.parent.mkdir()
    outside.write_bytes(b"RIFF....WAVE")
    (tmp_path / "prompts" / "en" / "link.wav").symlink_to(outside)
    library = PromptLibrary(tmp_path / "prompts", tmp_path / "cache")
    for name in ["../../voicemail/other-caller.wav", str(outside), "link"]:
        with pytest.raises(PromptError) as err:
            library.resolve(PromptSpec(file=name), "en")
        assert err.value.code == "prompt.outside"
    out = check(tmp_path, plan("  a: {type: hangup, prompt: {file: link}}\n"), prompts=True)
    assert len(out) == 1 and "prompt.outside" in out[0] and "leads outside" in out[0]


# --- secrets ----------------------------------------------------------------------------------------
PIN = "  pin: {type: collect, prompt: PIN, variable: pin, sensitive: true, next: copy}\n"


@pytest.mark.parametrize("field,where", [
    ("  copy: {type: set, variables: {x: 'a{pin}'}, next: b}\n  b: {type: play, prompt: 'You said {x}'}\n",
     "7:19: error: dialplan.sensitive: nodes.b.prompt.text: {x} is sensitive"),
    ("  copy: {type: set, variables: {x: '{pin}', y: '{x}'}, next: b}\n"
     "  b: {type: callback, queue: q, prompt: hi, number: '{y}'}\n",
     "7:53: error: dialplan.sensitive: nodes.b.number: {y} is sensitive"),
    ("  copy: {type: play, prompt: {text: {en: 'PIN {pin}'}}}\n",
     "6:42: error: dialplan.sensitive: nodes.copy.prompt.text.en: {pin} is sensitive"),
    ("  copy: {type: transfer, to: 'sip:{pin}@pbx.example'}\n",
     "6:30: error: dialplan.sensitive: nodes.copy.to: {pin} is sensitive"),
    ("  copy: {type: queue, queue: q, priority: '{pin}'}\n",
     "6:43: error: dialplan.sensitive: nodes.copy.priority: {pin} is sensitive"),
    ("  copy: {type: case, tier: normal, reason: 'card {pin}'}\n",
     "6:44: error: dialplan.sensitive: nodes.copy.reason: {pin} is sensitive"),
    ("  copy: {type: case_update, answers: {note: 'card {pin}'}}\n",
     "6:45: error: dialplan.sensitive: nodes.copy.answers.note: {pin} is sensitive"),
])
def test_check_refuses_a_secret_where_it_would_leak_also_through_copies(tmp_path: Path, field: str,
                                                                        where: str) -> None:
    out = check(tmp_path, plan(PIN + field, start="pin"))
    assert [o for o in out if "sensitive" in o and o.startswith(where)], out


def test_a_secret_in_a_lookup_or_branch_is_fine(tmp_path: Path) -> None:
    text = plan(PIN + "  copy: {type: lookup, url: 'https://crm.example/v?pin={pin}', body: {p: '{pin}'}, "
                "method: POST, next: b}\n  b: {type: branch, rules: [{if: {var: pin, equals: '1'}, goto: c}], "
                "default: c}\n  c: {type: hangup}\n", start="pin")
    assert check(tmp_path, text, lookup_hosts=["crm.example"]) == []


SECRET_PLAN = """
start: pin
nodes:
  pin: {type: collect, prompt: PIN, variable: pin, sensitive: true, next: copy}
  copy: {type: set, variables: {x: "{pin}", y: "card {x}"}, next: say}
  say: {type: play, prompt: "You entered {y} {pin}", next: cb}
  cb: {type: callback, queue: q, prompt: "Call back?", number: "{x}", declined: q}
  q: {type: queue, queue: q, priority: "{x}"}
"""


async def test_at_call_time_a_secret_never_reaches_a_case() -> None:
    text = SECRET_PLAN.replace('  q: {type: queue, queue: q, priority: "{x}"}',
                               '  q: {type: case_update, answers: {card: "{y}", pin: "{pin}", ok: "yes"}}')
    env = await run(text, FakeCall("4321", "1"), variables={"case.id": "CS4"})
    assert env.record.answers == [{"case_id": "CS4", "answers": {"ok": "yes"}, "reopen": False}]


async def test_at_call_time_a_copied_secret_is_masked_never_spoken_or_dialled() -> None:
    env = await run(SECRET_PLAN, FakeCall("4321", "1"))
    assert env.call.texts[1] == "You entered **** ****"  # y is computed from a secret
    assert "4321" not in " ".join(env.call.texts)
    assert env.record.callbacks == [] and ("cb", "failed") in env.steps
    journey = env.queue.journeys[0]
    assert journey["data"]["pin"] == journey["data"]["x"] == journey["data"]["y"] == "****"
    assert "4321" not in repr(journey)
    assert env.queue.targets[0].priority == 0


# --- built-in variables -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILTIN_VARIABLES))
@pytest.mark.parametrize("where", ["plan", "set", "collect", "lookup"])
def test_plans_cannot_write_built_in_variables(tmp_path: Path, name: str, where: str) -> None:
    nodes = {
        "plan": "  a: {type: hangup}\n",
        "set": f"  a: {{type: set, variables: {{{name}: x}}}}\n",
        "collect": f"  a: {{type: collect, prompt: x, variable: {name}}}\n",
        "lookup": f"  a: {{type: lookup, url: 'https://crm.example/x', store: {{{name}: a.b}}}}\n",
    }[where]
    extra = f"variables: {{{name}: x}}\n" if where == "plan" else ""
    out = check(tmp_path, plan(nodes, extra=extra), lookup_hosts=["crm.example"])
    assert len(out) == 1 and "built-in variable" in out[0] and "read-only" in out[0]


async def test_at_call_time_built_ins_win_over_given_variables_and_lookups() -> None:
    text = """
    start: l
    nodes:
      l: {type: lookup, url: "https://crm.example/x", prefix: crm, next: h}
      h: {type: hangup, prompt: "{caller} {dnis} {plan} {crm.caller}"}
    """
    env = await run(text, FakeCall(caller="+15550001", dnis="1000"),
                    data=FakeData({"caller": "+19990000"}), settings=DialplanSettings(lookup_hosts=["crm.example"]),
                    variables={"caller": "+1666", "dnis": "9", "plan": "evil", "plan_version": "x"})
    assert env.call.texts == ["+15550001 1000 test +19990000"]
    assert env.result.variables["plan_version"] == "v1"


# --- transfers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dest", [
    "sip:a@evil.example@pbx.example.com", "sip:a@evil.example;x=@pbx.example.com",
    "sip:x@pbx.example.com;transport=tcp", "sip:x@pbx.example.com?Route=evil", "sip:a b@pbx.example.com",
    "sip:x@pbx.example.com.evil.example", "sip:x@pbx.example.com:5060;maddr=evil", "<sip:x@pbx.example.com>",
    "sip:@pbx.example.com", " sip:x@pbx.example.com", "+8210 1234", "+8210-1234", "+8210;x", "+82101234@evil"])
def test_globs_do_not_span_at_semicolon_or_spaces(dest: str) -> None:
    assert not transfer_allowed(dest, ["sip:*@pbx.example.com", "+8210*"])


def test_well_formed_destinations_match() -> None:
    allow = ["sip:*@pbx.example.com", "+8210*", "sip:desk??@pbx.example.com:5061"]
    for dest in ["sip:retention@pbx.example.com", "+82101234", "sip:desk01@pbx.example.com:5061"]:
        assert transfer_allowed(dest, allow)


@given(user=st.text(alphabet="ab1+-_@;:. ?&=<>\"'\t", min_size=0, max_size=12),
       host=st.sampled_from(["pbx.example.com", "evil.example", "pbx.example.com.evil", "pbx.example.com;x"]))
@settings(max_examples=300, deadline=None)
def test_generated_destinations_match_only_a_plain_user_at_the_exact_host(user: str, host: str) -> None:
    dest = f"sip:{user}@{host}"
    plain = re.fullmatch(r"[A-Za-z0-9_!~+-]+", user) is not None
    assert transfer_allowed(dest, ["sip:*@pbx.example.com"]) == (plain and host == "pbx.example.com")


def test_check_refuses_literal_destinations_the_engine_would_refuse(tmp_path: Path) -> None:
    text = plan("  a: {type: transfer, to: 'sip:a@evil.example;x=@pbx.example.com'}\n")
    out = check(tmp_path, text, transfer_allow=["sip:*@pbx.example.com"])
    assert len(out) == 1 and "dialplan.transfer" in out[0] and "sip:user@host" in out[0]


async def test_a_templated_destination_is_matched_the_same_way_at_call_time() -> None:
    text = "start: t\nnodes:\n  t: {type: transfer, to: 'sip:{desk}@pbx.example.com'}\n"
    env = await run(text, variables={"desk": "x@evil.example;y="},
                    settings=DialplanSettings(transfer_allow=["sip:*@pbx.example.com"]))
    assert env.call.transfers == [] and env.steps == [("t", "denied")]


# --- lookup URLs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["https://user:secret@crm.example/x", "https://token@crm.example/x",
                                 "https://crm.example@evil.example/x", "https://{host}/x", "https://crm{x}.example/"])
def test_lookup_urls_with_credentials_or_templated_hosts_are_refused(tmp_path: Path, url: str) -> None:
    out = check(tmp_path, plan(f"  a: {{type: lookup, url: '{url}'}}\n"), lookup_hosts=["crm.example"])
    assert len(out) == 1 and "dialplan.invalid" in out[0]
    assert "secret" not in out[0] and "token" not in out[0]
    assert not host_allowed(url, ["crm.example", "evil.example"])


def test_host_checks_run_even_when_the_file_has_other_schema_errors(tmp_path: Path) -> None:
    text = plan("  a: {type: lookup, url: 'https://evil.example/x', next: b, tyop: 1}\n"
                "  b: {type: transfer, to: 'sip:x@evil.example', on_fialure: a}\n")
    out = check(tmp_path, text, lookup_hosts=["crm.example"], transfer_allow=["sip:*@pbx.example"])
    codes = sorted(o.split(": ")[2] for o in out)
    assert codes == ["dialplan.lookup_host", "dialplan.transfer", "dialplan.unknown_field",
                     "dialplan.unknown_field"]


def test_simulate_never_prints_a_secret(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "p.yaml"
    path.write_text('name: t\nnumbers: ["1"]\nstart: pin\nnodes:\n'
                    '  pin: {type: collect, prompt: PIN, variable: pin, sensitive: true, next: copy}\n'
                    '  copy: {type: set, variables: {x: "{pin}"}, next: h}\n  h: {type: hangup, prompt: "Bye {x}."}\n')
    for fmt in ([], ["--json"]):
        done = subprocess.run([sys.executable, "-m", "ivr.cli", "simulate", str(path), "--input", "98765432", *fmt],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "98765432" not in done.stdout + done.stderr and "****" in done.stdout
