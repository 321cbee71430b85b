"""Checks of whole dial plans beyond the schema, each problem with its file, line and column.

* :func:`graph_problems` - needs only the plan: dangling references, nodes not reachable from
  ``start``, loops with no way out, holiday calendars that do not exist, ``open:`` conditions in a plan
  without ``hours:``. :func:`~ivr.dialplan.loader.load_plan` runs these too, so a worker never runs a
  plan that fails them.
* :func:`settings_problems` - lookup hosts and literal transfer destinations against the settings.
* :func:`prompt_problems` - prompt files exist and decode in every language of the plan; texts
  given per language have one for the plan's language.
* :func:`speech_problems` - phrases with words the configured speech model does not know, with the
  spellings it knows that sound closest (or one warning saying why the model's words cannot be read).
* :func:`similar_phrase_problems` - phrases of different answers of one listening turn that a
  recogniser may take for one another (docs/speech.md, "Grammar hygiene").
* :func:`check_files` - all of the above over a set of files, plus numbers answered by two files.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ivr.core.config import DialplanSettings, Settings
from ivr.core.errors import PromptError
from ivr.core.logging import get_logger
from ivr.dialplan.destinations import destination_problem, transfer_allowed
from ivr.dialplan.limits import MAX_STEPS
from ivr.dialplan.loader import LoadedPlan, Positions, Problem, parse_file, plan_files, read_plan, validate
from ivr.dialplan.lookup import host_allowed
from ivr.dialplan.model import (
    BranchNode,
    CallbackNode,
    MenuNode,
    Plan,
    Prompt,
    QueueNode,
    SurveyNode,
    is_terminal,
    node_targets,
)
from ivr.dialplan.templates import literal_text, names
from ivr.dialplan.variables import SECRET_FREE, is_set, sensitive_names, set_names, template_uses
from ivr.speech.grammar import normalise
from ivr.speech.similarity import Heard, Speller, confusion

if TYPE_CHECKING:
    from ivr.prompts.library import PromptLibrary

log = get_logger(__name__)


def _path(field: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in field.split("."))


def graph_problems(plan: Plan, pos: Positions, file: str) -> list[Problem]:
    """Dangling references, unreachable nodes, loops with no exit, unknown holiday calendars, ``open:``
    conditions in a plan without business hours."""
    out: list[Problem] = []
    nodes = plan.nodes
    if plan.start not in nodes:
        out.append(Problem(file, *pos.at(("start",)), f"start -> {plan.start}: no node named "
                           f"{plan.start!r}", "dialplan.dangling"))
    edges: dict[str, list[str]] = {}
    for name, node in nodes.items():
        edges[name] = []
        for field, target in node_targets(node):
            if target in nodes:
                edges[name].append(target)
            else:
                out.append(Problem(file, *pos.at(("nodes", name, *_path(field))),
                                   f"{name} -> {target}: {field} names no node {target!r}", "dialplan.dangling"))
        if isinstance(node, BranchNode):
            for i, rule in enumerate(node.rules):
                cal = rule.when.holiday
                if cal is not None and cal not in plan.calendars:
                    known = ", ".join(sorted(plan.calendars)) or "none"
                    out.append(Problem(file, *pos.at(("nodes", name, "rules", i, "if", "holiday")),
                                       f"{name}: unknown holiday calendar {cal!r} (calendars: {known})",
                                       "dialplan.calendar"))
                if rule.when.open is not None and plan.hours is None:
                    out.append(Problem(file, *pos.at(("nodes", name, "rules", i, "if", "open")),
                                       f"{name}: open: tests the plan's business hours, but the plan has no "
                                       "hours: (add hours: {open: [...]} at the top level)", "dialplan.hours"))
    if plan.hours is not None and plan.hours.holidays is not None and plan.hours.holidays not in plan.calendars:
        known = ", ".join(sorted(plan.calendars)) or "none"
        out.append(Problem(file, *pos.at(("hours", "holidays")), f"hours: unknown holiday calendar "
                           f"{plan.hours.holidays!r} (calendars: {known})", "dialplan.calendar"))
    if plan.start in nodes:
        reached = _reach([plan.start], edges)
        for name in nodes:
            if name not in reached:
                out.append(Problem(file, *pos.at(("nodes", name), key=True),
                                   f"node {name!r} cannot be reached from start {plan.start!r}",
                                   "dialplan.unreachable"))
        out += _stuck_loops(plan, pos, file, edges, reached)
        out += _too_far(plan, pos, file, edges)
    return out


def _reach(starts: Iterable[str], edges: dict[str, list[str]]) -> set[str]:
    seen = set(starts)
    todo = list(seen)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _stuck_loops(plan: Plan, pos: Positions, file: str, edges: dict[str, list[str]],
                 reached: set[str]) -> list[Problem]:
    """Cycles of nodes from which no terminal node can be reached: a call there goes round forever.

    Linear in nodes + edges (strongly connected components), so a plan of many nodes costs no more
    memory than its graph."""
    reverse: dict[str, list[str]] = {n: [] for n in edges}
    for src, targets in edges.items():
        for dst in targets:
            reverse[dst].append(src)
    can_end = _reach([n for n, node in plan.nodes.items() if is_terminal(node)], reverse)
    stuck = {n for n in reached if n not in can_end}
    inner = {n: [t for t in edges[n] if t in stuck] for n in stuck}
    order = {name: i for i, name in enumerate(plan.nodes)}
    out: list[Problem] = []
    loops = [c for c in strongly_connected(inner) if len(c) > 1 or c[0] in inner[c[0]]]
    for cycle in sorted((sorted(c, key=order.__getitem__) for c in loops), key=lambda c: order[c[0]]):
        name = cycle[0]  # file order: the loop is reported at its first node
        out.append(Problem(file, *pos.at(("nodes", name), key=True),
                           f"loop with no exit: {' -> '.join(cycle)} never reach a node where the call "
                           f"ends (hangup, queue, transfer, or a node without next)", "dialplan.loop"))
    return out


def strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = graph.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _too_far(plan: Plan, pos: Positions, file: str, edges: dict[str, list[str]]) -> list[Problem]:
    """Nodes a call cannot reach within the engine's step limit (it hangs up after MAX_STEPS visits)."""
    depth = {plan.start: 1}
    todo = deque([plan.start])
    while todo:
        cur = todo.popleft()
        for nxt in edges.get(cur, ()):
            if nxt not in depth:
                depth[nxt] = depth[cur] + 1
                todo.append(nxt)
    return [Problem(file, *pos.at(("nodes", name), key=True),
                    f"node {name!r} is {d} steps from start: a call ends after {MAX_STEPS} steps",
                    "dialplan.too_many_steps")
            for name, d in depth.items() if d > MAX_STEPS]


