"""Workers' calls to outside numbers go out through the edge's trunk (real Kamailio, real sipp).

A worker dials ``sip:<number>@<edge>`` (``callbacks.dial_uri``'s default). The "carrier"
(tests/sipp/edge_carrier.xml) is the trunk's registrar and outbound proxy on one address: it answers
the edge's REGISTER, challenges every INVITE with 401, verifies the digest of the second INVITE with
sipp's ``verifyauth`` (the trunk's user and password given with ``-key``) and answers 200, or
challenges again when the digest is wrong. The "worker" is a sipp UAC (or a socket) on an address in
the edge's dispatcher list, which is what makes it a worker for the edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.core.errors import ConfigError
from ivr.edge import Edge
from tests.ports import free_udp_tcp_port
from tests.service import test_edge as edge_tests
from tests.service.test_edge import EdgeFactory, dead_address, make_settings, wait_inactive
from tests.service.test_edge_limits import sip_exchange, sip_request, status_of, wait_for
from tests.sipp_helpers import LOOPBACK, SippResult, SippServer, run_sipp, scenario

# the fixtures of test_edge.py (real Kamailio edges and sipp workers, all stopped at the end)
start_edge = edge_tests.start_edge
sipp_servers = edge_tests.sipp_servers

USER = "hotline"
PASSWORD = "s3cr:et\\pa$$"   # db_text separators and escapes in it, on purpose
CARRIER_REALM = "carrier"    # what edge_carrier.xml challenges with
NUMBER = "+15551234567"
DIGITS = NUMBER.lstrip("+")
CALLER_ID = "+4930123456"
HOTLINE = "1000"


def carrier(workdir: Path, *, password: str = PASSWORD) -> SippServer:
    return SippServer(scenario("edge_carrier.xml"), workdir=workdir, tag="carrier",
                      extra=["-key", "user", USER, "-key", "pass", password])


def trunk(port: int, **more: Any) -> dict[str, Any]:
    return {"name": "carrier", "host": LOOPBACK, "port": port, "username": USER, "password": PASSWORD, **more}


def messages(server: SippServer) -> list[str]:
    """The messages in a sipp message log, in order."""
    return re.split(r"\n-{20,}.*\n", server.messages())


def invites(server: SippServer) -> list[str]:
    return [m for m in messages(server) if re.search(r"^INVITE sip:", m, re.M)]


async def worker_dials(edge: Edge, worker_port: int, number: str, workdir: Path, tag: str) -> SippResult:
    """A sipp UAC on the worker's address dials sip:<number>@<edge> (ACK and BYE through the edge)."""
    return await run_sipp(scenario("edge_uac_outbound.xml"), edge.address, workdir=workdir, tag=tag,
                          port=worker_port, extra=["-s", number, "-key", "caller_id", CALLER_ID])


async def invite_from_worker(edge: Edge, worker_port: int, number: str, within_s: float = 8.0) -> list[str]:
    """Send one INVITE for sip:<number>@<edge> from the worker's own address; the responses until a
    final one (requests to the worker, e.g. the edge's OPTIONS probes, are ignored)."""
    host, port = edge.address
    payload = sip_request("INVITE", f"sip:{number}@{host}:{port}", local_port=worker_port)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((LOOPBACK, worker_port))
        await loop.sock_sendto(sock, payload, edge.address)
        replies = await responses(sock, until=r"SIP/2\.0 [2-6]\d\d ", within_s=within_s)
    return replies


