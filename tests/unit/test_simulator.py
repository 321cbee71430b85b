"""``ivr simulate`` as a user runs it: a subprocess on the demo hotline and on a richer plan with a real
(local) CRM lookup, text and ``--json`` output, interactive input on stdin, errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.ports import free_udp_tcp_port

ROOT = Path(__file__).resolve().parents[2]
HOTLINE = ROOT / "dialplans" / "hotline.yaml"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def simulate(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", "simulate", *args], cwd=ROOT, env=_env(),
                          input=stdin if stdin is not None else "", capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)


async def asimulate(*args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.cli", "simulate", *args, cwd=ROOT, env=_env(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- the demo hotline ---------------------------------------------------------------------------------
def test_hotline_key_2_prints_path_prompts_and_queue_outcome() -> None:
    p = simulate(str(HOTLINE), "--input", "2")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "-> welcome [menu]" in out and "-> billing [queue]" in out
    assert "play [en]: Welcome to the demo hotline." in out and "input: keys 2" in out
    assert "play [en]: Please hold for the billing team." in out
    assert "queue: billing skills=billing priority=0 language=en" in out
    assert "Outcome: queued at billing (caller_hangup)" in out
    assert "path: welcome -> billing" in out and "caller=+15550001" in out
    assert out.index("-> welcome") < out.index("input: keys 2") < out.index("-> billing") < out.index("Outcome:")


def test_hotline_json_wrong_key_then_speech_with_confirmation() -> None:
    p = simulate(str(HOTLINE), "--json", "--input", "7,say:Invoice@0.6,1", "--caller", "+15551112222",
                 "--dnis", "+15550100", "--agent-hangup")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["path"] == ["welcome", "billing"] and doc["plan"] == "Demo hotline"
    assert doc["caller"] == "+15551112222" and doc["dnis"] == "+15550100"
    texts = [pr["text"] for pr in doc["prompts"]]
    assert texts[1:3] == ["Sorry, that is not an option.", texts[0]]
    assert texts[3].startswith("Did you say invoice?") and texts[4] == "Please hold for the billing team."
    assert all(pr["language"] == "en" for pr in doc["prompts"])
    out = doc["outcome"]
    assert out["result"] == "queued" and out["queue_outcome"] == "agent_hangup"
    assert (out["queue"], out["skills"], out["priority"], out["language"]) == ("billing", ["billing"], 0, "en")
    assert out["variables"]["caller"] == "+15551112222"
    steps = doc["journey"]["steps"]
    assert [(s["node"], s.get("outcome")) for s in steps] == [
        ("welcome", "no_match"), ("welcome", "confirmed"), ("billing", "agent_hangup")]
    inputs = [e for e in doc["events"] if e["event"] == "input"]
    assert [i["kind"] for i in inputs] == ["digits", "speech", "digits"]
    assert inputs[1]["phrase"] == "invoice" and inputs[1]["confidence"] == 0.6


def test_hotline_input_used_up_plays_out_the_retries() -> None:
    p = simulate(str(HOTLINE), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["path"] == ["welcome", "goodbye"] and doc["outcome"]["result"] == "hangup"
    assert doc["outcome"]["queue"] is None
    assert [e["kind"] for e in doc["events"] if e["event"] == "input"] == ["no_input"] * 3
    assert doc["prompts"][-1]["text"] == "Goodbye."


def test_interactive_reads_one_answer_per_question_and_eof_hangs_up() -> None:
    p = simulate(str(HOTLINE), "-i", stdin="9\nsay:support\n")
    assert p.returncode == 0, p.stderr
    assert "options 1=sales, 2=billing, 3=support" in p.stdout and "say: sales | billing" in p.stdout
    assert "Outcome: queued at support" in p.stdout
    p = simulate(str(HOTLINE), "-i", stdin="4\n")
    assert p.returncode == 0, p.stderr
    assert "end of input" in p.stdout and "Outcome: caller_gone at welcome" in p.stdout
    p = simulate(str(HOTLINE), "-i", "--json", stdin="\n\nbogus\n3\n")
    doc = json.loads(p.stdout)
    assert doc["outcome"]["result"] == "queued" and doc["path"] == ["welcome", "support"]
    assert "not an input" in p.stderr   # prompts for typed input go to stderr with --json


@pytest.mark.parametrize(("args", "message"), [
    (["--input", "2,x"], "'x' is not an input"),
    (["--at", "tomorrow"], "not an ISO 8601"),
    (["--var", "1bad=x"], "NAME=VALUE"),
    (["--config", "/nonexistent/settings.yaml"], "config file not found"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    p = simulate(str(HOTLINE), *args)
    assert p.returncode == 2 and message in p.stderr and p.stdout == ""


def test_plan_errors_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: teleport}\n")
    p = simulate(str(bad))
    assert p.returncode == 2 and "bad.yaml" in p.stderr and "teleport" in p.stderr
    p = simulate(str(tmp_path / "missing.yaml"))
    assert p.returncode == 2 and "cannot read" in p.stderr


# --- a richer plan with a CRM ---------------------------------------------------------------------
RICH = """
name: Rich test plan
numbers: ["2000"]
language: ko
timezone: Asia/Seoul
calendars: {kr: ["2026-12-25"]}
variables: {brand: 한빛}
start: hours
nodes:
  hours:
    type: branch
    rules:
      - if: {holiday: kr}
        goto: closed
      - if: {time: {days: [mon-fri], from: "09:00", to: "18:00"}}
        goto: crm
    default: closed
  closed:
    type: voicemail
    prompt: {text: {ko: "영업시간이 아닙니다.", en: "We are closed."}}
    mailbox: general
    saved: "Saved."
    next: bye
  crm:
    type: lookup
    url: "http://127.0.0.1:PORT/customers?phone={caller}"
    prefix: crm
    store: {tier: customer.tier}
    next: main
    on_error: main
  main:
    type: menu
    prompt:
      text: {ko: "{brand}입니다. {crm.name}님, 요금 문의는 1번, 영어는 9번.", en: "Welcome {crm.name}. Billing 1."}
    options:
      - {digit: "1", say: [요금 문의, billing], goto: account}
      - {digit: "9", say: [english], goto: english}
    no_match: {text: {ko: "잘못 누르셨습니다.", en: "Wrong key."}}
    on_failure: bye
  english: {type: language, language: en, next: main}
  account:
    type: collect
    prompt: {text: {ko: "고객 번호를 누르세요.", en: "Enter your account number."}}
    variable: account
    min_digits: 4
    max_digits: 8
    pattern: "[0-9]+"
    on_failure: bye
    next: billing
  billing:
    type: queue
    queue: billing
    priority: "{crm.priority}"
    announce: {every_s: 30}
    after: survey
  survey:
    type: survey
    prompt: {text: {ko: "만족도를 눌러 주세요.", en: "Rate us 1 to 5."}}
    scale: {"5": [매우 만족, excellent]}
    thanks: {text: {ko: "감사합니다.", en: "Thanks."}}
    next: bye
  bye: {type: hangup, prompt: {text: {ko: "안녕히 가세요.", en: "Goodbye."}}}
