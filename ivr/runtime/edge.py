"""The SIP edge: Kamailio in front of the pool of IVR workers.

:class:`Edge` renders ``kamailio.cfg`` (the template next to this module plus a block of
``#!define`` lines made from :class:`~ivr.core.config.Settings`) and ``dispatcher.list`` (one line
per worker) into ``<run_dir>/kamailio/``, checks the result with ``kamailio -c``, and runs Kamailio
in the foreground (``-DD -E``: no daemon, log to stderr) as a :class:`ManagedProcess`. Every runtime
file (pid file, binrpc control socket) stays in that directory, so several edges run side by side
(one per test) as long as their ports differ.

Routing, in short (details in the template): INVITEs from ``edge.trusted_networks`` are
record-routed and dispatched round-robin (dispatcher algorithm 4) over the workers; a worker that
answers 486/503 or 408/nothing at all is replaced by the next one (``ds_next_dst`` in a
failure_route); when none is left the caller gets ``503`` with ``Retry-After: 5``. Workers are probed
with OPTIONS every ``edge.probe_interval_s`` seconds. OPTIONS addressed to the edge get 200 OK,
which is also how :meth:`Edge.start` knows Kamailio is ready.

Kamailio's own config check is lenient (a port of 70000 silently becomes 4464, a quoted
``"999.1.1.1"`` resolves to a multicast address, a bad subnet only fails at run time), so every value
is validated here before it reaches the config text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import secrets
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ivr.core.config import Settings
from ivr.core.errors import ConfigError, Unavailable
from ivr.core.logging import get_logger
from ivr.runtime.process import ManagedProcess

log = get_logger(__name__)

TEMPLATE = Path(__file__).with_name("kamailio.cfg")
KAMAILIO = "kamailio"
WORKERS_SET = 1
"""Dispatcher set id of the worker pool."""

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


def _networks(nets: Iterable[str]) -> str:
    out = []
    for net in nets:
        try:
            out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
        except ValueError as exc:
            raise ConfigError(f"edge.trusted_networks: {net!r} is not a network ({exc})",
                              field="edge.trusted_networks") from None
    if not out:
        raise ConfigError("edge.trusted_networks is empty: nobody could place a call",
                          field="edge.trusted_networks")
    return ",".join(out)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Edge:
    """Render and run the Kamailio edge for one set of settings."""

    def __init__(self, settings: Settings, workers: list[tuple[str, int]] | None = None, *,
                 template: Path | None = None, kamailio: str = KAMAILIO) -> None:
        self.settings = settings
        w = settings.workers
        self.workers: list[tuple[str, int]] = (
            list(workers) if workers is not None else [(w.host, w.sip_port(i)) for i in range(w.count)]
        )
        self.template = template or TEMPLATE
        self.kamailio = kamailio
        self.dir = settings.run_dir / "kamailio"
        self._process = ManagedProcess("edge", [
            kamailio, "-DD", "-E",
            "-f", str(self.cfg_path),
            "-Y", str(self.dir),          # runtime dir
            "-w", str(self.dir),          # working dir: the relative ctl socket lands here too
            "-P", str(self.pid_path),
        ], guard=True)

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
    def process(self) -> ManagedProcess:
        return self._process

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.edge.host, self.settings.edge.port

    # ----- rendering -------------------------------------------------------------------------

    def defines(self) -> dict[str, str]:
        """The values prepended to the template as ``#!define NAME value`` (validated)."""
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
        return {
            "EDGE_LISTEN_UDP": _listen("udp", edge.host, edge.port),
            "EDGE_LISTEN_TCP": _listen("tcp", edge.host, edge.port),
            "EDGE_URI": f'"sip:edge@{edge_hp}"',
            "TRUSTED_NETS": f'"{_networks(edge.trusted_networks)}"',
            "DS_LIST_FILE": f'"{self.dispatcher_list_path}"',
            "DS_PING_INTERVAL": str(edge.probe_interval_s),
            "CTL_SOCKET": '"unix:kamailio_ctl"',  # relative to the working dir (-w): no 108-byte limit
            "WORKERS_SET": str(WORKERS_SET),
        }

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
            *(f"#!define {name} {value}" for name, value in self.defines().items()),
            "",
        ]
        return "\n".join(header) + body

    def render(self) -> Path:
        """Write ``kamailio.cfg`` and ``dispatcher.list`` into ``<run_dir>/kamailio`` and check them
        with ``kamailio -c``; :class:`ConfigError` (with Kamailio's message) if anything is wrong."""
        config = self.render_config()
        dispatcher = self.render_dispatcher_list()
        self.dir.mkdir(parents=True, exist_ok=True)
        _write(self.dispatcher_list_path, dispatcher)
        _write(self.cfg_path, config)
        self.check()
        log.info("edge.rendered", cfg=str(self.cfg_path), workers=len(self.workers))
        return self.cfg_path

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
        await self._process.start()
        try:
            await self.wait_ready(ready_within_s)
        except BaseException:
            await self._process.stop()
            raise
        log.info("edge.ready", host=self.settings.edge.host, port=self.settings.edge.port,
                 pid=self._process.pid)

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


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
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