def settings_problems(plan: Plan, pos: Positions, file: str, settings: DialplanSettings) -> list[Problem]:
    """Lookup URLs to hosts not in ``lookup_hosts``; literal transfer targets outside ``transfer_allow``."""
    nodes = {name: node.model_dump() for name, node in plan.nodes.items()}
    return raw_settings_problems({"nodes": nodes}, pos, file, settings)


def raw_settings_problems(data: Any, pos: Positions, file: str, settings: DialplanSettings) -> list[Problem]:
    """The checks of :func:`settings_problems` on a file's data as it is, so they run also when the file
    has schema errors elsewhere (a security boundary is never skipped because of a typo)."""
    out: list[Problem] = []
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict):
        return out
    for name, node in nodes.items():
        if not isinstance(node, dict):
            continue
        url, to = node.get("url"), node.get("to")
        authority = url.partition("://")[2].split("/")[0].split("?")[0] if isinstance(url, str) else ""
        if "@" in authority or "{" in authority:
            pass  # credentials or a templated host: the schema refuses the URL itself
        elif node.get("type") == "lookup" and isinstance(url, str) and not host_allowed(
                url, settings.lookup_hosts):
            host = _shown_host(url)
            allowed = ", ".join(settings.lookup_hosts) or "none"
            out.append(Problem(file, *pos.at(("nodes", name, "url")),
                               f"{name}: lookup host {host!r} is not in dialplan.lookup_hosts ({allowed})",
                               "dialplan.lookup_host"))
        if node.get("type") == "transfer" and isinstance(to, str) and "{" not in to and not transfer_allowed(
                to, settings.transfer_allow):
            allowed = ", ".join(settings.transfer_allow) or "none"
            why = destination_problem(to)
            shown = to if len(to) <= 80 else to[:80] + "..."
            message = (f"{name}: transfer destination {shown!r}: {why}" if why else
                       f"{name}: transfer destination {shown!r} matches no glob of dialplan.transfer_allow "
                       f"({allowed})")
            out.append(Problem(file, *pos.at(("nodes", name, "to")), message, "dialplan.transfer"))
    return out


