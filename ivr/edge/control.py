"""Running the SIP edge: Kamailio started, probed, drained and reconfigured at run time.

:class:`Edge` is an :class:`~ivr.edge.config.EdgeConfig` that runs its rendered configuration in the
foreground (``-DD -E``: no daemon, log to stderr) as a :class:`~ivr.core.process.ManagedProcess`, and
changes it while it runs over the binrpc control socket (draining, the served numbers, trunk status).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path

from ivr.core.config import Settings
from ivr.core.errors import Unavailable
from ivr.core.logging import get_logger
from ivr.core.process import ManagedProcess
from ivr.edge.config import KAMAILIO, EdgeConfig, write_atomic
from ivr.edge.validate import tail, validate_numbers

log = get_logger(__name__)

KAMCMD = "kamcmd"
UAC_REG_ONGOING = 1 << 1  # uac_reg flag: a REGISTER transaction is under way
UAC_REG_ONLINE = 1 << 2  # uac_reg flag: registered (200 OK with our Contact)


class Edge(EdgeConfig):
    """Render and run the Kamailio edge for one set of settings (see :class:`EdgeConfig`)."""

    def __init__(self, settings: Settings, workers: list[tuple[str, int]] | None = None, *,
                 numbers: Iterable[str] | None = None, template: Path | None = None,
                 kamailio: str = KAMAILIO, sip_credentials: dict[str, str] | None = None,
                 webrtc: bool = False) -> None:
        super().__init__(settings, workers, numbers=numbers, template=template, kamailio=kamailio,
                         sip_credentials=sip_credentials, webrtc=webrtc)
        self._process = ManagedProcess("edge", self.argv(), guard=True)

    @property
    def process(self) -> ManagedProcess:
        return self._process

    @property
    def live(self) -> bool:
        """Whether Kamailio runs, so that RPCs can reach it."""
        return self._process.running

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
        if not self.live:
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
                              f"{tail(err.decode(errors='replace') or text, 3)[:300]}", code="edge.rpc")
        return text

    async def set_draining(self, on: bool) -> None:
        """Draining on: new INVITEs get 503 + Retry-After, in-dialog requests of the calls in
        progress (BYE, re-INVITE, ACK) and workers' own requests still pass. Applied at once when
        Kamailio runs (``pv.shvSet`` over the control socket) and kept for its next start."""
        self._draining = bool(on)
        if self.cfg_path.exists():  # a restart of the same process (supervisor) keeps the state
            await asyncio.to_thread(write_atomic, self.cfg_path, self.render_config())
        if self.live:
            await self.rpc("pv.shvSet", "draining", "int", "1" if on else "0")
        log.info("edge.draining", on=self._draining)

    async def set_numbers(self, numbers: Iterable[str] | None) -> None:
        """Replace the served numbers at run time (dial-plan reload): the numbers table is rewritten
        and reloaded (``htable.reload``); ``None`` or ``"*"`` accepts every number."""
        self.numbers = None if numbers is None else validate_numbers(numbers)
        if not self.db_dir.exists():  # not rendered yet: start() writes the table
            return
        await asyncio.to_thread(self._write_numbers)
        await asyncio.to_thread(write_atomic, self.cfg_path, self.render_config())
        if self.live:
            await self.rpc("htable.reload", "numbers")
            await self.rpc("pv.shvSet", "check_numbers", "int", str(int(self.check_numbers)))
        log.info("edge.numbers", numbers=len(self.numbers) if self.check_numbers and self.numbers is not None
                 else "any")

    async def set_sip_credentials(self, credentials: dict[str, str]) -> bool:
        """Replace the agents' HA1 table (``{agent id: HA1}``) at run time: rewritten (0600) and
        reloaded (``htable.reload sipauth``) when it changed; True when it did. An agent whose HA1
        changed or went away loses its registrations at once (``ul.rm``): a rotated password locks
        the old phone out now, not at its next refresh. A reload that fails is tried again by the
        next call (:class:`Unavailable` is raised)."""
        new = dict(credentials)
        if new == self.sip_credentials and not await asyncio.to_thread(self._sipauth_drifted):
            return False
        previous = self.sip_credentials
        dropped = [a for a, h in previous.items() if new.get(a) != h]
        self.sip_credentials = new
        if not self.db_dir.exists():  # not rendered yet: start() writes the table
            return True
        try:
            await asyncio.to_thread(self._write_sipauth)
            if self.live:
                await self.rpc("htable.reload", "sipauth")
        except BaseException:
            self.sip_credentials = previous  # not applied: the next call writes and reloads again
            raise
        for agent_id in dropped:
            with contextlib.suppress(Unavailable):  # no registration to remove (or no edge): fine
                await self.rpc("ul.rm", "location", agent_id)
        log.info("edge.sip_credentials", agents=len(new), changed=len(dropped) + len(set(new) - set(dropped)))
        return True

    def _sipauth_drifted(self) -> bool:
        """Whether the HA1 table on disk is not the one this object last applied (an edge run by
        someone else re-renders it at each start: :class:`AttachedEdge`). Ours: never."""
        return False

    async def registrations(self) -> dict[str, int]:
        """``{agent id: live contacts}`` of every AOR with at least one unexpired binding
        (``ul.dump`` over the control socket). :class:`Unavailable` when the edge does not answer."""
        return parse_ul_dump(await self.rpc("ul.dump"))

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


class AttachedEdge(Edge):
    """An edge that another process runs (systemd's ``ivr-edge.service`` in a multi-host deployment),
    controlled through the files and the control socket in ``directory`` (``/run/ivr-edge/kamailio``):
    RPCs while the control socket exists; the agents' HA1 table is rewritten whenever the file on
    disk is not the one last applied, since the edge's unit re-renders it (from the configuration
    file alone) at every start. Never starts or stops Kamailio."""

    def __init__(self, settings: Settings, directory: Path, *, kamailio: str = KAMAILIO) -> None:
        super().__init__(settings, [], kamailio=kamailio)
        self.dir = directory

    @property
    def live(self) -> bool:
        return self.ctl_socket.is_socket()

    async def start(self, ready_within_s: float = 10.0) -> None:
        raise Unavailable("an attached edge is started by its own service", code="edge.attached")

    async def stop(self) -> None:
        raise Unavailable("an attached edge is stopped by its own service", code="edge.attached")

    def _sipauth_drifted(self) -> bool:
        try:
            on_disk = (self.db_dir / "sipauth").read_text()
        except FileNotFoundError:
            return self.db_dir.exists()
        return on_disk != self.render_sipauth_table()


_AOR_LINE = re.compile(r"^\s*AoR:\s*(\S+)\s*$")
_EXPIRES_LINE = re.compile(r"^\s*Expires:\s*(\S+)\s*$")


def parse_ul_dump(text: str) -> dict[str, int]:
    """Count the live bindings per AOR in kamcmd's text form of ``ul.dump`` (``AoR: <user>`` lines,
    each followed by its contacts' ``Expires: <seconds left | permanent | deleted | expired>``)."""
    out: dict[str, int] = {}
    aor: str | None = None
    for line in text.splitlines():
        if m := _AOR_LINE.match(line):
            aor = m.group(1)
            out.setdefault(aor, 0)
        elif aor is not None and (m := _EXPIRES_LINE.match(line)):
            value = m.group(1)
            if value == "permanent" or (value.isdigit() and int(value) > 0):
                out[aor] += 1
    return {a: n for a, n in out.items() if n > 0}


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
