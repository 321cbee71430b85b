"""What every CTI route module shares: the application's keys and the request helpers.

Route modules (``agents``, ``calls``, ``dialplans``, ``webhooks``, ``pages``...) import from here,
never from :mod:`ivr.cti.app`, which imports them all to wire the application.
"""

from __future__ import annotations

import re
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ivr.core.config import Settings
from ivr.core.errors import BadRequest
from ivr.cti.auth import TokenAuth, User
from ivr.cti.hub import PopHub
from ivr.queues.store import QueueStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", QueueStore)
AUTH = web.AppKey("auth", TokenAuth)
HUB = web.AppKey("hub", PopHub)

M = TypeVar("M", bound=BaseModel)


async def body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body validated by ``model``; a clear 400 ``request.invalid`` otherwise."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(msgs, code="request.invalid") from exc


async def user(request: web.Request) -> User:
    """The caller of the request (bearer token; 401 ``auth.*`` when missing or unknown)."""
    return await request.app[AUTH].authenticate(request)


LIST_MAX = 500  # items one list request returns at most


def limit_param(request: web.Request, default: int = 100, maximum: int = LIST_MAX) -> int:
    """``?limit=`` as 1..``maximum`` (ASCII digits only: ``"²".isdigit()`` is true)."""
    raw = request.query.get("limit", str(default))
    if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= maximum:
        raise BadRequest(f"limit must be 1..{maximum}", code="request.invalid")
    return int(raw)
