"""The supervisor's phone registry against a real Kamailio edge and a real Redis: credentials of the
file and of the API reach the edge, registrations reach routing, and an edge that stops answering
makes its phones unroutable once the last picture is stale."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.sip_auth import SipCredential, effective_credentials, seed_credentials, sip_ha1
from ivr.queues.store import QueueStore
from ivr.runtime.phones import PhoneRegistry
from tests.ports import free_udp_tcp_port
from tests.service import test_edge as edge_tests
from tests.service.test_edge import EdgeFactory
from tests.sip_register import Phone
from tests.sipp_helpers import LOOPBACK

start_edge = edge_tests.start_edge


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        edge={"host": LOOPBACK, "port": free_udp_tcp_port(), "trusted_networks": ["10.0.0.0/8"],
              "registrar": {"min_expires_s": 1, "stale_after_s": 0.3}},
        users=[{"id": "ada", "name": "Ada", "phone": "registered", "sip_password": "ada-from-file", "token": "t1"},
               {"id": "ben", "name": "Ben", "phone": "registered", "token": "t2"}])


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix="ph")


async def test_registry_feeds_the_edge_and_routing(tmp_path: Path, start_edge: EdgeFactory,
                                                   store: QueueStore) -> None:
    settings = settings_for(tmp_path)
    for aid in ("ada", "ben"):
        await store.register_agent(aid, name=aid, skills={"billing": 1}, sip_uri=f"sip:{aid}@x", languages=["en"],
                                   phone="registered")
    realm = settings.edge.sip_realm
    edge = await start_edge(settings, [(LOOPBACK, free_udp_tcp_port())],
                            sip_credentials=effective_credentials(seed_credentials(settings.users, realm), {}, realm))
    registry = PhoneRegistry(settings, edge, store)
    assert registry.initial_credentials() == edge.sip_credentials == {"ada": sip_ha1("ada", realm, "ada-from-file")}

    # the file's password works from the start; ben has none until an admin sets one
    assert (await Phone(edge.address, "ada", "ada-from-file").register()).status == 200
    assert (await Phone(edge.address, "ben", "ben-from-api").register()).status == 403
    await store.set_sip_credential(SipCredential.from_password("ben", realm, "ben-from-api"))
    await registry.poll_once()
    assert (await Phone(edge.address, "ben", "ben-from-api").register()).status == 200
    await registry.poll_once()

    ada, ben = await store.get_agent("ada"), await store.get_agent("ben")
    assert ada is not None and ada["phone"] == {"mode": "registered", "registered": True, "contacts": 1}
    assert ben is not None and ben["phone"]["registered"] is True

    # the edge goes away: polls fail (logged once), and the last picture goes stale
    await edge.stop()
    await registry.poll_once()
    await registry.poll_once()
    assert registry._failing == "edge"
    await asyncio.sleep(0.4)
    ada = await store.get_agent("ada")
    assert ada is not None and ada["phone"]["registered"] is False
