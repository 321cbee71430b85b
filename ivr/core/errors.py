"""Domain errors with stable codes.

Every error the product raises on purpose carries a dotted ``code`` that never changes between
releases (clients and tests match on it) and a ``transient`` flag that says whether retrying the
same operation later may succeed. The API maps these to HTTP statuses in one place
(:mod:`ivr.cti.errors`).
"""

from __future__ import annotations

from typing import Any


class IvrError(Exception):
    """Base class: ``code`` is stable, ``message`` is for humans, ``details`` is structured."""

    code: str = "ivr.error"
    transient: bool = False

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(IvrError):
    code = "config.invalid"


class DialplanError(IvrError):
    code = "dialplan.invalid"


class PromptError(IvrError):
    code = "prompt.invalid"


class NotFound(IvrError):
    code = "not_found"


class Conflict(IvrError):
    code = "conflict"


class Unauthorized(IvrError):
    code = "auth.unauthorized"


class Forbidden(IvrError):
    code = "auth.forbidden"


class BadRequest(IvrError):
    code = "request.invalid"


class Unavailable(IvrError):
    code = "service.unavailable"
    transient = True


class TimedOut(Unavailable):
    """A part of the system (a worker, a peer) did not answer in time; retrying may succeed."""

    code = "timeout"


class TooManyRequests(IvrError):
    """The client must wait ``retry_after_s`` seconds (``details``) before trying again."""

    code = "request.rate_limited"
    transient = True
