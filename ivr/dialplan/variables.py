"""What a plan's templates may use: built-in names, names the plan sets, secrets.

* :data:`BUILTINS` are set by the engine for every call (``caller``, ``dnis``, ...); a plan may read
  them but never write them (``variables``, ``set``, ``collect``, ``lookup.store`` refuse them, and
  the engine ignores a write at call time).
* A ``collect`` with ``sensitive: true`` makes its variable a secret; so does every variable a ``set``
  computes from a secret (the protection follows the value). A secret may be used by ``lookup`` (URL,
  body) and ``branch`` conditions only: never in a prompt text (it would be spoken), a callback
  number, a transfer destination, a queue priority or a complaint case. The journey, the screen-pop and the call
  record show it as ``****``.

:func:`template_uses` lists every template of a plan with what it is used for; ``check`` and the
engine apply the rules above to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ivr.dialplan.model import (
    BUILTIN_VARIABLES,
    CallbackNode,
    CaseNode,
    CaseUpdateNode,
    CollectNode,
    LookupNode,
    Plan,
    Prompt,
    QueueNode,
    SetNode,
    TransferNode,
)
from ivr.dialplan.templates import names

BUILTINS = BUILTIN_VARIABLES
#: Set by the engine on the way (a survey's score; a case node's case id).
ENGINE_SET = frozenset({"csat", "case_id"})
#: Namespaces the worker may set at the call's start: ``case.*`` (``case.id``, ``case.tier``,
#: ``case.status``, ``case.overdue``, ``case.count``) when the caller has an unfinished complaint case,
#: and on an automated follow-up call (回访) ``case.id``, ``case.tier``, ``case.reason`` and
#: ``customer.name`` (unset otherwise, like a lookup's variables when nothing was found).
CALL_SPACES = frozenset({"case", "customer"})
MASK = "****"

Use = Literal["spoken", "lookup", "set", "queue", "callback", "transfer", "case"]
#: Where a secret must never go.
SECRET_FREE: frozenset[Use] = frozenset({"spoken", "callback", "transfer", "queue", "case"})


@dataclass(frozen=True)
class TemplateUse:
    path: tuple[str | int, ...]  # data path of the field in the file
    template: str
    use: Use


def _prompt_uses(path: tuple[str | int, ...], prompt: Prompt) -> Iterator[TemplateUse]:
    if isinstance(prompt.text, str):
        yield TemplateUse((*path, "text"), prompt.text, "spoken")
    elif isinstance(prompt.text, dict):
        for lang, text in prompt.text.items():
            yield TemplateUse((*path, "text", lang), text, "spoken")


def template_uses(plan: Plan) -> Iterator[TemplateUse]:
    """Every template of the plan (node fields; the confirm prompt, whose ``{phrase}`` is built in)."""
    for name, node in plan.nodes.items():
        base: tuple[str | int, ...] = ("nodes", name)
        for field, value in node:
            if isinstance(value, Prompt):
                yield from _prompt_uses((*base, field), value)
        if isinstance(node, LookupNode):
            yield TemplateUse((*base, "url"), node.url, "lookup")
            for key, value in (node.body or {}).items():
                yield TemplateUse((*base, "body", key), value, "lookup")
        elif isinstance(node, SetNode):
            for key, value in node.variables.items():
                if isinstance(value, str):
                    yield TemplateUse((*base, "variables", key), value, "set")
        elif isinstance(node, QueueNode):
            if isinstance(node.priority, str):
                yield TemplateUse((*base, "priority"), node.priority, "queue")
            if node.tier is not None:
                yield TemplateUse((*base, "tier"), node.tier, "queue")
        elif isinstance(node, CallbackNode):
            yield TemplateUse((*base, "number"), node.number, "callback")
        elif isinstance(node, CaseNode):
            yield TemplateUse((*base, "tier"), node.tier, "case")
            yield TemplateUse((*base, "reason"), node.reason, "case")
        elif isinstance(node, CaseUpdateNode):
            for key, value in node.answers.items():
                yield TemplateUse((*base, "answers", key), value, "case")
            if isinstance(node.reopen, str):
                yield TemplateUse((*base, "reopen"), node.reopen, "case")
        elif isinstance(node, TransferNode):
            yield TemplateUse((*base, "to"), node.to, "transfer")
    yield from _prompt_uses(("confirm", "prompt"), plan.confirm.prompt)


def sensitive_names(plan: Plan) -> set[str]:
    """The plan's secrets: sensitive ``collect`` variables and every ``set`` variable computed from one
    (anywhere in the plan: the order of nodes on a call does not matter to this)."""
    secret = {n.variable for n in plan.nodes.values() if isinstance(n, CollectNode) and n.sensitive}
    sets = [(k, names(v)) for n in plan.nodes.values() if isinstance(n, SetNode)
            for k, v in n.variables.items() if isinstance(v, str)]
    changed = True
    while changed:  # at most one round per set variable
        changed = False
        for key, used in sets:
            if key not in secret and secret.intersection(used):
                secret.add(key)
                changed = True
    return secret


def set_names(plan: Plan) -> tuple[set[str], set[str]]:
    """Names a call on this plan can have a value for, and the namespaces (``crm``) of lookup prefixes
    (and ``case``, :data:`CALL_SPACES`)."""
    known = set(BUILTINS) | set(ENGINE_SET) | set(plan.variables)
    spaces: set[str] = set(CALL_SPACES)
    for node in plan.nodes.values():
        if isinstance(node, SetNode):
            known.update(node.variables)
        elif isinstance(node, CollectNode):
            known.add(node.variable)
        elif isinstance(node, LookupNode):
            known.update(node.store)
            if node.prefix is not None:
                spaces.add(node.prefix)
    return known, spaces


def is_set(name: str, known: set[str], spaces: set[str]) -> bool:
    return name in known or any(name.startswith(space + ".") for space in spaces)
