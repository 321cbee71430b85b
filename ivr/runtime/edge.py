"""The SIP edge: Kamailio in front of the pool of IVR workers.

:class:`Edge` renders ``kamailio.cfg`` (the template next to this module plus a block of
``#!define`` lines made from :class:`~ivr.core.config.Settings`) and ``dispatcher.list`` (one line
per worker) into ``<run_dir>/kamailio/``, checks the result with ``kamailio -c``, and runs Kamailio
in the foreground (``-DD -E``: no daemon, log to stderr) as a :class:`ManagedProcess`. Every runtime
file (pid file, binrpc control socket) stays in that directory, so several edges run side by side
(one per test) as long as their ports differ.

Routing, in short (details in the template): INVITEs from ``edge.trusted_networks`` are
record-routed and dispatched to the least-loaded worker (dispatcher algorithm 10); a worker that
answers 486/503 or 408/nothing at all is replaced by the next one (``ds_next_dst`` in a
failure_route); when none is left the caller gets ``503`` with ``Retry-After: 5``. Workers are probed
with OPTIONS every ``edge.probe_interval_s`` seconds. OPTIONS addressed to the edge get 200 OK,
which is also how :meth:`Edge.start` knows Kamailio is ready.

Kamailio's own config check is lenient (a port of 70000 silently becomes 4464, a quoted
``"999.1.1.1"`` resolves to a multicast address, a bad subnet only fails at run time), so every value
is validated here before it reaches the config text.

Beyond dispatching (each feature is its own route block in the template, see its header):

- **TLS** (``edge.tls_port``/``tls_cert``/``tls_key``): a ``tls:`` listen socket next to UDP/TCP, with
  ``tls.cfg`` rendered into the run dir; the certificate and key are loaded with Python's ``ssl`` first,
  so a missing file or a key that does not match is a :class:`ConfigError` before Kamailio starts.
- **Trunks** (``edge.trunks``): the ``uac`` module registers to each trunk with digest auth from a
  ``db_text`` table ``db/uacreg`` (mode 0600 in a 0700 directory; with ``realm`` set only the HA1 hash
  is written), refreshes before expiry and retries failed registrations every ``edge.trunk_retry_s``.
  Calls from a trunk's addresses are trusted; a call to the registered Contact
  (``sip:<trunk name>@<edge>``) is dispatched for the number in its To header.
- **Flood limits** (``edge.flood``): ``pike`` counts requests per source address; a source over the
  limit lands in an ``htable`` ban list and everything it sends is dropped for ``flood.block_s``.
  Workers, trunks and ``flood.exempt_networks`` are never limited.
- **No open relay**: a request (not from a worker) whose Request-URI host is neither a listen socket
  nor one of ``edge.domains`` (plus ``edge.host``) gets 403; an INVITE for a number outside
  ``numbers`` (the dial plans' numbers; ``None`` or ``"*"``: any) gets 404.
- **Draining** (:meth:`Edge.set_draining`): a shared variable flipped over the control socket; new
  INVITEs get 503 + ``Retry-After`` while in-dialog requests of calls in progress still pass.
- Whatever the edge cannot route right now gets 503 + ``Retry-After: edge.retry_after_s``, never 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from ivr.core.config import Settings
from ivr.core.errors import ConfigError, Unavailable
from ivr.core.logging import get_logger
from ivr.runtime.process import ManagedProcess

log = get_logger(__name__)

TEMPLATE = Path(__file__).with_name("kamailio.cfg")
KAMAILIO = "kamailio"
KAMCMD = "kamcmd"
WORKERS_SET = 1
"""Dispatcher set id of the worker pool."""
ANY_NUMBER = "*"
"""In ``numbers``: every number is served (no 404 for unknown numbers)."""
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""CA certificates the edge verifies a TLS trunk's registrar against."""
UACREG_VERSION = 5  # uacreg table version of Kamailio 5.6 (UACREG_TABLE_VERSION)
UAC_REG_ONGOING = 1 << 1  # uac_reg flag: a REGISTER transaction is under way
UAC_REG_ONLINE = 1 << 2  # uac_reg flag: registered (200 OK with our Contact)