"""


@pytest.fixture
async def crm() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def customers(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"name": "Kim", "priority": 7, "customer": {"tier": "gold"}})

    app = web.Application()
    app.router.add_get("/customers", customers)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_udp_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


def _files(tmp_path: Path, port: int) -> tuple[Path, Path]:
    plan = tmp_path / "rich.yaml"
    plan.write_text(RICH.replace("PORT", str(port)), encoding="utf-8")
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(f"dialplan:\n  lookup_hosts: ['127.0.0.1:{port}']\n")
    return plan, cfg


async def test_rich_plan_lookup_confirmation_collect_queue_and_survey(
        tmp_path: Path, crm: tuple[int, list[dict[str, Any]]]) -> None:
    port, seen = crm
    plan, cfg = _files(tmp_path, port)
    code, out, err = await asimulate(str(plan), "--config", str(cfg), "--at", "2026-11-23T10:00",
                                     "--caller", "+821012345678", "--input", "say:요금문의@0.6,1,1234#,say:Excellent",
                                     "--agent-hangup", "--var", "source=test", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert seen == [{"phone": "+821012345678"}]
    assert doc["path"] == ["hours", "crm", "main", "account", "billing", "survey", "bye"]
    texts = [p["text"] for p in doc["prompts"]]
    assert texts[0] == "한빛입니다. Kim님, 요금 문의는 1번, 영어는 9번."
    assert texts[1].startswith("요금 문의, 맞습니까?")
    assert texts[-2:] == ["감사합니다.", "안녕히 가세요."]
    o = doc["outcome"]
    assert o["result"] == "hangup" and o["queue"] == "billing" and o["priority"] == 7 and o["language"] == "ko"
    v = o["variables"]
    assert (v["crm.name"], v["tier"], v["account"], v["csat"], v["source"]) == ("Kim", "gold", "1234", "5", "test")
    lookups = [e for e in doc["events"] if e["event"] == "lookup"]
    assert lookups[0]["ok"] is True and lookups[0]["url"].endswith("phone=%2B821012345678")
    assert [e["fields"] for e in doc["events"] if e["event"] == "record"] == [{"csat": 5}]
    queue = next(e for e in doc["events"] if e["event"] == "queue")
    assert queue["announce_every_s"] == 30 and queue["skills"] == ["billing"]
    collect = next(s for s in doc["journey"]["steps"] if s["node"] == "account")
    assert collect["digit"] == "****"  # short entries are masked whole


async def test_rich_plan_language_switch_and_text_output(tmp_path: Path,
                                                         crm: tuple[int, list[dict[str, Any]]]) -> None:
    port, _ = crm
    plan, cfg = _files(tmp_path, port)
    code, out, err = await asimulate(str(plan), "--config", str(cfg), "--at", "2026-11-23T01:00:00+00:00",
                                     "--input", "91,12345678#")
    assert code == 0, err
    assert "play [ko]: 한빛입니다. Kim님" in out and "play [en]: Welcome Kim. Billing 1." in out
    assert "play [en]: Enter your account number." in out
    assert "lookup: GET http://127.0.0.1:" in out and '"name": "Kim"' in out
    assert "queue: billing skills=billing priority=7 language=en" in out
    assert "Outcome: queued at billing (caller_hangup)" in out
    assert "path: hours -> crm -> main -> english -> main -> account -> billing" in out


async def test_rich_plan_holiday_goes_to_voicemail(tmp_path: Path, crm: tuple[int, list[dict[str, Any]]]) -> None:
    port, seen = crm
    plan, cfg = _files(tmp_path, port)
    code, out, err = await asimulate(str(plan), "--config", str(cfg), "--at", "2026-12-25T10:00", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["path"] == ["hours", "closed", "bye"] and not seen
    rec = next(e for e in doc["events"] if e["event"] == "record")
    assert rec["fields"]["voicemail"]["mailbox"] == "general"
    assert [p["text"] for p in doc["prompts"]] == ["영업시간이 아닙니다.", "Saved.", "안녕히 가세요."]


async def test_rich_plan_lookup_host_not_allowed_without_settings(tmp_path: Path,
                                                                  crm: tuple[int, list[dict[str, Any]]]) -> None:
    port, seen = crm
    plan, _ = _files(tmp_path, port)
    code, out, err = await asimulate(str(plan), "--at", "2026-11-23T10:00+09:00", "--input", "1,1234#", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert not seen
    step = next(s for s in doc["journey"]["steps"] if s["node"] == "crm")
    assert step["outcome"] == "error:not_allowed"
    assert doc["prompts"][0]["text"] == "한빛입니다. 님, 요금 문의는 1번, 영어는 9번."
    assert doc["outcome"]["priority"] == 0 and doc["path"][-1] == "billing"


CALLBACK_TRANSFER = """
name: Callback and transfer
numbers: ["3000"]
start: m
nodes:
  m:
    type: menu
    prompt: "Callback 1, desk 2."
    options:
      - {digit: "1", goto: cb}
      - {digit: "2", goto: desk}
  cb:
    type: callback
    queue: general
    prompt: "Press 1 to be called at {caller}."
    confirmed: "Booked."
  desk:
    type: transfer
    to: "sip:{who}@pbx.example"
    prompt: "Transferring."
    on_failure: m
