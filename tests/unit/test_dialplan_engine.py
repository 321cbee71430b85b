"""The dial-plan engine alone: fake ports, scripted caller answers in; path, journey and outcome out."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import ValidationError
from structlog.testing import capture_logs

from ivr.core.config import DialplanSettings
from ivr.core.errors import BadRequest, DialplanError
from ivr.dialplan.engine import MAX_STEPS, PlanRunner, RunResult, lookup_path, mask_digits, parse_priority
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import LoadedPlan, PlanRegistry, load_plan
from ivr.dialplan.model import Plan, Prompt, QueueNode
from ivr.dialplan.ports import (
    Answer,
    Ask,
    CallerGone,
    CaseRef,
    LookupFailed,
    QueueOutcome,
    QueueTarget,
    Recording,
)
from ivr.dialplan.templates import prompt_text

ROOT = Path(__file__).resolve().parents[2]
REPEAT = "+15550777"  # a caller whose complaint case is still open (FakeRecord takes it)


# --- fakes ---------------------------------------------------------------------------------------
def answer(a: Answer | str | None) -> Answer:
    """``None`` no input, ``"say:text@0.6"`` speech (the phrase as recognised; ``@0.97/0.5``: and 8
    decodes of which half agreed), else keys."""
    if a is None:
        return Answer.none()
    if isinstance(a, Answer):
        return a
    if a.startswith("say:"):
        text, _, heard = a[4:].partition("@")
        conf, _, agree = heard.partition("/")
        return Answer("speech", phrase=text, text=text, confidence=float(conf or 1.0),
                      agreement=float(agree or 1.0), decodes=8 if agree else 1)
    return Answer("digits", digits=a)


class FakeCall:
    def __init__(self, *answers: Answer | str | None, caller: str = "+15550001", dnis: str = "1000",
                 transfer: Literal["completed", "failed"] = "completed",
                 recording: Recording | None = None, gone_after: int | None = None) -> None:
        self.answers = [answer(a) for a in answers]
        self._caller, self._dnis = caller, dnis
        self.asks: list[Ask] = []
        self.heard: list[str] = []      # every prompt played, rendered, as "<language>: <text>"
        self.hangups = 0
        self.transfer_result = transfer
        self.transfers: list[tuple[str, float]] = []
        self.recording = recording or Recording("/var/vm/x.wav", 7.5, "terminator")
        self.recordings: list[dict[str, Any]] = []
        self.gone_after = gone_after

    @property
    def caller(self) -> str:
        return self._caller

    @property
    def dnis(self) -> str:
        return self._dnis

    def _hear(self, prompt: Prompt, language: str, variables: Mapping[str, str]) -> None:
        text = prompt_text(prompt, language, "en", variables)
        self.heard.append(f"{language}: {text if text is not None else 'file:' + str(prompt.file)}")

    async def play(self, prompt: Prompt, *, language: str, variables: Mapping[str, str]) -> None:
        self._hear(prompt, language, variables)

    async def ask(self, ask: Ask) -> Answer:
        if self.gone_after is not None and len(self.asks) >= self.gone_after:
            raise CallerGone("bye")
        self.asks.append(ask)
        for p in ask.prompts:
            self._hear(p, ask.language, ask.variables)
        return self.answers.pop(0) if self.answers else Answer.none()

    async def record(self, *, max_s: float, beep: bool, terminator: str, name: str) -> Recording:
        self.recordings.append({"max_s": max_s, "beep": beep, "terminator": terminator, "name": name})
        return self.recording

    async def transfer(self, destination: str, *, ring_s: float) -> Literal["completed", "failed"]:
        self.transfers.append((destination, ring_s))
        return self.transfer_result

    async def hangup(self) -> None:
        self.hangups += 1

    @property
    def texts(self) -> list[str]:
        return [h.split(": ", 1)[1] for h in self.heard]


class FakeQueue:
    def __init__(self, outcome: QueueOutcome = "caller_hangup") -> None:
        self.outcome = outcome
        self.targets: list[QueueTarget] = []
        self.journeys: list[dict[str, Any]] = []

    async def wait_for_agent(self, target: QueueTarget, journey: Journey) -> QueueOutcome:
        self.targets.append(target)
        self.journeys.append(journey.to_dict())
        return self.outcome


class FakeRecord:
    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []

    async def save(self, fields: Mapping[str, Any]) -> None:
        self.saved.append(dict(fields))

    async def request_callback(self, *, queue: str, number: str, journey: Journey) -> str:
        if number == "anonymous":
            raise BadRequest("not a number", code="callback.number_invalid")
        self.callbacks.append({"queue": queue, "number": number, "steps": len(journey.steps)})
        return f"cb-{len(self.callbacks)}"

    async def open_case(self, *, tier: str, reason: str, customer: str) -> CaseRef:
        if customer == "refuse":
            raise BadRequest("no case", code="case.invalid")
        if customer == REPEAT:  # a caller whose case is still open: it is taken, no second one
            return CaseRef("CS7", existing=True)
        self.cases.append({"tier": tier, "reason": reason, "customer": customer})
        return CaseRef(f"CS{len(self.cases)}")

    async def case_answers(self, case_id: str, answers: Mapping[str, str], *, reopen: bool) -> bool:
        if case_id == "CS-gone":
            raise BadRequest("no case", code="case.not_found")
        self.answers.append({"case_id": case_id, "answers": dict(answers), "reopen": reopen})
        return reopen


class FakeData:
    def __init__(self, reply: Any = None, error: str | None = None) -> None:
        self.reply, self.error = reply, error
        self.calls: list[tuple[str, str, Any, float]] = []

    async def fetch(self, method: str, url: str, body: Mapping[str, Any] | None, timeout_s: float) -> Any:
        self.calls.append((method, url, body, timeout_s))
        if self.error is not None:
            raise LookupFailed(self.error)
        return self.reply


def make_plan(text: str) -> LoadedPlan:
    """A plan from YAML without the loader's graph checks (so tests may build odd graphs)."""
    data = yaml.safe_load(textwrap.dedent(text))
    data.setdefault("name", "test")
    data.setdefault("numbers", ["1000"])
    return LoadedPlan(Plan.model_validate(data), Path("test.yaml"), "v1")


class Env:
    def __init__(self, call: FakeCall, queue: FakeQueue, record: FakeRecord, data: FakeData,
                 runner: PlanRunner, result: RunResult) -> None:
        self.call, self.queue, self.record, self.data, self.runner, self.result = (
            call, queue, record, data, runner, result)

    @property
    def steps(self) -> list[tuple[str, str | None]]:
        return [(s.node, s.outcome) for s in self.result.journey.steps]


