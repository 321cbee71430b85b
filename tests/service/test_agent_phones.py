"""Agents whose phones register at the edge, against a real Redis: routing offers them calls only
while a recent poll of the edge found their phone registered; static SIP URIs are unaffected."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from ivr.core.events import AgentState
from ivr.core.sip_auth import SipCredential
from ivr.queues.store import QueueStore
from tests.service.test_queue_routing import call, holder, need

AOR = "sip:{}@127.0.0.1:5060"


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix="t")


async def phone_agent(store: QueueStore, aid: str, *, available: bool = True) -> None:
    await store.register_agent(aid, name=aid, skills={"billing": 3}, sip_uri=AOR.format(aid), languages=["en"],
                               phone="registered")
    if available:
        await store.set_agent_state(aid, AgentState.AVAILABLE)
    await asyncio.sleep(0.003)


async def static_agent(store: QueueStore, aid: str) -> None:
    await store.register_agent(aid, name=aid, skills={"billing": 3}, sip_uri=f"sip:{aid}@10.1.1.1",
                               languages=["en"])
    await store.set_agent_state(aid, AgentState.AVAILABLE)
    await asyncio.sleep(0.003)


async def test_an_unregistered_phone_is_passed_over_for_a_static_one(store: QueueStore) -> None:
    await phone_agent(store, "ada")     # longest idle, but her phone is not registered
    await static_agent(store, "ben")

    offer = await call(store, "c1", need("billing"))

    assert offer is not None and offer.agent_id == "ben"
    assert await holder(store, "ada") is None


async def test_the_caller_waits_and_is_offered_when_the_phone_registers(store: QueueStore) -> None:
    await phone_agent(store, "ada")
    assert await call(store, "c1", need("billing")) is None
    assert (await store.get_call("c1") or {})["state"] == "queued"

    offers = await store.record_phones({"ada": 2}, stale_after_s=5)

    assert offers == 1
    assert await holder(store, "ada") == "c1"
    agent = await store.get_agent("ada")
    assert agent is not None
    assert agent["phone"] == {"mode": "registered", "registered": True, "contacts": 2}
    assert agent["sip_uri"] == AOR.format("ada"), "the offer goes to the agent's AOR at the edge"


async def test_an_agent_becoming_available_with_a_registered_phone_is_offered(store: QueueStore) -> None:
    await phone_agent(store, "ada", available=False)
    await store.record_phones({"ada": 1}, stale_after_s=5)
    assert await call(store, "c1", need("billing")) is None

    await store.set_agent_state("ada", AgentState.AVAILABLE)

    assert await holder(store, "ada") == "c1"


async def test_an_unregistered_phone_gets_no_new_offers(store: QueueStore) -> None:
    await phone_agent(store, "ada")
    await store.record_phones({"ada": 1}, stale_after_s=5)

    await store.record_phones({}, stale_after_s=5)  # the phone unregistered (or the edge restarted)
    offer = await call(store, "c1", need("billing"))

    assert offer is None
    agent = await store.get_agent("ada")
    assert agent is not None
    assert agent["state"] == "available", "still logged in: only not offered"
    assert agent["phone"] == {"mode": "registered", "registered": False, "contacts": 0}


async def test_a_registration_nobody_confirms_goes_stale(store: QueueStore) -> None:
    """The supervisor (or the edge) stopped answering: the last picture expires."""
    await phone_agent(store, "ada")
    await store.record_phones({"ada": 1}, stale_after_s=0.05)
    await asyncio.sleep(0.1)

    offer = await call(store, "c1", need("billing"))

    assert offer is None
    agent = await store.get_agent("ada")
    assert agent is not None and agent["phone"]["registered"] is False


async def test_registrations_of_unknown_agents_are_ignored(store: QueueStore) -> None:
    await store.record_phones({"ghost": 1}, stale_after_s=5)

    assert await store.get_agent("ghost") is None


async def test_static_and_phoneless_agents_show_their_phone_mode(store: QueueStore) -> None:
    await static_agent(store, "ben")
    await store.register_agent("sam", name="sam", skills={}, sip_uri=None, languages=["en"])

    ben, sam = await store.get_agent("ben"), await store.get_agent("sam")

    assert ben is not None and ben["phone"] == {"mode": "static", "registered": False, "contacts": 0}
    assert sam is not None and sam["phone"]["mode"] == "none"


async def test_sip_credentials_are_stored_as_ha1_and_leave_with_the_agent(store: QueueStore, redis: Redis) -> None:
    await phone_agent(store, "ada", available=False)
    cred = SipCredential.from_password("ada", "hotline.example", "s3cret-pass")

    await store.set_sip_credential(cred)
    stored = await store.sip_credentials()
    raw = await redis.hgetall("t:sip:credentials")

    assert stored == {"ada": cred}
    values = b"".join(v if isinstance(v, bytes) else v.encode() for v in raw.values())
    assert b"s3cret-pass" not in values, "never the password"
    await store.remove_agent("ada")
    assert await store.sip_credentials() == {}
