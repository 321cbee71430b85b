"""Trunk registration from the edge (Kamailio uac module, digest auth) against a sipp registrar.

tests/sipp/edge_registrar.xml answers every registration's first REGISTER with 401 +
WWW-Authenticate, verifies the digest of the second one with sipp's ``verifyauth`` (the user and
password given with ``-key``) and answers 200 with a short ``Expires`` (403 if the digest is wrong).
"""

from __future__ import annotations

import asyncio
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.core.errors import ConfigError
from ivr.edge import Edge
from tests.ports import free_udp_tcp_port
from tests.service import test_edge as edge_tests
from tests.service.test_edge import EdgeFactory, dead_address, make_settings
from tests.service.test_edge_limits import sip_exchange, sip_request, sipp_from, status_of
from tests.sipp_helpers import LOOPBACK, SippServer, run_sipp, scenario

# the fixtures of test_edge.py (real Kamailio edges and sipp workers, all stopped at the end)
start_edge = edge_tests.start_edge
sipp_servers = edge_tests.sipp_servers

USER = "hotline"
PASSWORD = "s3cr:et\\pa$$"  # db_text separators and escapes in it, on purpose
REALM = "hotline-trunk"     # what edge_registrar.xml challenges with
EXPIRES = 10


def registrar(workdir: Path, port: int, tag: str, *, password: str = PASSWORD) -> SippServer:
    return SippServer(scenario("edge_registrar.xml"), workdir=workdir, tag=tag, port=port, extra=[
        "-key", "user", USER, "-key", "pass", password, "-key", "expires", str(EXPIRES)])


def trunk_settings(tmp_path: Path, port: int, **trunk: Any) -> dict[str, Any]:
    return {"trunks": [{"name": "carrier", "host": LOOPBACK, "port": port, "username": USER,
                        "password": PASSWORD, **trunk}],
            "trunk_refresh_s": 2, "trunk_retry_s": 3}


def authorized_registers(server: SippServer) -> list[str]:
    """The REGISTERs with credentials that reached the registrar (its message log, in order)."""
    return [m for m in re.split(r"\n-{20,}.*\n", server.messages())
            if re.search(r"^REGISTER sip:", m, re.M) and re.search(r"^Authorization:", m, re.M)]


