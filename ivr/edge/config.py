"""The SIP edge's configuration: Kamailio in front of the pool of IVR workers.

:class:`EdgeConfig` renders ``kamailio.cfg`` (the template next to this module plus a block of
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
- **Outbound calls** (``edge.outbound_trunk``, default the first trunk): a worker's INVITE for
  ``sip:<number>@<edge>`` (digits, ``*``, ``#``, optional ``+``; not a hotline number) goes out through
  that trunk with its digest credentials (``uac_reg_request_to`` + ``uac_auth`` on 401/407); only
  workers may use it (toll fraud). Without trunks such an INVITE gets 503.
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

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from ivr.core.config import Settings, TrunkSettings
from ivr.core.errors import ConfigError
from ivr.core.logging import get_logger
from ivr.edge.validate import (
    _SIP_USER,
    _TRUNK_NAME,
    check_domain,
    check_tls_pair,
    dbtext_table,
    host_kind,
    hostport,
    int_range,
    listen,
    networks,
    no_controls,
    resolve,
    tail,
    validate_numbers,
)
from ivr.edge.webrtc import allowed_origins, cert_paths, ng_port

log = get_logger(__name__)

TEMPLATE = Path(__file__).with_name("kamailio.cfg")
KAMAILIO = "kamailio"
WORKERS_SET = 1
"""Dispatcher set id of the worker pool."""
ANY_NUMBER = "*"
"""In ``numbers``: every number is served (no 404 for unknown numbers)."""
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""CA certificates the edge verifies a TLS trunk's registrar against."""
UACREG_VERSION = 5  # uacreg table version of Kamailio 5.6 (UACREG_TABLE_VERSION)