def _shown_host(url: str) -> str:
    """The host of a URL as a message may show it: never the credentials before an ``@``."""
    try:
        host = urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
    return host if len(host) <= 80 else host[:80] + "..."


def plan_prompts(plan: Plan, pos: Positions) -> list[tuple[tuple[str | int, ...], Prompt]]:
    """Every prompt of the plan with its data path; the confirm prompt only if the file sets it."""
    out: list[tuple[tuple[str | int, ...], Prompt]] = [
        (("nodes", node, field), prompt) for node, field, prompt in plan.prompts()]
    if ("confirm", "prompt") in pos:
        out.append((("confirm", "prompt"), plan.confirm.prompt))
    return out


def prompt_problems(plan: Plan, pos: Positions, file: str, library: PromptLibrary | None) -> list[Problem]:
    """Every prompt renders in every language of the plan exactly as ``ivr run`` renders it before it
    starts (:func:`ivr.dialplan.prompt_build.check_prompt`: recordings decoded, texts spoken by espeak-ng,
    templates with sample values; ``library``: None skips that); texts per language have one for the
    plan's language (others fall back: a warning)."""
    from ivr.dialplan.prompt_build import check_prompt
    from ivr.prompts.library import PromptSpec

    out: list[Problem] = []
    languages = plan.languages()
    for path, prompt in plan_prompts(plan, pos):
        label = ".".join(map(str, path))
        if library is not None:
            where = pos.at((*path, "file" if prompt.file else "text"))
            for lang in languages:
                try:
                    if prompt.file:  # as a call plays it: prompts/<language>/, no other language's file
                        library.resolve(PromptSpec(file=prompt.file), lang)
                    else:
                        check_prompt(library, prompt, lang, plan.language)
                except PromptError as exc:
                    if exc.code != "prompt.no_voice":  # voice_problems reports those, with --no-prompts too
                        out.append(Problem(file, *where, f"{label}: {exc.message}", exc.code))
                except Exception as exc:  # a decoder's own bug on odd audio: this prompt fails, not the check
                    out.append(Problem(file, *where, f"{label}: the prompt cannot be rendered "
                                       f"({type(exc).__name__})", "prompt.corrupt"))
        if prompt.file:
            continue
        if isinstance(prompt.text, dict):
            have = sorted(k for k, v in prompt.text.items() if v.strip())
            if plan.language not in have:
                out.append(Problem(file, *pos.at((*path, "text")),
                                   f"{label}: no text for the plan's language {plan.language!r} "
                                   f"(has: {', '.join(have)})", "dialplan.prompt_language"))
            for lang in languages:
                if lang != plan.language and lang not in have:
                    fallback = plan.language if plan.language in have else have[0]
                    out.append(Problem(file, *pos.at((*path, "text")),
                                       f"{label}: no text for {lang!r}, callers in {lang!r} hear the "
                                       f"{fallback!r} text", "dialplan.prompt_language", "warning"))
    return out


def template_problems(plan: Plan, pos: Positions, file: str) -> list[Problem]:
    """Secrets where they would leak (spoken, dialled, a priority) and variables no node ever sets
    (they render as an empty text: a warning)."""
    out: list[Problem] = []
    secret = sensitive_names(plan)
    known, spaces = set_names(plan)
    warned: set[tuple[str, str]] = set()
    for use in template_uses(plan):
        label = ".".join(map(str, use.path))
        used = names(use.template)
        leaked = [n for n in used if n in secret]
        if leaked and use.use in SECRET_FREE:
            what = {"spoken": "spoken to the caller", "callback": "dialled as a callback number",
                    "transfer": "dialled as a transfer destination", "queue": "used as a queue priority"}[use.use]
            out.append(Problem(file, *pos.at(use.path), f"{label}: {{{leaked[0]}}} is sensitive (a PIN or card "
                               f"number) and would be {what}; it is usable in lookups and branches only",
                               "dialplan.sensitive"))
        for n in used:
            if n == "phrase" and use.path[:1] != ("confirm",):
                out.append(Problem(file, *pos.at(use.path), f"{label}: {{phrase}} is set only in the confirm "
                                   "prompt (renders empty here)", "dialplan.template_variable", "warning"))
            elif not is_set(n, known, spaces) and (label, n) not in warned:
                warned.add((label, n))
                out.append(Problem(file, *pos.at(use.path), f"{label}: {{{n}}} is never set by this plan (renders "
                                   "as an empty text)", "dialplan.template_variable", "warning"))
    return out


