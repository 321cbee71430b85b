"""Agents' phones registering to the real Kamailio edge with digest auth (loopback, one edge per test).

Loopback is NOT a trusted network in these tests: the REGISTERs come from "anywhere". Phones are
:class:`tests.sip_register.Phone` (a digest REGISTER client); calls to a registered agent come from
a sipp UAC on a worker's address, the registered contacts are sipp UAS processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ivr.core.config import Settings
from ivr.core.sip_auth import sip_ha1
from ivr.edge import Edge
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.service import test_edge as edge_tests
from tests.service.test_edge import EdgeFactory, make_settings
from tests.sip_register import Phone
from tests.sipp_helpers import LOOPBACK, SippServer, run_sipp, scenario

# the fixtures of test_edge.py (real Kamailio edges and sipp UAS processes, all stopped at the end)
start_edge = edge_tests.start_edge
sipp_servers = edge_tests.sipp_servers

UNTRUSTED = ["10.0.0.0/8"]  # loopback is not trusted here
PASSWORDS = {"ada": "ada-secret-1", "ben": "ben-secret-2"}


def registrar_settings(tmp_path: Path, **registrar: Any) -> Settings:
    return make_settings(tmp_path, trusted_networks=UNTRUSTED,
                         registrar={"min_expires_s": 1, "default_expires_s": 60, **registrar})


async def start_with_agents(start: EdgeFactory, settings: Settings,
                            workers: list[tuple[str, int]] | None = None) -> Edge:
    realm = settings.edge.sip_realm
    return await start(settings, workers or [(LOOPBACK, free_udp_tcp_port())],
                       sip_credentials={a: sip_ha1(a, realm, p) for a, p in PASSWORDS.items()})


async def wait_registrations(edge: Edge, expected: dict[str, int], within_s: float = 12.0) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        regs = await edge.registrations()
        if regs == expected:
            return regs
        if loop.time() > deadline:
            raise AssertionError(f"registrations {regs}, expected {expected}")
        await asyncio.sleep(0.2)


async def test_good_register_is_saved_and_listed(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    phone = Phone(edge.address, "ada", PASSWORDS["ada"])

    reply = await phone.register(expires=60)

    assert reply.status == 200, reply.text
    assert reply.challenges == 1, "the first REGISTER is challenged (401), the answer accepted"
    assert any(f"sip:ada@{LOOPBACK}:" in c for c in reply.contacts)
    assert await edge.registrations() == {"ada": 1}


async def test_wrong_password_is_refused(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))

    reply = await Phone(edge.address, "ada", "not-the-password").register()
    unknown = await Phone(edge.address, "eve", "whatever").register()

    assert reply.status == 403, reply.text
    assert unknown.status == 403, unknown.text
    assert await edge.registrations() == {}


async def test_register_without_credentials_is_challenged(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path, realm="hotline.example"))
    phone = Phone(edge.address, "ada", PASSWORDS["ada"])

    reply = await phone.register(password="")  # answers the challenge with a wrong (empty) password
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # and once with no Authorization at all
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        await loop.sock_sendto(sock, phone._request(sock.getsockname()[1], 60, ""), edge.address)
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 3)
    challenge = data.decode()

    assert reply.status == 403
    assert challenge.startswith("SIP/2.0 401 ")
    assert 'realm="hotline.example"' in challenge, "the configured realm is the one challenged"


async def test_register_for_another_agents_aor_is_refused(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))

    # ada's own (good) credentials, ben's address of record
    reply = await Phone(edge.address, "ada", PASSWORDS["ada"], aor_user="ben").register()

    assert reply.status == 403, reply.text
    assert await edge.registrations() == {}


async def test_unregister_with_expires_zero_removes_the_binding(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    contact_port = free_udp_tcp_port()
    phone = Phone(edge.address, "ada", PASSWORDS["ada"], contact_port=contact_port)
    assert (await phone.register(expires=60)).status == 200
    assert await edge.registrations() == {"ada": 1}

    reply = await phone.register(expires=0)

    assert reply.status == 200, reply.text
    assert await edge.registrations() == {}


async def test_a_registration_expires(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    phone = Phone(edge.address, "ada", PASSWORDS["ada"])
    reply = await phone.register(expires=2)
    assert reply.status == 200
    assert "expires=2" in reply.contacts[0]
    assert await edge.registrations() == {"ada": 1}

    await wait_registrations(edge, {}, within_s=10)


async def test_expires_is_capped_at_max_expires(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path, max_expires_s=120))

    reply = await Phone(edge.address, "ada", PASSWORDS["ada"]).register(expires=86400)

    assert reply.status == 200
    assert "expires=120" in reply.contacts[0]


async def test_repeated_bad_credentials_get_the_source_dropped(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path, auth_fail_limit=3))

    codes = [(await Phone(edge.address, "ada", f"guess-{i}").register(within_s=1)).status for i in range(3)]
    after = await Phone(edge.address, "ada", PASSWORDS["ada"]).register(within_s=1)

    assert codes == [403, 403, 403]
    assert after.status is None, "after the limit even the right password gets no answer from that source"
    assert await edge.registrations() == {}


async def test_offer_rings_every_registered_contact_at_once(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    desk = await sipp_servers("edge_uas.xml", "desk-phone")       # answers
    mobile = await sipp_servers("edge_uas_busy.xml", "softphone")  # refuses (503)
    worker_port = free_udp_tcp_port()
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path), [(LOOPBACK, worker_port)])
    for device in (desk, mobile):
        assert (await Phone(edge.address, "ada", PASSWORDS["ada"], contact_port=device.port).register()).status == 200
    assert await edge.registrations() == {"ada": 2}

    # the worker's offer: INVITE sip:ada@<edge> from the worker's address
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", tag="worker",
                            port=worker_port, calls=1, extra=["-s", "ada"])
    await desk.stop()
    await mobile.stop()

    assert result.ok, result.describe()
    assert desk.received("INVITE") == 1 and mobile.received("INVITE") == 1, "both devices rang"
    assert desk.received("BYE") >= 1, "the dialog runs through the edge to the phone that answered"


async def test_offer_to_an_unregistered_agent_gets_480(tmp_path: Path, start_edge: EdgeFactory) -> None:
    worker_port = free_udp_tcp_port()
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path), [(LOOPBACK, worker_port)])

    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", tag="worker",
                            port=worker_port, calls=1, limit_s=10, extra=["-s", "ben"])

    assert not result.ok
    assert "SIP/2.0 480 " in result.messages


async def test_untrusted_phone_may_not_call_an_agent(tmp_path: Path, start_edge: EdgeFactory) -> None:
    """Registering gives a phone no right to place calls: only workers' INVITEs reach contacts."""
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    assert (await Phone(edge.address, "ada", PASSWORDS["ada"]).register()).status == 200

    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", tag="phone",
                            calls=1, limit_s=10, extra=["-s", "ada"])

    assert not result.ok
    assert "SIP/2.0 403 " in result.messages


