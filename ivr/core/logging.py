"""structlog set-up: JSON lines in production, the call id bound into every line of a call.

Secrets never reach a log line: any key that looks like a credential is masked by a processor,
whatever the call site passed.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|authorization|api[_-]?key|credential)", re.I)


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