def voice_problems(plan: Plan, pos: Positions, file: str, voices: Mapping[str, str]) -> list[Problem]:
    """Text prompts in a language with no speech voice (``prompts.voices``): ``ivr run`` could not render
    them, so they are errors here."""
    out: list[Problem] = []
    missing = [lang for lang in plan.languages() if lang not in voices]
    if not missing:
        return out
    configured = ", ".join(sorted(voices)) or "none"
    for path, prompt in plan_prompts(plan, pos):
        if prompt.file or prompt.text is None:
            continue
        for lang in missing:
            out.append(Problem(file, *pos.at((*path, "text")),
                               f"{'.'.join(map(str, path))}: no speech voice for language {lang!r} "
                               f"(prompts.voices has: {configured}); callers in {lang!r} would hear nothing",
                               "prompt.no_voice"))
    return out


def queue_problems(plan: Plan, pos: Positions, file: str, settings: Settings) -> list[Problem]:
    """Queues that routing does not know (not in ``routing.queues``) and that no agent's skill serves:
    callers there would wait for nobody (a warning: agents may be added later). Only when the
    configuration names its agents (``users:``): without them (a default install generates its
    agents on first start; admins add more over the API) nothing here can know who serves a queue."""
    out: list[Problem] = []
    if not settings.users:
        return out
    routed = set(settings.routing.queues)
    skills = {skill for user in settings.users for skill in user.skills}
    for name, node in plan.nodes.items():
        queue = getattr(node, "queue", None)
        if not isinstance(node, QueueNode | CallbackNode) or not isinstance(queue, str):
            continue
        if queue in routed:
            continue
        needed = list(node.skills) if isinstance(node, QueueNode) and node.skills else [queue]
        if not all(s in skills for s in needed):
            out.append(Problem(file, *pos.at(("nodes", name, "queue")),
                               f"{name}: queue {queue!r} is not in routing.queues and no agent has the skill "
                               f"{', '.join(repr(s) for s in needed if s not in skills)}: callers would wait for "
                               "nobody", "dialplan.queue_unknown", "warning"))
    return out


def speakable_problems(plan: Plan, pos: Positions, file: str) -> list[Problem]:
    """Texts with nothing to say (only punctuation, symbols or placeholders): speech synthesis makes
    no audio of them and the call could not play the prompt."""
    out: list[Problem] = []
    for use in template_uses(plan):
        if use.use != "spoken":
            continue
        literal = literal_text(use.template)
        if not names(use.template) and not any(ch.isalnum() for ch in literal):
            out.append(Problem(file, *pos.at(use.path), f"{'.'.join(map(str, use.path))}: the text has "
                                   "nothing to speak (no letter or digit)", "prompt.tts_failed"))
    return out


