"""Browsers' phones at the real Kamailio edge with a real rtpengine (loopback; no browser needed).

The "browser" is :class:`WsPhone`: SIP over a secure WebSocket (aiohttp, subprotocol ``sip``) with
digest auth, as JsSIP does it. The "worker" is :class:`UdpWorker`: a UDP socket on the address the
edge's dispatcher list names as a worker, sending the INVITE a worker sends to offer a call to an
agent (``sip:<agent>@<edge>``) with a plain RTP/AVP SDP, then ACK and BYE along the Record-Route set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.core.config import Settings
from ivr.core.sip_auth import sip_ha1
from ivr.edge import Edge
from ivr.edge.webrtc import RtpEngine, allowed_origins, ensure_certificate, ng_command, wss_url
from tests.ports import free_port_range, free_udp_tcp_port
from tests.service.test_edge import make_settings

LOOPBACK = "127.0.0.1"
PASSWORD = "ada-secret-1"
RTP_PORTS = 40
WORKER_RTP_PORT = 31000  # what the worker's SDP announces (nothing listens: only the SDP is checked)


def webrtc_settings(tmp_path: Path, **webrtc: Any) -> Settings:
    rtp = free_port_range(RTP_PORTS)
    return make_settings(tmp_path, trusted_networks=["10.0.0.0/8"],  # loopback is "anywhere" here
                         registrar={"min_expires_s": 1, "default_expires_s": 60},
                         webrtc={"wss_port": free_udp_tcp_port(), "rtpengine_ng_port": free_udp_tcp_port(),
                                 "rtp_port_min": rtp, "rtp_port_max": rtp + RTP_PORTS - 1, **webrtc})


@dataclass
class Hotline:
    settings: Settings
    edge: Edge
    rtpengine: RtpEngine
    worker_port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.settings.api.port}"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(ensure_certificate(self.settings)[0]))
        return ctx


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Hotline]]]:
    """A real rtpengine and a real Kamailio edge with WebRTC on; both stopped at the end."""
    started: list[Edge | RtpEngine] = []

    async def _start(**webrtc: Any) -> Hotline:
        settings = webrtc_settings(tmp_path, **webrtc)
        ensure_certificate(settings)
        rtpengine = RtpEngine(settings)
        started.append(rtpengine)
        await rtpengine.start()
        worker_port = free_udp_tcp_port()
        realm = settings.edge.sip_realm
        edge = Edge(settings, [(LOOPBACK, worker_port)], sip_credentials={"ada": sip_ha1("ada", realm, PASSWORD)},
                    webrtc=True)
        started.append(edge)
        await edge.start()
        return Hotline(settings, edge, rtpengine, worker_port)

    yield _start
    for proc in reversed(started):
        await proc.stop()
        assert not proc.process.running


# ----- a browser's phone: SIP over WSS ----------------------------------------------------------

@dataclass
class WsPhone:
    ws: aiohttp.ClientWebSocketResponse
    edge_host: str
    user: str = "ada"
    host: str = field(default_factory=lambda: f"{secrets.token_hex(4)}.invalid")
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(8)}")
    cseq: int = 0

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host};transport=ws>"

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self, within_s: float = 5.0, *, skip: str | None = None) -> str:
        """The next SIP message (responses matching ``skip``, e.g. ``100``, are passed over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (left := deadline - loop.time()) > 0:
            msg = await asyncio.wait_for(self.ws.receive(), left)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"not a SIP text frame: {msg!r}"
            text: str = msg.data
            if skip and re.match(rf"SIP/2\.0 ({skip}) ", text):
                continue
            return text
        raise AssertionError("nothing from the edge")

    def register_request(self, auth: str = "", expires: int = 60) -> str:
        self.cseq += 1
        aor = f"sip:{self.user}@{self.edge_host}"
        lines = [
            f"REGISTER sip:{self.edge_host} SIP/2.0",
            f"Via: SIP/2.0/WSS {self.host};branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 69",
            f"To: <{aor}>",
            f"From: <{aor}>;tag={secrets.token_hex(4)}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: {self.contact};expires={expires}",
            "Expires: " + str(expires),
            "Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY",
            "Supported: path,gruu,outbound",
            "User-Agent: test-ws-phone",
        ]
        if auth:
            lines.append(auth)
        return "\r\n".join([*lines, "Content-Length: 0", "", ""])

    async def register(self, password: str) -> str:
        await self.send(self.register_request())
        challenge = await self.receive(skip="1..")
        assert challenge.startswith("SIP/2.0 401 "), challenge
        await self.send(self.register_request(digest(challenge, self.user, password, "REGISTER",
                                                     f"sip:{self.edge_host}")))
        return await self.receive(skip="1..")


def digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    header = re.search(r"^WWW-Authenticate:\s*Digest\s+(.+?)\s*$", challenge, re.M | re.I)
    assert header, challenge
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, nc = secrets.token_hex(8), "00000001"
    response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"')


@contextlib.asynccontextmanager
async def ws_phone(h: Hotline, origin: str | None = None) -> AsyncIterator[WsPhone]:
    headers = {"Origin": origin or h.origin}
    async with aiohttp.ClientSession() as http, http.ws_connect(
            wss_url(h.settings), protocols=("sip",), ssl=h.ssl_context(), headers=headers,
            timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
        assert ws.protocol == "sip"
        yield WsPhone(ws, f"{h.settings.edge.host}")


# ----- a worker: plain SIP over UDP -------------------------------------------------------------

WORKER_SDP = (
    "v=0\r\no=worker 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    f"m=audio {WORKER_RTP_PORT} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)


def browser_answer(offer: str) -> str:
    """What Chrome answers to rtpengine's offer once its candidates are gathered (JsSIP waits for that):
    ICE, DTLS (active: rtpengine is passive), rtcp-mux."""
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    port = int(re.search(r"^m=audio (\d+) ", offer, re.M).group(1))  # type: ignore[union-attr]
    assert port
    return (
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "a=msid-semantic: WMS\r\nm=audio 50000 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 127.0.0.1\r\n"
        "a=rtcp:50000 IN IP4 127.0.0.1\r\na=ice-ufrag:Wx3b\r\na=ice-pwd:hJ5d9uQ0m1xyzABCDEFGHIJK\r\n"
        f"a=fingerprint:sha-256 {fingerprint}\r\na=setup:active\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ host generation 0\r\n"
    )


class UdpWorker:
    def __init__(self, port: int, edge: tuple[str, int]) -> None:
        self.edge = edge
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((LOOPBACK, port))
        self.port = port
        self.call_id = f"{secrets.token_hex(8)}@worker"
        self.tag = secrets.token_hex(4)

    def close(self) -> None:
        self.sock.close()

    async def send(self, text: str) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, text.encode(), self.edge)

    async def receive(self, within_s: float = 5.0, *, status: str) -> str:
        """The next response of this call with a status matching ``status`` (OPTIONS probes are
        answered 200 on the way, other messages passed over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (left := deadline - loop.time()) > 0:
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), left)
            text = data.decode()
            if text.startswith("OPTIONS "):
                await loop.sock_sendto(self.sock, reply_to(text, "200 OK").encode(), addr)
                continue
            if self.call_id in text and re.match(rf"SIP/2\.0 ({status}) ", text):
                return text
        raise AssertionError(f"no {status} from the edge")

    def request(self, method: str, ruri: str, cseq: int, *, to_tag: str = "", routes: list[str] | None = None,
                body: str = "") -> str:
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:1000@{LOOPBACK}:{self.port}>;tag={self.tag}",
            f"To: <sip:ada@{self.edge[0]}:{self.edge[1]}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:worker@{LOOPBACK}:{self.port}>",
            *(f"Route: {r}" for r in routes or []),
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body


def reply_to(request: str, status: str, *, to_tag: str = "", extra: list[str] | None = None, body: str = "") -> str:
    """A response to ``request`` (its Via, From, To, Call-ID, CSeq and Record-Route copied)."""
    head = request.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    keep = [ln for ln in head if re.match(r"(Via|v|From|f|Call-ID|i|CSeq|Record-Route):", ln, re.I)]
    to = next(ln for ln in head if re.match(r"(To|t):", ln, re.I))
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status}", *keep, to, *(extra or [])]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def header(message: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:\s*(.+?)\s*$", message.split("\r\n\r\n", 1)[0], re.M | re.I)


def body(message: str) -> str:
    return message.split("\r\n\r\n", 1)[1]


def audio_port(sdp: str) -> int:
    m = re.search(r"^m=audio (\d+) ", sdp, re.M)
    assert m, sdp
    return int(m.group(1))


async def rtpengine_calls(h: Hotline) -> bytes:
    answer = await ng_command(*h.rtpengine.control, b"d7:command4:list5:limiti100ee")
    assert answer is not None and b"result2:ok" in answer, answer
    return answer


# ----- tests ------------------------------------------------------------------------------------

async def test_a_browser_registers_over_wss_with_the_desk_phone_credentials(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    h = await hotline()
    async with ws_phone(h) as phone:
        reply = await phone.register(PASSWORD)
        regs = await h.edge.registrations()
        dump = await h.edge.rpc("ul.dump")

    assert reply.startswith("SIP/2.0 200 "), reply
    assert regs == {"ada": 1}, "the phones poller sees the browser like any registered phone"
    assert "transport=ws" in str(dump) and "received" in str(dump).lower()


async def test_a_wrong_password_over_wss_is_refused(hotline: Callable[..., Awaitable[Hotline]]) -> None:
    h = await hotline()
    async with ws_phone(h) as phone:
        reply = await phone.register("not-the-password")

    assert reply.startswith("SIP/2.0 403 "), reply
    assert await h.edge.registrations() == {}


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:1", "null"])
async def test_a_page_of_another_origin_is_refused(hotline: Callable[..., Awaitable[Hotline]], origin: str) -> None:
    h = await hotline()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with ws_phone(h, origin=origin):
            pass

    assert refused.value.status == 403
    assert origin.lower() not in allowed_origins(h.settings)


async def test_no_origin_is_refused_and_configured_origins_replace_the_default(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    h = await hotline(allowed_origins=["https://Desk.Example.com"])
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
            # aiohttp sends an Origin only when told to: this handshake has none
            async with http.ws_connect(wss_url(h.settings), protocols=("sip",), ssl=h.ssl_context()):
                pass
    with pytest.raises(aiohttp.WSServerHandshakeError) as default_origin:
        async with ws_phone(h, origin=h.origin):
            pass
    async with ws_phone(h, origin="https://desk.example.com") as phone:
        reply = await phone.register(PASSWORD)

    assert missing.value.status == 403
    assert default_origin.value.status == 403, "the API's own origin is only the default"
    assert reply.startswith("SIP/2.0 200 "), reply


async def test_plain_http_on_the_wss_port_is_no_websocket(hotline: Callable[..., Awaitable[Hotline]]) -> None:
    h = await hotline()
    async with aiohttp.ClientSession() as http:
        async with http.get(wss_url(h.settings).replace("wss://", "https://") + "/", ssl=h.ssl_context(),
                            headers={"Origin": h.origin}) as r:
            status = r.status
        # the SIP TCP port parses HTTP too now (xhttp): it refuses every HTTP request, upgrades included
        host, port = h.edge.address
        async with http.get(f"http://{host}:{port}/", headers={"Origin": h.origin}) as r:
            sip_port_status = r.status
        with pytest.raises(aiohttp.WSServerHandshakeError) as upgrade:
            async with http.ws_connect(f"ws://{host}:{port}", protocols=("sip",), headers={"Origin": h.origin}):
                pass

    assert status == 404
    assert sip_port_status == 403
    assert upgrade.value.status == 403


async def test_an_offer_to_a_browser_goes_through_rtpengine_both_ways(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    h = await hotline()
    w = h.settings.edge.webrtc
    worker = UdpWorker(h.worker_port, h.edge.address)
    edge_uri = f"sip:ada@{h.edge.address[0]}:{h.edge.address[1]}"
    try:
        async with ws_phone(h) as phone:
            assert (await phone.register(PASSWORD)).startswith("SIP/2.0 200 ")

            await worker.send(worker.request("INVITE", edge_uri, 1, body=WORKER_SDP))
            invite = await phone.receive(skip="1..")
            offer = body(invite)
            await phone.send(reply_to(invite, "180 Ringing", to_tag="browser1", extra=[f"Contact: {phone.contact}"]))
            await worker.receive(status="180")
            answer_sdp = browser_answer(offer)
            await phone.send(reply_to(invite, "200 OK", to_tag="browser1", extra=[f"Contact: {phone.contact}"],
                                      body=answer_sdp))
            ok = await worker.receive(status="200")
            during = await rtpengine_calls(h)

            # the worker's ACK and BYE follow the Record-Route set down the WebSocket
            routes = [r.strip() for rr in reversed(header(ok, "Record-Route")) for r in reversed(rr.split(","))]
            contact = header(ok, "Contact")[0].strip("<>")
            to_tag = re.search(r";tag=([^;>\s]+)", header(ok, "To")[0]).group(1)  # type: ignore[union-attr]
            await worker.send(worker.request("ACK", contact, 1, to_tag=to_tag, routes=routes))
            ack = await phone.receive()
            await worker.send(worker.request("BYE", contact, 2, to_tag=to_tag, routes=routes))
            bye = await phone.receive()
            await phone.send(reply_to(bye, "200 OK"))
            bye_ok = await worker.receive(status="200")
            after = await rtpengine_calls(h)
    finally:
        worker.close()

    # toward the browser: WebRTC media from rtpengine, not the worker's plain RTP
    assert invite.startswith(f"INVITE sip:ada@{phone.host};transport=ws"), invite
    assert "RTP/SAVPF" in offer and "a=fingerprint:" in offer and "a=ice-ufrag:" in offer, offer
    assert "a=rtcp-mux" in offer and re.search(r"^a=setup:(actpass|passive)\r?$", offer, re.M), offer
    assert "c=IN IP4 127.0.0.1" in offer
    assert w.rtp_port_min <= audio_port(offer) <= w.rtp_port_max, "media from rtpengine's own ports"
    assert audio_port(offer) != WORKER_RTP_PORT and "a=crypto:" not in offer
    # toward the worker: plain RTP/AVP from rtpengine, nothing of WebRTC left
    answer = body(ok)
    assert re.search(r"^m=audio \d+ RTP/AVP ", answer, re.M), answer
    for webrtc_only in ("a=fingerprint", "a=ice-", "a=candidate", "a=rtcp-mux", "a=setup", "SAVP"):
        assert webrtc_only not in answer, f"{webrtc_only} reached the worker:\n{answer}"
    assert w.rtp_port_min <= audio_port(answer) <= w.rtp_port_max
    assert "c=IN IP4 127.0.0.1" in answer
    # the dialog: ACK and BYE reached the browser, the BYE's 200 the worker; rtpengine let go of the call
    assert ack.startswith("ACK sip:ada@") and bye.startswith("BYE sip:ada@")
    assert bye_ok.startswith("SIP/2.0 200 ")
    assert worker.call_id.encode() in during, "rtpengine held the call while it lasted"
    assert worker.call_id.encode() not in after, "BYE deleted the call in rtpengine"


async def test_a_browser_that_rejects_the_offer_leaves_nothing_in_rtpengine(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    h = await hotline()
    worker = UdpWorker(h.worker_port, h.edge.address)
    try:
        async with ws_phone(h) as phone:
            assert (await phone.register(PASSWORD)).startswith("SIP/2.0 200 ")
            await worker.send(worker.request("INVITE", f"sip:ada@{h.edge.address[0]}:{h.edge.address[1]}", 1,
                                             body=WORKER_SDP))
            invite = await phone.receive(skip="1..")
            during = await rtpengine_calls(h)
            await phone.send(reply_to(invite, "486 Busy Here", to_tag="b2"))
            busy = await worker.receive(status="486")
            ack = await phone.receive()
            after = await rtpengine_calls(h)
    finally:
        worker.close()

    assert busy.startswith("SIP/2.0 486 ")
    assert ack.startswith("ACK "), "the edge acknowledged the browser's refusal hop by hop"
    assert worker.call_id.encode() in during
    assert worker.call_id.encode() not in after, "the failure deleted the call in rtpengine"


async def test_a_desk_phone_call_never_touches_rtpengine(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    """A phone registered over UDP: its INVITE keeps the worker's SDP as it is."""
    h = await hotline()
    worker = UdpWorker(h.worker_port, h.edge.address)
    desk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    desk.setblocking(False)
    desk.bind((LOOPBACK, 0))
    loop = asyncio.get_running_loop()
    try:
        from tests.sip_register import Phone
        reg = await Phone(h.edge.address, "ada", PASSWORD, contact_port=desk.getsockname()[1]).register()
        assert reg.status == 200, reg.text
        await worker.send(worker.request("INVITE", f"sip:ada@{h.edge.address[0]}:{h.edge.address[1]}", 1,
                                         body=WORKER_SDP))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(desk, 65535), 5)
        invite = data.decode()
        during = await rtpengine_calls(h)
        await loop.sock_sendto(desk, reply_to(invite, "486 Busy Here", to_tag="d1").encode(), h.edge.address)
        await worker.receive(status="486")
    finally:
        worker.close()
        desk.close()

    assert body(invite) == WORKER_SDP, "the desk phone gets the worker's SDP untouched"
    assert ";rtp=ws" not in invite
    assert worker.call_id.encode() not in during, "rtpengine never heard of the call"