async def run(plan: LoadedPlan | str, call: FakeCall | None = None, *, queue: FakeQueue | None = None,
              data: FakeData | None = None, settings: DialplanSettings | None = None,
              now: datetime | None = None, variables: Mapping[str, str] | None = None) -> Env:
    loaded = make_plan(plan) if isinstance(plan, str) else plan
    call = call or FakeCall()
    queue = queue or FakeQueue()
    record, data = FakeRecord(), data or FakeData({})
    kw: dict[str, Any] = {}
    if now is not None:
        kw["now"] = lambda: now
    runner = PlanRunner(loaded, call=call, queue=queue, record=record, data=data,
                        settings=settings or DialplanSettings(), variables=variables, **kw)
    result = await runner.run()
    return Env(call, queue, record, data, runner, result)


HOTLINE = ROOT / "dialplans" / "hotline.yaml"


# --- the demo hotline ------------------------------------------------------------------------------
async def test_pressing_2_queues_for_billing_with_the_path_in_the_journey() -> None:
    env = await run(load_plan(HOTLINE), FakeCall("2"))
    assert env.result.result == "queued" and env.result.queue_outcome == "caller_hangup"
    assert env.result.node == "billing" and env.call.hangups == 0
    target = env.queue.targets[0]
    assert (target.queue, target.skills, target.priority, target.language) == ("billing", ("billing",), 0, "en")
    journey = env.queue.journeys[0]
    assert [(s["node"], s.get("digit")) for s in journey["steps"]] == [("welcome", "2"), ("billing", None)]
    assert env.call.texts[-1] == "Please hold for the billing team."
    assert env.result.journey is env.runner.journey


async def test_wrong_key_then_right_key_plays_no_match_and_the_menu_in_one_ask() -> None:
    env = await run(load_plan(HOTLINE), FakeCall("7", "1"))
    assert env.result.result == "queued" and env.queue.targets[0].queue == "sales"
    second = env.call.asks[1]
    assert [p.text for p in second.prompts] == [
        "Sorry, that is not an option.",
        "Welcome to the demo hotline. For sales, press 1. For billing, press 2. For support, press 3."]
    assert env.steps[:2] == [("welcome", "no_match"), ("welcome", "sales")]
    assert [s.attempt for s in env.result.journey.steps[:2]] == [1, 2]


async def test_silence_exhausts_retries_and_says_goodbye() -> None:
    env = await run(load_plan(HOTLINE), FakeCall())
    assert env.result.result == "hangup" and env.result.node == "goodbye" and env.call.hangups == 1
    assert not env.queue.targets
    assert [o for n, o in env.steps if n == "welcome"] == ["no_input"] * 3
    assert len(env.call.asks) == 3 and env.call.texts[0].startswith("Welcome")
    assert env.call.asks[1].prompts[0].text == "Sorry, I did not hear anything."
    assert env.call.texts[-1] == "Goodbye."


# --- menu ------------------------------------------------------------------------------------------
MENU = """
start: m
confirm:
  prompt: {text: {en: "Did you say {phrase}?", ko: "{phrase} 맞습니까?"}}
  "yes": {en: ["yes", yeah], ko: [네]}
  "no": {en: ["no"], ko: [아니요]}
variables: {who: Kim}
nodes:
  m:
    type: menu
    prompt: {text: {en: "Hello {who}. Billing 1, support 2.", ko: "{who}님, 요금 1번"}}
    options:
      - {digit: "1", say: [billing, 요금 문의], goto: billing}
      - {digit: "2", say: [support], goto: support}
    no_input: "Nothing heard."
    no_match: "Wrong."
    timeout_s: 7
    barge_in: false
    retries: 2
    on_failure: fail
  billing: {type: hangup}
  support: {type: hangup}
  fail: {type: hangup, prompt: "Bye."}
"""


async def test_menu_ask_carries_the_node_settings_and_every_option_phrase() -> None:
    env = await run(MENU, FakeCall("1"))
    ask = env.call.asks[0]
    assert ask.max_digits == 1 and ask.timeout_s == 7 and ask.barge_in is False
    assert ask.phrases == ("billing", "요금 문의", "support") and ask.max_speech_s == 8.0
    assert ask.language == "en" and ask.variables["who"] == "Kim" and ask.variables["caller"] == "+15550001"
    assert env.call.texts[0] == "Hello Kim. Billing 1, support 2."
    assert env.result.node == "billing" and env.result.result == "hangup"


@pytest.mark.parametrize("said", ["say:Billing@0.96", "say:  BILLING @0.99", "say:요금문의@1.0/1.0"])
async def test_menu_speech_at_or_above_accept_is_taken(said: str) -> None:
    env = await run(MENU, FakeCall(said))
    assert env.result.node == "billing"
    step = env.result.journey.steps[0]
    assert step.outcome == "billing" and step.phrase in ("billing", "요금 문의") and step.confidence is not None
    assert len(env.call.asks) == 1  # no confirmation


async def test_menu_middling_confidence_is_confirmed_by_key() -> None:
    env = await run(MENU, FakeCall("say:support@0.6", "1"))
    assert env.result.node == "support"
    confirm = env.call.asks[1]
    assert env.call.texts[-1] == "Did you say support?"
    assert confirm.phrases == ("yes", "yeah", "no") and confirm.timeout_s == 4.0 and confirm.max_digits == 1
    step = env.result.journey.steps[0]
    assert (step.outcome, step.goto, step.phrase, step.confidence) == ("confirmed", "support", "support", 0.6)


async def test_menu_confirmation_by_yes_word_in_the_current_language() -> None:
    env = await run(MENU, FakeCall("say:요금 문의@0.5", "say:네@0.9"), variables={"language": "ko"})
    assert env.result.node == "billing"
    assert env.call.heard[0] == "ko: Kim님, 요금 1번" and env.call.heard[1] == "ko: 요금 문의 맞습니까?"
    assert env.call.asks[1].phrases == ("네", "아니요")


async def test_confirmation_words_fall_back_to_english() -> None:
    env = await run(MENU, FakeCall("say:billing@0.5", "say:yeah@0.9"), variables={"language": "fr"})
    assert env.result.node == "billing" and env.call.asks[1].phrases == ("yes", "yeah", "no")


@pytest.mark.parametrize("reply", ["2", "say:no@0.9", None, "7", "say:yes@0.2"])
async def test_menu_confirmation_not_yes_is_rejected_and_counts_as_no_match(reply: str | None) -> None:
    env = await run(MENU, FakeCall("say:billing@0.6", reply, "2"))
    assert env.result.node == "support"
    assert env.steps[0] == ("m", "rejected")
    assert env.call.asks[2].prompts[0].text == "Wrong."