def sent_200(server: SippServer) -> int:
    return len(re.findall(r"^SIP/2\.0 200 OK", server.messages(), re.M))


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], within_s: float) -> float:
    """Poll ``check`` every 0.1 s; the loop time it first held (AssertionError after ``within_s``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.1)
    return loop.time()


async def test_edge_registers_refreshes_and_recovers_after_registrar_restart(
        tmp_path: Path, start_edge: EdgeFactory, capfd: pytest.CaptureFixture[str]) -> None:
    port = free_udp_tcp_port()
    sipp_dir = tmp_path / "sipp"
    first = await registrar(sipp_dir, port, "registrar1").start()
    try:
        edge = await start_edge(make_settings(tmp_path, **trunk_settings(tmp_path, port)), [dead_address()])

        async def registered() -> bool:
            return bool((await edge.trunk_status())["carrier"]["registered"])

        t_registered = await wait_until("the first registration", registered, 10)
        regs = authorized_registers(first)
        assert regs and sent_200(first) >= 1
        auth = re.search(r"^Authorization:\s*(.*)$", regs[0], re.M)
        assert auth is not None
        assert f'username="{USER}"' in auth.group(1) and f'realm="{REALM}"' in auth.group(1)
        assert f'uri="sip:{LOOPBACK}:{port}"' in auth.group(1)
        assert re.search(rf"^Contact: <sip:carrier@127\.0\.0\.1:{edge.address[1]}>", regs[0], re.M), regs[0]
        status = (await edge.trunk_status())["carrier"]
        assert 0 < int(status["expires_in"]) <= EXPIRES  # the registrar's short Expires was taken

        # the edge refreshes BEFORE the registration expires: a second authenticated REGISTER
        async def refreshed() -> bool:
            return len(authorized_registers(first)) >= 2 and sent_200(first) >= 2

        t_refreshed = await wait_until("the refresh", refreshed, EXPIRES + 2)
        assert t_refreshed - t_registered < EXPIRES, "the refresh came after the registration expired"
        assert not re.search(r"^SIP/2\.0 403", first.messages(), re.M), "sipp rejected a digest"
    finally:
        await first.stop()

    # the registrar is gone: the next refresh times out (408) and the registration is lost
    async def lost() -> bool:
        s = (await edge.trunk_status())["carrier"]
        return not s["registered"] and not s["registering"]

    await wait_until("the refresh to fail", lost, EXPIRES + 10)

    # it comes back on the same address: the edge's retries register again, bounded in time
    second = await registrar(sipp_dir, port, "registrar2").start()
    try:
        await wait_until("registration after the registrar restarted", registered, 15)
        assert sent_200(second) >= 1 and authorized_registers(second)
    finally:
        await second.stop()

    # the password never appears in anything the edge or Kamailio logged
    out, err = capfd.readouterr()
    assert PASSWORD not in out and PASSWORD not in err
    # ...nor in any rendered file but the uacreg table, which only its owner can read
    uacreg = edge.db_dir / "uacreg"
    for path in edge.dir.rglob("*"):
        if path.is_file() and path != uacreg:
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert stat.S_IMODE(uacreg.stat().st_mode) == 0o600
    assert stat.S_IMODE(edge.db_dir.stat().st_mode) == 0o700


async def test_with_a_realm_only_the_digest_hash_is_stored_and_registration_works(
        tmp_path: Path, start_edge: EdgeFactory) -> None:
    port = free_udp_tcp_port()
    async with registrar(tmp_path / "sipp", port, "registrar") as server:
        edge = await start_edge(make_settings(tmp_path, **trunk_settings(tmp_path, port, realm=REALM)),
                                [dead_address()])
        table = (edge.db_dir / "uacreg").read_text()
        assert PASSWORD not in table and PASSWORD.replace(":", "\\:") not in table
        assert re.search(r":[0-9a-f]{32}:", table), "the HA1 hash must be in the table"

        async def registered() -> bool:
            return bool((await edge.trunk_status())["carrier"]["registered"])

        await wait_until("registration with the HA1 hash", registered, 10)
        assert sent_200(server) >= 1


async def test_wrong_credentials_are_not_registered_and_are_retried(
        tmp_path: Path, start_edge: EdgeFactory) -> None:
    port = free_udp_tcp_port()
    async with registrar(tmp_path / "sipp", port, "registrar", password="something else") as server:
        edge = await start_edge(make_settings(tmp_path, **trunk_settings(tmp_path, port)), [dead_address()])

        async def retried() -> bool:
            return len(re.findall(r"^SIP/2\.0 403", server.messages(), re.M)) >= 2

        await wait_until("a retry after the registrar refused the digest", retried, 15)
        assert not (await edge.trunk_status())["carrier"]["registered"]
        assert sent_200(server) == 0


async def test_calls_from_a_trunk_are_trusted_and_routed_by_the_dialed_number(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    trunk_ip, stranger_ip = "127.0.0.5", "127.0.0.6"
    worker = await sipp_servers("edge_uas.xml", "worker0")
    # loopback is NOT trusted here: only the trunk's address (its registrar host) may call in
    settings = make_settings(tmp_path, trusted_networks=["10.0.0.0/8"],
                             trunks=[{"name": "carrier", "host": trunk_ip, "port": 5060, "username": USER,
                                      "password": PASSWORD}], trunk_refresh_s=60, trunk_retry_s=60)
    edge = await start_edge(settings, [worker.address], numbers=["1000"])
    sipp_dir = tmp_path / "sipp"

    # the trunk calls the Contact the edge registered, sip:carrier@<edge>, for the number 1000
    result = await sipp_from(trunk_ip, "edge_uac_trunk.xml", edge, sipp_dir, "trunk",
                             extra=["-s", "carrier", "-key", "number", "1000"])
    assert result.ok, result.describe()
    assert re.search(r"^INVITE sip:1000@", worker.messages(), re.M), "the worker must see the dialed number"
    assert worker.received("BYE") >= 1

    # a number no dial plan serves: 404, also from the trunk
    host, port = edge.address
    replies = await sip_exchange(edge.address, sip_request("INVITE", f"sip:carrier@{host}:{port}",
                                                       to=f"sip:2000@{host}", source=trunk_ip), source=trunk_ip)
    assert status_of(replies) == 404, replies
    # any other source is still untrusted
    replies = await sip_exchange(edge.address, sip_request("INVITE", f"sip:1000@{host}:{port}", source=stranger_ip),
                                 source=stranger_ip)
    assert status_of(replies) == 403, replies
    assert worker.received("INVITE") == 1


@pytest.mark.parametrize(("trunk", "match"), [
    ({"name": "bad name"}, "name"),
    ({"username": "a b"}, "SIP user"),
    ({"password": ""}, "password is empty"),
    ({"password": "x\ny"}, "control characters"),
    ({"host": "999.1.1.1"}, "neither an IP"),
    ({"port": 0}, "port 0"),
    ({"transport": "tls"}, "tls_port"),
    ({"expires": 0}, "expires"),
    ({"contact": "edge.example:99999"}, "port 99999"),
    ({"realm": 'a"b'}, "quotes"),
])
def test_bad_trunks_are_config_errors(tmp_path: Path, trunk: dict[str, Any], match: str) -> None:
    base = {"name": "carrier", "host": LOOPBACK, "port": 5060, "username": USER, "password": PASSWORD}
    settings = make_settings(tmp_path, trunks=[{**base, **trunk}])
    with pytest.raises(ConfigError, match=match):
        Edge(settings, [dead_address()]).render()


def test_two_trunks_with_one_name_are_rejected_and_retry_must_be_positive(tmp_path: Path) -> None:
    base = {"name": "carrier", "host": LOOPBACK, "port": 5060, "username": USER, "password": PASSWORD}
    with pytest.raises(ConfigError, match="two trunks"):
        Edge(make_settings(tmp_path, trunks=[base, base]), [dead_address()]).render()
    with pytest.raises(ConfigError, match="trunk_retry_s"):
        Edge(make_settings(tmp_path, trunks=[base], trunk_retry_s=0), [dead_address()]).render()


async def test_unknown_trunk_user_is_not_rewritten(tmp_path: Path, start_edge: EdgeFactory,
                                                    sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """Only the registered Contact user is replaced by the To number; other calls keep their R-URI."""
    worker = await sipp_servers("edge_uas.xml", "worker0")
    port = free_udp_tcp_port()
    edge = await start_edge(make_settings(tmp_path, **trunk_settings(tmp_path, port)), [worker.address])
    result = await run_sipp(scenario("edge_uac_trunk.xml"), edge.address, workdir=tmp_path / "sipp",
                            extra=["-s", "1000", "-key", "number", "2000"])
    assert result.ok, result.describe()
    assert re.search(r"^INVITE sip:1000@", worker.messages(), re.M)
