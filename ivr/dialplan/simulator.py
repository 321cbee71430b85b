"""``ivr simulate``: walk a dial plan without a phone, printing what the caller would hear and do.

The real engine (:class:`~ivr.dialplan.engine.PlanRunner`) runs against in-memory ports:

* **Caller input** comes from ``--input`` (comma-separated tokens) and then, with ``-i``, from one
  line of stdin per question (end of input = the caller hangs up: outcome ``caller_gone``). Tokens:

  - ``none`` (or an empty token): no input; the plan's own timeout/retry path runs.
  - ``say:TEXT`` or ``say:TEXT@0.6``: speech with that confidence (default 1.0); ``say:TEXT@1.0/0.5``
    also gives the share of the recogniser's decodes that agreed (as if 8 decodes voted; default:
    one decode, agreement 1.0). ``TEXT`` is matched against the question's phrases ignoring case and
    spacing; a ``collect`` that listens for spoken digits also takes ``say:1234``, ``say:one two
    three`` or ``say:일이삼`` (then reads them back: answer ``1``/``say:yes`` or ``2``/``say:no``, or
    type the entry). Speech where the node does not listen counts as no input.
  - keys (``0-9 * #``): a key buffer. Each question takes keys from it up to its ``max_digits`` or
    its terminator (consumed, not part of the answer; a terminator right after ``max_digits`` keys
    is consumed too); the rest waits for the next question. ``2,1`` and ``21`` both answer two
    one-key menus; ``1234#`` answers a collect with 1234.

  When the scripted input runs out every further question gets no input, so the walk always ends
  (at the latest after ``MAX_STEPS`` nodes).
* **Queue**: prints the queue target; the caller hangs up while waiting, or with ``--agent-hangup``
  an agent takes the call and hangs up (so ``after`` nodes such as a survey run).
* **Lookups** are real HTTP requests through :class:`~ivr.dialplan.lookup.HttpDataPort`, limited to
  ``dialplan.lookup_hosts`` of the settings (``--config``).
* **Transfers** complete, **voicemail** returns a made-up recording, **records/callbacks** are printed.
* ``--at`` fixes the clock for time windows and holidays (ISO 8601; without an offset it is the
  plan's time zone).

Output: one line per node (``-> name [type]``), every prompt as the caller would hear it (rendered, in
the call's current language, or the file name), every input taken, lookups, queue targets, records,
and what came of each node (``=> ...``, the journey step); then the outcome: result (``hangup``,
``queued``, ``transferred``, ``max_steps`` or ``caller_gone``), the last queue with its skills,
priority and language, the path and the variables. ``--json`` prints instead one document with
``path``, ``prompts``, ``events``, ``outcome`` and ``journey`` (the screen-pop journey).

Exit status: 0 when the walk finished (whatever its outcome), 2 on a plan, settings or usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from ivr.core.errors import ConfigError, DialplanError, IvrError
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.model import VAR_NAME, AnyNode, CollectNode, MenuNode, Prompt
from ivr.dialplan.ports import Answer, Ask, CallerGone, CaseRef, QueueOutcome, QueueTarget, Recording
from ivr.dialplan.spoken import SpokenDigit
from ivr.dialplan.templates import prompt_text
from ivr.dialplan.variables import MASK

KEYS = set("0123456789*#")


# --- input ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: Literal["keys", "say", "none"]
    keys: str = ""
    text: str = ""
    confidence: float = 1.0
    agreement: float | None = None   # None: one decode


#: How many decodes a scripted agreement stands for (``say:TEXT@1.0/0.5``).
SCRIPTED_DECODES = 8


def parse_token(raw: str) -> Token:
    """One input token (see the module doc); raises ValueError with a readable reason."""
    tok = raw.strip()
    if tok == "" or tok.lower() == "none":
        return Token("none")
    if tok.lower().startswith("say:"):
        text, conf, agree = tok[4:], 1.0, None
        head, sep, tail = text.rpartition("@")
        m = re.fullmatch(r"(\d*\.?\d+)(?:/(\d*\.?\d+))?", tail.strip()) if sep else None
        if m:
            text, conf = head, float(m.group(1))
            agree = float(m.group(2)) if m.group(2) else None
            if not 0 <= conf <= 1 or not 0 <= (agree or 0) <= 1:
                raise ValueError(f"{raw!r}: confidence and agreement must be between 0 and 1")
        if not text.strip():
            raise ValueError(f"{raw!r}: say: needs a text")
        return Token("say", text=text.strip(), confidence=conf, agreement=agree)
    if all(ch in KEYS for ch in tok):
        return Token("keys", keys=tok)
    raise ValueError(f"{raw!r} is not an input: use keys (0-9 * #), say:TEXT[@confidence[/agreement]] or none")


def parse_input(spec: str | None) -> list[Token]:
    if not spec:
        return []
    return [parse_token(t) for t in spec.split(",")]


def _spoken_digits(text: str, language: str) -> str | None:
    from ivr.speech.grammar import spoken_digits

    compact = text.replace(" ", "").replace("-", "")
    if compact.isascii() and compact.isdigit():
        return compact
    for lang in (language, "en", "ko"):
        try:
            digits = spoken_digits(text, lang)
        except ValueError:
            continue
        if digits:
            return digits
    return None


def answer_for(token: Token, ask: Ask, keys: str) -> tuple[Answer, str]:
    """The answer ``token`` gives to ``ask`` and the keys left over (for a key token)."""
    if token.kind == "none":
        return Answer.none(), ""
    if token.kind == "keys":
        out, rest = "", keys
        while rest and len(out) < ask.max_digits:
            key, rest = rest[0], rest[1:]
            if ask.terminator is not None and key == ask.terminator:
                return Answer("digits", digits=out), rest
            out += key
        if ask.terminator is not None and rest.startswith(ask.terminator):
            rest = rest[1:]
        return Answer("digits", digits=out), rest
    from ivr.speech.grammar import match_phrase

    if not ask.phrases and not ask.spoken_digits:
        return Answer.none(), ""
    heard = Answer("speech", text=token.text, confidence=token.confidence)
    if token.agreement is not None:
        heard = replace(heard, agreement=token.agreement, decodes=SCRIPTED_DECODES)
    phrase = match_phrase(token.text, ask.phrases) if ask.phrases else None
    if phrase is not None:
        return replace(heard, phrase=phrase), ""
    if ask.spoken_digits:
        digits = _spoken_digits(token.text, ask.language)
        if digits is not None:
            return replace(heard, digits=digits[:ask.max_digits]), ""
    return heard, ""


# --- output --------------------------------------------------------------------------------------
@dataclass
class Printer:
    quiet: bool                          # --json: nothing but the final document on stdout
    out: TextIO = field(default_factory=lambda: sys.stdout)
    events: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    before: Callable[[], None] | None = None   # runs before each event (prints pending journey steps)
    _in_before: bool = False

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    def event(self, name: str, line: str | None = None, /, **data: Any) -> None:
        if self.before is not None and not self._in_before:
            self._in_before = True
            try:
                self.before()
            finally:
                self._in_before = False
        self.events.append({"event": name, **data})
        if line is not None:
            self.line(line)


# --- ports ---------------------------------------------------------------------------------------
class SimCall:
    """CallPort: prints prompts, answers from the script or stdin."""

    def __init__(self, pr: Printer, plan: LoadedPlan, *, caller: str, dnis: str, tokens: list[Token],
                 interactive: bool, stdin: TextIO) -> None:
        self.pr, self.loaded = pr, plan
        self._caller, self._dnis = caller, dnis
        self.tokens = list(tokens)
        self.keys = ""
        self.interactive = interactive
        self.stdin = stdin
        self.node: tuple[str, AnyNode] | None = None
        self.exhausted_noted = False

    @property
    def caller(self) -> str:
        return self._caller

    @property
    def dnis(self) -> str:
        return self._dnis

    def _node_name(self) -> str:
        return self.node[0] if self.node else ""

    def _secret(self) -> bool:
        return self.node is not None and isinstance(self.node[1], CollectNode) and self.node[1].sensitive

    def _show(self, prompt: Prompt, language: str, variables: Mapping[str, str]) -> None:
        text = prompt_text(prompt, language, self.loaded.plan.language, variables)
        if isinstance(prompt, SpokenDigit) and self._secret():
            text = MASK  # a PIN read back is not printed, even here
        entry: dict[str, Any] = {"node": self._node_name(), "language": language}
        if prompt.file:
            entry["file"] = prompt.file
        if text is not None:
            entry["text"] = text
        self.pr.prompts.append(entry)
        shown = f"[file {prompt.file}]" + (f" {text}" if text else "") if prompt.file else text
        self.pr.event("prompt", f"   play [{language}]: {shown}", **entry)

    async def play(self, prompt: Prompt, *, language: str, variables: Mapping[str, str]) -> None:
        self._show(prompt, language, variables)

    async def ask(self, ask: Ask) -> Answer:
        for prompt in ask.prompts:
            self._show(prompt, ask.language, ask.variables)
        answer, source = self._next_answer(ask)
        self._report(answer, source)
        return answer

    def _next_answer(self, ask: Ask) -> tuple[Answer, str]:
        if self.keys:
            answer, self.keys = answer_for(Token("keys", keys=self.keys), ask, self.keys)
            return answer, "keys"
        if not self.tokens and self.interactive:
            return self._read(ask), "stdin"
        if not self.tokens:
            if not self.exhausted_noted:
                self.exhausted_noted = True
                self.pr.event("input_exhausted", "   (scripted input used up: no input from here on)")
            return Answer.none(), "exhausted"
        token = self.tokens.pop(0)
        answer, self.keys = answer_for(token, ask, token.keys)
        if token.kind == "say" and answer.kind == "no_input":
            self.pr.event("not_listening", f"   (this question does not listen for speech: {token.text!r} ignored)")
        return answer, "script"

    def _read(self, ask: Ask) -> Answer:
        hint = [f"keys (up to {ask.max_digits}" + (f", {ask.terminator} ends" if ask.terminator else "") + ")"]
        if self.node and isinstance(self.node[1], MenuNode):
            opts = ", ".join(f"{o.digit}={o.goto}" for o in self.node[1].options if o.digit)
            if opts:
                hint.append(f"options {opts}")
        if ask.phrases:
            hint.append("say: " + " | ".join(ask.phrases))
        if ask.spoken_digits:
            hint.append("say:DIGITS")
        hint.append("empty = no input")
        out = sys.stderr if self.pr.quiet else self.pr.out
        print(f"   ? {'; '.join(hint)} > ", end="", file=out, flush=True)
        line = self.stdin.readline()
        if line and not self.stdin.isatty():
            print(line.rstrip("\n"), file=out, flush=True)   # show what was piped in
        if not line:
            print("", file=out, flush=True)
            self.pr.event("eof", "   (end of input: the caller hangs up)")
            raise CallerGone("end of input")
        while True:
            try:
                token = parse_token(line.strip())
                break
            except ValueError as exc:
                print(f"   ! {exc}\n   ? > ", end="", file=out, flush=True)
                line = self.stdin.readline()
                if not line:
                    self.pr.event("eof", "   (end of input: the caller hangs up)")
                    raise CallerGone("end of input") from None
        answer, _rest = answer_for(token, ask, token.keys)   # one line answers one question
        return answer

    def _report(self, answer: Answer, source: str) -> None:
        node = self._node_name()
        secret = self._secret()
        digits = MASK if secret and answer.digits else answer.digits  # a PIN is not printed, even here
        if answer.kind == "no_input":
            self.pr.event("input", "   input: (none)", node=node, kind="no_input")
        elif answer.kind == "digits":
            self.pr.event("input", f"   input: keys {digits or '(terminator only)'}", node=node,
                          kind="digits", digits=digits)
        else:
            what = repr(answer.phrase) if answer.phrase else (f"digits {digits}" if answer.digits
                                                              else f"{answer.text!r} (not a phrase here)")
            self.pr.event("input", f"   input: said {what} @{answer.confidence:.2f}", node=node, kind="speech",
                          phrase=answer.phrase, digits=digits, text=MASK if secret else answer.text,
                          confidence=answer.confidence)

    async def record(self, *, max_s: float, beep: bool, terminator: str, name: str) -> Recording:
        rec = Recording(path=f"simulated/{name}.wav", seconds=min(12.0, max_s), ended_by="terminator")
        self.pr.event("recording", f"   record: mailbox {name} (max {max_s:g}s, beep={beep}) -> "
                      f"{rec.seconds:g}s ended by {rec.ended_by}", mailbox=name, max_s=max_s, beep=beep,
                      seconds=rec.seconds, ended_by=rec.ended_by)
        return rec

    async def transfer(self, destination: str, *, ring_s: float) -> Literal["completed", "failed"]:
        self.pr.event("transfer", f"   transfer: to {destination} (ring {ring_s:g}s) -> completed",
                      to=destination, ring_s=ring_s, outcome="completed")
        return "completed"

    async def hangup(self) -> None:
        self.pr.event("hangup", "   hang up")


class SimQueue:
    """Waiting in a queue: a key token that is one of the node's ``keys`` leaves the queue with it;
    otherwise an agent takes the call and hangs up (``--agent-hangup``) or the caller hangs up."""

    def __init__(self, pr: Printer, agent_hangup: bool, call: SimCall | None = None) -> None:
        self.call = call
        self.pr = pr
        self.agent_hangup = agent_hangup

    async def wait_for_agent(self, target: QueueTarget, journey: Journey) -> QueueOutcome:
        outcome: QueueOutcome = "agent_hangup" if self.agent_hangup else "caller_hangup"
        pressed = self._key(target.keys)
        if pressed is not None:
            outcome = f"key:{pressed}"
        ann = (f"every {target.announce_every_s:g}s position={target.announce_position} "
               f"wait={target.announce_wait}" if target.announce_every_s else "none")
        wait = f"{target.max_wait_s:g}s" if target.max_wait_s else "-"
        self.pr.event("queue", f"   queue: {target.queue} skills={','.join(target.skills)} priority={target.priority}"
                      f" language={target.language} max_wait={wait} announce={ann}", **asdict(target))
        said = (f"the caller pressed {pressed} while waiting" if pressed is not None
                else "an agent took the call and hung up" if self.agent_hangup
                else "the caller hung up while waiting")
        self.pr.event("queue_outcome", "   queue outcome: " + said, outcome=outcome)
        return outcome

    def _key(self, keys: tuple[str, ...]) -> str | None:
        call = self.call
        if call is None or not keys:
            return None
        if call.keys and call.keys[0] in keys:
            pressed, call.keys = call.keys[0], call.keys[1:]
            return pressed
        if call.tokens and call.tokens[0].kind == "keys" and call.tokens[0].keys[:1] in keys:
            token = call.tokens.pop(0)
            pressed, call.keys = token.keys[0], token.keys[1:]
            return pressed
        return None


class SimRecord:
    def __init__(self, pr: Printer) -> None:
        self.pr = pr
        self.count = 0

    async def save(self, fields: Mapping[str, Any]) -> None:
        self.pr.event("record", f"   record: {json.dumps(dict(fields), ensure_ascii=False)}", fields=dict(fields))

    async def request_callback(self, *, queue: str, number: str, journey: Journey) -> str:
        self.count += 1
        cb = f"sim-cb-{self.count}"
        self.pr.event("callback", f"   callback: {cb} queue={queue} number={number}", id=cb, queue=queue,
                      number=number)
        return cb

    async def case_answers(self, case_id: str, answers: Mapping[str, str], *, reopen: bool) -> bool:
        shown = ", ".join(f"{k}={v}" for k, v in answers.items())
        self.pr.event("case_update", f"   case {case_id}: {shown}{' (reopened)' if reopen else ''}", id=case_id,
                      answers=dict(answers), reopen=reopen)
        return reopen

    async def open_case(self, *, tier: str, reason: str, customer: str) -> CaseRef:
        self.count += 1
        case_id = f"CS-SIM{self.count}"
        self.pr.event("case", f"   case: {case_id} tier={tier} customer={customer}", id=case_id, tier=tier,
                      customer=customer)
        return CaseRef(case_id)


class SimData:
    """The real HTTP data port, printing each lookup."""

    def __init__(self, pr: Printer, inner: Any) -> None:
        self.pr, self.inner = pr, inner

    async def fetch(self, method: str, url: str, body: Mapping[str, Any] | None, timeout_s: float) -> Any:
        from ivr.dialplan.ports import LookupFailed

        try:
            reply = await self.inner.fetch(method, url, body, timeout_s)
        except LookupFailed as exc:
            self.pr.event("lookup", f"   lookup: {method} {url} -> error {exc}", method=method, url=url,
                          ok=False, reason=str(exc))
            raise
        shown = json.dumps(reply, ensure_ascii=False)
        shown = shown if len(shown) <= 300 else shown[:300] + "..."
        self.pr.event("lookup", f"   lookup: {method} {url} -> {shown}", method=method, url=url, ok=True,
                      reply=reply)
        return reply


# --- command -------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="walk a dial plan without a phone",
                         description="Walk a dial plan with scripted or typed caller input and print what happens.")
    sim.add_argument("file", help="dial-plan YAML file")
    sim.add_argument("--caller", default="+15550001", help="caller number (ANI), default +15550001")
    sim.add_argument("--dnis", help="dialed number, default the plan's first number")
    sim.add_argument("--input", dest="input_spec", metavar="TOKENS",
                     help='comma-separated answers: keys ("2", "1234#"), say:TEXT[@conf], none')
    sim.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="initial variable (repeat)")
    sim.add_argument("--at", help="simulated time, ISO 8601 (2026-11-23T10:00+09:00); no offset = plan time zone")
    sim.add_argument("--agent-hangup", action="store_true",
                     help="queued calls are answered by an agent who then hangs up (runs `after`)")
    sim.add_argument("--json", action="store_true", help="print one JSON document (path, prompts, outcome)")
    sim.add_argument("-i", "--interactive", action="store_true", help="read one answer per question from stdin")
    sim.add_argument("--config", help="settings YAML (dialplan.lookup_hosts, transfer_allow)")
    sim.add_argument("-v", "--verbose", action="store_true", help="engine log lines on stderr")
    sim.set_defaults(func=main)


def _fail(message: str) -> int:
    print(f"ivr simulate: {message}", file=sys.stderr)
    return 2


def _parse_vars(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(VAR_NAME, name.strip()):
            raise ValueError(f"--var {item!r}: use NAME=VALUE with a variable name like account or crm.tier")
        out[name.strip()] = value
    return out


def _parse_at(value: str, zone: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--at {value!r} is not an ISO 8601 date-time (2026-11-23T10:00+09:00)") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(zone))
    return at


def main(args: argparse.Namespace) -> int:
    from ivr.core.config import load_settings
    from ivr.core.logging import configure
    from ivr.dialplan.loader import load_plan

    configure("info" if args.verbose else "error", "console")
    try:
        loaded = load_plan(Path(args.file))
    except DialplanError as exc:
        return _fail(f"{exc.code}: {exc.message}")
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
    try:
        settings = load_settings(Path(args.config) if args.config else None)
        tokens = parse_input(args.input_spec)
        variables = _parse_vars(args.var)
        now_at = _parse_at(args.at, loaded.plan.timezone) if args.at else None
    except ConfigError as exc:
        return _fail(f"{exc.code}: {exc.message}")
    except ValueError as exc:
        return _fail(str(exc))
    dnis = args.dnis or next((n for n in loaded.plan.numbers if n != "*"), "*")
    pr = Printer(quiet=args.json)
    try:
        outcome = asyncio.run(_walk(loaded, settings, pr, caller=args.caller, dnis=dnis, tokens=tokens,
                                    variables=variables, now_at=now_at, agent_hangup=args.agent_hangup,
                                    interactive=args.interactive))
    except IvrError as exc:
        return _fail(f"{exc.code}: {exc.message}")
    if args.json:
        doc = {"plan": loaded.plan.name, "version": loaded.version, "file": str(loaded.path),
               "caller": args.caller, "dnis": dnis, "at": now_at.isoformat() if now_at else None,
               "path": pr.path, "prompts": pr.prompts, "events": pr.events, **outcome}
        print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
    return 0


async def _walk(loaded: LoadedPlan, settings: Any, pr: Printer, *, caller: str, dnis: str, tokens: list[Token],
                variables: dict[str, str], now_at: datetime | None, agent_hangup: bool,
                interactive: bool) -> dict[str, Any]:
    from ivr.dialplan.engine import PlanRunner
    from ivr.dialplan.lookup import HttpDataPort

    plan = loaded.plan
    call = SimCall(pr, loaded, caller=caller, dnis=dnis, tokens=tokens, interactive=interactive, stdin=sys.stdin)
    now: Callable[[], datetime] = (lambda: now_at) if now_at is not None else (lambda: datetime.now(UTC))
    pr.line(f"Plan {plan.name!r} ({loaded.path}, version {loaded.version}); caller {caller}, dnis {dnis}, "
            f"language {plan.language}" + (f", at {now_at.isoformat()}" if now_at else ""))
    class _Runner(PlanRunner):
        flushed = 0

        def on_node(self, name: str, node: AnyNode) -> None:
            self.flush_steps()
            call.node = (name, node)
            pr.path.append(name)
            pr.event("node", f"-> {name} [{node.type}]", node=name, type=node.type)

        def flush_steps(self) -> None:
            """Print the journey steps recorded since the last call (what came of the node)."""
            pending = []
            for step in self.journey.steps[self.flushed:]:
                if step.type in ("queue", "transfer") and step.outcome is None:
                    break  # still waiting: shown once it has its outcome
                pending.append(step)
            self.flushed += len(pending)
            for step in pending:
                fields = {k: v for k, v in asdict(step).items() if v is not None}
                bits = [f"{k}={v}" for k, v in fields.items() if k not in ("node", "type", "at")]
                pr.event("step", f"   => {' '.join(bits)}" if bits else None, **fields)

    async with HttpDataPort(settings.dialplan) as http:
        runner = _Runner(loaded, call=call, queue=SimQueue(pr, agent_hangup, call), record=SimRecord(pr),
                         data=SimData(pr, http), settings=settings.dialplan, now=now, variables=variables)
        pr.before = runner.flush_steps
        try:
            res = await runner.run()
        except CallerGone:
            runner.flush_steps()
            result, node, queue_outcome, target = "caller_gone", (call.node[0] if call.node else None), None, None
            variables_out, journey = dict(runner.variables), runner.journey
        else:
            runner.flush_steps()
            result, node, queue_outcome, target = res.result, res.node, res.queue_outcome, res.queue_target
            variables_out, journey = res.variables, res.journey
    variables_out = {k: MASK if k in journey.sensitive else v for k, v in variables_out.items()}  # secrets
    out: dict[str, Any] = {
        "outcome": {"result": result, "node": node, "queue_outcome": queue_outcome,
                    "queue": target.queue if target else None,
                    "skills": list(target.skills) if target else None,
                    "priority": target.priority if target else None,
                    "language": target.language if target else runner.language,
                    "variables": variables_out},
        "journey": journey.to_dict(),
    }
    o = out["outcome"]
    pr.line("")
    pr.line(f"Outcome: {result} at {node}" + (f" ({queue_outcome})" if queue_outcome else ""))
    if target is not None:
        pr.line(f"  queue: {target.queue}  skills: {','.join(target.skills)}  priority: {target.priority}  "
                f"language: {target.language}")
    else:
        pr.line(f"  language: {o['language']}")
    pr.line(f"  path: {' -> '.join(pr.path)}")
    pr.line("  variables: " + ", ".join(f"{k}={v}" for k, v in variables_out.items()))
    return out
