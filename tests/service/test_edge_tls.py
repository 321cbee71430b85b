"""SIP over TLS at the Kamailio edge (real Kamailio + tls module, a sipp UAS worker over UDP).

The certificate is self-signed and made at test time with ``openssl``. The caller is a small SIP
client over Python's ``ssl`` that verifies the edge's certificate against exactly that one, so the
tests also prove Kamailio presents the configured certificate.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.core.errors import ConfigError
from ivr.edge import Edge
from tests.ports import free_udp_tcp_port
from tests.service import test_edge as edge_tests
from tests.service.test_edge import EdgeFactory, dead_address, make_settings
from tests.sipp_helpers import LOOPBACK, SippServer

# the fixtures of test_edge.py (real Kamailio edges and sipp workers, all stopped at the end)
start_edge = edge_tests.start_edge
sipp_servers = edge_tests.sipp_servers


def make_cert(directory: Path, name: str = "edge") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (CN and IP SAN) and its key, valid for a day."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={LOOPBACK}",
         "-addext", f"subjectAltName=IP:{LOOPBACK}"],
        check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    return cert, key


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


class TlsSip:
    """One TLS connection to the edge, speaking just enough SIP for OPTIONS and one call."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, edge: tuple[str, int]) -> None:
        self.reader, self.writer, self.edge = reader, writer, edge
        self.lport = int(writer.get_extra_info("sockname")[1])
        self.peer_cert = writer.get_extra_info("peercert")

    @classmethod
    async def connect(cls, edge: tuple[str, int], cafile: Path) -> TlsSip:
        ctx = ssl.create_default_context(cafile=str(cafile))  # verifies chain and the IP SAN
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(edge[0], edge[1], ssl=ctx, server_hostname=edge[0]), 5)
        return cls(reader, writer, edge)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 3)
        except (TimeoutError, OSError, ssl.SSLError):
            pass

    def via(self) -> str:
        return f"Via: SIP/2.0/TLS {LOOPBACK}:{self.lport};branch=z9hG4bK{secrets.token_hex(6)};rport"

    async def send(self, text: str, body: str = "") -> None:
        head = text.strip("\n").replace("\n", "\r\n")
        self.writer.write(f"{head}\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        await self.writer.drain()

    async def read(self, within_s: float = 5.0) -> str:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within_s)
        m = re.search(rb"^(?:Content-Length|l):\s*(\d+)", head, re.M | re.I)
        body = await asyncio.wait_for(self.reader.readexactly(int(m.group(1))), within_s) if m else b""
        return (head + body).decode("utf-8", "replace")

    async def final(self, cseq_method: str, within_s: float = 10.0) -> tuple[str, list[str]]:
        """Read until the final reply for ``cseq_method``; (final reply, all replies seen)."""
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (left := deadline - loop.time()) > 0:
            msg = await self.read(left)
            if not msg.startswith("SIP/2.0 "):
                continue  # a request from the far end (not expected here)
            seen.append(msg)
            status = int(msg.split()[1])
            if re.search(rf"^CSeq:\s*\d+\s+{cseq_method}\s*$", msg, re.M) and status >= 200:
                return msg, seen
        raise AssertionError(f"no final reply to {cseq_method}; got {[m.splitlines()[0] for m in seen]}")


def header_values(msg: str, name: str) -> list[str]:
    """Every value of a header (repeated lines and comma lists, URIs in <> kept whole)."""
    values: list[str] = []
    for line in re.findall(rf"^{name}:\s*(.*?)\s*$", msg, re.M | re.I):
        values += [v.strip() for v in re.findall(r"<[^>]*>[^,]*|[^,]+", line) if v.strip()]
    return values