"""


def test_callback_and_transfer(tmp_path: Path) -> None:
    plan = tmp_path / "cbt.yaml"
    plan.write_text(CALLBACK_TRANSFER)
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("dialplan:\n  transfer_allow: ['sip:*@pbx.example']\n")
    p = simulate(str(plan), "--input", "11", "--caller", "+15557654321")
    assert p.returncode == 0, p.stderr
    assert "callback: sim-cb-1 queue=general number=+15557654321" in p.stdout
    assert "play [en]: Booked." in p.stdout and "Outcome: hangup at cb" in p.stdout
    p = simulate(str(plan), "--input", "2", "--var", "who=desk", "--config", str(cfg), "--json")
    doc = json.loads(p.stdout)
    assert doc["outcome"]["result"] == "transferred" and doc["outcome"]["node"] == "desk"
    assert [e["to"] for e in doc["events"] if e["event"] == "transfer"] == ["sip:desk@pbx.example"]
    p = simulate(str(plan), "--input", "2,1", "--var", "who=desk", "--json")   # nothing allowed: denied
    doc = json.loads(p.stdout)
    assert doc["path"] == ["m", "desk", "m", "cb"]
    assert not [e for e in doc["events"] if e["event"] == "transfer"]
    assert doc["journey"]["steps"][1]["outcome"] == "denied"


KEYS_ON_HOLD = """
name: Keys on hold
numbers: ["5000"]
start: q
nodes:
  q:
    type: queue
    queue: billing
    prompt: "Please hold. Press 1 at any time to be called back."
    keys: [{digit: "1", goto: cb}]
  cb:
    type: callback
    queue: billing
    prompt: "Press 1 to confirm a call back to {caller}."
    confirmed: "Booked."
