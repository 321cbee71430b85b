"""Agents' browser phones at the edge (``edge.webrtc``, docs/webrtc.md).

- **Certificates** of the WSS listener: ``edge.webrtc.cert``/``key`` when configured (production), else a
  self-signed pair for ``127.0.0.1``/``localhost`` that :func:`ensure_certificate` makes once under
  ``<run_dir>/certs`` (key mode 0600), so ``make run`` works on a laptop without any set-up.
- **Origins** allowed to open the WebSocket (:func:`allowed_origins`): the configured list, else the
  API's own origin(s) (the desktop page is served by the API).
- **rtpengine** (:class:`RtpEngine`): the media relay between browsers (ICE + DTLS-SRTP + rtcp-mux) and
  the workers (plain RTP), run in userspace (``--table=-1``: no kernel module, no root), with its ng
  control and its media on loopback (or the configured addresses) and a port range of its own. Kamailio
  asks it for every SDP of a call that rings a browser (the ``rtpengine`` module, ``kamailio.cfg``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from ivr.core.config import Settings
from ivr.core.errors import ConfigError, Unavailable
from ivr.core.logging import get_logger
from ivr.core.process import ManagedProcess
from ivr.edge.validate import host_kind, int_range

log = get_logger(__name__)

RTPENGINE = "rtpengine"
OPENSSL = "openssl"
CERT_DAYS = 825  # what browsers accept for a leaf certificate; a new one is made when it expires


def cert_paths(settings: Settings) -> tuple[Path, Path]:
    """The WSS listener's certificate and key: configured, or the generated loopback pair's paths."""
    w = settings.edge.webrtc
    if w.cert is not None and w.key is not None:
        return w.cert, w.key
    certs = settings.run_dir / "certs"
    return certs / "webrtc-localhost.crt", certs / "webrtc-localhost.key"


def uses_generated_certificate(settings: Settings) -> bool:
    return settings.edge.webrtc.cert is None


def ensure_certificate(settings: Settings, openssl: str = OPENSSL) -> tuple[Path, Path]:
    """The configured pair as it is; otherwise the self-signed loopback pair, made once (kept while it
    is valid for another day). Returns (cert, key). ConfigError when openssl is missing or fails."""
    cert, key = cert_paths(settings)
    if not uses_generated_certificate(settings):
        return cert, key
    if cert.is_file() and key.is_file() and _valid_for_a_day(cert, openssl):
        return cert, key
    cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(cert.parent, 0o700)
    tmp_key = key.with_name(f".{key.name}.{os.getpid()}.tmp")
    tmp_cert = cert.with_name(f".{cert.name}.{os.getpid()}.tmp")
    tmp_key.unlink(missing_ok=True)
    os.close(os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # 0600 before a byte is in it
    argv = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(tmp_key), "-out", str(tmp_cert), "-days", str(CERT_DAYS),
            "-subj", "/CN=localhost/O=hotline (self-signed, loopback only)",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
            "-addext", "extendedKeyUsage=serverAuth",
            "-set_serial", str(int.from_bytes(secrets.token_bytes(8), "big"))]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        tmp_key.unlink(missing_ok=True)
        raise ConfigError(f"{openssl} not found (install openssl) to make the WebRTC certificate") from exc
    if res.returncode != 0:
        tmp_key.unlink(missing_ok=True)
        tmp_cert.unlink(missing_ok=True)
        raise ConfigError(f"openssl could not make the WebRTC certificate: {res.stderr.strip()[-400:]}")
    os.chmod(tmp_key, 0o600)
    tmp_key.replace(key)
    tmp_cert.replace(cert)
    log.info("webrtc.certificate_created", cert=str(cert), key=str(key), days=CERT_DAYS)
    return cert, key


def _valid_for_a_day(cert: Path, openssl: str) -> bool:
    try:
        res = subprocess.run([openssl, "x509", "-checkend", "86400", "-noout", "-in", str(cert)],
                             capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def allowed_origins(settings: Settings) -> list[str]:
    """Origins (lower case) whose pages may open the edge's WebSocket: ``edge.webrtc.allowed_origins``,
    else the API's own: ``http://<api.host>:<port>``, plus ``localhost`` for a loopback API."""
    configured = settings.edge.webrtc.allowed_origins
    if configured:
        return sorted({o.lower() for o in configured})
    api = settings.api
    host = api.host
    origins = []
    kind = host_kind(host, "api.host")
    if kind == "ipv6":
        host = f"[{host.strip('[]')}]"
    if host in ("0.0.0.0", "[::]"):
        hosts = ["127.0.0.1", "localhost", socket.gethostname()]
    else:
        hosts = [host]
        try:
            if ipaddress.ip_address(host.strip("[]")).is_loopback:
                hosts.append("localhost")
        except ValueError:
            pass
    for h in hosts:
        for scheme in ("http", "https"):
            origins.append(f"{scheme}://{h.lower()}:{api.port}")
    return sorted(set(origins))


def ng_port(settings: Settings) -> int:
    port = settings.edge.webrtc.rtpengine_ng_port
    if port is None:
        raise ConfigError("edge.webrtc.rtpengine_ng_port is not set (edge.port + 2 is beyond 65535)",
                          field="edge.webrtc.rtpengine_ng_port")
    return int_range(port, 1, 65535, "edge.webrtc.rtpengine_ng_port")