_NUMBER = re.compile(r"^[A-Za-z0-9+*#._-]{1,64}$")
_TRUNK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SIP_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]{1,128}$")  # RFC 3261 user, no escapes needed

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)  # RFC 1123 name whose last label starts with a letter: "999.1.1.1" is not a host name


def _host_kind(host: str, what: str) -> str:
    """``"ipv4"``, ``"ipv6"`` or ``"name"``; ConfigError for anything else."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if _HOSTNAME.match(host):
            return "name"
        raise ConfigError(f"{what}: {host!r} is neither an IP address nor a host name", field=what) from None
    return "ipv6" if addr.version == 6 else "ipv4"


def _hostport(host: str, port: int, what: str) -> str:
    """``host:port`` for SIP URIs and Kamailio sockets (IPv6 in brackets)."""
    if not 1 <= port <= 65535:  # Kamailio would silently take the port modulo 65536
        raise ConfigError(f"{what}: port {port} is not in 1..65535", field=what)
    kind = _host_kind(host, what)
    if kind == "ipv6":
        return f"[{host.strip('[]')}]:{port}"
    return f"{host}:{port}"


def _listen(proto: str, host: str, port: int) -> str:
    """A ``listen=`` value. A host name is quoted: unquoted, Kamailio's lexer splits it on keywords
    (``no-such.example`` becomes ``no--such.example``)."""
    if _host_kind(host, "edge.host") == "name":
        return f'{proto}:"{host}":{port}'
    return f"{proto}:{_hostport(host, port, 'edge.port')}"


def _networks(nets: Iterable[str], what: str = "edge.trusted_networks", *, allow_empty: bool = False) -> str:
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


def _int_range(value: int, lo: int, hi: int, what: str) -> int:
    if not lo <= value <= hi:
        raise ConfigError(f"{what} must be {lo}..{hi} (got {value})", field=what)
    return value


def _no_controls(value: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{what} contains control characters", field=what)
    return value


def _dbtext_value(value: str | int | None) -> str:
    """One db_text field: ``:`` separates fields; an empty field is NULL."""
    if value is None:
        return ""
    text = str(value)
    if "\0" in text:
        raise ConfigError("a value for the edge's db_text tables contains a NUL character")
    return (text.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\t", "\\t"))


def _dbtext_table(columns: str, rows: Iterable[Iterable[str | int | None]]) -> str:
    lines = [columns]
    lines += [":".join(_dbtext_value(v) for v in row) for row in rows]
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


def _check_tls_pair(cert: Path, key: Path) -> None:
    """Load the pair like a TLS server would: missing/unreadable files and a key that does not match
    the certificate are caught before Kamailio starts (which would only log and exit)."""
    for path, what in ((cert, "edge.tls_cert"), (key, "edge.tls_key")):
        if re.search(r"[\s#\[\]=]", str(path)):  # tls.cfg is an INI file with unquoted values
            raise ConfigError(f"{what}: {path} must not contain spaces, '#', '[', ']' or '='", field=what)
        if not path.is_file():
            raise ConfigError(f"{what}: {path} is not a file", field=what, path=str(path))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"edge.tls_cert/tls_key: cannot load {cert} with {key}: {exc}",
                          field="edge.tls_cert", path=str(cert)) from None
    if key.stat().st_mode & 0o004:
        log.warning("edge.tls_key_world_readable", path=str(key))


def _resolve(host: str) -> list[str]:
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
        for addr in _resolve(host):
            out.add(f"[{addr}]:{edge.port}" if ":" in addr else f"{addr}:{edge.port}")
    return frozenset(out)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Edge:
    """Render and run the Kamailio edge for one set of settings.

    ``numbers``: the dialed numbers the hotline serves (the supervisor passes
    ``list(PlanRegistry.by_number)``); an INVITE for any other number gets 404 at the edge. ``None``
    (the default) or a list containing ``"*"`` accepts every number.
    """

    def __init__(self, settings: Settings, workers: list[tuple[str, int]] | None = None, *,
                 numbers: Iterable[str] | None = None, template: Path | None = None,
                 kamailio: str = KAMAILIO) -> None:
        self.settings = settings
        w = settings.workers
        self.workers: list[tuple[str, int]] = (
            list(workers) if workers is not None else [(w.host, w.sip_port(i)) for i in range(w.count)]
        )
        self.numbers: list[str] | None = None if numbers is None else validate_numbers(numbers)
        self.template = template or TEMPLATE
        self.kamailio = kamailio
        self.dir = settings.run_dir / "kamailio"
        self._draining = False
        self._process = ManagedProcess("edge", self.argv(), guard=True)

    def argv(self, kamailio: str | None = None) -> list[str]:
        """The command line that runs this edge in the foreground (what ivr-edge.service runs)."""
        edge = self.settings.edge
        return [
            kamailio or self.kamailio, "-DD", "-E",
            "-m", str(edge.shm_mb), "-M", str(edge.pkg_mb),
            "-f", str(self.cfg_path),
            "-Y", str(self.dir),          # runtime dir
            "-w", str(self.dir),          # working dir: the relative ctl socket lands here too
            "-P", str(self.pid_path),
        ]

    # ----- paths -----------------------------------------------------------------------------

    @property
    def cfg_path(self) -> Path:
        return self.dir / "kamailio.cfg"

    @property
    def dispatcher_list_path(self) -> Path:
        return self.dir / "dispatcher.list"

    @property
    def pid_path(self) -> Path:
        return self.dir / "kamailio.pid"

    @property
    def ctl_socket(self) -> Path:
        """binrpc control socket: ``kamcmd -s unix:<path> dispatcher.list``."""
        return self.dir / "kamailio_ctl"

    @property
    def tls_config_path(self) -> Path:
        return self.dir / "tls.cfg"

    @property
    def db_dir(self) -> Path:
        """db_text tables: ``version``, ``numbers``, ``domains``, ``uacreg`` (0600: trunk secrets)."""
        return self.dir / "db"

    @property
    def process(self) -> ManagedProcess:
        return self._process

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.edge.host, self.settings.edge.port

    @property
    def tls_address(self) -> tuple[str, int] | None:
        port = self.settings.edge.tls_port
        return None if port is None else (self.settings.edge.host, port)

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def check_numbers(self) -> bool:
        return self.numbers is not None and ANY_NUMBER not in self.numbers

    # ----- rendering -------------------------------------------------------------------------

    def defines(self) -> dict[str, str]:
        """The values prepended to the template as ``#!define NAME value`` (validated); an empty
        value is a bare ``#!define NAME`` (a feature switch for ``#!ifdef``)."""
        edge = self.settings.edge
        edge_hp = _hostport(edge.host, edge.port, "edge")
        if edge.probe_interval_s < 1:
            raise ConfigError(f"edge.probe_interval_s must be >= 1 (got {edge.probe_interval_s})",
                              field="edge.probe_interval_s")
        if edge.probe_interval_s > 3600:
            raise ConfigError(f"edge.probe_interval_s must be <= 3600 (got {edge.probe_interval_s})",
                              field="edge.probe_interval_s")
        if not self.workers:
            raise ConfigError("the edge needs at least one worker", field="workers")
        for host, port in self.workers:
            _hostport(host, port, "workers")
            if (host, port) == (edge.host, edge.port):
                raise ConfigError(f"worker {host}:{port} has the edge's own address", field="workers")
        retry_after = _int_range(edge.retry_after_s, 1, 86400, "edge.retry_after_s")
        defines = {
            "EDGE_LISTEN_UDP": _listen("udp", edge.host, edge.port),
            "EDGE_LISTEN_TCP": _listen("tcp", edge.host, edge.port),
            "EDGE_URI": f'"sip:edge@{edge_hp}"',
            "TRUSTED_NETS": f'"{_networks(edge.trusted_networks)}"',
            "DS_LIST_FILE": f'"{self.dispatcher_list_path}"',
            "DS_PING_INTERVAL": str(edge.probe_interval_s),
            "CTL_SOCKET": '"unix:kamailio_ctl"',  # relative to the working dir (-w): no 108-byte limit
            "WORKERS_SET": str(WORKERS_SET),
            "DS_FAILOVER_LIMIT": str(edge.failover_limit),
            "RETRY_AFTER_HDR": f'"Retry-After: {retry_after}\\r\\n"',
            "DB_URL": f'"text://{self.db_dir}"',
            "DRAINING_SHV": f'"draining=i:{int(self._draining)}"',
            "CHECK_NUMBERS_SHV": f'"check_numbers=i:{int(self.check_numbers)}"',
        }
        for path in (self.dir, self.db_dir):
            if re.search(r'[\s"\\]', str(path)):
                raise ConfigError(f"the run dir {path} must not contain spaces, quotes or backslashes",
                                  field="var_dir")
        trunk_nets = self.trunk_networks() if edge.trunks else []
        defines.update(self._tls_defines())
        defines.update(self._flood_defines(trunk_nets))
        defines.update(self._trunk_defines(trunk_nets))
        return defines

    def _tls_defines(self) -> dict[str, str]:
        edge = self.settings.edge
        if edge.tls_port is None:
            if edge.tls_cert is not None or edge.tls_key is not None:
                raise ConfigError("edge.tls_cert/tls_key are set but edge.tls_port is not", field="edge.tls_port")
            return {}
        _hostport(edge.host, edge.tls_port, "edge.tls_port")
        if edge.tls_port == edge.port:
            raise ConfigError(f"edge.tls_port {edge.tls_port} is the SIP TCP port too", field="edge.tls_port")
        if edge.tls_cert is None or edge.tls_key is None:
            raise ConfigError("edge.tls_port needs edge.tls_cert and edge.tls_key", field="edge.tls_cert")
        _check_tls_pair(edge.tls_cert, edge.tls_key)
        return {
            "WITH_TLS": "",
            "EDGE_LISTEN_TLS": _listen("tls", edge.host, edge.tls_port),
            "TLS_CONFIG": f'"{self.tls_config_path}"',
        }

    def _flood_defines(self, trunk_nets: list[str]) -> dict[str, str]:
        flood = self.settings.edge.flood
        if not flood.enabled:
            return {}
        sampling = _int_range(flood.sampling_s, 1, 300, "edge.flood.sampling_s")
        density = _int_range(flood.max_requests, 1, 65535, "edge.flood.max_requests")  # pike counts in 16 bits
        block = _int_range(flood.block_s, 0, 86400, "edge.flood.block_s")
        out = {"WITH_FLOOD": "", "FLOOD_SAMPLING": str(sampling), "FLOOD_DENSITY": str(density)}
        if block:
            out.update({"WITH_FLOOD_BAN": "", "HT_IPBAN": f'"ipban=>size=8;autoexpire={block};"'})
        exempt = _networks([*flood.exempt_networks, *trunk_nets], "edge.flood.exempt_networks", allow_empty=True)
        if exempt:
            out.update({"WITH_FLOOD_EXEMPT": "", "FLOOD_EXEMPT": f'"{exempt}"'})
        return out

    def _trunk_defines(self, trunk_nets: list[str]) -> dict[str, str]:
        edge = self.settings.edge
        if not edge.trunks:
            return {}
        self.trunk_rows()  # validates every trunk
        out = {
            "WITH_TRUNKS": "",
            "REG_CONTACT": f'"{_hostport(edge.host, edge.port, "edge")}"',
            "REG_TIMER": str(_int_range(edge.trunk_refresh_s, 1, 3600, "edge.trunk_refresh_s")),
            # uac retries a failed registration once `now + timer + 3` has passed `failure + retry`:
            # offset by timer + 3, the retry comes trunk_retry_s .. trunk_retry_s + timer seconds later
            "REG_RETRY": str(_int_range(edge.trunk_retry_s, 1, 86400, "edge.trunk_retry_s")
                             + edge.trunk_refresh_s + 3),
        }
        nets = _networks(trunk_nets, "edge.trunks", allow_empty=True)
        if nets:
            out.update({"WITH_TRUNK_NETS": "", "TRUNK_NETS": f'"{nets}"'})
        return out

    def trunk_networks(self) -> list[str]:
        """CIDRs calls from trunks come from: each registrar host's addresses + ``source_networks``."""
        nets: list[str] = []
        for trunk in self.settings.edge.trunks:
            addrs = _resolve(trunk.host)
            if not addrs:
                log.warning("edge.trunk_unresolved", trunk=trunk.name, host=trunk.host)
            for addr in addrs:
                nets.append(f"{addr}/{128 if ':' in addr else 32}")
            nets.extend(trunk.source_networks)
        return nets

    def trunk_rows(self) -> list[list[str | int | None]]:
        """Rows of the uacreg table (validated). Contains secrets: never log them."""
        edge = self.settings.edge
        rows: list[list[str | int | None]] = []
        names: set[str] = set()
        local_domain = edge.host
        for i, trunk in enumerate(edge.trunks, 1):
            where = f"edge.trunks[{trunk.name!r}]"
            if not _TRUNK_NAME.match(trunk.name):
                raise ConfigError(f"{where}: name must be 1..64 of [A-Za-z0-9_.-]", field="edge.trunks")
            if trunk.name in names:
                raise ConfigError(f"{where}: two trunks have this name", field="edge.trunks")
            names.add(trunk.name)
            registrar = _hostport(trunk.host, trunk.port, f"{where}.host")
            for value, what in ((trunk.username, "username"), (trunk.auth_username or trunk.username,
                                                               "auth_username")):
                if not _SIP_USER.match(value):
                    raise ConfigError(f"{where}.{what}: {value!r} is not a SIP user name", field="edge.trunks")
            password = trunk.password.get_secret_value()
            if not password:
                raise ConfigError(f"{where}.password is empty", field="edge.trunks")
            _no_controls(password, f"{where}.password")
            domain = trunk.domain or (trunk.host if trunk.port == 5060 else registrar)
            _check_domain(domain, f"{where}.domain")
            realm = trunk.realm or None
            if realm is not None:
                _no_controls(realm, f"{where}.realm")
                if '"' in realm:
                    raise ConfigError(f"{where}.realm must not contain quotes", field="edge.trunks")
            _int_range(trunk.expires, 1, 604800, f"{where}.expires")
            contact = None
            if trunk.contact:
                contact = trunk.contact
                _check_domain(contact, f"{where}.contact")
            proxy = f"sip:{registrar}"
            if trunk.transport != "udp":
                proxy += f";transport={trunk.transport}"
            if trunk.transport == "tls":
                if edge.tls_port is None:
                    raise ConfigError(f"{where}: a TLS trunk needs edge.tls_port (the tls module)",
                                      field="edge.trunks")
                if not CA_BUNDLE.is_file():
                    raise ConfigError(f"{where}: a TLS trunk is verified against {CA_BUNDLE}, which is "
                                      "missing (install ca-certificates)", field="edge.trunks")
            auth_user = trunk.auth_username or trunk.username
            ha1 = None
            if realm is not None:  # only the hash goes to disk; the realm must then match the challenge
                ha1 = hashlib.md5(f"{auth_user}:{realm}:{password}".encode()).hexdigest()
            rows.append([
                i, trunk.name, trunk.name, local_domain, trunk.username, domain, realm, auth_user,
                None if ha1 else password, ha1, proxy, trunk.expires, 0, 0, contact, None,
            ])
        return rows

    def render_dispatcher_list(self) -> str:
        lines = [
            "# generated by ivr.runtime.edge: the worker pool (dispatcher set 1)",
            "# setid destination flags priority attrs",
        ]
        for i, (host, port) in enumerate(self.workers):
            lines.append(f"{WORKERS_SET} sip:{_hostport(host, port, 'workers')} 0 0 duid=worker-{i}")
        return "\n".join(lines) + "\n"

    def render_config(self) -> str:
        try:
            body = self.template.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read Kamailio template {self.template}: {exc}",
                              path=str(self.template)) from exc
        body = body.removeprefix("#!KAMAILIO\n")
        header = [
            "#!KAMAILIO",
            f"# generated by ivr.runtime.edge from {self.template.name}; edit the template, not this file",
            *(f"#!define {name} {value}".rstrip() for name, value in self.defines().items()),
            "",
        ]
        return "\n".join(header) + body

    def render_tls_config(self) -> str:
        edge = self.settings.edge
        lines = [
            "# generated by ivr.runtime.edge: TLS of the SIP edge (Kamailio tls module)",
            "[server:default]",
            "method = TLSv1.2+",
            "verify_certificate = no",
            "require_certificate = no",
            f"certificate = {edge.tls_cert}",
            f"private_key = {edge.tls_key}",
            "",
        ]
        if any(t.transport == "tls" for t in edge.trunks):
            # loading the CA bundle costs ~0.5 s of CPU in every Kamailio process: only when needed
            lines += [
                "# trunks over TLS: the registrar's certificate chain must verify against the system CAs",
                "[client:default]",
                "method = TLSv1.2+",
                "verify_certificate = yes",
                "require_certificate = yes",
                f"ca_list = {CA_BUNDLE}",
                "",
            ]
        else:
            lines += [
                "# outgoing TLS (e.g. a worker's call to an agent phone with ;transport=tls): not verified",
                "[client:default]",
                "method = TLSv1.2+",
                "verify_certificate = no",
                "require_certificate = no",
                "",
            ]
        return "\n".join(lines)

    def render_numbers_table(self) -> str:
        numbers = [n for n in (self.numbers or []) if n != ANY_NUMBER]
        return _dbtext_table("key_name(string) key_type(int) value_type(int) key_value(string) expires(int) ",
                             ([n, 0, 0, "1", 0] for n in numbers))

    def domains(self) -> list[str]:
        """Request-URI hosts accepted on any port: edge.host, edge.domains (and edge.extra_listen)."""
        edge = self.settings.edge
        out: list[str] = []
        for host in [edge.host, *edge.extra_listen, *edge.domains]:
            kind = _host_kind(host, "edge.domains")
            names = [host.strip("[]").lower()]
            if kind == "ipv6":
                names.append(f"[{names[0]}]")
            out.extend(n for n in names if n not in out)
        return out

    def render_domains_table(self) -> str:
        return _dbtext_table("key_name(string) key_type(int) value_type(int) key_value(string) expires(int) ",
                             ([d, 0, 0, "1", 0] for d in self.domains()))

    def render_uacreg_table(self) -> str:
        return _dbtext_table(
            "id(int,auto) l_uuid(string) l_username(string) l_domain(string) r_username(string) "
            "r_domain(string) realm(string,null) auth_username(string) auth_password(string,null) "
            "auth_ha1(string,null) auth_proxy(string) expires(int) flags(int) reg_delay(int) "
            "contact_addr(string,null) socket(string,null) ",
            self.trunk_rows())

    def render_version_table(self) -> str:
        return _dbtext_table("table_name(string) table_version(int) ", [["uacreg", UACREG_VERSION]])

    def render(self, check: bool = True) -> Path:
        """Write ``kamailio.cfg``, ``dispatcher.list``, ``tls.cfg`` (with TLS) and the db_text tables
        into the edge's directory and (``check``) check them with ``kamailio -c``; :class:`ConfigError`
        (with Kamailio's message) if anything is wrong."""
        config = self.render_config()
        dispatcher = self.render_dispatcher_list()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.db_dir, 0o700)
        _write(self.dispatcher_list_path, dispatcher)
        _write(self.db_dir / "version", self.render_version_table())
        _write(self.db_dir / "domains", self.render_domains_table())
        self._write_numbers()
        _write(self.db_dir / "uacreg", self.render_uacreg_table(), mode=0o600)
        if self.settings.edge.tls_port is not None:
            _write(self.tls_config_path, self.render_tls_config(), mode=0o600)
        _write(self.cfg_path, config)
        if check:
            self.check()
        log.info("edge.rendered", cfg=str(self.cfg_path), workers=len(self.workers),
                 tls=self.settings.edge.tls_port is not None, trunks=len(self.settings.edge.trunks),
                 numbers=len(self.numbers) if self.check_numbers and self.numbers is not None else "any")
        return self.cfg_path

    def _write_numbers(self) -> None:
        """Write the numbers table with a strictly newer mtime: db_text (db_mode 1) re-reads a table
        only when its mtime (in seconds) grew, and two writes may fall in the same second."""
        path = self.db_dir / "numbers"
        try:
            before = int(path.stat().st_mtime)
        except FileNotFoundError:
            before = 0
        _write(path, self.render_numbers_table())
        stamp = max(int(time.time()), before + 1)
        os.utime(path, (stamp, stamp))

    def check(self) -> None:
        argv = [self.kamailio, "-c", "-f", str(self.cfg_path), "-Y", str(self.dir), "-w", str(self.dir)]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                                 stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise ConfigError(f"{self.kamailio} not found: is the kamailio package installed?") from exc
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(f"kamailio -c did not finish within 30 s for {self.cfg_path}",
                              path=str(self.cfg_path)) from exc
        output = (res.stdout or "") + (res.stderr or "")
        if res.returncode != 0 or "config file ok" not in output:
            errors = [ln for ln in output.splitlines() if re.search(r"ERROR|CRITICAL|error|failed", ln)]
            message = "\n".join(errors[:12]) or _tail(output)  # the first error is the cause
            raise ConfigError(f"kamailio rejected {self.cfg_path}:\n{message}",
                              path=str(self.cfg_path), exit_code=res.returncode, output=_tail(output, 40))

    # ----- running ---------------------------------------------------------------------------

    async def start(self, ready_within_s: float = 10.0) -> None:
        """Render, start Kamailio, and return once it answers OPTIONS on the edge address (UDP)."""
        await asyncio.to_thread(self.render)
        if any(t.transport == "tls" for t in self.settings.edge.trunks):
            ready_within_s += 20  # every Kamailio process loads the CA bundle (~0.5 s of CPU each)
        await self._process.start()
        try:
            await self.wait_ready(ready_within_s)
        except BaseException:
            await self._process.stop()
            raise
        log.info("edge.ready", host=self.settings.edge.host, port=self.settings.edge.port,
                 tls_port=self.settings.edge.tls_port, pid=self._process.pid)

    async def stop(self) -> None:
        await self._process.stop()

    async def wait_ready(self, within_s: float = 10.0) -> None:
        """Poll with OPTIONS until the edge answers (bounded); Unavailable if it never does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            if self._process.proc is not None and not self._process.running:
                raise Unavailable(f"kamailio exited with code {self._process.proc.returncode} while "
                                  f"starting (see its log on stderr)", code="edge.exited")
            if await self.ping(within_s=0.5):
                return
            if loop.time() > deadline:
                raise Unavailable(f"the edge did not answer OPTIONS on {self.address} within {within_s}s",
                                  code="edge.not_ready")
            await asyncio.sleep(0.1)

    async def ping(self, within_s: float = 1.0) -> bool:
        """Send one OPTIONS to the edge over UDP; True if it answered 200."""
        host, port = self.address
        return await sip_options_ping(host, port, within_s=within_s)

    # ----- run-time control over the ctl socket ------------------------------------------------

    async def rpc(self, *args: str, within_s: float = 5.0) -> str:
        """One Kamailio RPC over the control socket (``kamcmd``); its text output.
        :class:`Unavailable` when Kamailio is not running or the command fails."""
        if not self._process.running:
            raise Unavailable("the edge is not running", code="edge.not_running")
        try:
            proc = await asyncio.create_subprocess_exec(
                KAMCMD, "-s", "unix:kamailio_ctl", *args, cwd=str(self.dir),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError as exc:
            raise Unavailable(f"{KAMCMD} not found: is the kamailio package installed?",
                              code="edge.rpc") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), within_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise Unavailable(f"kamcmd {args[0]} did not answer within {within_s}s", code="edge.rpc") from None
        text = out.decode(errors="replace")
        if proc.returncode != 0 or text.lstrip().startswith("error:"):
            # never echo arguments or output: they may hold trunk secrets (uac.reg_info)
            raise Unavailable(f"kamcmd {args[0]} failed (exit {proc.returncode}): "
                              f"{_tail(err.decode(errors='replace') or text, 3)[:300]}", code="edge.rpc")
        return text

    async def set_draining(self, on: bool) -> None:
        """Draining on: new INVITEs get 503 + Retry-After, in-dialog requests of the calls in
        progress (BYE, re-INVITE, ACK) and workers' own requests still pass. Applied at once when
        Kamailio runs (``pv.shvSet`` over the control socket) and kept for its next start."""
        self._draining = bool(on)
        if self.cfg_path.exists():  # a restart of the same process (supervisor) keeps the state
            await asyncio.to_thread(_write, self.cfg_path, self.render_config())
        if self._process.running:
            await self.rpc("pv.shvSet", "draining", "int", "1" if on else "0")
        log.info("edge.draining", on=self._draining)

    async def set_numbers(self, numbers: Iterable[str] | None) -> None:
        """Replace the served numbers at run time (dial-plan reload): the numbers table is rewritten
        and reloaded (``htable.reload``); ``None`` or ``"*"`` accepts every number."""
        self.numbers = None if numbers is None else validate_numbers(numbers)
        if not self.db_dir.exists():  # not rendered yet: start() writes the table
            return
        await asyncio.to_thread(self._write_numbers)
        await asyncio.to_thread(_write, self.cfg_path, self.render_config())
        if self._process.running:
            await self.rpc("htable.reload", "numbers")
            await self.rpc("pv.shvSet", "check_numbers", "int", str(int(self.check_numbers)))
        log.info("edge.numbers", numbers=len(self.numbers) if self.check_numbers and self.numbers is not None
                 else "any")

    async def trunk_status(self) -> dict[str, dict[str, int | bool]]:
        """``{trunk name: {"registered": bool, "registering": bool, "expires_in": seconds, "flags": int}}``
        from the uac module (``uac.reg_info``; the secrets in its answer are dropped here).
        ``registered`` is cleared while a refresh is under way (``registering``)."""
        status: dict[str, dict[str, int | bool]] = {}
        for trunk in self.settings.edge.trunks:
            text = await self.rpc("uac.reg_info", "l_uuid", trunk.name)
            fields = dict(re.findall(r"^\s*(flags|diff_expires):\s*(-?\d+)\s*$", text, re.M))
            flags = int(fields.get("flags", "0"))
            status[trunk.name] = {"registered": bool(flags & UAC_REG_ONLINE),
                                  "registering": bool(flags & UAC_REG_ONGOING), "flags": flags,
                                  "expires_in": int(fields.get("diff_expires", "0"))}
        return status


def _check_domain(value: str, what: str) -> None:
    """``host`` or ``host:port`` (``[v6]:port``)."""
    m = re.match(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$", value)
    if not m:
        raise ConfigError(f"{what}: {value!r} is not host[:port]", field=what)
    if m.group(2) is not None:
        _hostport(m.group(1), int(m.group(2)), what)
    else:
        _host_kind(m.group(1), what)


def _write(path: Path, text: str, mode: int | None = None) -> None:
    """Atomically replace ``path``; ``mode`` (e.g. 0o600) is set before any byte is written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if mode is None:
        tmp.write_text(text)
    else:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)  # O_CREAT honours the umask
    tmp.replace(path)


async def sip_options_ping(host: str, port: int, within_s: float = 1.0) -> bool:
    """One SIP OPTIONS over UDP to ``host:port`` (bounded by ``within_s``); True on a 200 reply."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.bind((addr[0], 0))
        local_host, local_port = sock.getsockname()[:2]
        uri_host = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
        via_host = f"[{local_host}]" if family == socket.AF_INET6 else local_host
        call_id = f"{secrets.token_hex(8)}@ivr-edge-check"
        request = (
            f"OPTIONS sip:{uri_host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via_host}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:ready@{via_host}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{uri_host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        await loop.sock_sendto(sock, request, addr)
        end = loop.time() + within_s
        while (left := end - loop.time()) > 0:
            try:
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), left)
            except TimeoutError:
                return False
            text = data.decode("utf-8", "replace")
            if call_id in text:
                return text.startswith("SIP/2.0 200")
        return False
    except OSError:
        return False
    finally:
        sock.close()