"""


def test_a_key_on_hold_leaves_the_queue_for_its_node(tmp_path: Path) -> None:
    plan = tmp_path / "hold.yaml"
    plan.write_text(KEYS_ON_HOLD)
    p = simulate(str(plan), "--input", "1,1", "--json")
    doc = json.loads(p.stdout)
    assert doc["path"] == ["q", "cb"] and doc["outcome"]["node"] == "cb"
    assert [e["outcome"] for e in doc["events"] if e["event"] == "queue_outcome"] == ["key:1"]
    p = simulate(str(plan), "--input", "2", "--json")  # not a key of the queue: the caller waits
    doc = json.loads(p.stdout)
    assert doc["path"] == ["q"] and doc["outcome"]["queue_outcome"] == "caller_hangup"


SPOKEN = """
name: Spoken
numbers: ["6000"]
start: m
nodes:
  m:
    type: menu
    prompt: "Billing or support?"
    options:
      - {digit: "1", say: [billing], goto: pin}
      - {digit: "2", say: [support], goto: bye}
  pin:
    type: collect
    prompt: "Say or type your PIN."
    variable: pin
    min_digits: 4
    max_digits: 4
    sensitive: SENSITIVE
    next: bye
  bye: {type: hangup, prompt: "Bye."}
"""


@pytest.mark.parametrize("sensitive", [False, True])
def test_spoken_digits_are_read_back_and_keys_replace_them(tmp_path: Path, sensitive: bool) -> None:
    plan = tmp_path / "spoken.yaml"
    plan.write_text(SPOKEN.replace("SENSITIVE", str(sensitive).lower()))
    # a wrong option suggests the options; sure but disagreeing decodes are confirmed, not taken;
    # spoken digits are read back; "no" asks again; a key during the read-back types the PIN instead
    p = simulate(str(plan), "--json", "--input", "say:cancel,say:billing@1.0/0.25,1,say:five six seven eight,"
                 "say:no,say:9 0 7 0,4,321")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    texts = [e.get("text") for e in doc["prompts"]]
    assert texts[1:3] == ["You can say billing or support, or press 1 or 2.", "Billing or support?"]
    assert texts[3].startswith("Did you say billing?")
    digits = ["****"] * 4 if sensitive else ["five", "six", "seven", "eight"]
    assert texts[5:11] == ["I heard ", *digits, "Press 1 or say yes if that is right, otherwise press 2 or say no."]
    steps = [(s["node"], s.get("outcome"), s.get("agreement")) for s in doc["journey"]["steps"]]
    assert steps == [("m", "no_match", 1.0), ("m", "confirmed", 0.25), ("pin", "rejected", 1.0),
                     ("pin", "rejected", 1.0), ("pin", "ok", None), ("bye", None, None)]
    assert doc["outcome"]["variables"]["pin"] == ("****" if sensitive else "4321")
    if sensitive:
        assert "5678" not in p.stdout and "4321" not in p.stdout and "five" not in p.stdout