async def test_a_desk_phone_answering_first_cancels_the_browser_and_frees_rtpengine(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    """ada has a browser and a desk phone: both ring (the browser through rtpengine, the desk phone with
    the worker's own SDP); the desk phone answers, the browser gets CANCEL, rtpengine forgets the call."""
    from tests.sip_register import Phone
    h = await hotline()
    worker = UdpWorker(h.worker_port, h.edge.address)
    desk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    desk.setblocking(False)
    desk.bind((LOOPBACK, 0))
    loop = asyncio.get_running_loop()
    try:
        async with ws_phone(h) as phone:
            assert (await phone.register(PASSWORD)).startswith("SIP/2.0 200 ")
            reg = await Phone(h.edge.address, "ada", PASSWORD, contact_port=desk.getsockname()[1]).register()
            assert reg.status == 200, reg.text
            assert await h.edge.registrations() == {"ada": 2}
            await worker.send(worker.request("INVITE", f"sip:ada@{h.edge.address[0]}:{h.edge.address[1]}", 1,
                                             body=WORKER_SDP))
            browser_invite = await phone.receive(skip="1..")
            # rings (a CANCEL goes only to a branch that answered provisionally)
            await phone.send(reply_to(browser_invite, "180 Ringing", to_tag="browser9",
                                      extra=[f"Contact: {phone.contact}"]))
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(desk, 65535), 5)
            desk_invite = data.decode()
            during = await rtpengine_calls(h)
            await loop.sock_sendto(desk, reply_to(desk_invite, "200 OK", to_tag="desk1",
                                                  extra=[f"Contact: <sip:ada@{LOOPBACK}:{desk.getsockname()[1]}>"],
                                                  body=WORKER_SDP).encode(), h.edge.address)
            ok = await worker.receive(status="200")
            cancel = await phone.receive()
            await phone.send(reply_to(cancel, "200 OK"))
            await phone.send(reply_to(browser_invite, "487 Request Terminated", to_tag="browser9"))
            after = await rtpengine_calls(h)
    finally:
        worker.close()
        desk.close()

    assert "RTP/SAVPF" in body(browser_invite) and body(desk_invite) == WORKER_SDP
    assert body(ok) == WORKER_SDP, "the desk phone's answer reaches the worker untouched"
    assert cancel.startswith("CANCEL sip:ada@"), cancel
    assert worker.call_id.encode() in during
    assert worker.call_id.encode() not in after, "the desk phone's 200 deleted the browser's offer"


