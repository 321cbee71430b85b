"""The Kamailio edge with real Kamailio and real sipp (loopback, free ports, one edge per test).

Workers are sipp UAS processes (tests/sipp/edge_uas*.xml) that also answer the dispatcher's
OPTIONS probes; callers are sipp UAC processes (tests/sipp/edge_uac*.xml) whose ACK and BYE follow
the Record-Route set, so in-dialog routing through the edge is exercised too.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ivr.core.config import CALLS_PER_S_PER_CORE, Settings
from ivr.core.errors import ConfigError, Unavailable
from ivr.edge import Edge
from tests.ports import free_udp_tcp_port
from tests.sipp_helpers import LOOPBACK, SippServer, run_sipp, scenario

PROBE_S = 1


def make_settings(tmp_path: Path, *, workers: dict[str, Any] | None = None, **edge: Any) -> Settings:
    """Settings for one test: its own var dir, a free edge port, probes every PROBE_S seconds."""
    nested: dict[str, Any] = {
        "edge": {"host": LOOPBACK, "port": free_udp_tcp_port(), "trusted_networks": ["127.0.0.0/8"],
                 "probe_interval_s": PROBE_S, **edge},
        "workers": workers or {"count": 1, "host": LOOPBACK, "sip_port_base": free_udp_tcp_port()},
    }
    return Settings(var_dir=tmp_path / "var", **nested)


EdgeFactory = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def start_edge() -> AsyncIterator[EdgeFactory]:
    """Start edges for a test; every one is stopped at the end, whatever happened."""
    edges: list[Edge] = []

    async def _start(settings: Settings, workers: list[tuple[str, int]] | None = None, **kwargs: Any) -> Edge:
        edge = Edge(settings, workers, **kwargs)
        edges.append(edge)
        await edge.start()
        return edge

    yield _start
    for edge in edges:
        await edge.stop()
        assert not edge.process.running


@pytest.fixture
async def sipp_servers(tmp_path: Path) -> AsyncIterator[Callable[[str, str], Awaitable[SippServer]]]:
    """Start sipp UAS "workers"/"agents"; all are stopped at the end."""
    servers: list[SippServer] = []

    async def _start(scenario_name: str, tag: str) -> SippServer:
        server = SippServer(scenario(scenario_name), workdir=tmp_path / "sipp", tag=tag)
        servers.append(server)
        return await server.start()

    yield _start
    for server in servers:
        await server.stop()


def dead_address() -> tuple[str, int]:
    """A loopback port nobody listens on (a worker that is not running)."""
    return LOOPBACK, free_udp_tcp_port()


async def dispatcher_flags(edge: Edge) -> dict[str, str]:
    """``{uri: flags}`` from ``kamcmd dispatcher.list`` over the edge's control socket."""
    proc = await asyncio.create_subprocess_exec(
        "kamcmd", "-s", "unix:kamailio_ctl", "dispatcher.list", cwd=str(edge.dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 5)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode()
    return dict(re.findall(r"URI: (\S+)\s+FLAGS: (\S+)", text))


async def wait_inactive(edge: Edge, uris: list[str], within_s: float = 15.0) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        flags = await dispatcher_flags(edge)
        if all(flags.get(u, "").startswith("I") for u in uris):
            return flags
        if loop.time() > deadline:
            raise AssertionError(f"workers {uris} not marked inactive: {flags}")
        await asyncio.sleep(0.2)


async def udp_exchange(target: tuple[str, int], payload: bytes, within_s: float = 2.0) -> str | None:
    """Send one datagram from a fresh loopback socket; the first reply (or None after ``within_s``)."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        await loop.sock_sendto(sock, payload, target)
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), within_s)
        except TimeoutError:
            return None
        return data.decode("utf-8", "replace")


def invite_bytes(target: tuple[str, int], local_port: int = 5999) -> bytes:
    host, port = target
    return (
        f"INVITE sip:1000@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:1000@{host}:{port}>\r\n"
        f"Call-ID: {secrets.token_hex(8)}@test\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@{LOOPBACK}:{local_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


# ----- calls through the edge ---------------------------------------------------------------------


async def test_call_through_edge_reaches_worker(tmp_path: Path, start_edge: EdgeFactory,
                                                sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker = await sipp_servers("edge_uas.xml", "worker0")
    # workers from settings: count=1 at sip_port_base (the sipp UAS)
    settings = make_settings(tmp_path, workers={"count": 1, "host": LOOPBACK, "sip_port_base": worker.port})
    edge = await start_edge(settings)
    assert edge.workers == [(LOOPBACK, worker.port)]

    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    await worker.stop()

    assert result.ok, result.describe()
    assert worker.received("INVITE") == 1
    assert worker.received("ACK") >= 1, "the ACK must be routed through the edge by loose_route"
    assert worker.received("BYE") >= 1, "the BYE must be routed through the edge by loose_route"
    # the edge record-routed the dialog: the worker saw the edge's Record-Route on the INVITE
    port = edge.settings.edge.port
    assert re.search(rf"^Record-Route: <sip:127\.0\.0\.1:{port};lr>", worker.messages(), re.M)


async def test_busy_worker_fails_over_to_the_next(tmp_path: Path, start_edge: EdgeFactory,
                                                 sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    busy = await sipp_servers("edge_uas_busy.xml", "busy")
    good = await sipp_servers("edge_uas.xml", "good")
    edge = await start_edge(make_settings(tmp_path), [busy.address, good.address])

    # two calls: round-robin starts one of them at the busy worker, which answers 503
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=2)
    await busy.stop()
    await good.stop()

    assert result.ok, result.describe()
    assert busy.received("INVITE") >= 1, "round-robin never tried the busy worker"
    assert good.received("INVITE") == 2
    assert good.received("BYE") >= 2


async def test_dead_worker_fails_over_and_is_marked_inactive(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    good = await sipp_servers("edge_uas.xml", "good")
    dead = dead_address()
    edge = await start_edge(make_settings(tmp_path), [dead, good.address])

    # the first calls may be sent to the dead worker before a probe noticed: 408/timeout -> next one
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=2)
    assert result.ok, result.describe()
    assert good.received("INVITE") == 2

    # the OPTIONS probes take the dead worker out and keep the live one in
    dead_uri = f"sip:{dead[0]}:{dead[1]}"
    flags = await wait_inactive(edge, [dead_uri])
    assert flags[f"sip:{LOOPBACK}:{good.port}"].startswith("A"), flags
    assert good.received("OPTIONS") >= 1, "the live worker was never probed"


async def test_worker_that_comes_back_is_used_again(tmp_path: Path, start_edge: EdgeFactory) -> None:
    host, port = dead_address()
    edge = await start_edge(make_settings(tmp_path), [(host, port)])
    uri = f"sip:{host}:{port}"
    await wait_inactive(edge, [uri])

    # the worker (re)starts on its port: the next successful probe makes it active again
    worker = SippServer(scenario("edge_uas.xml"), workdir=tmp_path / "sipp", tag="worker0", port=port)
    async with worker:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not (await dispatcher_flags(edge)).get(uri, "").startswith("A"):
            assert loop.time() < deadline, await dispatcher_flags(edge)
            await asyncio.sleep(0.2)
        result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    assert result.ok, result.describe()
    assert worker.received("INVITE") == 1


async def test_all_workers_busy_caller_gets_503_with_retry_after(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    busy1 = await sipp_servers("edge_uas_busy.xml", "busy1")
    busy2 = await sipp_servers("edge_uas_busy.xml", "busy2")
    edge = await start_edge(make_settings(tmp_path), [busy1.address, busy2.address])

    # edge_uac_503.xml fails the call unless the reply is 503 with "Retry-After: 5"
    result = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    await busy1.stop()
    await busy2.stop()

    assert result.ok, result.describe()
    assert busy1.received("INVITE") == 1 and busy2.received("INVITE") == 1, "both workers must be tried"
    assert re.search(r"^SIP/2.0 503 Service Unavailable", result.messages, re.M)
    assert re.search(r"^Retry-After: 5\s*$", result.messages, re.M)


async def test_calls_over_the_admission_rate_get_503_at_once_and_never_reach_a_worker(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """``edge.max_calls_per_s``: a burst of new calls beyond it is refused by the edge itself (503 +
    Retry-After) while the calls within it reach the worker; the next second admits again."""
    worker = await sipp_servers("edge_uas_busy.xml", "worker0")  # answers every INVITE 486 at once
    edge = await start_edge(make_settings(tmp_path, max_calls_per_s=4,
                                          workers={"count": 1, "host": LOOPBACK, "sip_port_base": worker.port}))
    assert "#!define MAX_CPS 4" in edge.render_config()
    burst = await asyncio.gather(*(udp_exchange(edge.address, invite_bytes(edge.address), 3.0) for _ in range(12)))
    await asyncio.sleep(0.3)
    admitted = worker.received("INVITE")
    refused = [r for r in burst if r and r.startswith("SIP/2.0 503")]
    assert 1 <= admitted <= 8, burst  # at most a second's worth (two, if the burst spans a tick)
    assert len(refused) >= 12 - admitted  # the others: 503 at once, never reaching the worker
    assert all(re.search(r"^Retry-After: 5\r?$", r, re.M) for r in refused), refused
    await asyncio.sleep(1.2)
    later = await udp_exchange(edge.address, invite_bytes(edge.address), 3.0)
    assert later is not None and not later.startswith("SIP/2.0 503"), later
    await worker.stop()


def test_the_admission_rate_defaults_to_the_hosts_cores(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.edge.admission_rate == CALLS_PER_S_PER_CORE * (os.cpu_count() or 1)
    assert make_settings(tmp_path, max_calls_per_s=7).edge.admission_rate == 7
    with pytest.raises(ValidationError):
        make_settings(tmp_path, max_calls_per_s=0)


async def test_a_full_worker_gets_no_new_call_until_its_next_probe(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """Flood protection: each INVITE a worker refuses costs it sockets pjsip frees only 500 ms later
    (a flood aborted workers). A worker that answered 503 is rested until its next probe, so further
    callers are refused by the edge itself; no probe falls inside this test (interval 30 s)."""
    busy = [await sipp_servers("edge_uas_busy.xml", f"busy{i}") for i in range(2)]
    edge = await start_edge(make_settings(tmp_path, probe_interval_s=30), [b.address for b in busy])

    first = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=tmp_path / "sipp", tag="first")
    flood = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=tmp_path / "sipp", tag="flood",
                           calls=6)
    flags = await dispatcher_flags(edge)
    for b in busy:
        await b.stop()

    assert first.ok, first.describe()
    assert flood.ok, flood.describe()  # refused with 503 + Retry-After by the edge
    assert [b.received("INVITE") for b in busy] == [1, 1], "a rested worker was sent an INVITE"
    assert all(flags[f"sip:{LOOPBACK}:{b.port}"].startswith("I") for b in busy), flags


async def test_a_call_tries_at_most_failover_limit_workers(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """Each worker tried is a branch in Kamailio's shared memory: a call stops after
    edge.failover_limit workers (503 + Retry-After) instead of walking the whole pool."""
    busy = [await sipp_servers("edge_uas_busy.xml", f"busy{i}") for i in range(3)]
    edge = await start_edge(make_settings(tmp_path, failover_limit=2), [b.address for b in busy])

    result = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    for b in busy:
        await b.stop()

    assert result.ok, result.describe()
    assert sorted(b.received("INVITE") for b in busy) == [0, 1, 1], "exactly two workers must be tried"


async def test_a_call_may_try_more_workers_than_kamailios_default_branch_limit(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """Kamailio allows 12 branches per transaction unless told otherwise, and every worker tried is
    one: with the default failover_limit (16), 14 full workers are all tried before the 503. No probe
    falls inside the test (interval 30 s), so a worker once marked full is not tried again."""
    busy = [await sipp_servers("edge_uas_busy.xml", f"busy{i}") for i in range(14)]
    edge = await start_edge(make_settings(tmp_path, probe_interval_s=30), [b.address for b in busy])

    result = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    for b in busy:
        await b.stop()

    assert result.ok, result.describe()
    assert [b.received("INVITE") for b in busy] == [1] * 14


async def test_failover_picks_the_least_loaded_worker_not_the_next_in_the_list(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    """Neighbours in the dispatcher list took their calls one after the other, so they are full
    together: a call refused by a full worker goes to the least-loaded active worker instead.
    Kamailio keeps the list in the reverse of the file's order and breaks ties of load in that order,
    so with [idle, loaded, busy] the busy worker is picked first and `loaded` is its next."""
    idle = await sipp_servers("edge_uas.xml", "idle")
    loaded = await sipp_servers("edge_uas.xml", "loaded")
    busy = await sipp_servers("edge_uas_busy.xml", "busy")
    edge = await start_edge(make_settings(tmp_path), [idle.address, loaded.address, busy.address])
    sipp_dir = tmp_path / "sipp"
    busy_uri = f"sip:{LOOPBACK}:{busy.port}"

    # a held call: the busy worker refuses it (and rests), the next pick is `loaded`
    held = asyncio.create_task(run_sipp(scenario("edge_uac_hold.xml"), edge.address, workdir=sipp_dir,
                                        tag="held", extra=["-d", "8000"]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loaded.received("ACK") < 1:
        assert loop.time() < deadline and not held.done(), "the held call was not answered by `loaded`"
        await asyncio.sleep(0.1)
    # the busy worker's next probe makes it active again: it is again the first pick (load 0)
    while not (await dispatcher_flags(edge)).get(busy_uri, "").startswith("A"):
        assert loop.time() < deadline, await dispatcher_flags(edge)
        await asyncio.sleep(0.1)

    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=sipp_dir, tag="second")
    first = await held
    for server in (idle, loaded, busy):
        await server.stop()

    assert first.ok, first.describe()
    assert result.ok, result.describe()
    assert busy.received("INVITE") == 2, "the busy worker was not the first pick of both calls"
    assert loaded.received("INVITE") == 1, "the refused call went to the next worker in the list"
    assert idle.received("INVITE") == 1


async def test_kamailio_gets_the_configured_memory(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_edge(make_settings(tmp_path, shm_mb=96, pkg_mb=12))
    shm = await edge.rpc("core.shmmem")
    assert re.search(rf"total:\s*{96 * 1024 * 1024}\b", shm), shm
    assert edge.argv()[edge.argv().index("-M") + 1] == "12"


async def test_no_active_worker_caller_gets_503_with_retry_after(tmp_path: Path,
                                                                 start_edge: EdgeFactory) -> None:
    dead1, dead2 = dead_address(), dead_address()
    edge = await start_edge(make_settings(tmp_path), [dead1, dead2])
    await wait_inactive(edge, [f"sip:{h}:{p}" for h, p in (dead1, dead2)])

    # no worker selectable at all: answered at once from the request route
    result = await run_sipp(scenario("edge_uac_503.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    assert result.ok, result.describe()


# ----- worker -> agent relay ------------------------------------------------------------------------


async def test_worker_call_to_agent_is_relayed(tmp_path: Path, start_edge: EdgeFactory,
                                               sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    agent = await sipp_servers("edge_uas.xml", "agent1")
    worker_port = free_udp_tcp_port()
    edge = await start_edge(make_settings(tmp_path), [(LOOPBACK, worker_port)])

    # the "worker" (a sipp UAC on the worker's address) calls sip:agent1@<agent>; -rsa sends it via the edge
    result = await run_sipp(
        scenario("edge_uac.xml"), agent.address, workdir=tmp_path / "sipp", tag="worker-uac",
        port=worker_port, calls=1, extra=["-s", "agent1", "-rsa", f"{edge.address[0]}:{edge.address[1]}"],
    )
    await agent.stop()
    assert result.ok, result.describe()
    assert re.search(rf"^INVITE sip:agent1@127\.0\.0\.1:{agent.port} ", agent.messages(), re.M)
    assert agent.received("BYE") >= 1


# ----- robustness and access control ----------------------------------------------------------------


async def test_garbage_does_not_stop_the_edge(tmp_path: Path, start_edge: EdgeFactory,
                                              sipp_servers: Callable[..., Awaitable[SippServer]]) -> None:
    worker = await sipp_servers("edge_uas.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path), [worker.address])

    junk = [
        secrets.token_bytes(512),
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"HELLO WORLD\r\n\r\n",
        b"INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n",
        b"\r\n\r\n",  # keepalive
    ]
    for payload in junk:
        await udp_exchange(edge.address, payload, within_s=0.3)

    # a request with a Via but without From/To/Call-ID/CSeq is dropped by the core parser
    reply = await udp_exchange(edge.address, (
        "OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:9;branch=z9hG4bK{secrets.token_hex(4)};rport\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), within_s=0.5)
    assert reply is None or reply.startswith("SIP/2.0 400"), reply
    # parseable but inconsistent requests are answered 400 by sanity_check()
    invite = invite_bytes(edge.address)
    for broken in (invite.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"),
                   invite.replace(b"Content-Length: 0", b"Content-Length: 50")):
        reply = await udp_exchange(edge.address, broken)
        assert reply is not None and reply.startswith("SIP/2.0 400"), reply

    assert edge.process.running
    assert await edge.ping()
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    await worker.stop()
    assert result.ok, result.describe()
    assert worker.received("INVITE") == 1


async def test_untrusted_source_may_not_invite(tmp_path: Path, start_edge: EdgeFactory) -> None:
    # 127.0.0.0/8 is NOT trusted here, so our loopback INVITE comes from an untrusted network
    edge = await start_edge(make_settings(tmp_path, trusted_networks=["10.0.0.0/8", "192.0.2.0/24"]),
                            [dead_address()])
    reply = await udp_exchange(edge.address, invite_bytes(edge.address))
    assert reply is not None and reply.startswith("SIP/2.0 403"), reply
    # keepalive OPTIONS to the edge itself are still answered
    assert await edge.ping()


async def test_max_forwards_exhausted_is_rejected(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_edge(make_settings(tmp_path), [dead_address()])
    payload = invite_bytes(edge.address).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    reply = await udp_exchange(edge.address, payload)
    assert reply is not None and reply.startswith("SIP/2.0 483"), reply


async def test_runtime_files_stay_in_run_dir_and_two_edges_run_at_once(
        tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge1 = await start_edge(make_settings(tmp_path / "a"), [dead_address()])
    edge2 = await start_edge(make_settings(tmp_path / "b"), [dead_address()])
    for edge in (edge1, edge2):
        assert edge.dir == edge.settings.run_dir / "kamailio"
        # Kamailio runs under ivr.runtime.guard (so its forks die with the supervisor): the pid file
        # names the Kamailio main process, a child of the guard in the guard's process group.
        kamailio_pid = int(edge.pid_path.read_text().strip())
        assert edge.process.pid is not None and os.getpgid(kamailio_pid) == edge.process.pid
        assert edge.ctl_socket.is_socket()
        assert await edge.ping()
    await edge1.stop()
    assert not edge1.process.running
    assert await edge2.ping()


async def test_start_fails_cleanly_when_the_port_is_taken(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, settings.edge.port))
        edge = Edge(settings, [dead_address()])
        with pytest.raises(Unavailable) as err:
            await edge.start(ready_within_s=5)
    assert err.value.code in ("edge.exited", "edge.not_ready")
    assert not edge.process.running


async def test_edge_answers_options_over_tcp(tmp_path: Path, start_edge: EdgeFactory) -> None:
    edge = await start_edge(make_settings(tmp_path), [dead_address()])
    host, port = edge.address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lport = writer.get_extra_info("sockname")[1]
        writer.write((
            f"OPTIONS sip:{host}:{port};transport=tcp SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {LOOPBACK}:{lport};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:tcp@{LOOPBACK}>;tag=1\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@tcp\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert status.startswith(b"SIP/2.0 200"), status


# ----- rendering ----------------------------------------------------------------------------------


def test_render_writes_config_and_dispatcher_list(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, host="localhost", trusted_networks=["127.0.0.1/8", "::1/128"],
                             workers={"count": 3, "host": LOOPBACK, "sip_port_base": 25070})
    edge = Edge(settings)
    cfg = edge.render()

    assert cfg == settings.run_dir / "kamailio" / "kamailio.cfg"
    text = cfg.read_text()
    port = settings.edge.port
    assert f'#!define EDGE_LISTEN_UDP udp:"localhost":{port}' in text
    assert '#!define TRUSTED_NETS "127.0.0.0/8,::1/128"' in text
    assert f'#!define DS_PING_INTERVAL {PROBE_S}' in text
    entries = [ln for ln in edge.dispatcher_list_path.read_text().splitlines() if ln and ln[0] != "#"]
    assert entries == [f"1 sip:127.0.0.1:{25070 + i} 0 0 duid=worker-{i}" for i in range(3)]


@pytest.mark.parametrize(("edge", "workers", "match"), [
    ({"port": 70000}, None, "port 70000"),             # Kamailio alone would silently use 4464
    ({"host": "999.1.1.1"}, None, "neither an IP"),    # Kamailio alone would listen on 231.1.1.1
    ({"trusted_networks": ["banana"]}, None, "not a network"),
    ({"trusted_networks": []}, None, "empty"),
    ({"probe_interval_s": 0}, None, "probe_interval_s"),
    ({}, [], "at least one worker"),
    ({}, [("127.0.0.1", 0)], "port 0"),
    ({}, [("bad host!", 5070)], "neither an IP"),
], ids=["port", "host", "network", "no-network", "probe", "no-workers", "worker-port", "worker-host"])
def test_render_rejects_impossible_values(tmp_path: Path, edge: dict[str, Any],
                                          workers: list[tuple[str, int]] | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        Edge(make_settings(tmp_path, **edge), workers).render()
    assert err.value.code == "config.invalid"


def test_render_reports_kamailio_message(tmp_path: Path) -> None:
    edge = Edge(make_settings(tmp_path, host=LOOPBACK, port=free_udp_tcp_port()))
    # the worker shares the edge's address
    with pytest.raises(ConfigError, match="edge's own address"):
        Edge(edge.settings, [edge.address]).render()

    # a template Kamailio cannot parse: its own message comes back in the error
    broken = tmp_path / "broken.cfg"
    template = Path(edge.template).read_text()
    broken.write_text(template.replace('loadmodule "sl.so"', 'loadmodule "nope.so"'))
    with pytest.raises(ConfigError, match="nope") as err:
        Edge(edge.settings, template=broken).render()
    assert "kamailio rejected" in err.value.message
    assert err.value.details["exit_code"] != 0
