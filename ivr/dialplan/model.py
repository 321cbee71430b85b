"""The dial-plan language: what an admin writes in ``dialplans/*.yaml``.

Validated with pydantic (unknown fields are errors, every field has a description); the JSON Schema
that ``ivr dialplan schema`` exports for editors comes from these models. Node types are a
discriminated union on ``type``. Structural checks that need the whole graph (dangling references,
unreachable nodes, loops with no exit) live in :mod:`ivr.dialplan.checks`, so that they can report
every problem with its line and column instead of stopping at the first.

Text fields marked *template* may use ``{name}`` placeholders: ``{caller}``, ``{dnis}``,
``{language}``, any variable set by ``set``/``collect``/``lookup`` (``{account}``, ``{crm.tier}``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import zoneinfo
from datetime import date, time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ivr.dialplan.limits import MAX_PLAN_NODES
from ivr.dialplan.safe_regex import regex_problem
from ivr.prompts.paths import prompt_name_problem
from ivr.speech.grammar import phrase_key

NODE_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
MAX_TEXT = 4000    # characters of one prompt text (speech synthesis has a time limit)
MAX_PHRASE = 200   # characters of one phrase of a recognition grammar
VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
LANGUAGE = r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$"
#: Complaint tiers of a queue node and the caller priority each gives.
TIER_PRIORITY = {"urgent": 9, "important": 5, "normal": 0}
DIGITS = "0123456789*#"
#: A dialled number (DNIS) as the edge and the registry compare it: ASCII digits, an optional leading +.
NUMBER = r"^\+?[0-9]{1,32}$"
NodeRef = Annotated[str, Field(pattern=NODE_NAME, description="name of another node in this plan")]
VarName = Annotated[str, Field(pattern=VAR_NAME, description="variable name, dotted for namespaces")]
#: Set by the engine for every call: plans read them, never write them (see ivr/dialplan/variables.py).
BUILTIN_VARIABLES = frozenset({"caller", "dnis", "language", "plan", "plan_version", "phrase"})


def _writable(names: Any) -> Any:
    bad = sorted(n for n in names if n in BUILTIN_VARIABLES)
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))}: built-in variable(s), read-only for plans "
                         f"({', '.join(sorted(BUILTIN_VARIABLES))})")
    return names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Prompt(_Strict):
    """A recording under ``prompts/<language>/`` or a text spoken by espeak-ng.

    Written as a plain string it is a text. ``text`` may be one string (used for every language) or
    one per language (``{en: "Hello", ko: "안녕하세요"}``); the call's current language picks it.
    """

    file: str | None = Field(None, description="file name under prompts/<language>/, extension optional")
    text: str | dict[str, str] | None = Field(None, description="template; spoken when there is no file")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data

    @field_validator("file")
    @classmethod
    def _confined(cls, v: str | None) -> str | None:
        problem = prompt_name_problem(v) if v is not None else None
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        texts = [self.text] if isinstance(self.text, str) else list((self.text or {}).values())
        if any(len(t) > MAX_TEXT for t in texts):
            raise ValueError(f"a prompt text has at most {MAX_TEXT} characters")
        text = self.text
        if isinstance(text, dict):
            text = {k: v for k, v in text.items() if v.strip()}
            for lang in text:
                if not re.fullmatch(LANGUAGE, lang):
                    raise ValueError(f"text language {lang!r} is not a language code like en or ko")
        if not self.file and not text:
            raise ValueError("a prompt needs a file or a text")
        return self

    def text_for(self, language: str, default_language: str) -> str | None:
        if self.text is None or isinstance(self.text, str):
            return self.text
        return self.text.get(language) or self.text.get(default_language) or next(iter(self.text.values()))


class Listen(_Strict):
    """Speech recognition settings of a node that listens (``menu``, ``collect``, ``survey``).

    A speech answer that matched a phrase is taken when its confidence is at least ``accept`` *and*
    at least ``agree`` of the recogniser's decodes agreed on it; otherwise the caller is asked to
    confirm when the confidence is at least ``confirm`` or the decodes agreed; otherwise it is no
    match (:func:`ivr.dialplan.engine.decide`). The defaults come from the speech benchmark
    (docs/dialplans.md, "Speech and confirmation").
    """

    enabled: bool = Field(True, description="recognise speech as well as digits")
    accept: float = Field(0.96, ge=0, le=1, description="confidence at or above which an answer is taken "
                          "(when the decodes agree too)")
    agree: float = Field(1.0, ge=0, le=1, description="share of the recogniser's decodes that must agree on "
                         "the answer to take it without confirming")
    confirm: float = Field(0.45, ge=0, le=1,
                           description="confidence at or above which the caller is asked to confirm")
    max_speech_s: float = Field(8.0, gt=0, le=60, description="longest utterance before it is cut")

    @model_validator(mode="after")
    def _order(self) -> Listen:
        if self.confirm > self.accept:
            raise ValueError("confirm must not be above accept")
        return self


def _distinct_phrases(groups: list[list[str]], what: str) -> None:
    """Phrases as calls match them (:func:`ivr.speech.grammar.phrase_key`: case, spaces, punctuation,
    Unicode width and composition do not count): none may be empty, and no two groups may share one."""
    owner: dict[str, tuple[int, str]] = {}
    for i, group in enumerate(groups):
        for phrase in group:
            key = phrase_key(phrase)
            if not key:
                raise ValueError(f"phrase {phrase[:40]!r} has no word a recogniser could match")
            if len(phrase) > MAX_PHRASE:
                raise ValueError(f"phrase {phrase[:40]!r}... is longer than {MAX_PHRASE} characters")
            if key in owner and owner[key][0] != i:
                raise ValueError(f"phrases {owner[key][1][:40]!r} and {phrase[:40]!r} are the same answer to a "
                                 f"recogniser; each {what} needs its own")
            owner.setdefault(key, (i, phrase))


class MenuOption(_Strict):
    digit: str | None = Field(None, pattern=r"^[0-9*#]$", description="key that picks this option")
    say: list[str] = Field([], description="phrases that pick this option (recognition grammar)")
    goto: NodeRef

    @model_validator(mode="after")
    def _has_trigger(self) -> MenuOption:
        if self.digit is None and not self.say:
            raise ValueError("an option needs a digit or phrases to say")
        return self


class _Asks(_Strict):
    """What every node that waits for the caller shares."""

    prompt: Prompt
    timeout_s: float = Field(5.0, gt=0, le=60, description="no-input timeout after the prompt")
    retries: int = Field(2, ge=0, le=10, description="further attempts after no input / no match")
    no_input: Prompt | None = Field(None, description="played before a retry when nothing came")
    no_match: Prompt | None = Field(None, description="played before a retry when the answer was wrong")
    on_failure: NodeRef | None = Field(None, description="where to go when retries run out (default: hang up)")
    barge_in: bool = Field(True, description="a key or speech stops the prompt")
    listen: Listen = Listen()


class MenuNode(_Asks):
    type: Literal["menu"]
    options: list[MenuOption] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> MenuNode:
        digits = [o.digit for o in self.options if o.digit is not None]
        dup = {d for d in digits if digits.count(d) > 1}
        if dup:
            raise ValueError(f"digit(s) {sorted(dup)} used by more than one option")
        _distinct_phrases([o.say for o in self.options], "option")
        return self


class CollectNode(_Asks):
    type: Literal["collect"]
    variable: VarName = Field(description="where the digits are stored")
    min_digits: int = Field(1, ge=1, le=64)
    max_digits: int = Field(16, ge=1, le=64)
    terminator: str | None = Field("#", pattern=r"^[*#]$", description="key that ends the entry early")
    inter_digit_s: float = Field(3.0, gt=0, le=30, description="timeout between two keys")
    pattern: str | None = Field(None, description="regular expression the whole entry must match")
    sensitive: bool = Field(False, description="a secret (PIN, card): usable in lookups and branches, "
                            "never shown to agents, the CRM or the call record (shown as ****)")
    read_back: bool = Field(True, description="spoken digits are read back digit by digit for the caller "
                            "to confirm (the plan's confirm.read_back); keys never are")
    next: NodeRef | None = None

    @field_validator("variable")
    @classmethod
    def _not_builtin(cls, v: str) -> str:
        _writable([v])
        return v

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        problem = regex_problem(v) if v is not None else None
        if problem is not None:
            raise ValueError(f"pattern: {problem}")
        return v

    @model_validator(mode="after")
    def _range(self) -> CollectNode:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is above max_digits")
        return self


class PlayNode(_Strict):
    type: Literal["play"]
    prompt: Prompt
    next: NodeRef | None = None


# --- branch --------------------------------------------------------------------------------------
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeWindow(_Strict):
    """Days of the week and a time of day range, in the plan's (or the window's) time zone."""

    days: list[str] = Field(list(DAY_NAMES), description="mon..sun, or ranges like mon-fri")
    start: time = Field(time(0, 0), alias="from", description="HH:MM, inclusive")
    end: time = Field(time(23, 59, 59), alias="to", description="HH:MM, exclusive; before from = overnight")
    timezone: str | None = Field(None, description="IANA zone, default: the plan's")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for item in v:
            lo, _, hi = item.lower().partition("-")
            if lo not in DAY_NAMES or (hi and hi not in DAY_NAMES):
                raise ValueError(f"{item!r}: days are mon..sun or ranges like mon-fri")
            i, j = DAY_NAMES.index(lo), DAY_NAMES.index(hi or lo)
            span = range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)]
            out.extend(DAY_NAMES[k] for k in span)
        return sorted(set(out), key=DAY_NAMES.index)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return _check_zone(v) if v is not None else v


class Condition(_Strict):
    """All the fields given must hold (AND). Order rules from specific to general."""

    time: TimeWindow | list[TimeWindow] | None = Field(None, description="inside any of these windows")
    holiday: str | None = Field(None, description="today is in this calendar of the plan")
    caller: str | list[str] | None = Field(
        None, description="caller number glob(s): +8210*, 1555???0100; * any digits, ? one")
    var: VarName | None = Field(None, description="variable tested by the operators below (crm.* from lookups)")
    equals: str | int | float | bool | None = None
    not_equals: str | int | float | bool | None = None
    one_of: list[str | int | float] | None = Field(None, alias="in")
    matches: str | None = Field(None, description="regular expression the variable must match")
    exists: bool | None = None
    gt: float | None = None
    lt: float | None = None
    open: bool | None = Field(None, description="true: the plan's business hours (its hours:) are open now; "
                              "false: they are not")
    negate: bool = Field(False, alias="not", description="invert the whole condition")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _meaningful(self) -> Condition:
        ops = [self.equals, self.not_equals, self.one_of, self.matches, self.exists, self.gt, self.lt]
        has_op = any(o is not None for o in ops)
        if has_op and self.var is None:
            raise ValueError("equals/not_equals/in/matches/exists/gt/lt need var")
        if self.var is not None and not has_op:
            raise ValueError(f"var {self.var!r} needs an operator (equals, in, matches, exists, gt, lt)")
        if (self.time is None and self.holiday is None and self.caller is None and self.var is None
                and self.open is None):
            raise ValueError("a condition needs time, holiday, caller, var or open")
        problem = regex_problem(self.matches) if self.matches is not None else None
        if problem is not None:
            raise ValueError(f"matches: {problem}")
        return self


class BusinessHours(_Strict):
    """When the hotline is open: complaint due times count only this time, and ``open:`` conditions
    test it (:mod:`ivr.dialplan.hours`)."""

    open: list[TimeWindow] = Field(min_length=1, max_length=100, description="open during any of these windows "
                                   "(the plan's time zone unless a window gives its own)")
    holidays: str | None = Field(None, description="a calendar of the plan: closed the whole day (in the plan's "
                                 "time zone) on its dates")

    @field_validator("open")
    @classmethod
    def _some_day(cls, v: list[TimeWindow]) -> list[TimeWindow]:
        if not any(w.days for w in v):
            raise ValueError("no window of open has a day: the hours would never be open")
        return v


class BranchRule(_Strict):
    when: Condition = Field(alias="if")
    goto: NodeRef

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class BranchNode(_Strict):
    type: Literal["branch"]
    rules: list[BranchRule] = Field(min_length=1, description="first rule that holds wins")
    default: NodeRef = Field(description="where to go when no rule holds")


# --- data ----------------------------------------------------------------------------------------
class LookupNode(_Strict):
    """An HTTP data dip. The host must be in the settings' ``dialplan.lookup_hosts``."""

    type: Literal["lookup"]
    url: str = Field(description="template; http(s) only, e.g. https://crm.example/api/customers?phone={caller}")
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, str] | None = Field(None, description="JSON body for POST; values are templates")
    timeout_s: float = Field(2.0, gt=0, le=10)
    store: dict[VarName, str] = Field(
        {}, description="variable -> dotted path in the JSON reply (customer.tier); missing -> unset")
    prefix: VarName | None = Field(None, description="store every top-level field of the reply as <prefix>.<field>")
    next: NodeRef | None = None
    on_error: NodeRef | None = Field(None, description="timeout, HTTP error, bad JSON (default: next)")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        m = re.match(r"^https?://([^/?#]*)", v)
        if not m or not m.group(1) or "{" in m.group(1) or "}" in m.group(1):
            raise ValueError("url must start with http:// or https:// and a literal host")
        if "@" in m.group(1):
            raise ValueError("url must not hold credentials (user:password@): a lookup sends none, and the "
                             "plan file, check, graph and simulate would show them")
        if any(c.isspace() or ord(c) < 32 for c in v):
            raise ValueError("url must not contain spaces or control characters")
        try:
            parts = urlsplit(v)
            if not parts.hostname:
                raise ValueError("no host")
            _ = parts.port  # a port out of range or not a number
        except ValueError as exc:
            raise ValueError(f"url is not a valid http(s) URL ({exc})") from None
        return v

    @field_validator("store")
    @classmethod
    def _store_writable(cls, v: dict[str, str]) -> dict[str, str]:
        return _writable(v)  # type: ignore[no-any-return]


