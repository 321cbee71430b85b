"""The supervisor's phone registry with a fake edge and store (one module; the real thing is in
tests/service/test_phone_registry.py and tests/e2e/test_registered_phone.py)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from ivr.core.config import Settings
from ivr.core.errors import Unavailable
from ivr.core.sip_auth import SipCredential, sip_ha1
from ivr.runtime.phones import PhoneRegistry


class FakeEdge:
    def __init__(self) -> None:
        self.credentials: dict[str, str] = {}
        self.dumps = 0
        self.registered: dict[str, int] | Exception = {}

    async def set_sip_credentials(self, credentials: dict[str, str]) -> bool:
        changed = credentials != self.credentials
        self.credentials = dict(credentials)
        return changed

    async def registrations(self) -> dict[str, int]:
        self.dumps += 1
        if isinstance(self.registered, Exception):
            raise self.registered
        return self.registered


class FakeStore:
    def __init__(self) -> None:
        self.stored: dict[str, SipCredential] = {}
        self.recorded: list[dict[str, int]] = []
        self.sources: set[str] = set()
        self.fail: Exception | None = None

    async def sip_credentials(self) -> dict[str, SipCredential]:
        return dict(self.stored)

    async def record_phones(self, registered: dict[str, int], stale_after_s: float, source: str = "edge") -> int:
        if self.fail is not None:
            raise self.fail
        self.recorded.append(dict(registered))
        self.sources.add(source)
        return 0


def registry(users: list[dict[str, Any]] | None = None) -> tuple[PhoneRegistry, FakeEdge, FakeStore]:
    settings = Settings(users=users or [], edge={"host": "127.0.0.1", "registrar": {"realm": "r"}})
    edge, store = FakeEdge(), FakeStore()
    return PhoneRegistry(settings, edge, store, source="edge-a"), edge, store  # type: ignore[arg-type]


async def test_a_hotline_without_registering_phones_is_not_polled_every_second() -> None:
    reg, edge, store = registry()
    for _ in range(5):
        await reg.poll_once()
    assert edge.dumps == 1 and store.recorded == [{}], "one full poll (clears any old picture), then none"
    assert store.sources == {"edge-a"}, "each poller writes its own picture"


async def test_file_and_api_credentials_reach_the_edge_and_registrations_reach_redis() -> None:
    reg, edge, store = registry([{"id": "ada", "name": "A", "phone": "registered", "sip_password": "pw",
                                  "token": "t"}])
    assert reg.initial_credentials() == {"ada": sip_ha1("ada", "r", "pw")}
    store.stored["ben"] = SipCredential.from_password("ben", "r", "pw2")
    store.stored["ada"] = SipCredential.from_password("ada", "r", "api-loses")
    edge.registered = {"ada": 2}

    await reg.poll_once()

    assert edge.credentials == {"ada": sip_ha1("ada", "r", "pw"), "ben": sip_ha1("ben", "r", "pw2")}
    assert store.recorded == [{"ada": 2}]


async def test_failures_are_remembered_per_step_and_recover() -> None:
    reg, edge, store = registry([{"id": "ada", "name": "A", "phone": "registered", "sip_password": "pw",
                                  "token": "t"}])
    edge.registered = Unavailable("kamcmd failed", code="edge.rpc")
    await reg.poll_once()
    await reg.poll_once()
    assert reg._failing == "edge" and store.recorded == [], "nothing written from a failed read"

    edge.registered = {"ada": 1}
    store.fail = RedisConnectionError("down")
    await reg.poll_once()
    assert reg._failing == "redis"

    store.fail = None
    await reg.poll_once()
    assert reg._failing is None and store.recorded == [{"ada": 1}]
