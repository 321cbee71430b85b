"""Agents' SIP credentials: digest HA1 hashes, never passwords, reach Redis and the edge.

An agent whose phone registers (``phone: registered``) authenticates its REGISTER with HTTP digest
(RFC 2617 / 3261) against ``HA1 = md5(user:realm:password)``. Only the HA1 is kept: in Redis for
passwords an admin set over the API, in the edge's 0600 ``sipauth`` table for Kamailio. Like an API
token's SHA-256 it proves nothing without the password; unlike it, it IS the secret the digest is
computed from (whoever holds an HA1 can register as that agent in that realm), so it is treated as
a secret too: never logged, never returned by the API. The realm is part of the hash: changing
``edge.registrar.realm`` invalidates every stored HA1 (each agent needs a new password).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass

from ivr.core.config import AgentSeed, EdgeSettings

#: 20 characters of 57 letters and digits (no 0/O/1/l/I look-alikes): ~116 bits, typable on a desk phone
PASSWORD_CHARS = 20
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
_HA1 = re.compile(r"^[0-9a-f]{32}$")


def sip_ha1(user: str, realm: str, password: str) -> str:
    """Digest HA1 (algorithm MD5): the only form a SIP password is stored in."""
    return hashlib.md5(f"{user}:{realm}:{password}".encode("utf-8", "surrogateescape"),
                       usedforsecurity=False).hexdigest()


def new_sip_password() -> str:
    """A random password for a phone: letters and digits only (no look-alikes), PASSWORD_CHARS long."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_CHARS))


@dataclass(frozen=True)
class SipCredential:
    """One agent's HA1 and the realm it was computed in. ``repr`` hides the hash."""

    agent_id: str
    realm: str
    ha1: str

    def __post_init__(self) -> None:
        if not _HA1.match(self.ha1):
            raise ValueError("an HA1 is 32 lowercase hex digits")

    def __repr__(self) -> str:
        return f"SipCredential(agent_id={self.agent_id!r}, realm={self.realm!r}, ha1=<hidden>)"

    def to_json(self) -> str:
        return json.dumps({"realm": self.realm, "ha1": self.ha1})

    @classmethod
    def from_json(cls, agent_id: str, text: str) -> SipCredential | None:
        """The stored form; None for anything that is not one (a broken entry never breaks the rest)."""
        try:
            d = json.loads(text)
            return cls(agent_id, str(d["realm"]), str(d["ha1"]))
        except (ValueError, TypeError, KeyError):
            return None

    @classmethod
    def from_password(cls, agent_id: str, realm: str, password: str) -> SipCredential:
        return cls(agent_id, realm, sip_ha1(agent_id, realm, password))


def phone_aor(agent_id: str, edge: EdgeSettings) -> str:
    """The address of record of a registered phone: where the worker sends the agent's offer (the
    edge, which forks it to the registered contacts)."""
    host = f"[{edge.host.strip('[]')}]" if ":" in edge.host else edge.host
    return f"sip:{agent_id}@{host}:{edge.port}"


def offer_uri(seed: AgentSeed, edge: EdgeSettings) -> str | None:
    """Where offers to this configured agent go: its AOR at the edge, its static URI, or nowhere."""
    return phone_aor(seed.id, edge) if seed.phone == "registered" else seed.sip_uri


def seed_credentials(users: list[AgentSeed], realm: str) -> dict[str, SipCredential]:
    """HA1s of the passwords fixed in the configuration file (``users[].sip_password``)."""
    return {u.id: SipCredential.from_password(u.id, realm, u.sip_password.get_secret_value())
            for u in users if u.phone == "registered" and u.sip_password is not None}


def effective_credentials(seeded: dict[str, SipCredential], stored: dict[str, SipCredential],
                          realm: str) -> dict[str, str]:
    """``{agent id: HA1}`` the edge accepts: the configuration's passwords win over ones set over the
    API; an HA1 of another realm (the realm changed since) is left out."""
    merged = {**stored, **seeded}
    return {a: c.ha1 for a, c in sorted(merged.items()) if c.realm == realm}
