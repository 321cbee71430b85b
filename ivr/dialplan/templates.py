"""``{name}`` templates of dial plans: prompt texts, lookup URLs and bodies, ``set`` values, numbers.

* ``{caller}``, ``{crm.tier}``: the value of a variable (names as in :data:`ivr.dialplan.model.VAR_NAME`).
* ``{{`` and ``}}`` are a literal ``{`` and ``}``.
* Any other brace (``{ x }``, a lone ``{``) is kept as it is.
* A name that is not set renders as the empty string; a warning is logged once per name and process
  (plans are edited by people: a typo must be visible without flooding the log on every call).

:func:`render_url` percent-encodes every substituted value (``/``, ``?``, ``&``, ``#`` and spaces
included), so a caller's input can never change the host, the path structure or the query of a
lookup URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

from ivr.core.logging import get_logger
from ivr.dialplan.model import Prompt

log = get_logger(__name__)

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")
_warned: set[str] = set()
_WARN_LIMIT = 1000  # names remembered for "warn once" (plans are finite; this only bounds memory)


def to_str(value: object) -> str:
    """A plan value as a variable: booleans are ``true``/``false``, ``None`` is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def names(template: str) -> list[str]:
    """The variable names a template uses, in order of first use."""
    out: dict[str, None] = {}
    for m in _TOKEN.finditer(template):
        if m.group(1):
            out.setdefault(m.group(1), None)
    return list(out)


def render(template: str, variables: Mapping[str, str], *,
           quote_value: Callable[[str], str] | None = None) -> str:
    """Fill the ``{name}`` placeholders of ``template`` from ``variables``."""

    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = m.group(1)
        value = variables.get(name)
        if value is None:
            _warn_unknown(name)
            value = ""
        value = to_str(value)
        return quote_value(value) if quote_value is not None else value

    return _TOKEN.sub(sub, template)


def literal_text(template: str) -> str:
    """The template without its placeholders (``{{``/``}}`` as braces): what is said whatever the values."""
    return _TOKEN.sub(lambda m: "" if m.group(1) else m.group(0)[0], template)


def render_url(template: str, variables: Mapping[str, str]) -> str:
    """Like :func:`render`, with every substituted value percent-encoded (``safe=""``)."""
    return render(template, variables, quote_value=lambda v: quote(v, safe=""))


def prompt_text(prompt: Prompt, language: str, default_language: str, variables: Mapping[str, str]) -> str | None:
    """The text of ``prompt`` in ``language`` (else the plan's default) with its placeholders filled;
    None when the prompt has only a file."""
    text = prompt.text_for(language, default_language)
    return None if text is None else render(text, variables)


def _warn_unknown(name: str) -> None:
    if name in _warned:
        return
    if len(_warned) < _WARN_LIMIT:
        _warned.add(name)
    log.warning("dialplan.template_unknown_variable", variable=name)