async def test_re_invites_of_a_browser_call_are_converted_both_ways(
        hotline: Callable[..., Awaitable[Hotline]]) -> None:
    """Hold from the worker's side (re-INVITE with a=sendonly) reaches the browser as WebRTC media and
    its answer the worker as plain RTP; a re-INVITE from the browser reaches the worker as plain RTP."""
    h = await hotline()
    worker = UdpWorker(h.worker_port, h.edge.address)
    try:
        async with ws_phone(h) as phone:
            assert (await phone.register(PASSWORD)).startswith("SIP/2.0 200 ")
            await worker.send(worker.request("INVITE", f"sip:ada@{h.edge.address[0]}:{h.edge.address[1]}", 1,
                                             body=WORKER_SDP))
            invite = await phone.receive(skip="1..")
            answer = browser_answer(body(invite))
            await phone.send(reply_to(invite, "200 OK", to_tag="b3", extra=[f"Contact: {phone.contact}"],
                                      body=answer))
            ok = await worker.receive(status="200")
            routes = [r.strip() for rr in reversed(header(ok, "Record-Route")) for r in reversed(rr.split(","))]
            contact = header(ok, "Contact")[0].strip("<>")
            await worker.send(worker.request("ACK", contact, 1, to_tag="b3", routes=routes))
            await phone.receive()

            # the worker holds: a=sendonly
            hold = WORKER_SDP.replace("o=worker 1 1", "o=worker 1 2").replace("a=sendrecv", "a=sendonly")
            await worker.send(worker.request("INVITE", contact, 2, to_tag="b3", routes=routes, body=hold))
            reinvite = await phone.receive(skip="1..")
            await phone.send(reply_to(reinvite, "200 OK", extra=[f"Contact: {phone.contact}"],
                                      body=answer.replace("a=sendrecv", "a=recvonly")))
            held = await worker.receive(status="200")
            await worker.send(worker.request("ACK", contact, 2, to_tag="b3", routes=routes))
            await phone.receive()

            # the browser re-INVITEs (e.g. an ICE restart): its offer reaches the worker as plain RTP
            # the dialog's route set is the initial INVITE's Record-Route (RFC 3261 12.1.1)
            browser_route = [r.strip() for rr in header(invite, "Record-Route") for r in rr.split(",")]
            assert all(";rtp=ws" in r for rr in header(reinvite, "Record-Route") for r in rr.split(","))
            worker_contact = header(reinvite, "Contact")[0].strip("<>")
            browser_reinvite = "\r\n".join([
                f"INVITE {worker_contact} SIP/2.0",
                f"Via: SIP/2.0/WSS {phone.host};branch=z9hG4bK{secrets.token_hex(8)}",
                "Max-Forwards: 70",
                f"From: <sip:ada@{h.edge.address[0]}:{h.edge.address[1]}>;tag=b3",
                f"To: <sip:1000@{LOOPBACK}:{worker.port}>;tag={worker.tag}",
                f"Call-ID: {worker.call_id}",
                "CSeq: 7 INVITE",
                f"Contact: {phone.contact}",
                *(f"Route: {r}" for r in browser_route),
                "Content-Type: application/sdp",
                f"Content-Length: {len(answer.encode())}", "", answer])
            await phone.send(browser_reinvite)
            from_browser = await worker_request(worker, "INVITE")
            await worker.send(reply_to(from_browser, "200 OK", body=WORKER_SDP,
                                       extra=[f"Contact: <sip:worker@{LOOPBACK}:{worker.port}>"]))
            to_browser = await phone.receive(skip="1..")
    finally:
        worker.close()

    hold_offer = body(reinvite)
    assert "RTP/SAVPF" in hold_offer and "a=fingerprint:" in hold_offer and "a=sendonly" in hold_offer, hold_offer
    held_answer = body(held)
    assert re.search(r"^m=audio \d+ RTP/AVP ", held_answer, re.M) and "a=recvonly" in held_answer, held_answer
    assert "a=fingerprint" not in held_answer and "a=ice-" not in held_answer
    plain_offer = body(from_browser)
    assert re.search(r"^m=audio \d+ RTP/AVP ", plain_offer, re.M), plain_offer
    for webrtc_only in ("a=fingerprint", "a=ice-", "a=candidate", "a=rtcp-mux", "SAVP"):
        assert webrtc_only not in plain_offer, f"{webrtc_only} reached the worker:\n{plain_offer}"
    assert to_browser.startswith("SIP/2.0 200 "), to_browser
    assert "RTP/SAVPF" in body(to_browser) and "a=fingerprint:" in body(to_browser), "the worker's answer as WebRTC"


async def worker_request(worker: UdpWorker, method: str, within_s: float = 5.0) -> str:
    """The next request of ``method`` the worker receives (probes answered on the way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while (left := deadline - loop.time()) > 0:
        data, addr = await asyncio.wait_for(loop.sock_recvfrom(worker.sock, 65535), left)
        text = data.decode()
        if text.startswith("OPTIONS "):
            await loop.sock_sendto(worker.sock, reply_to(text, "200 OK").encode(), addr)
            continue
        if text.startswith(f"{method} "):
            return text
    raise AssertionError(f"no {method} reached the worker")
