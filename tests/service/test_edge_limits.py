"""What the edge refuses, with real Kamailio and sipp: flood limits per source, no open relay,
unknown numbers, draining, and 503 + Retry-After (never 500) for what it cannot route.

Several sources on one machine: sipp binds other loopback addresses (127.0.0.2, 127.0.0.3, ...), so
the edge sees distinct source IPs just as it would for different trunks or attackers.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ivr.core.errors import ConfigError
from ivr.edge import Edge
from tests.ports import free_udp_tcp_port
from tests.service import test_edge as edge_tests
from tests.service.test_edge import EdgeFactory, dead_address, invite_bytes, make_settings
from tests.sipp_helpers import LOOPBACK, SippResult, SippServer, run_sipp, scenario

# the fixtures of test_edge.py (real Kamailio edges and sipp workers, all stopped at the end)
start_edge = edge_tests.start_edge
sipp_servers = edge_tests.sipp_servers

CALLER_IP = "127.0.0.2"
FLOODER_IP = "127.0.0.3"
OTHER_IP = "127.0.0.4"


async def sipp_from(ip: str, scenario_name: str, edge: Edge, workdir: Path, tag: str, *,
                    calls: int = 1, extra: list[str] | None = None, limit_s: float = 30.0) -> SippResult:
    """A sipp client bound to another loopback address (the later ``-i`` wins over the helper's)."""
    return await run_sipp(scenario(scenario_name), edge.address, workdir=workdir, tag=tag, calls=calls,
                          port=free_udp_tcp_port(ip), limit_s=limit_s, extra=["-i", ip, *(extra or [])])


async def wait_for(what: str, check: Callable[[], bool], within_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def sip_exchange(target: tuple[str, int], payload: bytes, *, source: str = LOOPBACK,
                       within_s: float = 5.0) -> list[str]:
    """Send one request over UDP from ``source``; every reply until a final one (or the timeout)."""
    loop = asyncio.get_running_loop()
    replies: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_sendto(sock, payload, target)
        deadline = loop.time() + within_s
        while (left := deadline - loop.time()) > 0:
            try:
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
            except TimeoutError:
                break
            text = data.decode("utf-8", "replace")
            replies.append(text)
            if re.match(r"SIP/2\.0 [2-6]\d\d ", text):
                break
    return replies


def status_of(replies: list[str]) -> int | None:
    finals = [int(r.split()[1]) for r in replies if re.match(r"SIP/2\.0 [2-6]\d\d ", r)]
    return finals[-1] if finals else None


def sip_request(method: str, ruri: str, *, local_port: int = 5999, to: str | None = None,
            source: str = LOOPBACK) -> bytes:
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@{source}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <{to or ruri}>\r\n"
        f"Call-ID: {secrets.token_hex(8)}@test\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:caller@{source}:{local_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


# ----- flood limits ---------------------------------------------------------------------------------


async def test_invite_flood_is_cut_off_without_hurting_an_established_call(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker = await sipp_servers("edge_uas_flood.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path, flood={"sampling_s": 2, "max_requests": 20, "block_s": 30}),
                            [worker.address])
    sipp_dir = tmp_path / "sipp"

    # an established call from CALLER_IP, held for 6 s before its BYE
    call = asyncio.create_task(sipp_from(CALLER_IP, "edge_uac_hold.xml", edge, sipp_dir, "caller",
                                         extra=["-d", "6000"]))
    await wait_for("the call to be answered", lambda: worker.received("ACK") >= 1)

    # 600 INVITEs at 600/s from FLOODER_IP, no retransmissions
    sent = 600
    flood = await sipp_from(FLOODER_IP, "edge_flood_uac.xml", edge, sipp_dir, "flood", calls=sent,
                            extra=["-r", str(sent), "-nr", "-nd", "-l", str(sent)])
    assert len(re.findall(r"^INVITE sip:flood@", flood.messages, re.M)) == sent, flood.describe()

    # a third source is not blocked by the flood: its call goes through at once
    other = await sipp_from(OTHER_IP, "edge_uac.xml", edge, sipp_dir, "other")
    assert other.ok, other.describe()

    # the established call's BYE went through the edge and was answered
    held = await call
    assert held.ok, held.describe()
    assert worker.received("BYE") >= 2

    reached = len(re.findall(r"^INVITE sip:flood@", worker.messages(), re.M))
    assert 1 <= reached <= sent // 10, f"{reached} of {sent} flood INVITEs reached the worker"
    # the flooding source stays blocked: even its keepalive OPTIONS is dropped without a reply
    assert await sip_exchange(edge.address, sip_request("OPTIONS", f"sip:{edge.address[0]}:{edge.address[1]}",
                                                    source=FLOODER_IP), source=FLOODER_IP, within_s=1) == []
    assert await edge.ping()


def test_flood_settings_are_validated(tmp_path: Path) -> None:
    for flood, match in (({"sampling_s": 0}, "sampling_s"), ({"max_requests": 70000}, "max_requests"),
                         ({"block_s": -1}, "block_s"), ({"exempt_networks": ["nope"]}, "not a network")):
        with pytest.raises(ConfigError, match=match):
            Edge(make_settings(tmp_path, flood=flood), [dead_address()]).render()
    text = Edge(make_settings(tmp_path, flood={"enabled": False}), [dead_address()]).render_config()
    assert "#!define WITH_FLOOD" not in text


# ----- no open relay, unknown numbers ------------------------------------------------------------


async def test_foreign_domains_get_403_and_unknown_numbers_404(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker = await sipp_servers("edge_uas.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path, domains=["Hotline.Example"]), [worker.address],
                            numbers=["1000", "+4930123"])
    host, port = edge.address

    # a Request-URI for someone else's domain: 403, never forwarded anywhere
    for ruri in (f"sip:1000@other.example:{port}", "sip:1000@192.0.2.10", f"sip:1000@127.0.0.9:{port}"):
        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri))
        assert status_of(replies) == 403, (ruri, replies)
    assert status_of(await sip_exchange(edge.address, sip_request("OPTIONS", "sip:someone@other.example"))) == 403

    # our domain, but a number no dial plan serves: 404
    for ruri in (f"sip:9999@{host}:{port}", f"sip:{host}:{port}"):
        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri))
        assert status_of(replies) == 404, (ruri, replies)
    assert worker.received("INVITE") == 0

    # served numbers reach the worker: for the edge's address (any port: edge.host is a domain) and
    # for a configured domain (case-insensitive)
    for n, ruri in enumerate((f"sip:1000@{host}:{port}", f"sip:1000@{host}", "sip:+4930123@hotline.example")):
        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri))
        assert status_of(replies) == 200, (ruri, [r.splitlines()[0] for r in replies])
        assert worker.received("INVITE") == n + 1