def listened_phrases(plan: Plan, pos: Positions) -> list[tuple[tuple[str | int, ...], str]]:
    """Every phrase a call gives the recogniser as grammar, with its data path (the confirm words
    only when the file sets them)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    for name, node in plan.nodes.items():
        base: tuple[str | int, ...] = ("nodes", name)
        if isinstance(node, MenuNode) and node.listen.enabled:
            out += [((*base, "options", i, "say", j), p) for i, o in enumerate(node.options)
                    for j, p in enumerate(o.say)]
        elif isinstance(node, CallbackNode):
            out += [((*base, "accept_say", j), p) for j, p in enumerate(node.accept_say)]
        elif isinstance(node, SurveyNode) and node.listen.enabled:
            out += [((*base, "scale", k, j), p) for k, words in node.scale.items() for j, p in enumerate(words)]
    for field in ("yes", "no"):
        if ("confirm", field) in pos:
            table = getattr(plan.confirm, field)
            out += [(("confirm", field, lang, j), p) for lang, words in table.items() for j, p in enumerate(words)]
    return out


#: Distinct unknown words per plan that get spelling suggestions ...
MAX_SUGGESTED = 50
#: ... and the vocabulary look-ups all their searches may make together (about 0.3 s).
MAX_LOOKUPS = 300_000
#: Work of :func:`similar_phrase_problems` per plan, in sound symbols: each pair of phrases costs its
#: longer sound form plus 8 (a menu of 200 phrases of 6 sounds is about 280,000; well under 1 s).
MAX_WORK = 300_000
#: Similar pairs reported per listening turn; the rest are counted in one more warning.
MAX_SIMILAR_SHOWN = 20


def vocabulary_problems(plan: Plan, pos: Positions, file: str, words: frozenset[str],
                        speller: Speller | None = None) -> list[Problem]:
    """Phrases with words the speech model does not know: Vosk drops such a phrase from the grammar
    without a word, so it can never be recognised (a warning: keys still work). With a ``speller``,
    each unknown word comes with up to three spellings the model knows that sound closest
    (:class:`ivr.speech.similarity.Speller`; the first :data:`MAX_SUGGESTED` distinct words)."""
    out: list[Problem] = []
    suggested: dict[str, list[str]] = {}
    lookups = 0
    for path, phrase in listened_phrases(plan, pos):
        unknown = list(dict.fromkeys(w for w in normalise(phrase).split() if w.casefold() not in words))
        if not unknown:
            continue
        shown = ", ".join(repr(w[:40]) for w in unknown[:5])
        message = (f"{'.'.join(map(str, path))}: {shown} not in the speech model's vocabulary: the phrase is left "
                   "out of the grammar and never recognised (is the model for this language?)")
        hints: list[str] = []
        for w in unknown[:5]:
            if speller is None:
                break
            if w not in suggested and len(suggested) < MAX_SUGGESTED and lookups < MAX_LOOKUPS:
                suggested[w], spent = speller.search(w, budget=min(speller.budget, MAX_LOOKUPS - lookups))
                lookups += spent
            if suggested.get(w):
                hints.append(f"{w[:40]!r} -> {' or '.join(repr(s) for s in suggested[w])}")
        if hints:
            message += "; the model knows " + "; ".join(hints)
        out.append(Problem(file, *pos.at(path), message, "speech.unknown_word", "warning"))
    return out


def _phrase_groups(plan: Plan, pos: Positions) -> list[tuple[str, list[list[tuple[tuple[str | int, ...], str]]]]]:
    """Per listening turn (a node, or the confirmation in one language): its answers, each a list of
    (data path, phrase). Phrases of one answer are never confused with one another."""
    out: list[tuple[str, list[list[tuple[tuple[str | int, ...], str]]]]] = []
    for name, node in plan.nodes.items():
        base: tuple[str | int, ...] = ("nodes", name)
        if isinstance(node, MenuNode) and node.listen.enabled:
            out.append((f"nodes.{name}", [[((*base, "options", i, "say", j), p) for j, p in enumerate(o.say)]
                                          for i, o in enumerate(node.options)]))
        elif isinstance(node, SurveyNode) and node.listen.enabled:
            out.append((f"nodes.{name}", [[((*base, "scale", k, j), p) for j, p in enumerate(words)]
                                          for k, words in node.scale.items()]))
    if any(len(groups) > 1 for _, groups in out) or any(getattr(n, "spoken_digits", False)
                                                         for n in plan.nodes.values()):
        c = plan.confirm  # the yes/no question follows any spoken answer
        for lang in sorted(set(c.yes) | set(c.no)):
            out.append((f"confirm ({lang})", [
                [(("confirm", field, lang, j), p) for j, p in enumerate(getattr(c, field).get(lang, []))]
                for field in ("yes", "no")]))
    return out


def similar_phrase_problems(plan: Plan, pos: Positions, file: str) -> list[Problem]:
    """Phrases of different answers of one listening turn that a recogniser may take for one another
    (:func:`ivr.speech.similarity.confusion`: they sound the same, one is part of the other, or their
    jamo/letters differ by one sound or by one in three). A warning at the second phrase; the
    comparisons stop at :data:`MAX_WORK` (a warning says so)."""
    out: list[Problem] = []
    work = 0
    for turn, groups in _phrase_groups(plan, pos):
        flat = [(i, path, phrase, Heard.of(phrase)) for i, group in enumerate(groups) for path, phrase in group]
        found = 0
        # each phrase against all before it: when the work runs out, the first phrases of the turn
        # have been compared with one another
        for n, (j, path_b, text_b, b) in enumerate(flat):
            for i, path_a, text_a, a in flat[:n]:
                if i == j:
                    continue
                work += max(len(a.sound), len(b.sound)) + 8
                if work > MAX_WORK:
                    out += _more_similar(file, pos, turn, flat[0][1], found)
                    out.append(Problem(file, *pos.at(flat[0][1]), f"{turn}: similar phrases were looked for among "
                                       f"the first {n} of its {len(flat)} phrases only (the plan has too many or too "
                                       "long phrases)", "speech.similar_phrases", "warning"))
                    return out
                why = confusion(a, b)
                if why is None:
                    continue
                found += 1
                if found > MAX_SIMILAR_SHOWN:
                    continue
                label_a, label_b = ".".join(map(str, path_a[2:])), ".".join(map(str, path_b[2:]))
                if path_a[0] == "confirm":
                    label_a, label_b = f"confirm.{path_a[1]}", f"confirm.{path_b[1]}"
                out.append(Problem(file, *pos.at(path_b),
                                   f"{turn}: {text_a[:40]!r} ({label_a}) and {text_b[:40]!r} ({label_b}) may be "
                                   f"taken for one another: {why}; use phrases that sound more different (keys "
                                   "still work)", "speech.similar_phrases", "warning"))
        out += _more_similar(file, pos, turn, flat[0][1] if flat else (), found)
    return out


def _more_similar(file: str, pos: Positions, turn: str, at: tuple[str | int, ...], found: int) -> list[Problem]:
    if found <= MAX_SIMILAR_SHOWN:
        return []
    return [Problem(file, *pos.at(at), f"{turn}: {found - MAX_SIMILAR_SHOWN} more pairs of phrases may be taken for "
                    f"one another (the first {MAX_SIMILAR_SHOWN} are shown)", "speech.similar_phrases", "warning")]


def model_vocabulary(settings: Settings) -> frozenset[str] | None:
    """The words of the configured speech model, or None (speech off, no model, no word list)."""
    found = speech_vocabulary(settings)
    return found if isinstance(found, frozenset) else None


def speech_vocabulary(settings: Settings) -> frozenset[str] | str | None:
    """The words of the configured speech model; None when speech is off; else why they cannot be
    read (a sentence for the report: no such directory, not a model, a damaged word list)."""
    if not settings.speech.enabled:
        return None
    from ivr.speech.vocabulary import VocabularyError, model_words

    model_dir = settings.speech.model_dir
    try:
        if model_dir is None:
            from ivr.speech.server import default_model_dir

            model_dir = default_model_dir()
        if not model_dir.is_dir():
            return f"speech.model_dir {str(model_dir)[:200]!r} is not a directory"
        words = model_words(model_dir)
    except ImportError as exc:
        return f"no speech model installed ({exc.name or exc})"
    except OSError as exc:
        return f"cannot read the speech model in {str(model_dir)[:200]!r}: {exc.strerror or exc}"
    except VocabularyError as exc:
        return f"the speech model's word list is damaged ({str(exc)[:200]})"
    if words is None:
        return (f"{str(model_dir)[:200]!r} holds no word list (graph/words.txt, graph/Gr.fst or graph/G.fst): "
                "is it a Vosk model?")
    if not words:
        return f"the speech model in {str(model_dir)[:200]!r} has an empty word list"
    return words


def speech_problems(plan: Plan, pos: Positions, file: str, found: frozenset[str] | str | None) -> list[Problem]:
    """The vocabulary check of :func:`vocabulary_problems` with spelling suggestions, or, when the
    model's words cannot be read (``found`` is the reason), one warning saying the phrases were not
    checked (at the first phrase)."""
    if found is None:
        return []
    if isinstance(found, frozenset):
        return vocabulary_problems(plan, pos, file, found, _speller(found))
    phrases = listened_phrases(plan, pos)
    if not phrases:
        return []
    return [Problem(file, *pos.at(phrases[0][0]), f"the phrases were not checked against the speech model's "
                    f"vocabulary: {found}", "speech.vocabulary_unavailable", "warning")]


@functools.lru_cache(maxsize=2)
def _speller(words: frozenset[str]) -> Speller:
    return Speller(words)


def prompt_library(settings: Settings) -> PromptLibrary:
    from ivr.prompts.library import PromptLibrary

    return PromptLibrary(settings.prompts.dir, settings.prompt_cache, settings.workers.clock_rate,
                         settings.prompts.voices)


def check_plan(loaded: LoadedPlan, settings: Settings, *, prompts: bool = True,
               library: PromptLibrary | None = None) -> list[Problem]:
    """Every check of one validated plan (not the numbers shared with other files). ``prompts=False``
    leaves out what reads the host's resources: prompt files, speech synthesis, the speech model."""
    plan, pos, file = loaded.plan, loaded.positions, str(loaded.path)
    lib = (library or prompt_library(settings)) if prompts else None
    speech = speech_problems(plan, pos, file, speech_vocabulary(settings) if prompts else None)
    speech += similar_phrase_problems(plan, pos, file)
    return sorted(graph_problems(plan, pos, file) + settings_problems(plan, pos, file, settings.dialplan)
                  + template_problems(plan, pos, file) + voice_problems(plan, pos, file, settings.prompts.voices)
                  + speakable_problems(plan, pos, file) + queue_problems(plan, pos, file, settings) + speech
                  + prompt_problems(plan, pos, file, lib))


