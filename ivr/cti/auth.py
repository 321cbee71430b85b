"""Bearer-token authentication. Tokens are kept only as SHA-256 hashes.

Two sources: the users of the configuration (``users:``; their hashes are held in memory) and the
agents an admin created over the API (``Keys.tokens``: sha256 -> {id, role}, shared by every API
instance). A token is compared by its hash only; the clear token is shown once, when it is made.

Unknown tokens are counted per client address (:mod:`ivr.cti.auth_limit`): too many and the address
gets 429 with Retry-After for a while.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from ivr.core.config import Role, Settings, hash_token
from ivr.core.errors import Forbidden, TooManyRequests, Unauthorized
from ivr.cti.auth_limit import FailedAuthLimiter, client_key
from ivr.cti.client_address import client_of
from ivr.queues.store import QueueStore


@dataclass(frozen=True)
class User:
    id: str
    role: Role


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


class TokenAuth:
    def __init__(self, settings: Settings, store: QueueStore | None = None) -> None:
        self._by_hash = {u.token_hash: User(u.id, u.role) for u in settings.users}
        self.configured = {u.id for u in settings.users}
        self.store = store
        lim = settings.api.auth_limit
        self.limiter = FailedAuthLimiter(lim.max_failures, lim.window_s, lim.block_s, lim.max_clients,
                                         block_max_s=lim.block_max_s)

    async def user_for(self, token: str | None) -> User:
        if not token:
            raise Unauthorized("missing bearer token", code="auth.missing_token")
        digest = hash_token(token)
        for known, user in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return user
        if self.store is not None:  # a Redis hash lookup by the digest: no timing signal on the token
            found = await self.store.token_owner(digest)
            if found is not None:
                return User(found[0], found[1])
        raise Unauthorized("invalid token", code="auth.invalid_token")

    async def authenticate(self, request: web.Request) -> User:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        # Browsers cannot set headers on WebSockets: the token may come as a sub-protocol "bearer.<token>".
        if token is None:
            for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
                proto = proto.strip()
                if proto.startswith("bearer."):
                    token = proto[7:]
        client = client_key(client_of(request))
        digest = hash_token(token) if token else ""
        wait = self.limiter.retry_after(client)
        if wait is not None and not (digest and self.limiter.proven(client, digest)):
            raise TooManyRequests(f"too many failed authentications from this address: retry in {wait} s",
                                  code="auth.rate_limited", retry_after_s=wait)
        try:
            user = await self.user_for(token)
        except Unauthorized as exc:
            if exc.code == "auth.invalid_token":  # a guess; a missing token guesses nothing
                self.limiter.failed(client)
            raise
        self.limiter.succeeded(client, digest)
        return user


def require_self_or(user: User, agent_id: str, *roles: Role) -> None:
    """Agents act on themselves; the listed roles may act on anyone."""
    if user.id == agent_id or user.role in roles:
        return
    raise Forbidden(f"{user.role} {user.id} may not act for agent {agent_id}", code="auth.forbidden")


def require_role(user: User, *roles: Role) -> None:
    if user.role not in roles:
        raise Forbidden(f"role {user.role} may not do this", code="auth.forbidden")
