"""Validation of every value that goes into the edge's Kamailio configuration.

Kamailio's own config check is lenient (a port of 70000 silently becomes 4464, a quoted
``"999.1.1.1"`` resolves to a multicast address, a bad subnet only fails at run time), so each value
is checked here, with a :class:`~ivr.core.errors.ConfigError` naming the setting, before it reaches
the config text (:mod:`ivr.edge.config`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from ivr.core.config import Settings
from ivr.core.errors import ConfigError
from ivr.core.logging import get_logger

log = get_logger(__name__)

_NUMBER = re.compile(r"^[A-Za-z0-9+*#._-]{1,64}$")
_TRUNK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SIP_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]{1,128}$")  # RFC 3261 user, no escapes needed

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)  # RFC 1123 name whose last label starts with a letter: "999.1.1.1" is not a host name


def host_kind(host: str, what: str) -> str:
    """``"ipv4"``, ``"ipv6"`` or ``"name"``; ConfigError for anything else."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if _HOSTNAME.match(host):
            return "name"
        raise ConfigError(f"{what}: {host!r} is neither an IP address nor a host name", field=what) from None
    return "ipv6" if addr.version == 6 else "ipv4"


def hostport(host: str, port: int, what: str) -> str:
    """``host:port`` for SIP URIs and Kamailio sockets (IPv6 in brackets)."""
    if not 1 <= port <= 65535:  # Kamailio would silently take the port modulo 65536
        raise ConfigError(f"{what}: port {port} is not in 1..65535", field=what)
    kind = host_kind(host, what)
    if kind == "ipv6":
        return f"[{host.strip('[]')}]:{port}"
    return f"{host}:{port}"


def listen(proto: str, host: str, port: int) -> str:
    """A ``listen=`` value. A host name is quoted: unquoted, Kamailio's lexer splits it on keywords
    (``no-such.example`` becomes ``no--such.example``)."""
    if host_kind(host, "edge.host") == "name":
        return f'{proto}:"{host}":{port}'
    return f"{proto}:{hostport(host, port, 'edge.port')}"


def networks(nets: Iterable[str], what: str = "edge.trusted_networks", *, allow_empty: bool = False) -> str:
    out: list[str] = []
    for net in nets:
        try:
            text = str(ipaddress.ip_network(net.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{what}: {net!r} is not a network ({exc})", field=what) from None
        if text not in out:
            out.append(text)
    if not out and not allow_empty:
        raise ConfigError(f"{what} is empty: nobody could place a call", field=what)
    return ",".join(out)


def int_range(value: int, lo: int, hi: int, what: str) -> int:
    if not lo <= value <= hi:
        raise ConfigError(f"{what} must be {lo}..{hi} (got {value})", field=what)
    return value


def no_controls(value: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{what} contains control characters", field=what)
    return value


def dbtext_value(value: str | int | None) -> str:
    """One db_text field: ``:`` separates fields; an empty field is NULL."""
    if value is None:
        return ""
    text = str(value)
    if "\0" in text:
        raise ConfigError("a value for the edge's db_text tables contains a NUL character")
    return (text.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\t", "\\t"))


def dbtext_table(columns: str, rows: Iterable[Iterable[str | int | None]]) -> str:
    lines = [columns]
    lines += [":".join(dbtext_value(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def validate_numbers(numbers: Iterable[str]) -> list[str]:
    """The dialed numbers the edge accepts, validated (``"*"`` = any); ConfigError otherwise."""
    if isinstance(numbers, str):
        raise ConfigError("numbers must be a list of numbers, not one string", field="numbers")
    out: list[str] = []
    for number in numbers:
        if not isinstance(number, str) or not _NUMBER.match(number):
            raise ConfigError(f"numbers: {number!r} is not a dialable number ([A-Za-z0-9+*#._-], 1..64)",
                              field="numbers")
        if number not in out:
            out.append(number)
    return out


def check_tls_pair(cert: Path, key: Path, names: tuple[str, str] = ("edge.tls_cert", "edge.tls_key")) -> None:
    """Load the pair like a TLS server would: missing/unreadable files and a key that does not match
    the certificate are caught before Kamailio starts (which would only log and exit)."""
    for path, what in ((cert, names[0]), (key, names[1])):
        if re.search(r"[\s#\[\]=]", str(path)):  # tls.cfg is an INI file with unquoted values
            raise ConfigError(f"{what}: {path} must not contain spaces, '#', '[', ']' or '='", field=what)
        if not path.is_file():
            raise ConfigError(f"{what}: {path} is not a file", field=what, path=str(path))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{names[0]}/{names[1]}: cannot load {cert} with {key}: {exc}",
                          field=names[0], path=str(cert)) from None
    if key.stat().st_mode & 0o004:
        log.warning("edge.tls_key_world_readable", path=str(key), setting=names[1])


def resolve(host: str) -> list[str]:
    """IP addresses of ``host`` (itself when it is one); empty when it does not resolve now."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def edge_sources(settings: Settings) -> frozenset[str]:
    """Where the edge's requests to the workers come from, as pjsip writes a source (``ip:port``,
    ``[ip6]:port``): every address the edge listens on, at its SIP port (it relays over UDP from its
    listen socket). A worker admits new calls from these only. On loopback any process may send
    from 127.0.0.1, but not from the port Kamailio holds: so the port is part of the check."""
    edge = settings.edge
    out: set[str] = set()
    for host in [edge.host, *edge.extra_listen]:
        for addr in resolve(host):
            out.add(f"[{addr}]:{edge.port}" if ":" in addr else f"{addr}:{edge.port}")
    return frozenset(out)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def check_domain(value: str, what: str) -> None:
    """``host`` or ``host:port`` (``[v6]:port``)."""
    m = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$", value)
    if not m:
        raise ConfigError(f"{what}: {value!r} is not host[:port]", field=what)
    if m.group(2) is not None:
        hostport(m.group(1), int(m.group(2)), what)
    else:
        host_kind(m.group(1), what)
