"""Raw SIP over UDP and TCP for tests that send what no SIP stack would: hand-written requests,
stray responses, malformed framing. Loopback only, every wait bounded.

:func:`exchange` sends one message from a fresh socket and collects what comes back;
:func:`invite` builds a well-formed INVITE (correct Content-Length) that tests then break in one way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")


@dataclass
class Replies:
    """What came back for one message: status lines and whole replies, in order."""

    messages: list[str] = field(default_factory=list)

    @property
    def codes(self) -> list[int]:
        out = []
        for msg in self.messages:
            m = re.match(r"SIP/2\.0 (\d{3})", msg)
            if m:
                out.append(int(m.group(1)))
        return out

    @property
    def final(self) -> int | None:
        finals = [c for c in self.codes if c >= 200]
        return finals[0] if finals else None


def fill(template: str, *, target: tuple[str, int], local: tuple[str, int], transport: str) -> bytes:
    """A message from a template: ``{target}`` (host:port the message is sent to), ``{via}`` (our
    ``SIP/2.0/<transport> ip:port``), ``{branch}``, ``{tag}``, ``{callid}``, ``{cl}`` (the body's length
    in bytes, after the blank line), ``{local}`` (our ip:port). Lines become CRLF."""
    values = {
        "target": f"{target[0]}:{target[1]}", "local": f"{local[0]}:{local[1]}",
        "via": f"SIP/2.0/{transport.upper()} {local[0]}:{local[1]}",
        "branch": f"z9hG4bK{secrets.token_hex(8)}", "tag": secrets.token_hex(4),
        "callid": f"{secrets.token_hex(8)}@torture",
    }
    text = template.replace("\r\n", "\n")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    head, sep, body = text.partition("\n\n")
    data_body = body.replace("\n", "\r\n").encode() if sep else b""
    head = head.replace("{cl}", str(len(data_body)))
    return head.replace("\n", "\r\n").encode() + (b"\r\n\r\n" if sep else b"") + data_body


def _split(buffer: bytes) -> tuple[list[str], bytes]:
    """Complete SIP messages at the start of a TCP stream buffer, and what is left."""
    out: list[str] = []
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return out, buffer
        head = buffer[:end].decode("utf-8", "replace")
        m = re.search(r"^(?:Content-Length|l)\s*:\s*(\d+)", head, re.M | re.I)
        length = int(m.group(1)) if m else 0
        if len(buffer) < end + 4 + length:
            return out, buffer
        out.append(buffer[:end + 4 + length].decode("utf-8", "replace"))
        buffer = buffer[end + 4 + length:]


async def exchange(target: tuple[str, int], template: str | bytes, *, transport: str = "udp",
                   within_s: float = 3.0, until_final: bool = True) -> Replies:
    """Send one message (a template for :func:`fill`, or raw bytes) from a fresh loopback socket;
    collect replies for ``within_s`` seconds, or until a final response when ``until_final``."""
    loop = asyncio.get_running_loop()
    replies = Replies()
    deadline = loop.time() + within_s
    if transport == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((LOOPBACK, 0))
        try:
            local = sock.getsockname()
            data = template if isinstance(template, bytes) else fill(template, target=target, local=local,
                                                                     transport="udp")
            await loop.sock_sendto(sock, data, target)
            while (left := deadline - loop.time()) > 0:
                try:
                    raw, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
                except TimeoutError:
                    break
                replies.messages.append(raw.decode("utf-8", "replace"))
                if until_final and replies.final is not None:
                    break
        finally:
            sock.close()
        return replies
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*target), within_s)
    except OSError:
        return replies
    try:
        local = writer.get_extra_info("sockname")
        data = template if isinstance(template, bytes) else fill(template, target=target, local=local,
                                                                 transport="tcp")
        writer.write(data)
        await writer.drain()
        buffer = b""
        while (left := deadline - loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65535), left)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            msgs, buffer = _split(buffer + chunk)
            replies.messages.extend(msgs)
            if until_final and replies.final is not None:
                break
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1)
    return replies


INVITE = (
    "INVITE sip:1000@{target} SIP/2.0\n"
    "Via: {via};branch={branch};rport\n"
    "Max-Forwards: 70\n"
    "From: <sip:torture@127.0.0.1>;tag={tag}\n"
    "To: <sip:1000@{target}>\n"
    "Call-ID: {callid}\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:torture@{local}>\n"
    "Content-Type: application/sdp\n"
    "Content-Length: {cl}\n"
    "\n" + SDP.replace("\r\n", "\n")
)
"""A well-formed INVITE template (correct Content-Length over any transport)."""