async def test_menu_low_confidence_is_no_match_without_confirmation() -> None:
    env = await run(MENU, FakeCall("say:billing@0.3", "1"))
    assert env.steps[0] == ("m", "no_match") and len(env.call.asks) == 2
    assert env.call.asks[1].prompts[0].text == "Wrong."


async def test_menu_sure_but_disagreeing_decodes_are_confirmed_never_taken() -> None:
    env = await run(MENU, FakeCall("say:billing@1.0/0.8", "2", "say:support@1.0/1.0"))
    assert env.steps[:2] == [("m", "rejected"), ("m", "support")] and len(env.call.asks) == 3
    first, second = env.result.journey.steps[:2]
    assert (first.confidence, first.agreement, second.agreement) == (1.0, 0.8, 1.0)
    assert "agreement" in env.result.journey.to_dict()["steps"][0]


async def test_menu_without_no_match_prompt_suggests_the_options_in_the_callers_language() -> None:
    plan = MENU.replace('    no_match: "Wrong."\n', "")
    env = await run(plan, FakeCall("say:cancel@0.99", "7", "1"))
    assert [p.text for p in env.call.asks[1].prompts] == [
        "You can say billing or support, or press 1 or 2.", {"en": "Hello {who}. Billing 1, support 2.",
                                                              "ko": "{who}님, 요금 1번"}]
    assert env.call.asks[2].prompts[0].text == "You can say billing or support, or press 1 or 2."
    env = await run(plan, FakeCall("say:billing@0.5", "2", "1"), variables={"language": "ko"})
    assert env.call.texts[2] == "요금 문의, support 중 하나를 말씀하시거나, 1, 2번을 누르세요."
    env = await run(plan, FakeCall(None, "1"))   # no input is not a wrong answer: no suggestion
    assert env.call.asks[1].prompts[0].text == "Nothing heard."


async def test_menu_phrase_outside_the_options_is_no_match() -> None:
    env = await run(MENU, FakeCall("say:cancel@0.99", "1"))
    assert env.steps[0] == ("m", "no_match") and env.result.journey.steps[0].phrase == "cancel"


async def test_menu_no_input_retries_with_the_no_input_prompt_then_fails_over() -> None:
    env = await run(MENU, FakeCall(None, "9", None))
    assert [o for _, o in env.steps[:3]] == ["no_input", "no_match", "no_input"]
    assert [a.prompts[0].text for a in env.call.asks[1:]] == ["Nothing heard.", "Wrong."]
    assert env.result.node == "fail" and env.call.texts[-1] == "Bye." and env.call.hangups == 1


async def test_menu_without_on_failure_hangs_up_and_listen_off_sends_no_phrases() -> None:
    env = await run("""
        start: m
        nodes:
          m:
            type: menu
            prompt: "Pick."
            options: [{digit: "1", say: [one], goto: h}]
            retries: 0
            listen: {enabled: false}
          h: {type: hangup}
        """, FakeCall("say:one"))
    assert env.call.asks[0].phrases == ()
    assert env.result.result == "hangup" and env.result.node == "m" and env.call.hangups == 1
    assert env.steps == [("m", "no_match")]


# --- collect ----------------------------------------------------------------------------------------
COLLECT = """
start: c
nodes:
  c:
    type: collect
    prompt: "Account number?"
    variable: account
    min_digits: 4
    max_digits: 8
    terminator: "*"
    inter_digit_s: 2.5
    pattern: "[1-9][0-9]*"
    no_input: "Nothing."
    no_match: "Invalid."
    retries: 1
    on_failure: fail
    next: done
  done: {type: play, prompt: "Got {account}."}
  fail: {type: hangup, prompt: "Sorry."}
"""


async def test_collect_valid_entry_is_stored_masked_in_the_journey_and_not_logged() -> None:
    with capture_logs() as logs:
        env = await run(COLLECT, FakeCall("12345634"))
    ask = env.call.asks[0]
    assert (ask.max_digits, ask.terminator, ask.inter_digit_s, ask.spoken_digits, ask.phrases) == (
        8, "*", 2.5, True, ())
    assert env.result.variables["account"] == "12345634"
    step = env.result.journey.steps[0]
    assert (step.digit, step.outcome) == ("******34", "ok")
    assert env.call.texts[-1] == "Got 12345634."
    assert env.result.result == "hangup" and env.result.node == "done"  # no next: hang up
    assert not any("12345634" in repr(entry) for entry in logs)
    assert any(e["event"] == "dialplan.collect" and e.get("length") == 8 for e in logs)


async def test_collect_sensitive_entry_is_usable_but_shown_to_nobody() -> None:
    plan = COLLECT.replace("    next: done\n", "    sensitive: true\n    next: done\n")
    env = await run(plan, FakeCall("12345634"))
    assert env.result.variables["account"] == "12345634"          # usable by templates and lookups
    assert env.result.journey.steps[0].digit == "****"
    pop = env.result.journey.to_dict()                             # what agents and the CRM get
    assert pop["data"]["account"] == "****" and "12345634" not in repr(pop)


@pytest.mark.parametrize("bad", ["123", "", "0123", "123456789"])
async def test_collect_invalid_entry_retries_with_no_match(bad: str) -> None:
    env = await run(COLLECT, FakeCall(bad, "4321"))
    assert env.steps[0] == ("c", "no_match")
    assert env.call.asks[1].prompts[0].text == "Invalid."
    assert env.result.variables["account"] == "4321"


async def test_collect_no_input_then_failure() -> None:
    env = await run(COLLECT, FakeCall(None, "12"))
    assert env.steps[:2] == [("c", "no_input"), ("c", "no_match")]
    assert env.call.asks[1].prompts[0].text == "Nothing."
    assert env.result.node == "fail" and "account" not in env.result.variables
    assert env.result.journey.steps[1].digit == "**"


def spoken(digits: str, confidence: float = 1.0, agreement: float = 1.0) -> Answer:
    return Answer("speech", digits=digits, text=digits, confidence=confidence, agreement=agreement)


@pytest.mark.parametrize("confidence", [1.0, 0.5])
async def test_collect_spoken_digits_are_read_back_one_by_one_and_yes_takes_them(confidence: float) -> None:
    env = await run(COLLECT, FakeCall(spoken("5678", confidence), "1"))
    assert env.result.variables["account"] == "5678" and env.steps == [("c", "confirmed"), ("done", None)]
    read = env.call.asks[1]
    assert [p.text for p in read.prompts] == ["I heard ", "five", "six", "seven", "eight",
                                              "Press 1 or say yes if that is right, otherwise press 2 or say no."]
    assert read.max_digits == 1 and read.phrases == ("yes", "no") and read.barge_in and read.timeout_s == 4.0
    assert "5678" not in repr(read.variables) and "5 6 7 8" not in repr(read.variables)
    step = env.result.journey.steps[0]
    assert (step.digit, step.confidence, step.agreement) == ("****", confidence, 1.0)