async def test_rotated_password_locks_the_old_phone_out(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    old = Phone(edge.address, "ada", PASSWORDS["ada"])
    assert (await old.register()).status == 200
    realm = edge.settings.edge.sip_realm

    changed = await edge.set_sip_credentials({**edge.sip_credentials, "ada": sip_ha1("ada", realm, "new-one")})

    assert changed
    assert await edge.registrations() == {}, "the old binding is removed at once"
    assert (await Phone(edge.address, "ada", PASSWORDS["ada"]).register()).status == 403
    assert (await Phone(edge.address, "ada", "new-one").register()).status == 200
    assert not await edge.set_sip_credentials(dict(edge.sip_credentials)), "unchanged: nothing reloaded"


async def test_a_sipp_phone_registers_and_unregisters_with_digest(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    port = free_udp_tcp_port()

    async def register(expires: int, password: str, tag: str) -> bool:
        result = await run_sipp(scenario("phone_register.xml"), edge.address, workdir=tmp_path / "sipp", tag=tag,
                                port=port, calls=1, limit_s=10,
                                extra=["-s", "ada", "-au", "ada", "-ap", password, "-key", "expires", str(expires)])
        return result.ok

    assert not await register(60, "wrong", "bad")
    assert await register(60, PASSWORDS["ada"], "reg")
    assert await edge.registrations() == {"ada": 1}
    assert await register(0, PASSWORDS["ada"], "unreg")
    assert await edge.registrations() == {}


async def test_a_registered_phone_on_an_untrusted_network_can_hang_up(
        tmp_path: Path, start_edge: EdgeFactory) -> None:
    """Its BYE is an in-dialog request from an untrusted address: it passes because a phone
    registered from that address, and goes to the worker (the dialog's other end) only."""
    phone_sf = render_scenario("registered_phone.xml", tmp_path, keep="agent-hangs-up", drop="remote-hangs-up",
                               ring_ms=100, talk_ms=3000)
    worker_sf = render_scenario("caller.xml", tmp_path, keep="remote-hangs-up", drop="caller-hangs-up",
                                digit=2, dtmf_at_ms=100, talk_ms=10000)
    worker_port = free_udp_tcp_port()
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path), [(LOOPBACK, worker_port)])
    phone = SippServer(phone_sf, workdir=tmp_path / "sipp", tag="phone", extra=["-m", "1"])
    async with phone:
        assert (await Phone(edge.address, "ada", PASSWORDS["ada"], contact_port=phone.port).register()).status == 200
        # the worker's offer to ada; it waits for the phone's BYE
        result = await run_sipp(worker_sf, edge.address, workdir=tmp_path / "sipp", tag="worker", port=worker_port,
                                calls=1, limit_s=20, extra=["-s", "ada"])

    assert result.ok, result.describe()
    assert phone.received("INVITE") == 1
    assert "SIP/2.0 200 OK" in phone.messages().split("BYE sip:", 1)[-1], "the phone's BYE was answered 200"


async def test_a_replayed_register_is_challenged_again(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_with_agents(start_edge, registrar_settings(tmp_path))
    phone = Phone(edge.address, "ada", PASSWORDS["ada"])
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]

        async def exchange(payload: bytes) -> str:
            # as a UDP client does (RFC 3261 timer E): resend after 0.5 s, 1 s, ... The edge drops a
            # copy that arrives while another of its processes still finishes the same request
            # (t_precheck_trans): the replay right after the 200 was dropped once under load.
            for wait_s in (0.5, 1.0, 2.0, 2.0):
                await loop.sock_sendto(sock, payload, edge.address)
                with contextlib.suppress(TimeoutError):
                    data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), wait_s)
                    return data.decode()
            raise AssertionError("the edge never answered")

        challenge = await exchange(phone._request(port, 60, ""))
        signed = phone._request(port, 60, phone._authorization(challenge, PASSWORDS["ada"]))
        first = await exchange(signed)
        replay = await exchange(signed)  # the same bytes again (same nonce, same nonce count)

    assert first.startswith("SIP/2.0 200 "), first
    assert replay.startswith("SIP/2.0 401 "), replay