class EdgeConfig:
    """Render and run the Kamailio edge for one set of settings.

    ``numbers``: the dialed numbers the hotline serves (the supervisor passes
    ``list(PlanRegistry.by_number)``); an INVITE for any other number gets 404 at the edge. ``None``
    (the default) or a list containing ``"*"`` accepts every number.
    """

    def __init__(self, settings: Settings, workers: list[tuple[str, int]] | None = None, *,
                 numbers: Iterable[str] | None = None, template: Path | None = None,
                 kamailio: str = KAMAILIO, sip_credentials: dict[str, str] | None = None,
                 webrtc: bool = False) -> None:
        self.settings = settings
        self.webrtc = webrtc and settings.edge.webrtc.enabled
        """Serve browsers' phones (``edge.webrtc``: the WSS listener and rtpengine for WebSocket contacts).
        ``ivr run`` and ``ivr deploy render`` ask for it (when ``edge.webrtc.enabled``); an edge made
        without it (the tests of other features) has no WSS socket and needs no certificate."""
        w = settings.workers
        self.workers: list[tuple[str, int]] = (
            list(workers) if workers is not None else [(w.host, w.sip_port(i)) for i in range(w.count)]
        )
        self.numbers: list[str] | None = None if numbers is None else validate_numbers(numbers)
        self.template = template or TEMPLATE
        self.kamailio = kamailio
        self.dir = settings.run_dir / "kamailio"
        self._draining = False
        self.sip_credentials: dict[str, str] = dict(sip_credentials or {})
        """``{agent id: digest HA1}`` of the agents whose phones may register (secrets: never logged)."""

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
        edge_hp = hostport(edge.host, edge.port, "edge")
        if edge.probe_interval_s < 1:
            raise ConfigError(f"edge.probe_interval_s must be >= 1 (got {edge.probe_interval_s})",
                              field="edge.probe_interval_s")
        if edge.probe_interval_s > 3600:
            raise ConfigError(f"edge.probe_interval_s must be <= 3600 (got {edge.probe_interval_s})",
                              field="edge.probe_interval_s")
        if not self.workers:
            raise ConfigError("the edge needs at least one worker", field="workers")
        for host, port in self.workers:
            hostport(host, port, "workers")
            if (host, port) == (edge.host, edge.port):
                raise ConfigError(f"worker {host}:{port} has the edge's own address", field="workers")
        retry_after = int_range(edge.retry_after_s, 1, 86400, "edge.retry_after_s")
        defines = {
            "EDGE_LISTEN_UDP": listen("udp", edge.host, edge.port),
            "EDGE_LISTEN_TCP": listen("tcp", edge.host, edge.port),
            "EDGE_URI": f'"sip:edge@{edge_hp}"',
            "TRUSTED_NETS": f'"{networks(edge.trusted_networks)}"',
            "DS_LIST_FILE": f'"{self.dispatcher_list_path}"',
            "DS_PING_INTERVAL": str(edge.probe_interval_s),
            "CTL_SOCKET": '"unix:kamailio_ctl"',  # relative to the working dir (-w): no 108-byte limit
            "WORKERS_SET": str(WORKERS_SET),
            "DS_FAILOVER_LIMIT": str(edge.failover_limit),
            "RETRY_AFTER_HDR": f'"Retry-After: {retry_after}\\r\\n"',
            "MAX_CPS": str(int_range(edge.admission_rate, 1, 100_000, "edge.max_calls_per_s")),
            "DB_URL": f'"text://{self.db_dir}"',
            "DRAINING_SHV": f'"draining=i:{int(self._draining)}"',
            "CHECK_NUMBERS_SHV": f'"check_numbers=i:{int(self.check_numbers)}"',
        }
        for path in (self.dir, self.db_dir):
            if re.search(r'[\s"\\]', str(path)):
                raise ConfigError(f"the run dir {path} must not contain spaces, quotes or backslashes",
                                  field="var_dir")
        trunk_nets = self.trunk_networks() if edge.trunks else []
        defines.update(self._registrar_defines())
        defines.update(self._tls_defines())
        defines.update(self._webrtc_defines())
        if "WITH_TLS" in defines or "WITH_WEBRTC" in defines:
            defines.update({"WITH_TLS_MODULE": "", "TLS_CONFIG": f'"{self.tls_config_path}"'})
        defines.update(self._flood_defines(trunk_nets))
        defines.update(self._trunk_defines(trunk_nets))
        if edge.outbound_trunk is not None and not edge.trunks:
            self.outbound_trunk()  # a name without any trunk: ConfigError
        return defines

    def _registrar_defines(self) -> dict[str, str]:
        reg = self.settings.edge.registrar
        realm = self.settings.edge.sip_realm
        no_controls(realm, "edge.registrar.realm")
        if not realm or re.search(r'["\\\s]', realm):
            raise ConfigError("edge.registrar.realm must be non-empty, without quotes, backslashes or spaces",
                              field="edge.registrar.realm")
        if not reg.min_expires_s <= reg.default_expires_s <= reg.max_expires_s:
            raise ConfigError("edge.registrar: min_expires_s <= default_expires_s <= max_expires_s is required",
                              field="edge.registrar")
        return {
            "AUTH_REALM": f'"{realm}"',
            "REG_MIN_EXPIRES": str(reg.min_expires_s),
            "REG_MAX_EXPIRES": str(reg.max_expires_s),
            "REG_DEFAULT_EXPIRES": str(reg.default_expires_s),
            "REG_MAX_CONTACTS": str(reg.max_contacts),
            "HT_AUTHFAIL": f'"authfail=>size=8;autoexpire={reg.auth_fail_window_s};"',
            "AUTH_FAIL_LIMIT": str(reg.auth_fail_limit),
            # a phone's source stays known a little longer than its longest registration
            "HT_PHONES": f'"phones=>size=8;autoexpire={reg.max_expires_s + 60};"',
        }

    def _tls_defines(self) -> dict[str, str]:
        edge = self.settings.edge
        if edge.tls_port is None:
            if edge.tls_cert is not None or edge.tls_key is not None:
                raise ConfigError("edge.tls_cert/tls_key are set but edge.tls_port is not", field="edge.tls_port")
            return {}
        hostport(edge.host, edge.tls_port, "edge.tls_port")
        if edge.tls_port == edge.port:
            raise ConfigError(f"edge.tls_port {edge.tls_port} is the SIP TCP port too", field="edge.tls_port")
        if edge.tls_cert is None or edge.tls_key is None:
            raise ConfigError("edge.tls_port needs edge.tls_cert and edge.tls_key", field="edge.tls_cert")
        check_tls_pair(edge.tls_cert, edge.tls_key)
        return {
            "WITH_TLS": "",
            "EDGE_LISTEN_TLS": listen("tls", edge.host, edge.tls_port),
        }

    def _webrtc_defines(self) -> dict[str, str]:
        edge = self.settings.edge
        w = edge.webrtc
        if not self.webrtc:
            return {}
        if w.wss_port is None:
            raise ConfigError("edge.webrtc.wss_port is not set (edge.port + 3 is beyond 65535)",
                              field="edge.webrtc.wss_port")
        hostport(edge.host, w.wss_port, "edge.webrtc.wss_port")
        if w.wss_port in (edge.port, edge.tls_port):
            raise ConfigError(f"edge.webrtc.wss_port {w.wss_port} is taken by the edge's SIP/TLS port",
                              field="edge.webrtc.wss_port")
        cert, key = cert_paths(self.settings)
        check_tls_pair(cert, key, ("edge.webrtc.cert", "edge.webrtc.key"))
        for origin in allowed_origins(self.settings):
            no_controls(origin, "edge.webrtc.allowed_origins")
        ng_host = w.rtpengine_host if host_kind(w.rtpengine_host, "edge.webrtc.rtpengine_host") != "ipv6" \
            else f"[{w.rtpengine_host.strip('[]')}]"
        if host_kind(w.rtpengine_host, "edge.webrtc.rtpengine_host") == "name":
            raise ConfigError("edge.webrtc.rtpengine_host must be an IP address", field="edge.webrtc.rtpengine_host")
        ng = ng_port(self.settings)
        if ng in (edge.port, w.wss_port):
            raise ConfigError(f"edge.webrtc.rtpengine_ng_port {ng} is one of the edge's SIP ports",
                              field="edge.webrtc.rtpengine_ng_port")
        return {
            "WITH_WEBRTC": "",
            "EDGE_LISTEN_WSS": listen("tls", edge.host, w.wss_port),
            "WSS_PORT": str(w.wss_port),
            "RTPENGINE_SOCK": f'"udp:{ng_host}:{ng}"',
        }

    def _flood_defines(self, trunk_nets: list[str]) -> dict[str, str]:
        flood = self.settings.edge.flood
        if not flood.enabled:
            return {}
        sampling = int_range(flood.sampling_s, 1, 300, "edge.flood.sampling_s")
        density = int_range(flood.max_requests, 1, 65535, "edge.flood.max_requests")  # pike counts in 16 bits
        block = int_range(flood.block_s, 0, 86400, "edge.flood.block_s")
        out = {"WITH_FLOOD": "", "FLOOD_SAMPLING": str(sampling), "FLOOD_DENSITY": str(density)}
        if block:
            out.update({"WITH_FLOOD_BAN": "", "HT_IPBAN": f'"ipban=>size=8;autoexpire={block};"'})
        exempt = networks([*flood.exempt_networks, *trunk_nets], "edge.flood.exempt_networks", allow_empty=True)
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
            "REG_CONTACT": f'"{hostport(edge.host, edge.port, "edge")}"',
            "REG_TIMER": str(int_range(edge.trunk_refresh_s, 1, 3600, "edge.trunk_refresh_s")),
            # uac retries a failed registration once `now + timer + 3` has passed `failure + retry`:
            # offset by timer + 3, the retry comes trunk_retry_s .. trunk_retry_s + timer seconds later
            "REG_RETRY": str(int_range(edge.trunk_retry_s, 1, 86400, "edge.trunk_retry_s")
                             + edge.trunk_refresh_s + 3),
        }
        out.update(self._outbound_defines())
        nets = networks(trunk_nets, "edge.trunks", allow_empty=True)
        if nets:
            out.update({"WITH_TRUNK_NETS": "", "TRUNK_NETS": f'"{nets}"'})
        return out

    def outbound_trunk(self) -> TrunkSettings | None:
        """The trunk workers' calls to outside numbers go out through: ``edge.outbound_trunk`` by name,
        else the first trunk; None without trunks. ConfigError for a name no trunk has."""
        edge = self.settings.edge
        if edge.outbound_trunk is None:
            return edge.trunks[0] if edge.trunks else None
        for trunk in edge.trunks:
            if trunk.name == edge.outbound_trunk:
                return trunk
        names = ", ".join(repr(t.name) for t in edge.trunks) or "none configured"
        raise ConfigError(f"edge.outbound_trunk {edge.outbound_trunk[:64]!r} is not one of edge.trunks ({names})",
                          field="edge.outbound_trunk")

    def _outbound_defines(self) -> dict[str, str]:
        trunk = self.outbound_trunk()
        if trunk is None:
            return {}
        ha1 = bool(trunk.realm)  # with a realm the uacreg table holds the HA1 hash, not the password
        return {
            "OUTBOUND_TRUNK": f'"{trunk.name}"',  # validated by trunk_rows(): [A-Za-z0-9_.-]
            # uac_reg_request_to mode: 0 = match l_uuid and use auth_password, +2 = use auth_ha1
            "OUTBOUND_REG_MODE": "2" if ha1 else "0",
            # uac_auth mode: 1 = the password AVP holds the HA1
            "OUTBOUND_AUTH_MODE": "1" if ha1 else "0",
        }

    def trunk_networks(self) -> list[str]:
        """CIDRs calls from trunks come from: each registrar host's addresses + ``source_networks``."""
        nets: list[str] = []
        for trunk in self.settings.edge.trunks:
            addrs = resolve(trunk.host)
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
            registrar = hostport(trunk.host, trunk.port, f"{where}.host")
            for value, what in ((trunk.username, "username"), (trunk.auth_username or trunk.username,
                                                               "auth_username")):
                if not _SIP_USER.match(value):
                    raise ConfigError(f"{where}.{what}: {value!r} is not a SIP user name", field="edge.trunks")
            password = trunk.password.get_secret_value()
            if not password:
                raise ConfigError(f"{where}.password is empty", field="edge.trunks")
            no_controls(password, f"{where}.password")
            domain = trunk.domain or (trunk.host if trunk.port == 5060 else registrar)
            check_domain(domain, f"{where}.domain")
            realm = trunk.realm or None
            if realm is not None:
                no_controls(realm, f"{where}.realm")
                if '"' in realm:
                    raise ConfigError(f"{where}.realm must not contain quotes", field="edge.trunks")
            int_range(trunk.expires, 1, 604800, f"{where}.expires")
            contact = None
            if trunk.contact:
                contact = trunk.contact
                check_domain(contact, f"{where}.contact")
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
            "# generated by ivr.edge: the worker pool (dispatcher set 1)",
            "# setid destination flags priority attrs",
        ]
        for i, (host, port) in enumerate(self.workers):
            lines.append(f"{WORKERS_SET} sip:{hostport(host, port, 'workers')} 0 0 duid=worker-{i}")
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
            f"# generated by ivr.edge from {self.template.name}; edit the template, not this file",
            *(f"#!define {name} {value}".rstrip() for name, value in self.defines().items()),
            "",
        ]
        return "\n".join(header) + body

    def render_tls_config(self) -> str:
        edge = self.settings.edge
        lines = ["# generated by ivr.edge: TLS of the SIP edge (Kamailio tls module)"]
        if self.webrtc:
            # the browsers' WSS socket presents edge.webrtc's certificate (or the loopback pair)
            cert, key = cert_paths(self.settings)
            host = edge.host if host_kind(edge.host, "edge.host") != "name" else resolve(edge.host)[0]
            host = f"[{host.strip('[]')}]" if ":" in host else host
            lines += [
                f"[server:{host}:{edge.webrtc.wss_port}]",
                "method = TLSv1.2+",
                "verify_certificate = no",
                "require_certificate = no",
                f"certificate = {cert}",
                f"private_key = {key}",
                "",
            ]
        default_cert, default_key = (edge.tls_cert, edge.tls_key) if edge.tls_port is not None \
            else cert_paths(self.settings)
        lines += [
            "[server:default]",
            "method = TLSv1.2+",
            "verify_certificate = no",
            "require_certificate = no",
            f"certificate = {default_cert}",
            f"private_key = {default_key}",
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
        return dbtext_table("key_name(string) key_type(int) value_type(int) key_value(string) expires(int) ",
                             ([n, 0, 0, "1", 0] for n in numbers))

    def domains(self) -> list[str]:
        """Request-URI hosts accepted on any port: edge.host, edge.domains (and edge.extra_listen)."""
        edge = self.settings.edge
        out: list[str] = []
        for host in [edge.host, *edge.extra_listen, *edge.domains]:
            kind = host_kind(host, "edge.domains")
            names = [host.strip("[]").lower()]
            if kind == "ipv6":
                names.append(f"[{names[0]}]")
            out.extend(n for n in names if n not in out)
        return out

    def render_domains_table(self) -> str:
        return dbtext_table("key_name(string) key_type(int) value_type(int) key_value(string) expires(int) ",
                             ([d, 0, 0, "1", 0] for d in self.domains()))

    def render_origins_table(self) -> str:
        """htable ``wsorigins``: the Origins whose pages may open the WebSocket (lower case)."""
        return dbtext_table("key_name(string) key_type(int) value_type(int) key_value(string) expires(int) ",
                            ([o, 0, 0, "1", 0] for o in allowed_origins(self.settings)))

    def render_uacreg_table(self) -> str:
        return dbtext_table(
            "id(int,auto) l_uuid(string) l_username(string) l_domain(string) r_username(string) "
            "r_domain(string) realm(string,null) auth_username(string) auth_password(string,null) "
            "auth_ha1(string,null) auth_proxy(string) expires(int) flags(int) reg_delay(int) "
            "contact_addr(string,null) socket(string,null) ",
            self.trunk_rows())

    def render_sipauth_table(self) -> str:
        """The agents' HA1s (htable ``sipauth``). Contains secrets: written 0600, never logged."""
        for agent_id, ha1 in self.sip_credentials.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", agent_id) or not re.fullmatch(r"[0-9a-f]{32}", ha1):
                raise ConfigError(f"sip credential of {agent_id[:64]!r} is not an agent id with an HA1",
                                  field="users")
        return dbtext_table("key_name(string) key_type(int) value_type(int) key_value(string) expires(int) ",
                            ([a, 0, 0, h, 0] for a, h in sorted(self.sip_credentials.items())))

    def render_version_table(self) -> str:
        return dbtext_table("table_name(string) table_version(int) ", [["uacreg", UACREG_VERSION]])

    def render(self, check: bool = True) -> Path:
        """Write ``kamailio.cfg``, ``dispatcher.list``, ``tls.cfg`` (with TLS) and the db_text tables
        into the edge's directory and (``check``) check them with ``kamailio -c``; :class:`ConfigError`
        (with Kamailio's message) if anything is wrong."""
        config = self.render_config()
        dispatcher = self.render_dispatcher_list()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.db_dir, 0o700)
        write_atomic(self.dispatcher_list_path, dispatcher)
        write_atomic(self.db_dir / "version", self.render_version_table())
        write_atomic(self.db_dir / "domains", self.render_domains_table())
        self._write_numbers()
        self._write_sipauth()
        write_atomic(self.db_dir / "uacreg", self.render_uacreg_table(), mode=0o600)
        if self.settings.edge.tls_port is not None or self.webrtc:
            write_atomic(self.tls_config_path, self.render_tls_config(), mode=0o600)
        if self.webrtc:
            write_atomic(self.db_dir / "wsorigins", self.render_origins_table())
        write_atomic(self.cfg_path, config)
        if check:
            self.check()
        log.info("edge.rendered", cfg=str(self.cfg_path), workers=len(self.workers),
                 tls=self.settings.edge.tls_port is not None, webrtc=self.webrtc,
                 trunks=len(self.settings.edge.trunks),
                 numbers=len(self.numbers) if self.check_numbers and self.numbers is not None else "any")
        return self.cfg_path

    def _write_numbers(self) -> None:
        self._write_table("numbers", self.render_numbers_table())

    def _write_sipauth(self) -> None:
        self._write_table("sipauth", self.render_sipauth_table(), mode=0o600)

    def _write_table(self, name: str, text: str, mode: int | None = None) -> None:
        """Write a db_text table with a strictly newer mtime: db_text (db_mode 1) re-reads a table
        only when its mtime (in seconds) grew, and two writes may fall in the same second."""
        path = self.db_dir / name
        try:
            before = int(path.stat().st_mtime)
        except FileNotFoundError:
            before = 0
        write_atomic(path, text, mode=mode)
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
            message = "\n".join(errors[:12]) or tail(output)  # the first error is the cause
            raise ConfigError(f"kamailio rejected {self.cfg_path}:\n{message}",
                              path=str(self.cfg_path), exit_code=res.returncode, output=tail(output, 40))


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
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