async def test_collect_read_back_in_korean_and_yes_by_voice() -> None:
    env = await run(COLLECT, FakeCall(spoken("1029"), "say:네@0.9"), variables={"language": "ko"})
    assert env.result.variables["account"] == "1029"
    assert env.call.texts[1:5] == ["일", "공", "이", "구"]
    assert env.call.texts[5] == "라고 들었습니다. 맞으면 1번 또는 네, 아니면 2번 또는 아니요 라고 말씀하세요."
    assert env.call.asks[1].phrases == ("네", "예", "아니요")


@pytest.mark.parametrize("reply", ["2", "say:no@0.99", None, "say:yes@0.2", "*"])   # *: the terminator
async def test_collect_read_back_no_asks_again_and_counts_as_a_try(reply: str | None) -> None:
    env = await run(COLLECT, FakeCall(spoken("5678"), reply, spoken("5679"), "1"))
    assert env.steps[:2] == [("c", "rejected"), ("c", "confirmed")]
    assert [s.attempt for s in env.result.journey.steps[:2]] == [1, 2]
    assert [p.text for p in env.call.asks[2].prompts] == ["Account number?"]   # the question again, no apology
    assert env.result.variables["account"] == "5679"
    env = await run(COLLECT, FakeCall(spoken("5678"), reply, spoken("5679"), reply))
    assert env.steps[:2] == [("c", "rejected"), ("c", "rejected")] and env.result.node == "fail"
    assert "account" not in env.result.variables


async def test_collect_keys_during_the_read_back_replace_the_speech_without_a_read_back() -> None:
    env = await run(COLLECT, FakeCall(spoken("5678"), "4", "321"))
    assert env.result.variables["account"] == "4321" and len(env.call.asks) == 3
    rest = env.call.asks[2]
    assert rest.prompts == () and rest.max_digits == 7 and rest.terminator == "*" and not rest.spoken_digits
    assert env.steps[:2] == [("c", "rejected"), ("c", "ok")]
    assert env.result.journey.steps[1].digit == "****" and env.result.journey.steps[1].detail
    # a wrong keypad entry is a wrong answer like any other
    env = await run(COLLECT, FakeCall(spoken("5678"), "4", "", "1234"))
    assert env.steps[:3] == [("c", "rejected"), ("c", "no_match"), ("c", "ok")]


async def test_collect_keys_in_the_first_place_need_no_read_back() -> None:
    env = await run(COLLECT, FakeCall("5678"))
    assert env.result.variables["account"] == "5678" and len(env.call.asks) == 1 and env.steps[0] == ("c", "ok")


async def test_collect_read_back_false_takes_sure_digits_and_reads_back_unsure_ones() -> None:
    plan = COLLECT.replace("    next: done\n", "    read_back: false\n    next: done\n")
    env = await run(plan, FakeCall(spoken("5678", 0.97)))
    assert env.result.variables["account"] == "5678" and env.steps[0] == ("c", "ok") and len(env.call.asks) == 1
    env = await run(plan, FakeCall(spoken("5678", 0.7), "1"))
    assert env.steps[0] == ("c", "confirmed") and "five" in env.call.texts
    env = await run(plan, FakeCall(spoken("5678", 0.2), None))
    assert env.steps[0] == ("c", "no_match") and env.result.node == "fail" and len(env.call.asks) == 2


async def test_collect_unsure_spoken_digits_are_no_match_without_a_read_back() -> None:
    env = await run(COLLECT, FakeCall(spoken("5678", 0.2), None))
    assert env.steps[0] == ("c", "no_match") and env.result.node == "fail"
    assert env.call.asks[1].prompts[0].text == "Invalid."


async def test_collect_sensitive_spoken_entry_is_read_back_but_logged_and_journeyed_masked() -> None:
    plan = COLLECT.replace("    next: done\n", "    sensitive: true\n    next: done\n")
    with capture_logs() as logs:
        env = await run(plan, FakeCall(spoken("56781234"), "1"))
    assert env.result.variables["account"] == "56781234"
    assert [s.digit for s in env.result.journey.steps if s.node == "c"] == ["****"]
    assert "56781234" not in repr(logs) and "56781234" not in repr(env.result.journey.to_dict())
    assert "5 6 7 8" not in repr(logs)


def test_mask_digits_is_one_rule_the_stricter_one() -> None:
    from ivr.calls import ask

    assert ask.mask_digits is mask_digits  # the journey and the logs mask alike
    assert mask_digits("123434") == "******" and mask_digits("1234567") == "*******"
    assert mask_digits("12345678") == "******78" and mask_digits("") == "" and mask_digits("12") == "**"


# --- play, set, language ------------------------------------------------------------------------------
async def test_set_renders_in_order_and_language_switches_prompts_queue_and_journey() -> None:
    env = await run("""
        start: s
        language: en
        nodes:
          s:
            type: set
            variables: {a: "x{caller}", b: "[{a}]", n: 5, f: true, esc: "{{literal}}"}
            next: l
          l: {type: language, language: ko, next: p}
          p: {type: play, prompt: {text: {en: "Hi {b}", ko: "안녕 {b} {language}"}}, next: q}
          q: {type: queue, queue: billing, prompt: {text: {en: "Hold", ko: "잠시만"}}}
        """, FakeCall(caller="+1"))
    v = env.result.variables
    assert (v["a"], v["b"], v["n"], v["f"], v["esc"]) == ("x+1", "[x+1]", "5", "true", "{literal}")
    assert env.call.heard == ["ko: 안녕 [x+1] ko", "ko: 잠시만"]
    assert env.result.journey.language == "ko" and v["language"] == "ko"
    assert env.queue.targets[0].language == "ko"
    assert env.queue.journeys[0]["language"] == "ko"


async def test_variables_are_layered_builtins_plan_then_arguments() -> None:
    env = await run("""
        start: h
        variables: {brand: Acme, tier: basic, flag: false}
        nodes:
          h: {type: hangup}
        """, FakeCall(caller="+1555", dnis="77"), variables={"tier": "gold", "language": "x y"})
    v = env.result.variables
    assert v == {"caller": "+1555", "dnis": "77", "language": "en", "plan": "test", "plan_version": "v1",
                 "brand": "Acme", "tier": "gold", "flag": "false"}
    assert env.result.journey.data == v
    env = await run("start: h\nnodes:\n  h: {type: hangup, prompt: {text: {en: E, ko: K}}}\n",
                    variables={"language": "ko"})
    assert env.call.heard == ["ko: K"] and env.result.journey.language == "ko"