async def test_numbers_can_change_at_run_time(tmp_path: Path, start_edge: EdgeFactory,
                                              sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker = await sipp_servers("edge_uas.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path), [worker.address], numbers=["1000"])
    sipp_dir = tmp_path / "sipp"
    assert status_of(await sip_exchange(edge.address, invite_bytes(edge.address).replace(
        b"sip:1000@", b"sip:2000@"))) == 404

    await edge.set_numbers(["1000", "2000"])
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=sipp_dir, tag="n2000",
                            extra=["-s", "2000"])
    assert result.ok, result.describe()

    await edge.set_numbers(["*"])  # any number
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=sipp_dir, tag="n7777",
                            extra=["-s", "7777"])
    assert result.ok, result.describe()

    await edge.set_numbers([])  # nothing is served
    assert status_of(await sip_exchange(edge.address, invite_bytes(edge.address))) == 404
    assert worker.received("INVITE") == 2


async def test_worker_to_agent_relay_ignores_domains_and_numbers(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    agent = await sipp_servers("edge_uas.xml", "agent1")
    worker_port = free_udp_tcp_port()
    edge = await start_edge(make_settings(tmp_path, domains=["hotline.example"]), [(LOOPBACK, worker_port)],
                            numbers=["1000"])
    # the worker calls sip:agent1@<agent address>: not our domain, not a served number: relayed anyway
    result = await run_sipp(
        scenario("edge_uac.xml"), agent.address, workdir=tmp_path / "sipp", tag="worker-uac",
        port=worker_port, calls=1, extra=["-s", "agent1", "-rsa", f"{edge.address[0]}:{edge.address[1]}"],
    )
    await agent.stop()
    assert result.ok, result.describe()
    assert agent.received("INVITE") == 1 and agent.received("BYE") >= 1


def test_bad_numbers_and_domains_are_config_errors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    for numbers in (["10 00"], ["1000:1"], [""], "1000"):
        with pytest.raises(ConfigError, match="numbers"):
            Edge(settings, [dead_address()], numbers=numbers)
    with pytest.raises(ConfigError, match=r"edge\.domains"):
        Edge(make_settings(tmp_path, domains=["bad domain!"]), [dead_address()]).render()


# ----- draining ---------------------------------------------------------------------------------------


async def test_draining_refuses_new_calls_but_calls_in_progress_finish(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker = await sipp_servers("edge_uas.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path), [worker.address])
    sipp_dir = tmp_path / "sipp"

    call = asyncio.create_task(sipp_from(CALLER_IP, "edge_uac_hold.xml", edge, sipp_dir, "held",
                                         extra=["-d", "3000"]))
    await wait_for("the call to be answered", lambda: worker.received("ACK") >= 1)

    await edge.set_draining(True)
    assert edge.draining
    assert "value: 1" in await edge.rpc("pv.shvGet", "draining")
    # a new call: 503 with Retry-After: 5 (edge_uac_503.xml checks both), no worker is asked
    refused = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=sipp_dir, tag="refused")
    assert refused.ok, refused.describe()
    assert worker.received("INVITE") == 1
    # keepalives are still answered (the edge itself is fine)
    assert await edge.ping()

    # the call in progress ends normally: its BYE passes the draining edge
    held = await call
    assert held.ok, held.describe()
    assert worker.received("BYE") >= 1

    await edge.set_draining(False)
    again = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=sipp_dir, tag="again")
    assert again.ok, again.describe()
    assert worker.received("INVITE") == 2


async def test_draining_is_kept_across_a_restart(tmp_path: Path, start_edge: EdgeFactory) -> None:
    settings = make_settings(tmp_path)
    edge = Edge(settings, [dead_address()])
    await edge.set_draining(True)  # not running yet: applied when it starts
    edge = await start_edge(settings, [dead_address()])
    assert not edge.draining  # a new Edge object starts undrained...
    await edge.set_draining(True)
    await edge.stop()
    await edge.process.start()  # ...but the supervisor restarts the same process: still draining
    await edge.wait_ready()
    replies = await sip_exchange(edge.address, invite_bytes(edge.address))
    assert status_of(replies) == 503, replies
    assert any(re.search(r"^Retry-After: 5\s*$", r, re.M) for r in replies), replies


# ----- 503 + Retry-After, never 500 ------------------------------------------------------------------


async def test_what_cannot_be_routed_gets_503_with_retry_after(tmp_path: Path, start_edge: EdgeFactory) -> None:
    worker_port = free_udp_tcp_port()
    edge = await start_edge(make_settings(tmp_path, retry_after_s=7), [(LOOPBACK, worker_port)])
    # a worker's request over a transport the edge has no socket for: t_relay fails at once (tm's
    # own reply would be a 5xx without Retry-After)
    for transport in ("sctp", "tls"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, worker_port))
            sock.settimeout(5)
            sock.sendto(sip_request("INVITE", f"sip:agent1@{LOOPBACK}:5999;transport={transport}",
                                    local_port=worker_port), edge.address)
            replies: list[str] = []
            while status_of(replies) is None:
                replies.append(sock.recv(65535).decode())
        assert status_of(replies) == 503, replies
        assert re.search(r"^Retry-After: 7\s*$", replies[-1], re.M), replies[-1]
