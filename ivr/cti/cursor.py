"""Opaque list cursors, shared by the paginated lists (calls, cases).

A cursor is the position ``(ms, id)`` of the last item of a page, bound to the list's filters by a
digest (base64url JSON without padding): given back with other filters, forged, or cut, it is a 400
``request.invalid``, never a 500 and never a page of another query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence

from ivr.core.errors import BadRequest

CURSOR_MAX = 400  # characters
CURSOR_PATTERN = "^[A-Za-z0-9_-]{1,400}$"
MAX_MS = 253402300799000  # 9999-12-31T23:59:59Z


def filters_digest(filters: Sequence[object]) -> str:
    """What a cursor is bound to: the list's filters (JSON-able values, the forced ones too)."""
    return hashlib.sha256(json.dumps(list(filters)).encode()).hexdigest()[:16]


def encode_cursor(filters: Sequence[object], pos: tuple[int, str]) -> str:
    payload = json.dumps({"s": pos[0], "c": pos[1], "q": filters_digest(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(filters: Sequence[object], cursor: str, item_id: re.Pattern[str]) -> tuple[int, str]:
    """The position of a cursor made for ``filters`` whose id matches ``item_id``; 400 ``request.invalid``
    for anything else."""
    bad = BadRequest("cursor is not one this list gave for these filters (start again without it)",
                     code="request.invalid")
    if len(cursor) > CURSOR_MAX or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(data, dict) or set(data) != {"s", "c", "q"}:
        raise bad
    s, c, q = data["s"], data["c"], data["q"]
    if (not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= MAX_MS or not isinstance(c, str)
            or not item_id.fullmatch(c) or q != filters_digest(filters)):
        raise bad
    return s, c