# --- queue --------------------------------------------------------------------------------------------
QUEUE = """
start: q
nodes:
  q:
    type: queue
    queue: billing
    skills: [billing, vip]
    language: ko
    priority: "{prio}"
    announce: {every_s: 45, position: true, wait_time: false}
    max_wait_s: 120
    on_timeout: late
    after: survey
  late: {type: hangup, prompt: "Too busy."}
  survey: {type: survey, prompt: "Rate us."}
"""


@pytest.mark.parametrize(("prio", "expected"), [("7", 7), ("12", 9), ("-3", 0), ("4.6", 4), ("high", 0), ("", 0)])
async def test_queue_priority_template_is_clamped(prio: str, expected: int) -> None:
    env = await run(QUEUE, queue=FakeQueue("caller_hangup"), variables={"prio": prio})
    t = env.queue.targets[0]
    assert t == QueueTarget(queue="billing", skills=("billing", "vip"), language="ko", priority=expected,
                            max_wait_s=120, announce_every_s=45, announce_position=True, announce_wait=False)
    assert env.result.result == "queued" and env.result.queue_outcome == "caller_hangup"
    assert env.result.queue_target == t


def test_parse_priority_warns_via_flag() -> None:
    assert parse_priority(3, {}) == (3, True)
    assert parse_priority("{p}", {"p": "x"}) == (0, False)
    assert parse_priority("{p}", {"p": "9"}) == (9, True)


async def test_queue_agent_hangup_goes_to_after_and_timeout_to_on_timeout() -> None:
    env = await run(QUEUE, FakeCall("5"), queue=FakeQueue("agent_hangup"), variables={"prio": "1"})
    assert env.result.node == "survey" and env.record.saved == [{"csat": 5}]
    assert env.steps[0] == ("q", "agent_hangup") and env.result.journey.steps[0].detail == "billing"
    assert env.queue.journeys[0]["steps"][-1]["node"] == "q"  # the screen-pop sees the queue step
    env = await run(QUEUE, queue=FakeQueue("timeout"), variables={"prio": "1"})
    assert env.result.node == "late" and env.call.texts == ["Too busy."] and env.result.result == "hangup"


async def test_a_key_pressed_on_hold_goes_to_its_node() -> None:
    plan = QUEUE.replace("    after: survey\n", "    after: survey\n    keys: [{digit: '1', goto: late}]\n")
    env = await run(plan, queue=FakeQueue("key:1"), variables={"prio": "1"})
    assert env.queue.targets[0].keys == ("1",)
    assert env.result.node == "late" and env.call.texts == ["Too busy."]
    step = env.result.journey.steps[0]
    assert (step.node, step.digit, step.outcome) == ("q", "1", "key:1")


async def test_queue_defaults_and_agent_hangup_without_after_ends_queued() -> None:
    env = await run("start: q\nnodes:\n  q: {type: queue, queue: support, priority: 3}\n",
                    queue=FakeQueue("agent_hangup"))
    t = env.queue.targets[0]
    assert (t.skills, t.language, t.priority, t.max_wait_s, t.announce_every_s) == (("support",), "en", 3, None,
                                                                                     None)
    assert env.result.result == "queued" and env.result.queue_outcome == "agent_hangup"
    assert env.call.hangups == 0


@pytest.mark.parametrize(("tier", "prio", "expected"), [
    ("urgent", "0", 9), ("important", "2", 5), ("important", "7", 7), ("normal", "3", 3),
    ("{complaint}", "1", 5), ("{missing}", "4", 4)])
async def test_queue_complaint_tier_gives_at_least_its_priority(tier: str, prio: str, expected: int) -> None:
    plan = ("start: q\nnodes:\n  q: {type: queue, queue: support, min_proficiency: 3, "
            f"tier: '{tier}', priority: '{{p}}'}}\n")
    env = await run(plan, queue=FakeQueue("caller_hangup"), variables={"p": prio, "complaint": "Important"})
    t = env.queue.targets[0]
    assert (t.priority, t.min_proficiency, t.skills_from_plan, t.language_from_plan) == (expected, 3, False, False)


def test_queue_tier_must_be_known_or_a_template() -> None:
    with pytest.raises(ValidationError):
        QueueNode.model_validate({"type": "queue", "queue": "q", "tier": "critical"})
    with pytest.raises(ValidationError):
        QueueNode.model_validate({"type": "queue", "queue": "q", "min_proficiency": 0})


# --- callback -------------------------------------------------------------------------------------
CALLBACK = """
start: cb
nodes:
  cb:
    type: callback
    queue: general
    prompt: "Press 1 to be called back at {caller}."
    accept_digit: "1"
    accept_say: [call me back]
    number: "{callback_to}"
    confirmed: "Booked."
    timeout_s: 3
    declined: vm
  vm: {type: play, prompt: "Declined."}
"""


@pytest.mark.parametrize("reply", ["1", "say:Call me back@0.97"])
async def test_callback_accepted_books_with_the_rendered_number(reply: str) -> None:
    env = await run(CALLBACK, FakeCall(reply, caller="+8210"), variables={"callback_to": "+8210 99"})
    assert env.record.callbacks == [{"queue": "general", "number": "+8210 99", "steps": 0}]
    ask = env.call.asks[0]
    assert ask.phrases == ("call me back",) and ask.max_digits == 1 and ask.timeout_s == 3
    assert env.call.texts == ["Press 1 to be called back at +8210.", "Booked."]
    assert env.steps == [("cb", "accepted")] and env.result.journey.steps[0].detail == "cb-1"
    assert env.result.result == "hangup" and env.call.hangups == 1


@pytest.mark.parametrize("reply", ["2", None, "say:call me back@0.6", "say:maybe@0.9"])
async def test_callback_not_accepted_goes_to_declined(reply: str | None) -> None:
    env = await run(CALLBACK, FakeCall(reply))
    assert not env.record.callbacks and env.steps[0] == ("cb", "declined")
    assert env.call.texts[-1] == "Declined."


async def test_callback_unsure_yes_is_confirmed_before_booking() -> None:
    env = await run(CALLBACK, FakeCall("say:call me back@0.6", "1"), variables={"callback_to": "+8210 99"})
    assert env.steps == [("cb", "accepted")] and len(env.record.callbacks) == 1
    assert env.call.asks[1].variables["phrase"] == "call me back"
    env = await run(CALLBACK, FakeCall("say:call me back@1.0/0.5", "2"))   # sure, decodes disagree: asked
    assert env.steps[0] == ("cb", "declined") and not env.record.callbacks and len(env.call.asks) == 2


async def test_callback_refused_by_the_record_goes_to_declined_and_the_call_goes_on() -> None:
    env = await run(CALLBACK, FakeCall("1"), variables={"callback_to": "anonymous"})
    assert not env.record.callbacks and env.steps[0] == ("cb", "failed")
    assert env.result.journey.steps[0].detail == "callback.number_invalid"
    assert env.call.texts[-1] == "Declined."