async def test_options_over_tls_get_200(tmp_path: Path, start_edge: EdgeFactory,
                                       cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    edge = await start_edge(make_settings(tmp_path, tls_port=free_udp_tcp_port(), tls_cert=cert, tls_key=key),
                            [dead_address()])
    assert edge.tls_address is not None
    host, port = edge.tls_address
    sip = await TlsSip.connect(edge.tls_address, cert)
    try:
        # the edge presented our certificate (the client verified it against that file only)
        assert sip.peer_cert is not None and ("IP Address", LOOPBACK) in sip.peer_cert["subjectAltName"]
        await sip.send(f"""
OPTIONS sip:{host}:{port};transport=tls SIP/2.0
{sip.via()}
Max-Forwards: 70
From: <sip:tls@{LOOPBACK}>;tag={secrets.token_hex(4)}
To: <sip:{host}:{port}>
Call-ID: {secrets.token_hex(8)}@tls
CSeq: 1 OPTIONS""")
        reply, _ = await sip.final("OPTIONS")
    finally:
        await sip.close()
    assert reply.startswith("SIP/2.0 200"), reply
    # UDP and TCP still work next to TLS
    assert await edge.ping()
    # the rendered tls.cfg names the files and is not world-readable
    tls_cfg = edge.tls_config_path.read_text()
    assert f"certificate = {cert}" in tls_cfg and f"private_key = {key}" in tls_cfg
    assert edge.tls_config_path.stat().st_mode & 0o077 == 0


async def test_call_over_tls_is_dispatched_to_a_udp_worker(
        tmp_path: Path, start_edge: EdgeFactory, sipp_servers: Callable[..., Awaitable[SippServer]],
        cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    worker = await sipp_servers("edge_uas.xml", "worker0")
    edge = await start_edge(make_settings(tmp_path, tls_port=free_udp_tcp_port(), tls_cert=cert, tls_key=key),
                            [worker.address])
    assert edge.tls_address is not None
    host, port = edge.tls_address
    sip = await TlsSip.connect(edge.tls_address, cert)
    call_id, from_tag = f"{secrets.token_hex(8)}@tls", secrets.token_hex(4)
    dialog = (f"From: <sip:caller@{LOOPBACK}>;tag={from_tag}\n"
              f"Call-ID: {call_id}\n")
    sdp = (f"v=0\r\no=caller 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
           f"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    try:
        await sip.send(f"""
INVITE sip:1000@{host}:{port};transport=tls SIP/2.0
{sip.via()}
Max-Forwards: 70
{dialog}To: <sip:1000@{host}:{port}>
CSeq: 1 INVITE
Contact: <sip:caller@{LOOPBACK}:{sip.lport};transport=tls>
Content-Type: application/sdp""", sdp)
        ok, replies = await sip.final("INVITE")
        assert ok.startswith("SIP/2.0 200"), [r.splitlines()[0] for r in replies]

        # the dialog: to-tag, the worker's Contact, the Record-Route set (TLS side + UDP side)
        to = re.search(r"^To:\s*(.*?)\s*$", ok, re.M)
        contact = header_values(ok, "Contact")
        rr = header_values(ok, "Record-Route")
        assert to and ";tag=" in to.group(1) and contact, ok
        assert any(";transport=tls" in r and f":{port};" in r for r in rr), rr  # double record-routing
        assert any(f":{edge.address[1]};" in r for r in rr), rr
        target = re.sub(r"^<|>.*$", "", contact[0])
        routes = "".join(f"Route: {r}\n" for r in reversed(rr))

        await sip.send(f"""
ACK {target} SIP/2.0
{sip.via()}
Max-Forwards: 70
{dialog}To: {to.group(1)}
{routes}CSeq: 1 ACK""")
        await asyncio.sleep(0.2)
        await sip.send(f"""
BYE {target} SIP/2.0
{sip.via()}
Max-Forwards: 70
{dialog}To: {to.group(1)}
{routes}CSeq: 2 BYE""")
        bye_ok, _ = await sip.final("BYE")
    finally:
        await sip.close()
    await worker.stop()

    assert bye_ok.startswith("SIP/2.0 200"), bye_ok
    # the worker got the call over UDP, and ACK and BYE came through the edge (loose_route)
    messages = worker.messages()
    assert worker.received("INVITE") == 1 and worker.received("ACK") >= 1 and worker.received("BYE") >= 1
    assert re.search(r"^Via: SIP/2.0/UDP 127\.0\.0\.1:" + str(edge.address[1]), messages, re.M), \
        "the edge must relay to the worker over UDP"


# ----- configuration errors: found before Kamailio starts -------------------------------------------


@pytest.mark.parametrize("case", ["missing-cert", "missing-key", "key-mismatch", "not-pem", "no-key",
                                  "same-port", "no-port"])
async def test_bad_tls_settings_are_config_errors_before_start(tmp_path: Path, cert_pair: tuple[Path, Path],
                                                               case: str) -> None:
    cert, key = cert_pair
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    port = free_udp_tcp_port()
    cases: dict[str, dict[str, Any]] = {
        "missing-cert": {"tls_port": port, "tls_cert": tmp_path / "nope.crt", "tls_key": key},
        "missing-key": {"tls_port": port, "tls_cert": cert, "tls_key": tmp_path / "nope.key"},
        "not-pem": {"tls_port": port, "tls_cert": junk, "tls_key": key},
        "no-key": {"tls_port": port, "tls_cert": cert},
        "same-port": {"tls_cert": cert, "tls_key": key},
        "no-port": {"tls_cert": cert, "tls_key": key},
    }
    if case == "key-mismatch":
        cases[case] = {"tls_port": port, "tls_cert": cert, "tls_key": make_cert(tmp_path / "other")[1]}
    settings = make_settings(tmp_path, **cases[case])
    if case == "same-port":
        settings.edge.tls_port = settings.edge.port
    edge = Edge(settings, [dead_address()])
    with pytest.raises(ConfigError) as err:
        await edge.start(ready_within_s=5)
    assert err.value.code == "config.invalid"
    assert edge.process.proc is None, "Kamailio must not have been started"
    assert not edge.cfg_path.exists()


def test_a_tls_trunk_verifies_its_registrar_against_the_system_cas(tmp_path: Path,
                                                                   cert_pair: tuple[Path, Path]) -> None:
    cert, key = cert_pair
    trunk = {"name": "carrier", "host": "sip.carrier.example", "port": 5061, "transport": "tls",
             "username": "hotline", "password": "secret"}
    edge = Edge(make_settings(tmp_path, tls_port=free_udp_tcp_port(), tls_cert=cert, tls_key=key,
                              trunks=[trunk]), [dead_address()])
    edge.render()  # kamailio -c accepts it
    tls_cfg = edge.tls_config_path.read_text()
    assert "[client:default]" in tls_cfg and "verify_certificate = yes" in tls_cfg and "ca_list = " in tls_cfg
    assert "sip\\:sip.carrier.example\\:5061;transport=tls" in (edge.db_dir / "uacreg").read_text()
    # without a TLS trunk the CA bundle is not loaded (it costs every Kamailio process ~0.5 s)
    plain = Edge(make_settings(tmp_path / "plain", tls_port=free_udp_tcp_port(), tls_cert=cert, tls_key=key),
                 [dead_address()])
    assert "ca_list" not in plain.render_tls_config()
