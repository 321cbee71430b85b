"""Transfer destinations and the settings' ``dialplan.transfer_allow`` globs.

A destination is a SIP URI ``sip:user@host[:port]`` (``sips:`` too) or a number (``+8210...``, digits,
``*`` and ``#``): nothing else - no URI parameters (``;transport=``), no headers (``?``), no display
names, no spaces - so a glob cannot be widened by what a template or a caller puts into it.

A glob is matched part by part, not over the raw text: ``*`` stands for any run of the characters a
user part or a number may hold (never ``@``, ``:``, ``;``, ``.``, a space), ``?`` for one of them;
every other character is itself. ``sip:*@pbx.example.com`` thus allows any user at exactly that
host, and ``+8210*`` any number that starts so. ``check`` applies this to literal destinations and
the engine to every rendered one before a call is transferred.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

_USER = r"[A-Za-z0-9_!~+-]"
DESTINATION = re.compile(
    rf"^(?:sips?:{_USER}+(?:\.{_USER}+)*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?"
    r"|\+?[0-9*#]{1,32})$")


def destination_problem(destination: str) -> str | None:
    """Why ``destination`` is not a transfer destination, or None."""
    if DESTINATION.fullmatch(destination):
        return None
    return "a transfer destination is sip:user@host[:port] or a number (digits, * and #, optional leading +)"


@functools.lru_cache(maxsize=256)
def _glob_regex(glob: str) -> re.Pattern[str]:
    parts = []
    for ch in glob:
        if ch == "*":
            parts.append(f"{_USER}*")
        elif ch == "?":
            parts.append(_USER)
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts))


def transfer_allowed(destination: str, allowed: Sequence[str]) -> bool:
    """``destination`` is well formed and matches one glob of ``allowed`` (see the module doc)."""
    if destination_problem(destination) is not None:
        return False
    return any(_glob_regex(glob).fullmatch(destination) for glob in allowed)