async def test_callback_declined_without_target_hangs_up() -> None:
    env = await run("start: cb\nnodes:\n  cb: {type: callback, queue: q, prompt: Offer}\n", FakeCall("9"))
    assert env.result.result == "hangup" and env.result.node == "cb" and env.call.hangups == 1


# --- complaint case --------------------------------------------------------------------------------
CASE = """
start: c
nodes:
  c:
    type: case
    tier: "{complaint.tier}"
    reason: "{complaint.reason}"
    next: tell
    on_error: sorry
  tell: {type: hangup, prompt: "Your case is {case_id}."}
  sorry: {type: hangup, prompt: "Sorry."}
"""


@pytest.mark.parametrize(("tier", "opened"), [("urgent", "urgent"), (" Important ", "important"),
                                             ("bogus", "normal"), ("", "normal")])
async def test_case_opens_with_the_rendered_tier_and_tells_its_id(tier: str, opened: str) -> None:
    """A template giving no tier still opens the complaint's case, at the lowest tier (logged)."""
    env = await run(CASE, FakeCall(caller="+8210"),
                    variables={"complaint.tier": tier, "complaint.reason": "billing\n  twice  charged"})
    assert env.record.cases == [{"tier": opened, "reason": "billing twice charged", "customer": "+8210"}]
    assert env.steps == [("c", opened), ("tell", None)] and env.result.journey.steps[0].detail == "CS1"
    assert env.result.variables["case_id"] == "CS1" and env.call.texts == ["Your case is CS1."]


async def test_case_reason_is_cut_to_one_line_of_200_characters() -> None:
    env = await run(CASE, FakeCall(), variables={"complaint.tier": "normal", "complaint.reason": "가" * 900})
    assert env.record.cases[0]["reason"] == "가" * 200


async def test_a_case_the_record_refuses_goes_to_on_error_and_the_call_goes_on() -> None:
    env = await run(CASE, FakeCall(caller="refuse"), variables={"complaint.tier": "urgent"})
    assert not env.record.cases and env.steps == [("c", "failed"), ("sorry", None)]
    assert env.result.journey.steps[0].detail == "case.invalid" and "case_id" not in env.result.variables


async def test_a_caller_with_an_open_case_joins_it_instead_of_opening_a_second() -> None:
    env = await run(CASE, FakeCall(caller=REPEAT), variables={"complaint.tier": "urgent", "complaint.reason": "x"})
    assert not env.record.cases and env.steps == [("c", "existing"), ("tell", None)]
    assert env.result.journey.steps[0].detail == "CS7" and env.call.texts == ["Your case is CS7."]


REPEAT_PLAN = """
start: known
nodes:
  known:
    type: branch
    rules: [{if: {var: case.overdue, equals: "true"}, goto: urgent}]
    default: general
  urgent: {type: queue, queue: complaints, tier: "{case.tier}"}
  general: {type: queue, queue: general}
"""


@pytest.mark.parametrize(("seeded", "queue", "priority"), [
    ({"case.id": "CS3", "case.tier": "urgent", "case.status": "open", "case.overdue": "true", "case.count": "1"},
     "complaints", 9),
    ({"case.id": "CS3", "case.tier": "urgent", "case.status": "open", "case.overdue": "false", "case.count": "1"},
     "general", 0),
    ({}, "general", 0),
])
async def test_a_repeat_caller_with_an_overdue_case_jumps_the_queue(seeded: dict[str, str], queue: str,
                                                                     priority: int) -> None:
    """The worker seeds case.* at the call's start (none: unset); the plan branches on them."""
    env = await run(REPEAT_PLAN, FakeCall(), variables=seeded)
    assert [(t.queue, t.priority) for t in env.queue.targets] == [(queue, priority)]
    assert {k: v for k, v in env.result.journey.data.items() if k.startswith("case.")} == seeded


def test_a_case_node_names_a_known_tier_or_a_template() -> None:
    make_plan("start: c\nnodes:\n  c: {type: case, tier: important}\n")
    with pytest.raises(ValidationError, match="tier is one of urgent, important, normal"):
        make_plan("start: c\nnodes:\n  c: {type: case, tier: critical}\n")


# --- survey ----------------------------------------------------------------------------------------
SURVEY = """
start: s
nodes:
  s:
    type: survey
    prompt: "Rate 1 to 5."
    retries: 1
    no_match: "1 to 5 please."
    scale: {"5": [매우 만족, excellent], "1": [bad]}
    thanks: "Thanks."
    next: bye
  bye: {type: hangup, prompt: "Bye."}
"""


@pytest.mark.parametrize(("reply", "score"), [("4", 4), ("say:매우만족", 5), ("say:Excellent@0.97", 5),
                                             ("say:bad", 1)])
async def test_survey_scores_by_key_or_word(reply: str, score: int) -> None:
    env = await run(SURVEY, FakeCall(reply))
    assert env.record.saved == [{"csat": score}] and env.result.variables["csat"] == str(score)
    assert env.call.texts == ["Rate 1 to 5.", "Thanks.", "Bye."]
    assert env.call.asks[0].phrases == ("매우 만족", "excellent", "bad")
    assert env.steps[0] == ("s", "scored") and env.result.journey.steps[0].detail == str(score)


async def test_survey_invalid_then_valid_and_no_score_when_out_of_retries() -> None:
    env = await run(SURVEY, FakeCall("9", "2"))
    assert env.record.saved == [{"csat": 2}] and env.steps[0] == ("s", "no_match")
    assert [p.text for p in env.call.asks[1].prompts] == ["1 to 5 please.", "Rate 1 to 5."]
    env = await run(SURVEY, FakeCall(None, "say:meh@0.9"))
    assert not env.record.saved and "csat" not in env.result.variables
    assert [o for _, o in env.steps] == ["no_input", "no_match", "no_score", None]
    assert [p.text for p in env.call.asks[1].prompts] == ["Rate 1 to 5."]  # silence: just the question again
    assert env.result.node == "bye"


# --- voicemail, transfer, hangup -------------------------------------------------------------------
async def test_voicemail_records_saves_and_confirms() -> None:
    env = await run("""
        start: v
        nodes:
          v: {type: voicemail, prompt: "After the tone.", mailbox: sales, max_s: 60, beep: false,
              terminator: "*", saved: "Saved.", next: bye}
          bye: {type: hangup}
        """, FakeCall(recording=Recording("/vm/1.wav", 12.5, "terminator")))
    assert env.call.recordings == [{"max_s": 60, "beep": False, "terminator": "*", "name": "sales"}]
    assert env.record.saved == [{"voicemail": {"mailbox": "sales", "path": "/vm/1.wav", "seconds": 12.5,
                                               "ended_by": "terminator"}}]
    assert env.call.texts == ["After the tone.", "Saved."] and env.result.node == "bye"