def wss_url(settings: Settings) -> str:
    """Where a browser connects: ``wss://<edge.host>:<wss_port>`` (a loopback edge: ``127.0.0.1``)."""
    edge = settings.edge
    host = edge.host if host_kind(edge.host, "edge.host") != "ipv6" else f"[{edge.host.strip('[]')}]"
    return f"wss://{host}:{edge.webrtc.wss_port}"


class RtpEngine:
    """rtpengine for one set of settings: its command line, and running it as a role of ``ivr run``."""

    def __init__(self, settings: Settings, rtpengine: str = RTPENGINE) -> None:
        self.settings = settings
        self.rtpengine = rtpengine
        self.dir = settings.run_dir / "rtpengine"
        # the pid file names the run dir on the command line: a stray rtpengine is found by it
        self._process = ManagedProcess("rtpengine", self.argv(pidfile=self.dir / "rtpengine.pid"))

    @property
    def process(self) -> ManagedProcess:
        return self._process

    @property
    def control(self) -> tuple[str, int]:
        w = self.settings.edge.webrtc
        return w.rtpengine_host, ng_port(self.settings)

    def argv(self, rtpengine: str | None = None, pidfile: Path | None = None) -> list[str]:
        """Foreground, userspace only, no config file (everything is on the command line)."""
        w = self.settings.edge.webrtc
        for value, what in ((w.rtpengine_host, "edge.webrtc.rtpengine_host"),
                            (w.rtp_address, "edge.webrtc.rtp_address")):
            if host_kind(value, what) == "name":
                raise ConfigError(f"{what} must be an IP address (got {value[:64]!r})", field=what)
        if w.rtp_advertised is not None and host_kind(w.rtp_advertised, "edge.webrtc.rtp_advertised") == "name":
            raise ConfigError("edge.webrtc.rtp_advertised must be an IP address", field="edge.webrtc.rtp_advertised")
        lo = int_range(w.rtp_port_min, 1024, 65535, "edge.webrtc.rtp_port_min")
        hi = int_range(w.rtp_port_max, lo + 3, 65535, "edge.webrtc.rtp_port_max")
        ng = ng_port(self.settings)
        interface = w.rtp_address + (f"!{w.rtp_advertised}" if w.rtp_advertised else "")
        ng_host = w.rtpengine_host if ":" not in w.rtpengine_host else f"[{w.rtpengine_host}]"
        argv = [
            rtpengine or self.rtpengine, "--foreground", "--log-stderr", "--no-log-timestamps",
            "--config-file=none", "--table=-1", f"--interface={interface}",
            f"--listen-ng={ng_host}:{ng}", f"--port-min={lo}", f"--port-max={hi}",
            "--log-level=5", "--num-threads=2", "--delete-delay=0", "--timeout=60", "--silent-timeout=3600",
            "--final-timeout=14400", "--offer-timeout=120",
        ]
        if pidfile is not None:
            argv.append(f"--pidfile={pidfile}")
        return argv

    def render_config(self) -> str:
        """The same options as :meth:`argv` as an rtpengine.conf (``ivr deploy render``, read by
        ivr-rtpengine.service with ``--config-file``)."""
        lines = ["# generated by `ivr deploy render` from edge.webrtc: rtpengine for the agents' browser phones",
                 "# (docs/webrtc.md). Userspace forwarding (table = -1): no kernel module, no root.",
                 "[rtpengine]"]
        for arg in self.argv()[1:]:
            name, sep, value = arg.removeprefix("--").partition("=")
            if name in ("foreground", "log-stderr", "no-log-timestamps", "config-file", "pidfile"):
                continue  # command-line only (the unit passes -f -E)
            lines.append(f"{name} = {value}" if sep else f"{name} = true")
        return "\n".join(lines) + "\n"

    async def start(self, ready_within_s: float = 10.0) -> None:
        if shutil.which(self.rtpengine) is None:
            raise ConfigError(f"{self.rtpengine} not found: install rtpengine-daemon (deploy/install-system.sh) "
                              "or set edge.webrtc.enabled: false", field="edge.webrtc.enabled")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._process.start()
        try:
            await self.wait_ready(ready_within_s)
        except BaseException:
            await self._process.stop()
            raise
        log.info("rtpengine.ready", control=f"{self.control[0]}:{self.control[1]}", pid=self._process.pid)

    async def stop(self) -> None:
        await self._process.stop()

    async def wait_ready(self, within_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            if self._process.proc is not None and not self._process.running:
                raise Unavailable(f"rtpengine exited with code {self._process.proc.returncode} while starting "
                                  "(see its log on stderr)", code="rtpengine.exited")
            if await ng_ping(*self.control, within_s=0.5):
                return
            if loop.time() > deadline:
                raise Unavailable(f"rtpengine did not answer ping on {self.control} within {within_s} s",
                                  code="rtpengine.not_ready")
            await asyncio.sleep(0.1)


async def ng_command(host: str, port: int, command: bytes, within_s: float = 1.0) -> bytes | None:
    """Send one bencoded ng command (e.g. ``d7:command4:pinge``); its bencoded answer, or None."""
    cookie = secrets.token_hex(6).encode()
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_sendto(sock, cookie + b" " + command, (host, port))
            deadline = loop.time() + within_s
            while (left := deadline - loop.time()) > 0:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
                head, _, body = data.partition(b" ")
                if head == cookie:
                    return body
        except (OSError, TimeoutError):
            return None
    return None


async def ng_ping(host: str, port: int, within_s: float = 1.0) -> bool:
    return await ng_command(host, port, b"d7:command4:pinge", within_s) == b"d6:result4:ponge"
