"""``ivr phones``, the edge host's poller of a multi-host deployment (deploy/systemd/ivr-phones.service),
as real processes: Kamailio run from the directory `ivr deploy render` wrote (as ivr-edge.service runs
it: not a child of the poller), two pollers and a real Redis. Registrations reach routing and the
event stream (``agent.phone``, with no address in it), credentials set over the API reach the edge,
two pollers of one edge count once, an edge restart (which re-renders the HA1 table from the file
alone) gets the API's credentials back, and pollers that all stop make the phones stale."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis

from ivr.cli import main as cli_main
from ivr.core.config import Settings, load_settings
from ivr.core.process import ManagedProcess
from ivr.core.sip_auth import SipCredential
from ivr.edge import sip_options_ping
from ivr.queues.store import QueueStore, StreamEvent
from ivr.runtime.render import MultiHomedEdge
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.sip_register import Phone
from tests.sipp_helpers import LOOPBACK

PREFIX = "phrole"
STALE_S = 1.5


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer) -> Path:
    path = tmp_path / "hotline.yaml"
    path.write_text(yaml.safe_dump({
        "var_dir": str(tmp_path / "var"),
        "log_format": "json",
        "edge": {"host": LOOPBACK, "port": free_udp_tcp_port(), "trusted_networks": ["10.0.0.0/8"],
                 "registrar": {"poll_interval_s": 0.2, "stale_after_s": STALE_S}},
        "workers": {"remote": [f"{LOOPBACK}:{free_udp_tcp_port()}"]},
        "redis": {"url": redis_server.url, "prefix": PREFIX},
        "users": [{"id": "ada", "name": "Ada", "phone": "registered", "sip_password": "ada-file-secret",
                   "token": "t" * 24},
                  {"id": "ben", "name": "Ben", "phone": "registered", "token": "u" * 24}],
    }))
    return path


class EdgeHost:
    """What ivr-edge.service does: render (ExecStartPre) then run Kamailio from the render directory."""

    def __init__(self, config: Path, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.settings = load_settings(config)
        self.dir = run_dir / "kamailio"
        self.proc: ManagedProcess | None = None

    async def start(self) -> None:
        assert cli_main(["deploy", "render", "--config", str(self.config), "--out", str(self.run_dir),
                         "--only", "kamailio", "--no-check"]) == 0
        argv = MultiHomedEdge(self.settings, directory=self.dir).argv()
        self.proc = ManagedProcess("edge", argv, guard=True)
        await self.proc.start()
        for _ in range(100):
            if await sip_options_ping(LOOPBACK, self.settings.edge.port, within_s=0.3):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the edge did not answer OPTIONS")

    async def stop(self) -> None:
        if self.proc is not None:
            await self.proc.stop()


@pytest.fixture
async def edge(config: Path, tmp_path: Path) -> AsyncIterator[EdgeHost]:
    host = EdgeHost(config, tmp_path / "run")
    await host.start()
    yield host
    await host.stop()


Poller = Callable[[str], Awaitable[ManagedProcess]]


@pytest.fixture
async def poller(config: Path, edge: EdgeHost) -> AsyncIterator[Poller]:
    """Start `ivr phones --name NAME` processes (what ivr-phones.service runs); all stopped at the end."""
    procs: list[ManagedProcess] = []

    async def _start(name: str) -> ManagedProcess:
        proc = ManagedProcess(f"phones-{name}", [sys.executable, "-m", "ivr.cli", "phones", "--config", str(config),
                                                 "--edge-dir", str(edge.dir), "--name", name],
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        await proc.start()
        return proc

    yield _start
    for proc in procs:
        await proc.stop()


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    store = QueueStore(redis, prefix=PREFIX)
    for aid in ("ada", "ben"):
        await store.register_agent(aid, name=aid, skills={"billing": 1}, sip_uri=f"sip:{aid}@{LOOPBACK}",
                                   languages=["en"], phone="registered")
    return store


async def phone_of(store: QueueStore, aid: str) -> dict[str, Any]:
    agent = await store.get_agent(aid)
    assert agent is not None
    return dict(agent["phone"])


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 8.0) -> None:
    for _ in range(int(within_s / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within_s}s: {what}")


async def phone_events(store: QueueStore, after: str = "0-0") -> list[StreamEvent]:
    return [e for e in await store.events_after(after) if e.type == "agent.phone"]


async def register_until_accepted(phone: Phone, what: str) -> None:
    """REGISTER until the edge accepts it (its HA1 table is pushed by the poller within a poll)."""
    async def accepted() -> bool:
        return (await phone.register()).status == 200
    await until(accepted, what)


async def test_the_phones_role_feeds_routing_and_the_desktops(edge: EdgeHost, poller: Poller,
                                                              store: QueueStore) -> None:
    settings: Settings = edge.settings
    address = (LOOPBACK, settings.edge.port)
    await poller("edge-a")

    # the file's password is in the rendered edge; the poller reports the registration
    ada = Phone(address, "ada", "ada-file-secret")
    assert (await ada.register()).status == 200

    async def ada_registered() -> bool:
        return (await phone_of(store, "ada"))["registered"] is True
    await until(ada_registered, "ada's phone registered in Redis")
    assert await phone_of(store, "ada") == {"mode": "registered", "registered": True, "contacts": 1}
    [ev] = await phone_events(store)
    assert ev.data["agent_id"] == "ada" and ev.data["registered"] is True and ev.data["contacts"] == 1
    assert ev.data["reason"] == "registered"
    assert set(ev.data) == {"agent_id", "registered", "contacts", "reason", "ts", "v"}  # no contact, no address
    assert LOOPBACK not in str(ev.data)

    # an admin sets ben's password over the API (Redis): the poller gives the edge its HA1
    ben = Phone(address, "ben", "ben-api-secret", contact_port=free_udp_tcp_port())  # one binding, to remove later
    await store.set_sip_credential(SipCredential.from_password("ben", settings.edge.sip_realm, "ben-api-secret"))
    await register_until_accepted(ben, "ben's API-set password accepted by the edge")

    async def ben_registered() -> bool:
        return (await phone_of(store, "ben"))["registered"] is True
    await until(ben_registered, "ben's phone registered in Redis")

    # a second poller of the same edge (an operator ran two): the same picture, counted once
    mark = await store.last_event_id()
    await poller("edge-b")
    sources = store.keys.phones_sources

    async def two_sources() -> bool:
        return int(await store.redis.zcard(sources)) == 2
    await until(two_sources, "both pollers wrote their picture")
    await asyncio.sleep(0.5)  # a few polls of each
    assert await phone_of(store, "ada") == {"mode": "registered", "registered": True, "contacts": 1}
    assert await phone_events(store, mark) == []

    # ben unregisters: the desktops and the floor learn it
    assert (await ben.register(expires=0)).status == 200

    async def ben_unregistered() -> bool:
        return [e.data["reason"] for e in await phone_events(store, mark)] == ["unregistered"]
    await until(ben_unregistered, "agent.phone unregistered for ben")
    assert (await phone_of(store, "ben"))["registered"] is False

    # the edge restarts (systemd): its registrations are gone and its render wrote the HA1 table from
    # the file alone; the pollers notice, and give it ben's API-set password back
    await edge.stop()
    mark = await store.last_event_id()
    await edge.start()

    async def ada_gone() -> bool:
        return [(e.data["agent_id"], e.data["reason"]) for e in await phone_events(store, mark)] == [
            ("ada", "unregistered")]
    await until(ada_gone, "agent.phone unregistered for ada after the edge restart")
    await register_until_accepted(ben, "ben's API-set password back in the restarted edge")
    await until(ben_registered, "ben registered again")

    # every poller stops: the last picture goes stale, housekeeping tells the desktops
    await edge.stop()
    mark = await store.last_event_id()
    await asyncio.sleep(STALE_S + 0.2)
    assert (await phone_of(store, "ben"))["registered"] is False  # routing already skips it
    assert await store.housekeeping("test", lease_ms=1000, wrapup_s=1, ttl_s=60) is not None
    stale = [e.data for e in await phone_events(store, mark)]
    assert stale == [{"agent_id": "ben", "registered": False, "contacts": 0, "reason": "stale",
                      "ts": stale[0]["ts"], "v": stale[0]["v"]}]