async def test_voicemail_ended_by_hangup_saves_then_raises_caller_gone() -> None:
    call = FakeCall(recording=Recording("/vm/2.wav", 3.0, "hangup"))
    record = FakeRecord()
    runner = PlanRunner(make_plan("start: v\nnodes:\n  v: {type: voicemail, prompt: P, mailbox: m, saved: S}\n"),
                        call=call, queue=FakeQueue(), record=record, data=FakeData(),
                        settings=DialplanSettings())
    with pytest.raises(CallerGone):
        await runner.run()
    assert record.saved[0]["voicemail"]["ended_by"] == "hangup" and call.texts == ["P"]


TRANSFER = """
start: t
variables: {desk: "sip:desk@pbx.example"}
nodes:
  t: {type: transfer, to: "{desk}", prompt: "Transferring.", ring_s: 20, on_failure: fallback}
  fallback: {type: hangup, prompt: "Could not connect."}
"""


async def test_transfer_allowed_ends_the_run_transferred() -> None:
    env = await run(TRANSFER, settings=DialplanSettings(transfer_allow=["sip:*@pbx.example"]))
    assert env.call.transfers == [("sip:desk@pbx.example", 20)]
    assert env.result.result == "transferred" and env.result.node == "t" and env.call.hangups == 0
    assert env.call.texts == ["Transferring."] and env.steps == [("t", "completed")]


async def test_transfer_denied_is_logged_without_the_destination_and_goes_on() -> None:
    with capture_logs() as logs:
        env = await run(TRANSFER, variables={"desk": "+8210999"},
                        settings=DialplanSettings(transfer_allow=["sip:*@pbx.example", "+1555*"]))
    assert not env.call.transfers and env.steps[0] == ("t", "denied")
    assert env.result.node == "fallback" and "Transferring." not in env.call.texts
    denied = [e for e in logs if e["event"] == "dialplan.transfer_denied"]
    assert denied and denied[0]["log_level"] == "error" and "+8210999" not in repr(logs)


async def test_transfer_glob_is_case_sensitive_and_nothing_is_allowed_by_default() -> None:
    env = await run(TRANSFER, settings=DialplanSettings(transfer_allow=["SIP:*@PBX.EXAMPLE"]))
    assert env.steps[0] == ("t", "denied")
    env = await run(TRANSFER)
    assert env.steps[0] == ("t", "denied")


async def test_transfer_failed_goes_to_on_failure_or_hangs_up() -> None:
    allow = DialplanSettings(transfer_allow=["sip:*@pbx.example"])
    env = await run(TRANSFER, FakeCall(transfer="failed"), settings=allow)
    assert env.steps[0] == ("t", "failed") and env.result.node == "fallback" and env.result.result == "hangup"
    env = await run("start: t\nnodes:\n  t: {type: transfer, to: 'sip:x@pbx.example'}\n", FakeCall(transfer="failed"),
                    settings=allow)
    assert env.result.result == "hangup" and env.result.node == "t" and env.call.hangups == 1


async def test_hangup_node_plays_and_hangs_up() -> None:
    env = await run("start: h\nnodes:\n  h: {type: hangup, prompt: 'Bye {caller}.'}\n", FakeCall(caller="+7"))
    assert env.call.texts == ["Bye +7."] and env.call.hangups == 1
    assert env.result.result == "hangup" and env.steps == [("h", None)]


# --- the walk ----------------------------------------------------------------------------------------
async def test_a_plan_that_loops_forever_ends_after_max_steps() -> None:
    with capture_logs() as logs:
        env = await run("""
            start: a
            nodes:
              a: {type: set, variables: {x: "1"}, next: b}
              b: {type: play, prompt: "Loop.", next: a}
            """)
    assert env.result.result == "max_steps" and env.call.hangups == 1
    assert len([e for e in logs if e["event"] == "dialplan.node"]) == MAX_STEPS
    assert len(env.call.heard) == MAX_STEPS // 2


async def test_every_visit_logs_dialplan_node() -> None:
    with capture_logs() as logs:
        await run(load_plan(HOTLINE), FakeCall("3"))
    assert [(e["node"], e["type"]) for e in logs if e["event"] == "dialplan.node"] == [
        ("welcome", "menu"), ("support", "queue")]


async def test_caller_gone_propagates_out_of_run() -> None:
    call = FakeCall(gone_after=1)
    runner = PlanRunner(load_plan(HOTLINE), call=call, queue=FakeQueue(), record=FakeRecord(), data=FakeData(),
                        settings=DialplanSettings())
    with pytest.raises(CallerGone):
        await runner.run()
    assert runner.journey.steps[0].outcome == "no_input"


async def test_a_missing_node_hangs_up() -> None:
    env = await run("start: p\nnodes:\n  p: {type: play, prompt: x, next: ghost}\n")
    assert env.result.result == "hangup" and env.result.node == "p" and env.call.hangups == 1


async def test_journey_dict_keeps_its_shape() -> None:
    env = await run(load_plan(HOTLINE), FakeCall("say:invoice@0.97"))
    d = env.result.journey.to_dict()
    assert set(d) == {"plan", "plan_version", "language", "steps", "data"}
    assert d["steps"][0]["node"] == "welcome" and d["steps"][0]["phrase"] == "invoice"
    assert "digit" not in d["steps"][0] and isinstance(d["steps"][0]["at"], float)
    assert env.result.journey.path() == ["welcome", "billing"]


def test_lookup_path() -> None:
    data = {"a": {"b": [{"c": 1}, {"c": None}]}, "t": True}
    assert lookup_path(data, "a.b.0.c") == 1 and lookup_path(data, "a.b.1.c") is None
    assert lookup_path(data, "a.b.5.c") is None and lookup_path(data, "a.x") is None
    assert lookup_path(data, "t.x") is None and lookup_path([1, 2], "1") == 2


# --- lookup ------------------------------------------------------------------------------------------
LOOKUP = """
start: l
nodes:
  l:
    type: lookup
    url: "http://crm.example:8080/c/{account}?phone={caller}"
    method: POST
    body: {phone: "{caller}", note: "acct {account}"}
    timeout_s: 1.5
    store: {tier: customer.tier, cid: customer.id, gone: customer.nope, tags: customer.tags}
    prefix: crm
    next: ok
    on_error: err
  ok: {type: play, prompt: "Tier {tier}, {crm.name}."}
  err: {type: play, prompt: "No data."}
"""
CRM = DialplanSettings(lookup_hosts=["crm.example:8080"])


