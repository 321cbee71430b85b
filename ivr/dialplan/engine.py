"""Walks one call through its plan. SIP-agnostic: everything outside goes through :mod:`ports`.

Usage::

    runner = PlanRunner(loaded, call=..., queue=..., record=..., data=..., settings=settings.dialplan)
    result = await runner.run()          # RunResult(result, node, queue_outcome, variables, journey, ...)

``run()`` returns when the call leaves the plan: ``hangup`` (the plan hung up: a ``hangup`` node, a
node without ``next``, retries run out without ``on_failure``), ``queued`` (the caller was queued and
the queue returned ``caller_hangup``, or ``agent_hangup`` with no ``after`` node), ``transferred``,
``max_steps`` (:data:`MAX_STEPS` node visits: a plan that loops forever still ends; the call is hung
up). :class:`~ivr.dialplan.ports.CallerGone` raised by a port propagates out of ``run()`` untouched.
A node name that does not exist (the loader's checks should make that impossible) hangs up.

Semantics
---------
Variables are strings: the plan's ``variables``, then the ``variables`` argument (later ones win),
then the built-ins ``caller``, ``dnis``, ``plan``, ``plan_version`` (:mod:`ivr.dialplan.variables`:
nothing overwrites them, at the start or later; ``language`` changes by ``language`` nodes only).
A secret (a ``sensitive`` collect, and whatever ``set`` computes from it) reaches prompts, queue
priorities and the journey as ``****``; a callback number or transfer destination using one is refused. Booleans are
``true``/``false``. ``journey.data`` *is* this dict. Templates (``{name}``, ``{{``/``}}``) are
rendered by :mod:`ivr.dialplan.templates`. If ``language`` ends up a valid language code it is the
language the call starts in, else the plan's.

Every prompt plays in the call's *current* language (``language`` nodes change it); every
``play``/``ask`` gets the language and a snapshot of the variables (for the prompt's placeholders).
Every node visit logs ``dialplan.node`` (node, type) and adds at least one journey step.

Speech answers (menu, collect, survey, callback): the recognised phrase is matched against the
node's phrases ignoring case, spacing and punctuation (:func:`ivr.speech.grammar.match_phrase`), then
:func:`decide`: taken when the confidence is at least ``listen.accept`` and the agreement of the
recogniser's decodes at least ``listen.agree``; else the caller is asked to confirm when the
confidence is at least ``listen.confirm`` (or several decodes agreed), with the plan's ``confirm``
(prompt with ``{phrase}``; yes/no words of the current language, else its base language, else
``en``; ``yes_digit``/``no_digit``; a yes word needs ``listen.confirm`` confidence): yes takes the
answer (outcome ``confirmed``), anything else is ``rejected`` and counts as a wrong answer; else
``no_match``. Speech steps carry ``confidence`` and ``agreement``.

Nodes that ask (attempts = ``retries`` + 1): the first attempt plays the prompt; a retry plays the
``no_input`` or ``no_match`` prompt (when set) *and* the prompt in one ``Ask``, so a key pressed
during the apology answers. One journey step per attempt, with ``attempt``.

* ``menu``: ``max_digits=1``; phrases are every option's ``say`` when ``listen.enabled``. A key picks
  the option with that digit; outcome is the target node, ``no_input``, ``no_match``, ``confirmed``
  (``goto`` = target) or ``rejected``. After a wrong answer the retry leads with ``no_match``, else
  (a menu whose prompt is a text) the options suggested in the call's language
  (:func:`ivr.dialplan.spoken.suggestion`). Out of attempts: ``on_failure``, else hang up.
* ``collect``: ``max_digits``, ``terminator``, ``inter_digit_s``, spoken digits when
  ``listen.enabled``. Valid when ``min_digits <= len <= max_digits`` and ``pattern`` (if any) matches
  the whole entry; stored in ``variable``; then ``next``. Wrong or empty: ``no_match``; out of
  attempts: ``on_failure``/hang up. Spoken digits that are valid and not ``no_match`` by
  :func:`decide` are read back (the plan's ``confirm.read_back``, one prompt per digit:
  :func:`ivr.dialplan.spoken.read_back`) unless ``read_back: false`` and the answer is taken: yes is
  ``confirmed``; no, silence or another word is ``rejected`` and the retry plays the prompt alone; any
  other key is the first of a typed entry (up to ``max_digits``, ``terminator``), which replaces the
  speech (a second step of the attempt, ``ok`` or ``no_match``, ``detail`` says so). Logs carry the
  length only; the journey has the digits masked (:func:`~ivr.dialplan.journey.mask_digits`: entries
  of 8 or more keep the last two, ``******34``). Outcome ``ok``, ``confirmed``, ``no_input``,
  ``no_match``, ``rejected``.
* ``play``: plays, then ``next``.
* ``branch``: :mod:`ivr.dialplan.conditions`; the first rule that holds wins, else ``default``
  (outcome: the target; ``detail``: ``rule <i>`` or ``default``).
* ``lookup``: the URL is rendered with percent-encoded values, ``body`` values rendered; the host is
  checked against ``dialplan.lookup_hosts`` here *and* by the data port. On success every ``store``
  mapping is set from its dotted path in the reply (numbers index lists; a missing path or JSON null
  *unsets* the variable; objects and lists are stored as compact JSON) and, with ``prefix``, every
  top-level scalar field of an object reply whose name is an identifier as ``<prefix>.<field>``;
  then ``next``. On failure ``on_error`` (else ``next``). Outcome ``ok`` or ``error:<reason>``.
* ``set``: each value rendered in order (a value sees the ones set before it); then ``next``.
* ``language``: the current language, ``journey.language`` and the variable ``language`` change.
* ``queue``: plays ``prompt`` if any; priority is the number or the rendered template as an integer
  clamped to 0..9 (not a number: 0 and a warning); skills default to ``[queue]``; language defaults to
  the current one. ``agent_hangup`` goes to ``after`` if set, else the run ends ``queued``;
  ``timeout`` goes to ``on_timeout`` (else hang up); ``caller_hangup`` ends ``queued``. The queue step
  is in the journey (``detail`` = queue) before waiting; its outcome is filled in afterwards.
* ``callback``: one ask (``accept_digit``, or an ``accept_say`` phrase judged with the default
  ``Listen`` thresholds: taken, or confirmed by the caller). Accepted: ``record.request_callback``
  with the rendered ``number``, ``confirmed`` is played, then ``next`` (else hang up). Otherwise
  ``declined`` (else hang up). Outcome ``accepted``/``declined``.
* ``survey``: keys 1-5 or a word of ``scale``; stored with ``record.save({"csat": n})`` and as the
  variable ``csat``; ``thanks`` played; ``next``. No input retries with the prompt, a wrong answer with
  ``no_match`` + prompt; out of attempts: ``next`` without a score (outcome ``no_score``).
* ``voicemail``: prompt, ``call.record``, ``record.save({"voicemail": {mailbox, path, seconds,
  ended_by}})``, ``saved``, ``next``. A recording ended by hang-up raises ``CallerGone`` after saving.
* ``transfer``: the rendered ``to`` must be a destination that matches a glob of
  ``dialplan.transfer_allow`` (:mod:`ivr.dialplan.destinations`: ``*`` never spans ``@``, ``;``, ``.``
  or a space) and use no secret, else outcome ``denied`` (logged as an error with the node and the template, not
  the number) and ``on_failure``/hang up. Prompt, ``call.transfer``; ``completed`` ends the run
  ``transferred``; ``failed`` goes to ``on_failure``/hang up.
* ``hangup``: prompt, ``call.hangup()``. A node whose ``next`` is unset hangs up the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from ivr.core.config import DialplanSettings
from ivr.core.errors import IvrError
from ivr.core.logging import get_logger
from ivr.dialplan import conditions, safe_regex
from ivr.dialplan.destinations import transfer_allowed
from ivr.dialplan.journey import Journey, Step, mask_digits
from ivr.dialplan.limits import MAX_STEPS
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.lookup import host_allowed
from ivr.dialplan.model import (
    LANGUAGE,
    TIER_PRIORITY,
    TRUE_WORDS,
    AnyNode,
    BranchNode,
    CallbackNode,
    CaseNode,
    CaseUpdateNode,
    CollectNode,
    HangupNode,
    LanguageNode,
    Listen,
    LookupNode,
    MenuNode,
    PlayNode,
    Prompt,
    QueueNode,
    SetNode,
    SurveyNode,
    TransferNode,
    VoicemailNode,
)
from ivr.dialplan.ports import (
    Answer,
    Ask,
    CallerGone,
    CallPort,
    DataPort,
    LookupFailed,
    QueueOutcome,
    QueuePort,
    QueueTarget,
    RecordPort,
)
from ivr.dialplan.spoken import read_back, suggestion
from ivr.dialplan.templates import names, render, render_url, to_str
from ivr.dialplan.variables import BUILTINS, MASK
from ivr.speech.grammar import match_phrase

CASE_REASON_MAX = 200  # characters of a case's reason (the store refuses more)
ANSWER_MAX = 200  # characters of one case_update answer (the store refuses more)
log = get_logger(__name__)

Result = Literal["hangup", "queued", "transferred", "max_steps"]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


Verdict = Literal["take", "confirm", "no_match"]


def decide(confidence: float, agreement: float, listen: Listen, decodes: int = 1) -> Verdict:
    """What to do with a speech answer that matched a phrase (or spoken digits): take it when the
    recogniser is sure *and* its decodes agree; ask the caller to confirm when the confidence reaches
    ``listen.confirm``, or when several decodes ran and agreed (one decode always "agrees" with
    itself: that is no evidence); else it is no match."""
    if confidence >= listen.accept and agreement >= listen.agree:
        return "take"
    if confidence >= listen.confirm or (decodes > 1 and agreement >= listen.agree):
        return "confirm"
    return "no_match"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class RunResult:
    result: Result
    node: str | None                                  # the last node visited
    queue_outcome: QueueOutcome | None = None         # when the call was queued
    variables: dict[str, str] = field(default_factory=dict)
    journey: Journey
    queue_target: QueueTarget | None = None           # the last queue the call waited in


@dataclass(frozen=True)
class _End:
    result: Result
    queue_outcome: QueueOutcome | None = None


Next = str | None | _End


def lookup_path(data: Any, path: str) -> Any:
    """The value at a dotted path of decoded JSON (``customer.tier``, ``items.0.id``), or None."""
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                return None
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def _json_value(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return to_str(value)


def parse_priority(value: int | str, variables: Mapping[str, str]) -> tuple[int, bool]:
    """The queue priority 0..9 and whether the value was usable."""
    if isinstance(value, int):
        return max(0, min(9, value)), True
    n = conditions.as_number(render(value, variables))
    if n is None:
        return 0, False
    return max(0, min(9, int(n))), True


class PlanRunner:
    def __init__(self, loaded: LoadedPlan, *, call: CallPort, queue: QueuePort, record: RecordPort,
                 data: DataPort, settings: DialplanSettings, now: Callable[[], datetime] = _utcnow,
                 variables: Mapping[str, str] | None = None) -> None:
        self._sensitive = False
        self.loaded = loaded
        self.plan = loaded.plan
        self.call = call
        self.queue = queue
        self.record = record
        self.data = data
        self.settings = settings
        self.now = now
        plan = self.plan
        vars_: dict[str, str] = {"language": plan.language}
        vars_.update({k: to_str(v) for k, v in plan.variables.items() if k not in BUILTINS})
        vars_.update({k: to_str(v) for k, v in (variables or {}).items()})
        # the built-ins win over anything given (only the starting language may come from outside)
        vars_.update({"caller": call.caller, "dnis": call.dnis, "plan": plan.name, "plan_version": loaded.version})
        vars_.pop("phrase", None)
        if not re.fullmatch(LANGUAGE, vars_["language"]):
            vars_["language"] = plan.language
        self.variables = vars_
        self.language = vars_["language"]
        self.journey = Journey(plan=plan.name, plan_version=loaded.version, language=self.language,
                               data=vars_)
        self.queue_target: QueueTarget | None = None
        self._handlers: dict[type[Any], Callable[[str, Any], Awaitable[Next]]] = {
            MenuNode: self._menu, CollectNode: self._collect, PlayNode: self._play_node,
            BranchNode: self._branch, LookupNode: self._lookup, SetNode: self._set,
            LanguageNode: self._language, QueueNode: self._queue, CallbackNode: self._callback, CaseNode: self._case,
            CaseUpdateNode: self._case_update,
            SurveyNode: self._survey, VoicemailNode: self._voicemail, TransferNode: self._transfer,
            HangupNode: self._hangup,
        }

    # --- the walk ----------------------------------------------------------------------------------
    async def run(self) -> RunResult:
        current = self.plan.start
        last: str | None = None
        for _ in range(MAX_STEPS):
            node = self.plan.nodes.get(current)
            if node is None:
                log.error("dialplan.missing_node", node=current, after=last)
                self.journey.step(current, "missing", outcome="hangup")
                await self.call.hangup()
                return self._result("hangup", last)
            last = current
            log.info("dialplan.node", node=current, type=node.type)
            self.on_node(current, node)
            nxt = await self._handlers[type(node)](current, node)
            if isinstance(nxt, _End):
                return self._result(nxt.result, current, nxt.queue_outcome)
            if nxt is None:
                await self.call.hangup()
                return self._result("hangup", current)
            current = nxt
        log.warning("dialplan.max_steps", node=last, next=current, steps=MAX_STEPS)
        self.journey.step(last or current, "max_steps", outcome="hangup")
        await self.call.hangup()
        return self._result("max_steps", last)

    def on_node(self, name: str, node: AnyNode) -> None:
        """Called on every node visit before the node runs (the simulator prints the path)."""

    def _result(self, result: Result, node: str | None, queue_outcome: QueueOutcome | None = None) -> RunResult:
        return RunResult(result=result, node=node, queue_outcome=queue_outcome, variables=dict(self.variables),
                         journey=self.journey, queue_target=self.queue_target)

    # --- helpers -----------------------------------------------------------------------------------
    def _render(self, template: str) -> str:
        return render(template, self.variables)

    def _public(self) -> dict[str, str]:
        """The variables as prompts may use them: a secret is ``****``, never its value."""
        hidden = self.journey.sensitive
        return {k: MASK if k in hidden else v for k, v in self.variables.items()}

    def _secrets_in(self, template: str) -> list[str]:
        return [n for n in names(template) if n in self.journey.sensitive]

    def _write(self, node: str, name: str, value: str, *, secret: bool = False) -> None:
        """Set a variable of the plan: never a built-in; a secret stays one wherever it is copied."""
        if name in BUILTINS:
            log.error("dialplan.builtin_write_refused", node=node, variable=name)
            return
        self.variables[name] = value
        if secret:
            self.journey.sensitive.add(name)

    async def _play(self, prompt: Prompt | None) -> None:
        if prompt is not None:
            await self.call.play(prompt, language=self.language, variables=self._public())

    async def _ask(self, prompts: tuple[Prompt | None, ...], *, extra: Mapping[str, str] | None = None,
                   **kw: Any) -> Answer:
        variables = self._public()
        if extra:
            variables.update(extra)
        return await self.call.ask(Ask(prompts=tuple(p for p in prompts if p is not None),
                                       language=self.language, variables=variables,
                                       sensitive=self._sensitive, **kw))

    def _step(self, name: str, type_: str, **kw: Any) -> Step:
        return self.journey.step(name, type_, **kw)

    async def _judge(self, answer: Answer, phrase: str, listen: Listen) -> Literal["take", "confirmed",
                                                                                     "rejected", "low"]:
        verdict = decide(answer.confidence, answer.agreement, listen, answer.decodes)
        if verdict == "take":
            return "take"
        if verdict == "confirm":
            return "confirmed" if await self._confirm(phrase, listen) else "rejected"
        return "low"

    def _words(self, table: Mapping[str, list[str]]) -> list[str]:
        base = self.language.split("-")[0]
        return list(table.get(self.language) or table.get(base) or table.get("en") or [])

    async def _confirm(self, phrase: str, listen: Listen) -> bool:
        c = self.plan.confirm
        yes, no = self._words(c.yes), self._words(c.no)
        answer = await self._ask((c.prompt,), extra={"phrase": phrase}, barge_in=True, timeout_s=c.timeout_s,
                                 max_digits=1, phrases=tuple(yes + no), max_speech_s=listen.max_speech_s)
        if answer.kind == "digits":
            return answer.digits[:1] == c.yes_digit
        if answer.kind == "speech":
            said = answer.phrase or answer.text
            return match_phrase(said, yes) is not None and answer.confidence >= listen.confirm
        return False

    async def _read_back(self, node: CollectNode, digits: str) -> tuple[Literal["yes", "no", "keys"], str]:
        """Read spoken ``digits`` back one by one and take yes or no, by key or voice. Any other key
        is the first of a keypad entry that replaces the speech: returns ("keys", the entry)."""
        c = self.plan.confirm
        yes, no = self._words(c.yes), self._words(c.no)
        prompts = read_back(c.read_back, digits, self.language, self.plan.language)
        answer = await self._ask(prompts, barge_in=True, timeout_s=c.timeout_s, max_digits=1,
                                 phrases=tuple(yes + no), max_speech_s=node.listen.max_speech_s)
        if answer.kind == "digits" and answer.digits:
            key = answer.digits[0]
            if key == c.yes_digit:
                return "yes", ""
            if key == c.no_digit or key == node.terminator:
                return "no", ""
            if node.max_digits == 1:
                return "keys", key
            rest = await self._ask((), barge_in=True, timeout_s=node.inter_digit_s, max_digits=node.max_digits - 1,
                                   terminator=node.terminator, inter_digit_s=node.inter_digit_s)
            return "keys", key + (rest.digits if rest.kind == "digits" else "")
        if answer.kind == "speech":
            said = answer.phrase or answer.text
            if match_phrase(said, yes) is not None and answer.confidence >= node.listen.confirm:
                return "yes", ""
        return "no", ""

    # --- nodes -------------------------------------------------------------------------------------
    async def _menu(self, name: str, node: MenuNode) -> Next:
        listen = node.listen
        by_digit = {o.digit: o.goto for o in node.options if o.digit is not None}
        by_phrase = {p: o.goto for o in node.options for p in o.say}
        phrases = tuple(by_phrase) if listen.enabled else ()
        lead: Prompt | None = None
        attempts = node.retries + 1
        for attempt in range(1, attempts + 1):
            answer = await self._ask((lead, node.prompt), barge_in=node.barge_in, timeout_s=node.timeout_s,
                                     max_digits=1, phrases=phrases, max_speech_s=listen.max_speech_s)
            if answer.kind == "digits" and answer.digits:
                key = answer.digits[0]
                target = by_digit.get(key)
                self._step(name, "menu", digit=key, outcome=target or "no_match", attempt=attempt)
                if target is not None:
                    return target
                lead = self._no_match(node)
            elif answer.kind == "speech":
                said = answer.phrase or answer.text
                phrase = match_phrase(said, phrases) if phrases else None
                heard = {"confidence": round(answer.confidence, 3), "agreement": round(answer.agreement, 3)}
                if phrase is None:
                    self._step(name, "menu", phrase=said, outcome="no_match", attempt=attempt, **heard)
                    lead = self._no_match(node)
                    continue
                target = by_phrase[phrase]
                verdict = await self._judge(answer, phrase, listen)
                if verdict == "take":
                    self._step(name, "menu", phrase=phrase, outcome=target, attempt=attempt, **heard)
                    return target
                if verdict == "confirmed":
                    self._step(name, "menu", phrase=phrase, outcome="confirmed", goto=target, attempt=attempt,
                               **heard)
                    return target
                self._step(name, "menu", phrase=phrase, outcome="rejected" if verdict == "rejected" else "no_match",
                           attempt=attempt, **heard)
                lead = self._no_match(node)
            else:
                self._step(name, "menu", outcome="no_input", attempt=attempt)
                lead = node.no_input
        return node.on_failure

    def _no_match(self, node: MenuNode) -> Prompt | None:
        """The prompt before a retry after a wrong answer: the node's, else the options suggested."""
        return node.no_match if node.no_match is not None else suggestion(node, self.language)

    async def _collect(self, name: str, node: CollectNode) -> Next:
        self._sensitive = node.sensitive  # every question of a sensitive collect is kept off the recording
        try:
            return await self._collect_turns(name, node)
        finally:
            self._sensitive = False

    async def _collect_turns(self, name: str, node: CollectNode) -> Next:
        listen = node.listen
        lead: Prompt | None = None
        for attempt in range(1, node.retries + 2):
            answer = await self._ask((lead, node.prompt), barge_in=node.barge_in, timeout_s=node.timeout_s,
                                     max_digits=node.max_digits, terminator=node.terminator,
                                     inter_digit_s=node.inter_digit_s, spoken_digits=listen.enabled,
                                     phrases=(), max_speech_s=listen.max_speech_s)
            if answer.kind == "no_input":
                self._step(name, "collect", outcome="no_input", attempt=attempt)
                log.info("dialplan.collect", node=name, outcome="no_input")
                lead = node.no_input
                continue
            digits = answer.digits
            outcome = "ok" if self._valid(node, digits) else "no_match"
            heard: dict[str, Any] = {}
            keyed: str | None = None   # a keypad entry that replaced a read-back
            if answer.kind == "speech":
                heard = {"confidence": round(answer.confidence, 3), "agreement": round(answer.agreement, 3)}
                verdict = (decide(answer.confidence, answer.agreement, listen, answer.decodes)
                           if outcome == "ok" else "no_match")
                if verdict == "no_match":
                    outcome = "no_match"
                elif verdict == "confirm" or node.read_back:
                    reply, typed = await self._read_back(node, digits)
                    outcome = "confirmed" if reply == "yes" else "rejected"
                    keyed = typed if reply == "keys" else None
            self._collect_step(name, node, digits, outcome, attempt, **heard)
            if keyed is not None:   # the caller typed the entry during the read-back: keys need none
                digits, outcome = keyed, "ok" if self._valid(node, keyed) else "no_match"
                self._collect_step(name, node, digits, outcome, attempt, detail="keys during read-back")
            if outcome in ("ok", "confirmed"):
                self._write(name, node.variable, digits, secret=node.sensitive)
                return node.next
            lead = None if outcome == "rejected" else node.no_match   # after a no: the question again
        return node.on_failure

    @staticmethod
    def _valid(node: CollectNode, digits: str) -> bool:
        return (node.min_digits <= len(digits) <= node.max_digits
                and (node.pattern is None or safe_regex.fullmatch(node.pattern, digits)))

    def _collect_step(self, name: str, node: CollectNode, digits: str, outcome: str, attempt: int,
                      **kw: Any) -> None:
        """One journey step and log line of a collect: the entry masked in the journey, its length in the log."""
        log.info("dialplan.collect", node=name, length=len(digits), outcome=outcome)
        shown = ("****" if node.sensitive else mask_digits(digits)) if digits else None
        self._step(name, "collect", digit=shown, outcome=outcome, attempt=attempt, **kw)

    async def _play_node(self, name: str, node: PlayNode) -> Next:
        self._step(name, "play")
        await self._play(node.prompt)
        return node.next

    async def _branch(self, name: str, node: BranchNode) -> Next:
        ctx = conditions.Context(now=self.now(), timezone=self.plan.timezone, caller=self.variables["caller"],
                                 variables=self.variables, calendars=self.plan.calendars, hours=self.plan.hours)
        target, index = conditions.choose(node, ctx)
        self._step(name, "branch", outcome=target, detail="default" if index is None else f"rule {index}")
        return target

    async def _lookup(self, name: str, node: LookupNode) -> Next:
        url = render_url(node.url, self.variables)
        body = {k: self._render(v) for k, v in node.body.items()} if node.body is not None else None
        host = _host(url)
        try:
            if not host_allowed(url, self.settings.lookup_hosts):
                raise LookupFailed("not_allowed")
            reply = await self.data.fetch(node.method, url, body, node.timeout_s)
        except LookupFailed as exc:
            reason = str(exc) or "failed"
            log.warning("dialplan.lookup", node=name, host=host, outcome="error", reason=reason)
            self._step(name, "lookup", outcome=f"error:{reason}", detail=host)
            return node.on_error if node.on_error is not None else node.next
        for var, path in node.store.items():
            value = lookup_path(reply, path)
            if var in BUILTINS:
                log.error("dialplan.builtin_write_refused", node=name, variable=var)
            elif value is None:
                self.variables.pop(var, None)
            else:
                self._write(name, var, _json_value(value))
        if node.prefix is not None and isinstance(reply, dict):
            for key, value in reply.items():
                if _IDENT.match(str(key)) and isinstance(value, str | int | float | bool):
                    self._write(name, f"{node.prefix}.{key}", to_str(value))
        log.info("dialplan.lookup", node=name, host=host, outcome="ok")
        self._step(name, "lookup", outcome="ok", detail=host)
        return node.next

    async def _set(self, name: str, node: SetNode) -> Next:
        for var, value in node.variables.items():
            if isinstance(value, str):
                self._write(name, var, self._render(value), secret=bool(self._secrets_in(value)))
            else:
                self._write(name, var, to_str(value))
        self._step(name, "set", detail=",".join(node.variables))
        return node.next

    async def _language(self, name: str, node: LanguageNode) -> Next:
        self.language = node.language
        self.journey.language = node.language
        self.variables["language"] = node.language
        self._step(name, "language", outcome=node.language)
        return node.next

    async def _queue(self, name: str, node: QueueNode) -> Next:
        await self._play(node.prompt)
        priority, ok = parse_priority(node.priority, self._public())
        if not ok:
            log.warning("dialplan.bad_priority", node=name, template=node.priority)
        if node.tier is not None:
            tier = render(node.tier, self._public()).strip().lower()
            if tier in TIER_PRIORITY:
                priority = max(priority, TIER_PRIORITY[tier])
            else:
                log.warning("dialplan.bad_tier", node=name, template=node.tier)
        ann = node.announce
        target = QueueTarget(
            queue=node.queue, skills=tuple(node.skills) or (node.queue,), language=node.language or self.language,
            priority=priority, max_wait_s=node.max_wait_s,
            announce_every_s=ann.every_s if ann else None,
            announce_position=ann.position if ann else False,
            announce_wait=ann.wait_time if ann else False,
            keys=tuple(k.digit for k in node.keys),
            min_proficiency=node.min_proficiency, skills_from_plan=bool(node.skills),
            language_from_plan=node.language is not None, recording=node.recording)
        self.queue_target = target
        step = self._step(name, "queue", detail=node.queue)
        outcome = await self.queue.wait_for_agent(target, self.journey)
        step.outcome = outcome
        log.info("dialplan.queue", node=name, queue=node.queue, outcome=outcome)
        if outcome == "agent_hangup" and node.after is not None:
            return node.after
        if outcome == "timeout":
            return node.on_timeout
        if outcome.startswith("key:"):
            pressed = outcome.removeprefix("key:")
            step.digit = pressed
            goto = {k.digit: k.goto for k in node.keys}.get(pressed)
            if goto is not None:
                return goto
        return _End("queued", outcome)

    async def _callback(self, name: str, node: CallbackNode) -> Next:
        listen = Listen()
        answer = await self._ask((node.prompt,), barge_in=True, timeout_s=node.timeout_s, max_digits=1,
                                 phrases=tuple(node.accept_say), max_speech_s=listen.max_speech_s)
        said = match_phrase(answer.phrase or answer.text, node.accept_say) \
            if answer.kind == "speech" and node.accept_say else None
        accepted = (answer.kind == "digits" and answer.digits[:1] == node.accept_digit) or (
            said is not None and await self._judge(answer, said, listen) in ("take", "confirmed"))
        digit = answer.digits[:1] if answer.kind == "digits" and answer.digits else None
        phrase = (answer.phrase or answer.text) if answer.kind == "speech" else None
        if not accepted:
            self._step(name, "callback", digit=digit, phrase=phrase, outcome="declined")
            return node.declined
        if self._secrets_in(node.number):  # a secret is never dialled (check refuses this plan too)
            log.error("dialplan.secret_refused", node=name, field="number")
            self._step(name, "callback", digit=digit, phrase=phrase, outcome="failed", detail="dialplan.sensitive")
            return node.declined
        try:
            callback_id = await self.record.request_callback(
                queue=node.queue, number=self._render(node.number), journey=self.journey)
        except IvrError as exc:  # e.g. an anonymous caller: no number to call back
            self._step(name, "callback", digit=digit, phrase=phrase, outcome="failed", detail=exc.code)
            log.warning("dialplan.callback_failed", node=name, code=exc.code, error=exc.message)
            return node.declined
        self._step(name, "callback", digit=digit, phrase=phrase, outcome="accepted", detail=callback_id)
        log.info("dialplan.callback", node=name, queue=node.queue, callback_id=callback_id)
        await self._play(node.confirmed)
        return node.next

    async def _case(self, name: str, node: CaseNode) -> Next:
        tier = render(node.tier, self._public()).strip().lower()
        if tier not in TIER_PRIORITY:  # the complaint still gets its case, at the lowest tier
            log.warning("dialplan.bad_tier", node=name, template=node.tier)
            tier = "normal"
        reason = ""
        if self._secrets_in(node.reason):  # a case is read by people and the CRM: never a secret
            log.error("dialplan.secret_refused", node=name, field="reason")
        else:
            reason = " ".join(self._render(node.reason).split())[:CASE_REASON_MAX]
        try:
            case = await self.record.open_case(tier=tier, reason=reason, customer=self.call.caller)
        except IvrError as exc:
            log.warning("dialplan.case_failed", node=name, code=exc.code, error=exc.message)
            self._step(name, "case", outcome="failed", detail=exc.code)
            return node.on_error if node.on_error is not None else node.next
        # a caller whose case is still unfinished gets no second one: the call joins that case
        self._write(name, "case_id", case.case_id)
        self._step(name, "case", outcome="existing" if case.existing else tier, detail=case.case_id)
        log.info("dialplan.case", node=name, tier=tier, case_id=case.case_id, existing=case.existing)
        return node.next

    async def _case_update(self, name: str, node: CaseUpdateNode) -> Next:
        failed = node.on_error if node.on_error is not None else node.next
        case_id = self.variables.get("case_id") or self.variables.get("case.id") or ""
        if not case_id:
            log.warning("dialplan.case_update_no_case", node=name)
            self._step(name, "case_update", outcome="no_case")
            return failed
        answers: dict[str, str] = {}
        for key, template in node.answers.items():
            if self._secrets_in(template):  # a case is read by people and the CRM: never a secret
                log.error("dialplan.secret_refused", node=name, field=f"answers.{key}")
                continue
            value = " ".join(self._render(template).split())[:ANSWER_MAX]
            if value:
                answers[key] = value
        reopen = node.reopen if isinstance(node.reopen, bool) else (
            not self._secrets_in(node.reopen) and self._render(node.reopen).strip().lower() in TRUE_WORDS)
        try:
            reopened = await self.record.case_answers(case_id, answers, reopen=reopen)
        except IvrError as exc:
            log.warning("dialplan.case_update_failed", node=name, code=exc.code, error=exc.message)
            self._step(name, "case_update", outcome="failed", detail=exc.code)
            return failed
        self._step(name, "case_update", outcome="reopened" if reopened else "saved", detail=case_id)
        log.info("dialplan.case_update", node=name, case_id=case_id, answers=sorted(answers), reopened=reopened)
        return node.next

    async def _survey(self, name: str, node: SurveyNode) -> Next:
        listen = node.listen
        words: dict[str, int] = {}
        for key, scale_words in node.scale.items():
            if key.strip() in ("1", "2", "3", "4", "5"):
                for w in scale_words:
                    words.setdefault(w, int(key))
        phrases = tuple(words) if listen.enabled else ()
        lead: Prompt | None = None
        for attempt in range(1, node.retries + 2):
            answer = await self._ask((lead, node.prompt), barge_in=True, timeout_s=node.timeout_s, max_digits=1,
                                     phrases=phrases, max_speech_s=listen.max_speech_s)
            if answer.kind == "no_input":
                self._step(name, "survey", outcome="no_input", attempt=attempt)
                lead = None
                continue
            score: int | None = None
            kw: dict[str, Any] = {}
            if answer.kind == "digits":
                kw["digit"] = answer.digits[:1] or None
                if answer.digits[:1] in ("1", "2", "3", "4", "5"):
                    score = int(answer.digits[:1])
                outcome = "scored" if score else "no_match"
            else:
                said = answer.phrase or answer.text
                word = match_phrase(said, phrases) if phrases else None
                kw.update(phrase=word or said, confidence=round(answer.confidence, 3),
                          agreement=round(answer.agreement, 3))
                outcome = "no_match"
                if word is not None:
                    verdict = await self._judge(answer, word, listen)
                    outcome = {"take": "scored", "confirmed": "confirmed", "rejected": "rejected"}.get(
                        verdict, "no_match")
                    if outcome in ("scored", "confirmed"):
                        score = words[word]
            if score is not None:
                self._step(name, "survey", outcome=outcome, detail=str(score), attempt=attempt, **kw)
                self.variables["csat"] = str(score)
                await self._save(name, {"csat": score})
                log.info("dialplan.survey", node=name, csat=score)
                await self._play(node.thanks)
                return node.next
            self._step(name, "survey", outcome=outcome, attempt=attempt, **kw)
            lead = node.no_match
        self._step(name, "survey", outcome="no_score")
        return node.next

    async def _save(self, name: str, fields: dict[str, Any]) -> None:
        """Write to the call record; a refused value is logged and the call goes on."""
        try:
            await self.record.save(fields)
        except IvrError as exc:
            log.error("dialplan.record_refused", node=name, fields=sorted(fields), code=exc.code,
                      error=exc.message)

    async def _voicemail(self, name: str, node: VoicemailNode) -> Next:
        await self._play(node.prompt)
        rec = await self.call.record(max_s=node.max_s, beep=node.beep, terminator=node.terminator,
                                     name=node.mailbox)
        await self._save(name, {"voicemail": {"mailbox": node.mailbox, "path": rec.path,
                                              "seconds": rec.seconds, "ended_by": rec.ended_by}})
        self._step(name, "voicemail", outcome=rec.ended_by, detail=node.mailbox)
        log.info("dialplan.voicemail", node=name, mailbox=node.mailbox, seconds=rec.seconds,
                 ended_by=rec.ended_by)
        if rec.ended_by == "hangup":
            raise CallerGone("caller hung up while leaving a voicemail")
        await self._play(node.saved)
        return node.next

    async def _transfer(self, name: str, node: TransferNode) -> Next:
        dest = self._render(node.to).strip()
        if self._secrets_in(node.to) or not transfer_allowed(dest, self.settings.transfer_allow):
            log.error("dialplan.transfer_denied", node=name, template=node.to)
            self._step(name, "transfer", outcome="denied")
            return node.on_failure
        await self._play(node.prompt)
        step = self._step(name, "transfer")
        outcome = await self.call.transfer(dest, ring_s=node.ring_s)
        step.outcome = outcome
        log.info("dialplan.transfer", node=name, outcome=outcome)
        if outcome == "completed":
            return _End("transferred")
        return node.on_failure

    async def _hangup(self, name: str, node: HangupNode) -> Next:
        self._step(name, "hangup")
        await self._play(node.prompt)
        await self.call.hangup()
        return _End("hangup")


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