@pytest.mark.parametrize("realm", [None, CARRIER_REALM], ids=["password", "ha1"])
async def test_a_worker_calls_an_outside_number_through_the_trunk_with_digest_auth(
        tmp_path: Path, start_edge: EdgeFactory, capfd: pytest.CaptureFixture[str], realm: str | None) -> None:
    worker_port = free_udp_tcp_port()
    async with carrier(tmp_path / "sipp") as server:
        settings = make_settings(tmp_path, trunks=[trunk(server.port, realm=realm)],
                                 trunk_refresh_s=60, trunk_retry_s=60)
        edge = await start_edge(settings, [(LOOPBACK, worker_port)], numbers=[HOTLINE])

        result = await worker_dials(edge, worker_port, NUMBER, tmp_path / "sipp", "worker")
        assert result.ok, result.describe()
        # the BYE reached the carrier and was answered (the worker's scenario waits for the 200)
        assert server.received("BYE") >= 1

    sent = invites(server)
    assert len(sent) == 2, "one INVITE challenged with 401, one with credentials"
    first, second = sent
    # the dialled number is the Request-URI user, at the trunk's domain
    for invite in sent:
        assert re.search(rf"^INVITE sip:\+{DIGITS}@127\.0\.0\.1:{server.port} SIP/2\.0", invite, re.M), invite
        # the caller ID the worker set is kept, and the edge stays on the path of ACK and BYE
        assert re.search(rf"^From: Hotline <sip:\+{CALLER_ID[1:]}@", invite, re.M), invite
        assert re.search(rf"^P-Asserted-Identity: <sip:\+{CALLER_ID[1:]}@", invite, re.M), invite
        assert re.search(rf"^Record-Route: <sip:127\.0\.0\.1:{edge.address[1]};lr;out=trunk>", invite, re.M), invite
    assert not re.search(r"^(Proxy-)?Authorization:", first, re.M)
    auth = re.search(r"^Authorization:\s*Digest (.*)$", second, re.M)
    assert auth is not None, second
    assert f'username="{USER}"' in auth.group(1) and f'realm="{CARRIER_REALM}"' in auth.group(1)
    assert f'uri="sip:+{DIGITS}@127.0.0.1:{server.port}"' in auth.group(1)
    # the carrier verified the digest (a wrong one is challenged again)
    assert len(re.findall(r"^SIP/2\.0 401", server.messages(), re.M)) == 1
    assert re.search(r"^SIP/2\.0 200 OK", server.messages(), re.M)

    # neither the number nor the trunk's password is in the edge's log
    out, err = capfd.readouterr()
    assert "outbound call" in err and "via trunk carrier" in err
    assert "ERROR" not in err, "a call that was never a worker's load must not be unloaded at its BYE"
    for secret in (DIGITS, PASSWORD):
        assert secret not in out and secret not in err


def digest_param(header: str, name: str) -> str:
    m = re.search(rf'\b{name}="?([^",]*)"?', header)
    assert m is not None, f"no {name} in {header}"
    return m.group(1)


async def test_a_proxy_challenge_407_is_answered_with_a_valid_digest(tmp_path: Path, start_edge: EdgeFactory) -> None:
    """The carrier challenges as a proxy (407 + Proxy-Authenticate); sipp cannot verify
    Proxy-Authorization, so the digest is recomputed here (RFC 2617 without qop)."""
    worker_port = free_udp_tcp_port()
    server = SippServer(scenario("edge_carrier_407.xml"), workdir=tmp_path / "sipp", tag="carrier")
    async with server:
        settings = make_settings(tmp_path, trunks=[trunk(server.port)], trunk_refresh_s=60, trunk_retry_s=60)
        edge = await start_edge(settings, [(LOOPBACK, worker_port)], numbers=[HOTLINE])
        result = await worker_dials(edge, worker_port, NUMBER, tmp_path / "sipp", "worker")
        assert result.ok, result.describe()
        assert server.received("BYE") >= 1
    first, second = invites(server)
    assert not re.search(r"^(Proxy-)?Authorization:", first, re.M)
    auth = re.search(r"^Proxy-Authorization:\s*Digest (.*)$", second, re.M)
    assert auth is not None, second
    header = auth.group(1)
    uri = f"sip:+{DIGITS}@127.0.0.1:{server.port}"
    assert (digest_param(header, "username"), digest_param(header, "realm"), digest_param(header, "uri")) == (
        USER, CARRIER_REALM, uri)
    challenge = re.search(r'^Proxy-Authenticate: Digest .*nonce="([^"]+)"', server.messages(), re.M)
    assert challenge is not None and digest_param(header, "nonce") == challenge.group(1)
    ha1 = hashlib.md5(f"{USER}:{CARRIER_REALM}:{PASSWORD}".encode()).hexdigest()
    ha2 = hashlib.md5(f"INVITE:{uri}".encode()).hexdigest()
    expected = hashlib.md5(f"{ha1}:{challenge.group(1)}:{ha2}".encode()).hexdigest()
    assert digest_param(header, "response") == expected