class SetNode(_Strict):
    type: Literal["set"]
    variables: dict[VarName, str | int | float | bool] = Field(min_length=1, description="values are templates")
    next: NodeRef | None = None

    @field_validator("variables")
    @classmethod
    def _writable(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _writable(v)  # type: ignore[no-any-return]


class LanguageNode(_Strict):
    type: Literal["language"]
    language: str = Field(pattern=LANGUAGE, description="prompt set and queue language from here on")
    next: NodeRef | None = None


# --- queue and after -----------------------------------------------------------------------------
class Announcements(_Strict):
    every_s: float = Field(30.0, ge=10, le=600)
    position: bool = True
    wait_time: bool = True


class QueueKey(_Strict):
    """A key the caller may press while waiting: leaves the queue for another node (e.g. a callback)."""

    digit: str = Field(pattern=r"^[0-9*#]$")
    goto: NodeRef


class QueueNode(_Strict):
    type: Literal["queue"]
    queue: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    skills: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = Field(
        [], description="required skills; default: the queue name")
    language: str | None = Field(None, pattern=LANGUAGE, description="required agent language; default: the call's")
    priority: int | str = Field(0, description="0-9, higher first; or a template like {crm.priority}")
    tier: str | None = Field(None, description="complaint tier urgent|important|normal (priority 9/5/0; the "
                             "higher of it and priority counts), or a template like {complaint.tier}")
    min_proficiency: int | None = Field(None, ge=1, le=5, description="lowest agent proficiency in the skills; "
                                        "default: the queue's (routing.queues), else 1")
    prompt: Prompt | None = None
    announce: Announcements | None = None
    max_wait_s: float | None = Field(None, gt=0, le=86400, description="after this, go to on_timeout (at most a day)")
    on_timeout: NodeRef | None = None
    after: NodeRef | None = Field(None, description="where the caller goes when the agent hangs up (e.g. a survey)")
    keys: list[QueueKey] = Field([], description="keys that leave the queue while waiting, e.g. 1 = call me back")
    recording: Literal["never", "always", "on_demand"] | None = Field(
        None, description="recording policy of the call once an agent answers; default: the queue's "
        "(routing.queues.<q>.recording, else recording.policy)")

    @field_validator("priority")
    @classmethod
    def _priority(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= 9:
            raise ValueError("priority is 0..9")
        if isinstance(v, str) and "{" not in v:
            raise ValueError("a text priority must be a template like {crm.priority}")
        return v

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str | None) -> str | None:
        if v is not None and v not in TIER_PRIORITY and "{" not in v:
            raise ValueError(f"tier is one of {', '.join(TIER_PRIORITY)} or a template like {{complaint.tier}}")
        return v

    @model_validator(mode="after")
    def _timeout(self) -> QueueNode:
        if (self.max_wait_s is None) != (self.on_timeout is None):
            raise ValueError("max_wait_s and on_timeout go together")
        digits = [k.digit for k in self.keys]
        if len(set(digits)) != len(digits):
            raise ValueError("a key is listed twice in keys")
        return self


class CallbackNode(_Strict):
    """Offer a call back instead of waiting; the caller keeps their place in ``queue``."""

    type: Literal["callback"]
    queue: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    prompt: Prompt = Field(description="the offer: 'press 1 to be called back at {caller}'")
    accept_digit: str = Field("1", pattern=r"^[0-9*#]$")
    accept_say: list[str] = Field([], description="phrases that accept the offer")
    number: str = Field("{caller}", description="template: the number to call back")
    confirmed: Prompt | None = Field(None, description="played when the callback is booked")
    timeout_s: float = Field(5.0, gt=0, le=60)
    next: NodeRef | None = Field(None, description="after booking (default: hang up)")
    declined: NodeRef | None = Field(None, description="when the caller does not accept")

    @field_validator("accept_say")
    @classmethod
    def _phrases(cls, v: list[str]) -> list[str]:
        _distinct_phrases([v], "phrase")
        return v


class CaseNode(_Strict):
    """Open a complaint case for the caller: it gets an id (the variable ``case_id``, e.g. for "your
    case number is {case_id}") and a first-contact deadline by tier (settings ``cases.due_s``,
    counted in the plan's ``hours`` when it has them)."""

    type: Literal["case"]
    tier: str = Field(description="urgent | important | normal, or a template giving one (e.g. {complaint.tier}); "
                                  "a template giving anything else opens a normal case")
    reason: str = Field("", max_length=500, description="template: what the complaint is about "
                                                         "(one line, cut to 200 characters; none: "
                                                         "'complaint from the IVR')")
    next: NodeRef | None = None
    on_error: NodeRef | None = Field(None, description="when no case could be opened (default: next)")

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        if "{" not in v and v.strip().lower() not in TIER_PRIORITY:
            raise ValueError(f"tier is one of {', '.join(TIER_PRIORITY)} or a template")
        return v


ANSWER_NAME = r"^[a-z][a-z0-9_]{0,31}$"
AnswerName = Annotated[str, Field(pattern=ANSWER_NAME)]
TRUE_WORDS = frozenset({"yes", "true", "1", "y", "on"})


class CaseUpdateNode(_Strict):
    """Write the customer's answers to the call's complaint case (a follow-up survey, 回访: "was your
    problem solved?", a score): to the case (``followup_answers``) and the call record (``answers``);
    ``reopen`` reopens a resolved or closed case (an unsolved problem), due again by its tier. The case
    is the call's: ``{case.id}`` (a follow-up call, a repeat caller) or ``{case_id}`` (a case node)."""

    type: Literal["case_update"]
    answers: dict[AnswerName, str] = Field(default_factory=dict, max_length=20,
                                           description="answer name -> template, e.g. solved: \"no\", "
                                           "csat: \"{csat}\" (an answer that renders empty is left out)")
    reopen: bool | str = Field(False, description="true, or a template giving yes/true/1: reopen the case")
    next: NodeRef | None = None
    on_error: NodeRef | None = Field(None, description="no case on this call, or it could not be written "
                                     "(default: next)")

    @model_validator(mode="after")
    def _something(self) -> CaseUpdateNode:
        if not self.answers and self.reopen is False:
            raise ValueError("case_update needs answers or reopen")
        return self


class SurveyNode(_Strict):
    """Post-call satisfaction: one key (or word) 1..5, stored with the call record as ``csat``."""

    type: Literal["survey"]
    prompt: Prompt
    thanks: Prompt | None = None
    timeout_s: float = Field(6.0, gt=0, le=60)
    retries: int = Field(1, ge=0, le=5)
    no_match: Prompt | None = None
    scale: dict[str, list[str]] = Field(
        {}, description="spoken words per score, e.g. {'5': [매우 만족]}; digits always work")
    listen: Listen = Listen()
    next: NodeRef | None = None

    @field_validator("scale")
    @classmethod
    def _scores(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = [k for k in v if k.strip() not in ("1", "2", "3", "4", "5")]
        if bad:
            raise ValueError(f"scale keys are the scores 1..5 (not {bad[0][:20]!r})")
        _distinct_phrases(list(v.values()), "score")
        return v


class VoicemailNode(_Strict):
    type: Literal["voicemail"]
    prompt: Prompt
    max_s: float = Field(120.0, gt=1, le=600)
    beep: bool = True
    terminator: str = Field("#", pattern=r"^[0-9*#]$")
    mailbox: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    saved: Prompt | None = None
    next: NodeRef | None = None


class TransferNode(_Strict):
    """Connect the caller to a SIP URI or number in the settings' ``dialplan.transfer_allow``."""

    type: Literal["transfer"]
    to: str = Field(description="template: sip:desk@host or a number")
    prompt: Prompt | None = None
    ring_s: float = Field(30.0, gt=1, le=120)
    on_failure: NodeRef | None = None


class HangupNode(_Strict):
    type: Literal["hangup"]
    prompt: Prompt | None = None


AnyNode = (MenuNode | CollectNode | PlayNode | BranchNode | LookupNode | SetNode | LanguageNode | QueueNode
           | CallbackNode | CaseNode | CaseUpdateNode | SurveyNode | VoicemailNode | TransferNode | HangupNode)
Node = Annotated[AnyNode, Field(discriminator="type")]
NODE_TYPES: dict[str, type[BaseModel]] = {
    t.model_fields["type"].annotation.__args__[0]: t
    for t in AnyNode.__args__
}


class Confirm(_Strict):
    """How a plan asks the caller to confirm an answer recognised with middling confidence, and how
    spoken digits are read back."""

    prompt: Prompt = Prompt(text={
        "en": "Did you say {phrase}? Press 1 or say yes. Otherwise press 2 or say no.",
        "ko": "{phrase}, 맞습니까? 맞으면 1번 또는 네, 아니면 2번 또는 아니요 라고 말씀하세요."})
    read_back: Prompt = Field(Prompt(text={
        "en": "I heard {digits}. Press 1 or say yes if that is right, otherwise press 2 or say no.",
        "ko": "{digits}, 라고 들었습니다. 맞으면 1번 또는 네, 아니면 2번 또는 아니요 라고 말씀하세요."}),
        description="spoken digits read back: {digits} is where each digit is spoken, one by one (a "
                    "recording is played after the digits)")
    yes: dict[str, list[str]] = {"en": ["yes"], "ko": ["네", "예"]}
    no: dict[str, list[str]] = {"en": ["no"], "ko": ["아니요"]}
    yes_digit: str = Field("1", pattern=r"^[0-9*#]$")
    no_digit: str = Field("2", pattern=r"^[0-9*#]$")
    timeout_s: float = Field(4.0, gt=0, le=30)

    @model_validator(mode="after")
    def _distinct(self) -> Confirm:
        if self.yes_digit == self.no_digit:
            raise ValueError("yes_digit and no_digit must differ")
        for lang in sorted(set(self.yes) | set(self.no)):
            _distinct_phrases([self.yes.get(lang, []), self.no.get(lang, [])], "of yes and no")
        texts = self.read_back.text if isinstance(self.read_back.text, dict) else {"": self.read_back.text or ""}
        for lang, text in texts.items():
            if text.strip() and text.count("{digits}") != 1:
                where = f" ({lang})" if lang else ""
                raise ValueError(f"read_back text{where} needs {{digits}} once: where the digits are spoken")
        return self


class Plan(_Strict):
    """One dial plan: the numbers it answers and its nodes."""

    name: str = Field(min_length=1, max_length=120)
    numbers: list[str] = Field(min_length=1, max_length=200,
                               description="dialed numbers (DNIS) this plan answers: digits with an optional "
                               "leading + (\"+15550100\", \"1000\"); * = any other number")
    language: str = Field("en", pattern=LANGUAGE, description="language at the start of a call")
    timezone: str = Field("UTC", description="IANA time zone for time windows and holidays")
    calendars: dict[str, list[date]] = Field({}, description="holiday calendars: name -> dates")
    hours: BusinessHours | None = Field(None, description="business hours: open: conditions and complaint due "
                                        "times use them; none: always open (wall-clock time)")
    variables: dict[VarName, str | int | float | bool] = Field({}, description="initial variables")
    confirm: Confirm = Field(Confirm(), description="confirmation of half-sure speech answers")
    start: NodeRef
    nodes: dict[Annotated[str, Field(pattern=NODE_NAME)], Node] = Field(min_length=1, max_length=MAX_PLAN_NODES)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _check_zone(v)

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        for number in v:
            if number != "*" and not re.fullmatch(NUMBER, number):
                plain = re.sub(r"[\s().-]", "", unicodedata.normalize("NFKC", number))
                hint = f" (write {plain!r})" if re.fullmatch(NUMBER, plain) else ""
                raise ValueError(f"number {number[:40]!r} is not a dialled number: digits with an optional leading "
                                 f"+, or * for any other number{hint}")
        return v

    @field_validator("variables")
    @classmethod
    def _writable(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _writable(v)  # type: ignore[no-any-return]

    def prompts(self) -> list[tuple[str, str, Prompt]]:
        """Every prompt of the plan as (node, field, prompt)."""
        out: list[tuple[str, str, Prompt]] = []
        for name, node in self.nodes.items():
            for field, value in node:
                if isinstance(value, Prompt):
                    out.append((name, field, value))
        return out

    def languages(self) -> list[str]:
        """Every language a call on this plan can be in."""
        langs = {self.language} | {n.language for n in self.nodes.values() if isinstance(n, LanguageNode)}
        return sorted(langs)


def node_targets(node: AnyNode) -> list[tuple[str, str]]:
    """The nodes a node can lead to, as (field, target)."""
    out: list[tuple[str, str]] = []
    if isinstance(node, MenuNode):
        out += [(f"options.{i}.goto", o.goto) for i, o in enumerate(node.options)]
    if isinstance(node, BranchNode):
        out += [(f"rules.{i}.goto", r.goto) for i, r in enumerate(node.rules)]
    if isinstance(node, QueueNode):
        out += [(f"keys.{i}.goto", k.goto) for i, k in enumerate(node.keys)]
    for field in ("next", "on_failure", "on_error", "on_timeout", "after", "declined", "default"):
        target = getattr(node, field, None)
        if isinstance(target, str):
            out.append((field, target))
    return out


def is_terminal(node: AnyNode) -> bool:
    """The call can end at this node (no further node is needed)."""
    if isinstance(node, HangupNode | QueueNode | TransferNode):
        return True
    if isinstance(node, BranchNode):
        return False
    if isinstance(node, MenuNode):
        return node.on_failure is None            # running out of retries hangs up
    return getattr(node, "next", "x") is None     # no next: hang up after this node


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _check_zone(v: str) -> str:
    """Only a zone of the tz database (``Asia/Seoul``): not a directory of it (``America``), not a
    path (``../x``), not a file that is not a zone."""
    shown = v if len(v) <= 60 else v[:60] + "..."
    if v not in _zone_names():
        raise ValueError(f"unknown time zone {shown!r} (an IANA name such as Asia/Seoul or UTC)")
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {shown!r}") from exc
    return v
