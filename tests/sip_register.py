"""A minimal SIP phone registering over UDP with digest auth (tests only: real Kamailio answers).

``register()`` sends REGISTER, answers a 401 challenge once with the credentials given (RFC 2617
digest, MD5, qop=auth when offered) and returns the final reply: its status, Contact bindings and
expiry. Bounded: every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"


@dataclass
class Reply:
    status: int | None  # None: no reply at all (dropped)
    text: str = ""
    challenges: int = 0

    @property
    def contacts(self) -> list[str]:
        return re.findall(r"^(?:Contact|m):\s*(.+?)\s*$", self.text, re.M | re.I)


@dataclass
class Phone:
    """One phone: a UDP socket on loopback; ``contact_port`` is where it says calls should go."""

    edge: tuple[str, int]
    user: str
    password: str
    aor_user: str | None = None  # the To user; default `user`
    auth_user: str | None = None  # the digest user; default `user`
    contact_port: int | None = None
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(8)}@phone")
    cseq: int = 0

    async def register(self, expires: int | None = 60, within_s: float = 3.0, *,
                       password: str | None = None) -> Reply:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
            auth = ""
            challenges = 0
            for _ in range(3):
                self.cseq += 1
                await loop.sock_sendto(sock, self._request(port, expires, auth), self.edge)
                reply = await _receive(loop, sock, self.call_id, within_s)
                if reply.status != 401 or challenges:
                    reply.challenges = challenges
                    return reply
                challenges += 1
                auth = self._authorization(reply.text, password if password is not None else self.password)
            return Reply(None, "", challenges)

    def _request(self, port: int, expires: int | None, auth: str) -> bytes:
        host, edge_port = self.edge
        aor = f"sip:{self.aor_user or self.user}@{host}:{edge_port}"
        contact_port = self.contact_port or port
        lines = [
            f"REGISTER sip:{host}:{edge_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <{aor}>;tag={secrets.token_hex(4)}",
            f"To: <{aor}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.user}@{LOOPBACK}:{contact_port}>",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if auth:
            lines.append(auth)
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def _authorization(self, challenge_text: str, password: str) -> str:
        header = re.search(r"^WWW-Authenticate:\s*Digest\s+(.+?)\s*$", challenge_text, re.M | re.I)
        assert header, f"401 without a digest challenge:\n{challenge_text}"
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
        realm, nonce = params["realm"], params["nonce"]
        host, edge_port = self.edge
        uri = f"sip:{host}:{edge_port}"
        user = self.auth_user or self.user
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"', "algorithm=MD5"]
        if "auth" in params.get("qop", "").split(","):
            cnonce, nc = secrets.token_hex(8), "00000001"
            response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
            fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        fields.append(f'response="{response}"')
        return "Authorization: Digest " + ", ".join(fields)


async def _receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, call_id: str, within_s: float) -> Reply:
    end = loop.time() + within_s
    while (left := end - loop.time()) > 0:
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
        except TimeoutError:
            break
        text = data.decode("utf-8", "replace")
        m = re.match(r"SIP/2\.0 (\d{3})", text)
        if m and call_id in text and int(m.group(1)) >= 200:
            return Reply(int(m.group(1)), text)
    return Reply(None)
