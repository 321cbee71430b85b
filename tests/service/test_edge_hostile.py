"""The edge against hostile SIP (real Kamailio, sipp workers, raw sockets; loopback only).

Every class of message here is well framed (correct Content-Length) and sent over UDP and TCP, so
what the edge does with it is what it really forwards:
- malformed requests that pjsua2 workers ignore or die of are answered at the edge, never relayed,
  and no worker is marked down for them;
- only trusted sources reach in-dialog routing, and in-dialog requests go to workers only;
- stray responses are relayed nowhere;
- a worker that does not answer a call is not marked down by that (only probes mark workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.service.test_edge import EdgeFactory, dispatcher_flags, make_settings, sipp_servers, start_edge
from tests.sip_wire import INVITE, LOOPBACK, SDP, exchange
from tests.sipp_helpers import SippServer, run_sipp, scenario

__all__ = ["sipp_servers", "start_edge"]  # fixtures used here

BODY = SDP.replace("\r\n", "\n")
VIA = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\n"  # below our own Via: replies still come to us


def malformed_requests() -> dict[str, tuple[str, set[int | None]]]:
    """name -> (template, the answers the edge may give; None: dropped without a word). Each breaks a
    well-formed INVITE in one way."""
    no_ct = INVITE.replace("Content-Type: application/sdp\n", "")
    out = {
        "body without Content-Type": (no_ct, {400}),
        "body without Content-Type, compact Content-Length": (no_ct.replace("Content-Length:", "l:"), {400}),
        "empty Content-Type": (INVITE.replace("Content-Type: application/sdp", "Content-Type: "), {400}),
        "Content-Type without subtype": (INVITE.replace("application/sdp", "application"), {400}),
        "Content-Type without type": (INVITE.replace("application/sdp", "/sdp"), {400}),
        "Content-Type with spaces": (INVITE.replace("application/sdp", "application / s d p"), {400}),
        "Content-Type of three parts": (INVITE.replace("application/sdp", "application/sdp/x"), {400}),
        "Content-Type with broken parameters": (INVITE.replace("application/sdp", "application/sdp;;;=;"), {400}),
        "Content-Type parameter without value": (INVITE.replace("application/sdp", "application/sdp;charset"),
                                                 {400}),
        "compact empty Content-Type": (INVITE.replace("Content-Type: application/sdp", "c:"), {400}),
        "two Content-Types": (INVITE.replace("Content-Type: application/sdp\n",
                                             "Content-Type: application/sdp\nContent-Type: text/plain\n"), {400}),
        "two Content-Lengths": (INVITE.replace("Content-Length: {cl}\n",
                                               "Content-Length: {cl}\nContent-Length: {cl}\n"), {400, None}),
        "body of another type": (INVITE.replace("application/sdp", "text/plain"), {415}),
        "25 Via headers": (INVITE.replace("Max-Forwards:", VIA * 24 + "Max-Forwards:", 1), {400}),
        "25 Vias in one header": (INVITE.replace("Max-Forwards:", "Via: " + ", ".join(
            [VIA[5:-1]] * 24) + "\nMax-Forwards:", 1), {400, 513}),
        "1000 Via headers": (INVITE.replace("Max-Forwards:", VIA * 999 + "Max-Forwards:", 1), {400, 513, None}),
        "oversized header": (INVITE.replace("Max-Forwards: 70\n", "Max-Forwards: 70\nX-Pad: " + "a" * 5000 + "\n"),
                             {513}),
    }
    # the same classes on other methods a worker receives in a dialog's place: BYE, INFO, OPTIONS
    out["OPTIONS body without Content-Type"] = (
        no_ct.replace("INVITE sip:", "OPTIONS sip:").replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS"), {400})
    return out


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_malformed_requests_are_answered_at_the_edge_and_never_reach_a_worker(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]],
        transport: str) -> None:
    worker = await sipp_servers("edge_uas.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path), [worker.address])
    wrong: list[str] = []
    for name, (template, allowed) in malformed_requests().items():
        replies = await exchange(edge.address, template, transport=transport, within_s=3.0)
        if replies.final not in allowed:
            wrong.append(f"{name}: answered {replies.codes}, expected one of {sorted(allowed)}")
    assert not wrong, "\n".join(wrong)
    assert worker.received("INVITE") == 0, worker.messages()[-3000:]

    # no worker was marked down, and calls still go through
    flags = await dispatcher_flags(edge)
    assert all(f.startswith("A") for f in flags.values()), flags
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=1)
    await worker.stop()
    assert result.ok, result.describe()
    assert worker.received("INVITE") == 1


class Listener:
    """A UDP socket that records whatever reaches it and, when ``answer_options``, answers OPTIONS
    with 200 (a "worker" that passes its probes but ignores calls)."""

    def __init__(self, answer_options: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.received: list[str] = []
        self.answer_options = answer_options
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def requests(self, method: str) -> int:
        return sum(1 for m in self.received if m.startswith(f"{method} "))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, peer = await loop.sock_recvfrom(self.sock, 65535)
            text = data.decode("utf-8", "replace")
            self.received.append(text)
            if self.answer_options and text.startswith("OPTIONS "):
                head = text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
                keep = [h for h in head if h.split(":", 1)[0].strip().lower()
                        in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")]
                reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
                await loop.sock_sendto(self.sock, reply.encode(), peer)

    def start(self) -> Listener:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="listener")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()


@pytest.fixture
async def listeners() -> AsyncIterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def _make(answer_options: bool = False) -> Listener:
        listener = Listener(answer_options).start()
        made.append(listener)
        return listener

    yield _make
    for listener in made:
        await listener.stop()


def in_dialog(method: str, route_to: tuple[str, int], ruri: tuple[str, int]) -> str:
    """An in-dialog request (To-tag) whose Route sends it to ``route_to``, Request-URI ``ruri``."""
    body = method == "INVITE"
    return (
        f"{method} sip:x@{ruri[0]}:{ruri[1]} SIP/2.0\n"
        "Via: {via};branch={branch};rport\n"
        "Max-Forwards: 70\n"
        f"Route: <sip:{route_to[0]}:{route_to[1]};lr>\n"
        "From: <sip:torture@127.0.0.1>;tag={tag}\n"
        "To: <sip:1000@127.0.0.1>;tag=abc123\n"
        "Call-ID: {callid}\n"
        f"CSeq: 2 {method}\n"
        "Contact: <sip:torture@{local}>\n"
        + ("Content-Type: application/sdp\n" if body else "")
        + "Content-Length: {cl}\n\n"
        + (BODY if body else "")
    )


@pytest.mark.parametrize("trusted", [False, True])
async def test_in_dialog_requests_are_relayed_to_workers_only(
        tmp_path: Path, start_edge: EdgeFactory, listeners: Callable[..., Listener], trusted: bool) -> None:
    victim = listeners()   # a trunk, an internal host: anything that is not a worker
    worker = listeners(answer_options=True)
    nets = ["127.0.0.0/8"] if trusted else ["192.0.2.0/24"]
    edge = await start_edge(make_settings(tmp_path, trusted_networks=nets), [worker.address])
    for transport in ("udp", "tcp"):
        for method in ("INVITE", "OPTIONS", "BYE", "INFO", "ACK"):
            for route_to, ruri in ((victim.address, victim.address), (edge.address, victim.address)):
                replies = await exchange(edge.address, in_dialog(method, route_to, ruri), transport=transport,
                                         within_s=0.5 if method == "ACK" else 3.0)
                if method != "ACK":
                    assert replies.final == 403, (method, transport, route_to, replies.messages)
    await asyncio.sleep(0.5)
    assert victim.received == [], victim.received[:2]

    # a trusted source's in-dialog request for a worker (the caller's BYE) is relayed to it
    replies = await exchange(edge.address, in_dialog("BYE", edge.address, worker.address), within_s=0.5)
    await asyncio.sleep(0.3)
    if trusted:
        assert worker.requests("BYE") >= 1, worker.received  # retransmitted: the stand-in never answers
    else:
        assert replies.final == 403, replies.messages
        assert worker.requests("BYE") == 0, worker.received


@pytest.mark.parametrize("trusted", [False, True])
async def test_stray_responses_are_relayed_nowhere(tmp_path: Path, start_edge: EdgeFactory,
                                                   listeners: Callable[..., Listener], trusted: bool) -> None:
    victim = listeners()
    worker = listeners(answer_options=True)
    nets = ["127.0.0.0/8"] if trusted else ["192.0.2.0/24"]
    edge = await start_edge(make_settings(tmp_path, trusted_networks=nets), [worker.address])
    edge_hp = f"{edge.address[0]}:{edge.address[1]}"
    for transport in ("udp", "tcp"):
        for second_via in (f"{victim.address[0]}:{victim.address[1]}", "255.255.255.255:5060",
                           f"{worker.address[0]}:{worker.address[1]}"):
            for status in ("200 OK", "180 Ringing", "503 Service Unavailable"):
                response = (
                    f"SIP/2.0 {status}\n"
                    f"Via: SIP/2.0/{transport.upper()} {edge_hp};branch=z9hG4bKstray{{tag}}\n"
                    f"Via: SIP/2.0/UDP {second_via};branch=z9hG4bKvictim{{tag}}\n"
                    "From: <sip:a@127.0.0.1>;tag={tag}\nTo: <sip:b@127.0.0.1>;tag=x\n"
                    "Call-ID: {callid}\nCSeq: 1 INVITE\nContent-Length: 0\n\n")
                await exchange(edge.address, response, transport=transport, within_s=0.2, until_final=False)
    await asyncio.sleep(0.5)
    assert victim.received == [], victim.received[:2]
    assert [m for m in worker.received if m.startswith("SIP/2.0")] == [], worker.received[:2]
    assert edge.process.running and await edge.ping()


async def test_a_worker_that_ignores_a_call_is_not_marked_down(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]],
        listeners: Callable[..., Listener]) -> None:
    good = await sipp_servers("edge_uas.xml", "good")
    silent = listeners(answer_options=True)  # passes its probes, never answers an INVITE
    # probes far apart: a worker marked down by a call would stay down for the whole test
    edge = await start_edge(make_settings(tmp_path, probe_interval_s=300), [good.address, silent.address])

    # ties go to the worker written last: the first call tries the silent one, then fails over
    result = await run_sipp(scenario("edge_uac.xml"), edge.address, workdir=tmp_path / "sipp", calls=2)
    assert result.ok, result.describe()
    assert silent.requests("INVITE") >= 1, "no call tried the silent worker"
    assert good.received("INVITE") == 2

    flags = await dispatcher_flags(edge)
    assert flags[f"sip:{silent.address[0]}:{silent.address[1]}"].startswith("A"), flags
    await good.stop()


async def test_a_call_that_finds_three_silent_workers_gets_503_and_tries_no_more(
        tmp_path: Path, start_edge: EdgeFactory, listeners: Callable[..., Listener]) -> None:
    silent = [listeners(answer_options=True) for _ in range(5)]
    edge = await start_edge(make_settings(tmp_path, probe_interval_s=300), [w.address for w in silent])
    replies = await exchange(edge.address, INVITE, within_s=15.0)
    assert replies.final == 503, replies.codes
    assert "Retry-After:" in replies.messages[-1], replies.messages[-1]
    tried = [w for w in silent if w.requests("INVITE")]
    assert len(tried) == 3, [w.requests("INVITE") for w in silent]
    flags = await dispatcher_flags(edge)
    assert all(f.startswith("A") for f in flags.values()), flags  # none marked down for it