async def test_wrong_trunk_credentials_end_the_call_with_403_and_are_not_retried(
        tmp_path: Path, start_edge: EdgeFactory) -> None:
    worker_port = free_udp_tcp_port()
    async with carrier(tmp_path / "sipp", password="something else") as server:
        settings = make_settings(tmp_path, trunks=[trunk(server.port)], trunk_refresh_s=60, trunk_retry_s=60)
        edge = await start_edge(settings, [(LOOPBACK, worker_port)], numbers=[HOTLINE])
        replies = await invite_from_worker(edge, worker_port, NUMBER)
    assert status_of(replies) == 403, replies
    assert "Trunk Refused Credentials" in replies[-1]
    assert not re.search(r"^(Proxy|WWW)-Authenticate:", replies[-1], re.M), "the trunk's challenge stays at the edge"
    assert len(invites(server)) == 2


async def test_a_worker_cancels_a_ringing_outbound_call(tmp_path: Path, start_edge: EdgeFactory,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    """A callback or consult that rings too long: the worker's CANCEL reaches the carrier (487), and
    the edge does not take it for a dispatched call (no worker load to drop: no error logged)."""
    worker_port = free_udp_tcp_port()
    server = SippServer(scenario("edge_carrier_ringing.xml"), workdir=tmp_path / "sipp", tag="carrier",
                        extra=["-key", "user", USER, "-key", "pass", PASSWORD])
    async with server:
        settings = make_settings(tmp_path, trunks=[trunk(server.port)], trunk_refresh_s=60, trunk_retry_s=60)
        edge = await start_edge(settings, [(LOOPBACK, worker_port)], numbers=[HOTLINE])
        host, port = edge.address
        invite = sip_request("INVITE", f"sip:{NUMBER}@{host}:{port}", local_port=worker_port).decode()
        cancel = re.sub(r"^INVITE ", "CANCEL ", invite).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.bind((LOOPBACK, worker_port))
            await loop.sock_sendto(sock, invite.encode(), edge.address)
            replies = await responses(sock, until=r"SIP/2\.0 180 ")
            assert replies and replies[-1].startswith("SIP/2.0 180 "), replies
            await loop.sock_sendto(sock, cancel.encode(), edge.address)
            replies = await responses(sock, until=r"SIP/2\.0 487 ")
            # the CANCEL's 200 (the edge's own) and the INVITE's 487 (the carrier's, relayed) come from
            # different Kamailio processes: either may arrive first (make test saw the 487 first)
            if not any(r.startswith("SIP/2.0 200 ") and "CANCEL" in r for r in replies):
                replies += await responses(sock, until=r"SIP/2\.0 200 ")
        assert any(r.startswith("SIP/2.0 200 ") and re.search(r"^CSeq: 1 CANCEL", r, re.M) for r in replies), replies
        assert any(r.startswith("SIP/2.0 487 ") and re.search(r"^CSeq: 1 INVITE", r, re.M) for r in replies), replies
        await wait_for("the carrier to see the CANCEL", lambda: server.received("CANCEL") >= 1)
    _, err = capfd.readouterr()
    assert "ERROR" not in err, err[-2000:]


async def responses(sock: socket.socket, *, until: str, within_s: float = 8.0) -> list[str]:
    """SIP responses on ``sock`` up to the first matching ``until`` (requests, e.g. probes, ignored)."""
    loop = asyncio.get_running_loop()
    out: list[str] = []
    deadline = loop.time() + within_s
    while (left := deadline - loop.time()) > 0:
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
        except TimeoutError:
            break
        text = data.decode("utf-8", "replace")
        if text.startswith("SIP/2.0 "):
            out.append(text)
            if re.match(until, text):
                break
    return out

async def test_only_workers_may_make_the_edge_dial_out(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """Toll fraud: callers, trusted PBXs and the trunk itself asking for sip:<outside number>@<edge>
    make an inbound call (403 untrusted, 404 unknown number, or a worker), never one to the trunk."""
    pbx_ip, stranger_ip = "127.0.0.2", "127.0.0.3"
    worker = await sipp_servers("edge_uas.xml", "worker0")
    async with carrier(tmp_path / "sipp") as server:
        # loopback is trusted only for the PBX's address (and the carrier's, a trunk's registrar host)
        settings = make_settings(tmp_path, trusted_networks=[f"{pbx_ip}/32"], trunks=[trunk(server.port)],
                                 trunk_refresh_s=60, trunk_retry_s=60)
        edge = await start_edge(settings, [worker.address], numbers=[HOTLINE])
        host, port = edge.address
        ruri = f"sip:{NUMBER}@{host}:{port}"

        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri, source=stranger_ip),
                                     source=stranger_ip)
        assert status_of(replies) == 403, replies
        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri, source=pbx_ip), source=pbx_ip)
        assert status_of(replies) == 404, replies
        # from the trunk's own address (not a worker's: another port) it is an inbound call too
        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri))
        assert status_of(replies) == 404, replies

        # when every number is served, the PBX's call goes to a worker, still not to the trunk
        await edge.set_numbers(None)
        replies = await sip_exchange(edge.address, sip_request("INVITE", ruri, source=pbx_ip), source=pbx_ip)
        assert status_of(replies) == 200, replies
        assert re.search(rf"^INVITE sip:\+{DIGITS}@", worker.messages(), re.M)

        assert invites(server) == [], "nothing but a worker may reach the carrier"


