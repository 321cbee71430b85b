"""structlog set-up: JSON lines in production, the call id bound into every line of a call.

Secrets never reach a log line: any key that looks like a credential is masked by a processor,
whatever the call site passed.

Caller numbers are personal data: at every level, a value under a key that names a person's number
(``ani``, ``caller``, ``callback_number``...) and the user part of any ``sip:``/``sips:``/``tel:``
URI made of digits show only their last two digits (``+*******01``). The full number stays where a
role needs it: the call record, the agent's screen-pop and the reports (see docs/security.md).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|authorization|api[_-]?key|credential|cookie|"
                         r"(^|_)(pin|otp|cvv|cvc)(_|$))", re.I)
#: keys whose values are a person's phone number
_NUMBER_KEY = re.compile(r"^(ani|caller|callers?_?(id|number)|calling(_number)?|callback_number|customer(_number)?|"
                         r"msisdn|phone(_number)?|(from|to)_number|number_called_back)$", re.I)
#: the user part of a SIP/tel URI that is a phone number (digits with optional + and separators)
_URI_NUMBER = re.compile(r"(?i)\b(sips?:|tel:)(\+?[0-9][0-9().\- ]*[0-9])(?=[@;>\s\"',]|$)")


def mask_number(value: str) -> str:
    """All digits but the last two masked (fewer than 6 digits: all masked); other characters kept."""
    digits = sum(c.isdigit() for c in value)
    keep = 2 if digits >= 6 else 0
    out, seen = [], 0
    for c in value:
        if c.isdigit():
            seen += 1
            out.append(c if seen > digits - keep else "*")
        else:
            out.append(c)
    return "".join(out)


#: a password in a URL (redis://:pw@host, https://user:pw@host)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")


def _mask_uris(text: str) -> str:
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _URI_NUMBER.sub(lambda m: m.group(1) + mask_number(m.group(2)), text)


def mask_numbers(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask caller numbers (values under number keys, numeric user parts of URIs in any string) and
    passwords written in URLs."""
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = mask_number(value) if _NUMBER_KEY.match(key) else _mask_uris(value)
        elif isinstance(value, int) and not isinstance(value, bool) and _NUMBER_KEY.match(key):
            event_dict[key] = mask_number(str(value))
    return event_dict


def mask_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every secret-looking key by ``***``."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key) and event_dict[key] not in (None, ""):
            event_dict[key] = "***"
    return event_dict


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is at that moment, as ONE write: the
    roles of ``ivr run`` share one log, and ``print`` writes the line and its newline separately, so
    another process's line could land between them (two JSON documents on one line)."""

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure(level: str = "info", fmt: str = "json", role: str | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        lvl = logging.INFO
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_secrets,
        structlog.processors.format_exc_info,
        mask_numbers,  # after format_exc_info: a traceback's text is masked too
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=lambda *_args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    if role:
        structlog.contextvars.bind_contextvars(role=role)


def get_logger(name: str | None = None, **bound: Any) -> Any:
    log = structlog.get_logger(name)
    return log.bind(**bound) if bound else log


class LogThrottle:
    """At most one log line per key (e.g. a source address) every ``every_s`` seconds, with the
    count of the lines held back since; at most ``max_keys`` keys remembered (oldest forgotten). For
    lines a hostile peer can trigger at will (a flood of refused requests), so it cannot fill the log."""

    def __init__(self, every_s: float = 10.0, max_keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (last logged, held back)

    def allow(self, key: str) -> tuple[bool, int]:
        """Whether to log now, and how many lines of ``key`` were held back before this one."""
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False, 0
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return True, last[1] if last is not None else 0