async def test_lookup_ok_stores_paths_and_prefixed_scalars() -> None:
    reply = {"customer": {"tier": "gold", "id": 7, "tags": ["a"]}, "name": "Kim", "vip": True, "n": None,
             "first-name": "x"}
    env = await run(LOOKUP, FakeCall(caller="+1 555/0"), data=FakeData(reply), settings=CRM,
                    variables={"account": "12&x=1", "gone": "stale"})
    method, url, body, timeout = env.data.calls[0]
    assert (method, timeout) == ("POST", 1.5)
    assert url == "http://crm.example:8080/c/12%26x%3D1?phone=%2B1%20555%2F0"
    assert body == {"phone": "+1 555/0", "note": "acct 12&x=1"}
    v = env.result.variables
    assert (v["tier"], v["cid"], v["tags"], v["crm.name"], v["crm.vip"]) == ("gold", "7", '["a"]', "Kim", "true")
    assert "gone" not in v and "crm.n" not in v and "crm.customer" not in v and "crm.first-name" not in v
    assert env.steps[0] == ("l", "ok") and env.result.journey.steps[0].detail == "crm.example"
    assert env.call.texts == ["Tier gold, Kim."]


async def test_lookup_failure_goes_to_on_error_or_next() -> None:
    env = await run(LOOKUP, data=FakeData(error="timeout"), settings=CRM, variables={"account": "1"})
    assert env.steps[0] == ("l", "error:timeout") and env.call.texts == ["No data."]
    env = await run(LOOKUP.replace("    on_error: err\n", ""), data=FakeData(error="http_500"), settings=CRM,
                    variables={"account": "1"})
    assert env.steps[0] == ("l", "error:http_500") and env.result.node == "ok"


async def test_lookup_to_a_host_not_allowlisted_is_never_called() -> None:
    for settings in (DialplanSettings(), DialplanSettings(lookup_hosts=["crm.example:9999", "other"])):
        env = await run(LOOKUP, data=FakeData({}), settings=settings, variables={"account": "1"})
        assert not env.data.calls and env.steps[0] == ("l", "error:not_allowed")
    env = await run(LOOKUP, data=FakeData({}), settings=DialplanSettings(lookup_hosts=["CRM.example"]),
                    variables={"account": "1"})
    assert env.data.calls and env.steps[0] == ("l", "ok")


# --- loader (kept here since issue 1) ---------------------------------------------------------------
def test_broken_files_give_file_line_column_or_field_errors(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "a.yaml"
    bad_yaml.write_text("name: x\nnodes: [\n")
    with pytest.raises(DialplanError) as e:
        load_plan(bad_yaml)
    assert e.value.code == "dialplan.yaml" and f"{bad_yaml}:3:1" in e.value.message
    dangling = tmp_path / "b.yaml"
    dangling.write_text("name: x\nnumbers: ['1']\nstart: m\nnodes:\n  m:\n    type: menu\n"
                        "    prompt: {text: hi}\n    options: [{digit: '1', goto: nowhere}]\n")
    with pytest.raises(DialplanError, match="m -> nowhere"):
        load_plan(dangling)
    unknown = tmp_path / "c.yaml"
    unknown.write_text("name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: teleport}\n")
    with pytest.raises(DialplanError, match="teleport"):
        load_plan(unknown)
    no_source = tmp_path / "d.yaml"
    no_source.write_text("name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: hangup, prompt: {}}\n")
    with pytest.raises(DialplanError, match="a prompt needs a file or a text"):
        load_plan(no_source)


def test_registry_maps_numbers_and_refuses_a_number_used_twice(tmp_path: Path) -> None:
    reg = PlanRegistry.from_dir(ROOT / "dialplans")
    assert reg.for_number("1000") is not None and reg.for_number("999") is None
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            "name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: hangup}\n")
    with pytest.raises(DialplanError) as e:
        PlanRegistry.from_dir(tmp_path)
    assert e.value.code == "dialplan.duplicate_number"



# --- case_update (a follow-up survey's answers) ----------------------------------------------------
SURVEY_PLAN = """
start: u
nodes:
  u:
    type: case_update
    answers: {solved: "{solved}", csat: "{csat}", note: "{pin}"}
    reopen: "{unsolved}"
    next: bye
    on_error: sorry
  bye: {type: hangup, prompt: "Thank you."}
  sorry: {type: hangup, prompt: "Sorry."}
variables: {pin: ""}
"""


@pytest.mark.parametrize(("unsolved", "reopen"), [("yes", True), (" TRUE ", True), ("1", True), ("no", False),
                                                  ("", False)])
async def test_case_update_writes_the_answers_to_the_calls_case_and_may_reopen_it(unsolved: str,
                                                                                  reopen: bool) -> None:
    env = await run(SURVEY_PLAN, FakeCall(), variables={"case.id": "CS9", "solved": "no", "csat": "",
                                                       "unsolved": unsolved})
    # an answer that renders empty (csat unset) is left out
    assert env.record.answers == [{"case_id": "CS9", "answers": {"solved": "no"}, "reopen": reopen}]
    assert env.steps == [("u", "reopened" if reopen else "saved"), ("bye", None)]
    assert env.result.journey.steps[0].detail == "CS9"


async def test_case_update_takes_the_case_a_case_node_opened() -> None:
    env = await run(SURVEY_PLAN, FakeCall(), variables={"case_id": "CS2", "solved": "yes"})
    assert env.record.answers[0]["case_id"] == "CS2"


@pytest.mark.parametrize(("variables", "outcome"), [({"solved": "no"}, "no_case"),
                                                    ({"case.id": "CS-gone", "solved": "no"}, "failed")])
async def test_case_update_without_a_case_or_refused_goes_to_on_error(variables: dict[str, str],
                                                                     outcome: str) -> None:
    env = await run(SURVEY_PLAN, FakeCall(), variables=variables)
    assert env.record.answers == [] and env.steps == [("u", outcome), ("sorry", None)]


async def test_case_update_answers_are_one_line_of_200_characters() -> None:
    env = await run(SURVEY_PLAN, FakeCall(), variables={"case.id": "CS9", "solved": "아니요\n" + "가" * 300})
    assert env.record.answers[0]["answers"]["solved"] == ("아니요 " + "가" * 300)[:200]


def test_a_case_update_needs_answers_or_reopen_and_good_names() -> None:
    make_plan("start: u\nnodes:\n  u: {type: case_update, reopen: true}\n")
    with pytest.raises(ValidationError, match="case_update needs answers or reopen"):
        make_plan("start: u\nnodes:\n  u: {type: case_update}\n")
    with pytest.raises(ValidationError):
        make_plan("start: u\nnodes:\n  u: {type: case_update, answers: {Solved: x}}\n")