async def test_a_hotline_number_dialled_by_a_worker_stays_inside(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """A transfer to another of the hotline's numbers is dispatched to a worker, never sent to the trunk."""
    worker_port = free_udp_tcp_port()
    other = await sipp_servers("edge_uas.xml", "worker1")
    async with carrier(tmp_path / "sipp") as server:
        settings = make_settings(tmp_path, trunks=[trunk(server.port)], trunk_refresh_s=60, trunk_retry_s=60)
        edge = await start_edge(settings, [(LOOPBACK, worker_port), other.address], numbers=[HOTLINE, NUMBER])
        # the dialling worker (a sipp UAC) does not answer probes: wait until the edge stops picking it
        await wait_inactive(edge, [f"sip:{LOOPBACK}:{worker_port}"])
        for number in (HOTLINE, NUMBER):  # "+1555..." is a hotline number here
            result = await worker_dials(edge, worker_port, number, tmp_path / "sipp", f"worker-{number}")
            assert result.ok, result.describe()
        assert invites(server) == []
    assert re.search(rf"^INVITE sip:{HOTLINE}@", other.messages(), re.M)
    assert re.search(rf"^INVITE sip:\+{DIGITS}@", other.messages(), re.M)
    assert other.received("BYE") >= 2


async def test_without_a_trunk_an_outside_number_is_refused_and_never_dispatched(
        tmp_path: Path, start_edge: EdgeFactory, capfd: pytest.CaptureFixture[str],
        sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker_port = free_udp_tcp_port()
    other = await sipp_servers("edge_uas.xml", "worker1")
    # every number served (no 404 from NUMBERS): before outbound routing this went back to a worker
    edge = await start_edge(make_settings(tmp_path), [(LOOPBACK, worker_port), other.address])
    await wait_inactive(edge, [f"sip:{LOOPBACK}:{worker_port}"])
    replies = await invite_from_worker(edge, worker_port, NUMBER)
    assert status_of(replies) == 503, replies
    assert "No Outbound Trunk" in replies[-1] and re.search(r"^Retry-After: \d+", replies[-1], re.M)
    assert other.received("INVITE") == 0
    _, err = capfd.readouterr()
    assert "refused: no trunk configured (edge.trunks)" in err


def test_the_outbound_trunk_is_chosen_by_name_and_must_exist(tmp_path: Path) -> None:
    first, second = trunk(5060, name="first"), trunk(5062, name="second", realm="r")

    def defines(**edge: Any) -> dict[str, str]:
        return Edge(make_settings(tmp_path, **edge), [dead_address()]).defines()

    assert defines(trunks=[first, second])["OUTBOUND_TRUNK"] == '"first"'
    chosen = defines(trunks=[first, second], outbound_trunk="second")
    assert (chosen["OUTBOUND_TRUNK"], chosen["OUTBOUND_REG_MODE"], chosen["OUTBOUND_AUTH_MODE"]) == (
        '"second"', "2", "1")  # with a realm only the HA1 is stored
    assert "OUTBOUND_TRUNK" not in defines()
    with pytest.raises(ConfigError, match=r"outbound_trunk 'third' is not one of edge\.trunks"):
        Edge(make_settings(tmp_path, trunks=[first, second], outbound_trunk="third"), [dead_address()]).render()
    hostile = f'x" {secrets.token_hex(4)}'  # never reaches the config text
    with pytest.raises(ConfigError, match=r"is not one of edge\.trunks"):
        Edge(make_settings(tmp_path, trunks=[first], outbound_trunk=hostile), [dead_address()]).render()
    with pytest.raises(ConfigError, match="none configured"):
        Edge(make_settings(tmp_path, outbound_trunk="first"), [dead_address()]).render()