def live_numbers(directory: Path, checked: Sequence[Path]) -> dict[str, str]:
    """The numbers the plans of ``directory`` that are not being checked answer (a new file is checked
    against the numbers already in service). Files that do not validate answer nothing."""
    try:
        mine = {p.resolve() for p in checked}
        files = [f for f in plan_files(directory) if f.resolve() not in mine] if directory.is_dir() else []
    except OSError:
        return {}
    out: dict[str, str] = {}
    for f in files:
        try:
            loaded, _ = read_plan(f)
        except Exception:  # unreadable or odd: it answers nothing, and its own check reports it
            continue
        if loaded is not None:
            for number in loaded.plan.numbers:
                out.setdefault(number, str(f))
    return out


def check_files(paths: Sequence[Path], settings: Settings, *, prompts: bool = True) -> list[Problem]:
    """Check files as ``ivr dialplan check`` does: every problem of every file, sorted.

    A number (DNIS) answered by two files, listed twice in one, or already answered by another plan of
    ``settings.dialplans_dir`` that is not among ``paths``, is an error.
    """
    out: list[Problem] = []
    library = prompt_library(settings) if prompts else None
    owners: dict[str, str] = {}
    live = live_numbers(settings.dialplans_dir, paths)
    for path in paths:
        try:
            parsed = parse_file(path)
            plan = validate(parsed)
            out += parsed.problems
            if plan is None:
                out += raw_settings_problems(parsed.data, parsed.positions, str(path), settings.dialplan)
                continue
            loaded = LoadedPlan(plan, path, parsed.version, parsed.positions)
            out += check_plan(loaded, settings, prompts=prompts, library=library)
        except OSError as exc:
            out.append(Problem(str(path), 1, 1, f"cannot read: {exc.strerror or exc}", "dialplan.io"))
            continue
        except Exception as exc:  # never raise: a bug met by odd content is this file's error
            log.exception("dialplan.check_failed", file=str(path))
            out.append(Problem(str(path), 1, 1, f"cannot check this file ({type(exc).__name__})",
                               "dialplan.internal"))
            continue
        here: set[str] = set()
        for i, number in enumerate(loaded.plan.numbers):
            where = loaded.positions.at(("numbers", i))
            if number in here:
                out.append(Problem(str(path), *where, f"number {number!r} is listed twice",
                                   "dialplan.duplicate_number"))
            elif number in owners:
                out.append(Problem(str(path), *where, f"number {number!r} is also answered by {owners[number]}",
                                   "dialplan.duplicate_number"))
            elif number in live:
                out.append(Problem(str(path), *where, f"number {number!r} is already answered by {live[number]} "
                                   "(in service)", "dialplan.duplicate_number"))
            else:
                owners[number] = str(path)
            here.add(number)
    return sorted(out)
