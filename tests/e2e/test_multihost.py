"""Multi-host: one Kamailio edge dispatching over workers on two hosts.

The two worker "hosts" are network namespaces (``hostA``, ``hostB``) created by this test, each joined
to the root namespace by a veth pair in a private /24 that no interface of the machine uses:

    root namespace                                           hostA (ns)          hostB (ns)
    127.0.0.1   sipp caller (signalling) -> Kamailio edge    .2  ivr worker      .6  ivr worker
                API, Redis                                   (--index 0,          (--index 0,
    .1 (veth A) Kamailio, Redis, agent phone (sipp),          --name hostA-w0)     --name hostB-w0)
                caller media
    .5 (veth B) Kamailio, Redis

Everything runs as in production (no ``ivr run``): Redis with a password bound to 127.0.0.1 and the
root-side veth addresses; each worker runs ``ip netns exec <ns> python -m ivr.cli worker`` with
``workers.host`` = its namespace address and ``redis.url`` = the root-side address of its veth; the
edge runs the Kamailio config written by ``ivr deploy render`` (``workers.remote`` = both workers,
``edge.extra_listen`` = both root-side veth addresses), with ``ivr phones`` beside it (what
ivr-phones.service runs: the edge's registrations to Redis); the API on 127.0.0.1.

Kamailio relays signalling only: RTP flows directly between the phones and the worker holding the
call, so the caller's media (and the agent phone) are on a root-side veth address the namespaces
route to. Audio is checked on the wire with an AF_PACKET capture on the root-side veths.

What it proves:
- load-based dispatch: with a call in progress on one host the next call lands on the other (the
  ``worker`` field of ``ivr:call:<id>``, the source address of the agent INVITE, the edge's own
  "dispatched to" log line all agree);
- the whole flow (IVR, DTMF 2, queue, screen-pop on agent1's WebSocket before the agent phone rings,
  bridged audio both ways, agent hangs up, call record closed) completes through each namespace worker;
- an agent whose phone registers at the edge (desk1) is marked registered by the poller, offered a
  call (the worker sends the offer to its address of record at the edge, which forks it to the
  registered contact), and told when it unregisters (``agent.phone``);
- a killed worker is taken out by the edge's OPTIONS probes and the next calls all go to the other
  host; restarted, it is probed back in and gets calls again.

Namespaces and veths carry a prefix with the test process id (``ivrmh<pid>-hostA``, ``imh<pid>a``):
they are deleted in finalizers, and stale ones of dead test runs are removed before the test starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from redis.asyncio import Redis

from ivr.core.config import load_settings
from ivr.core.process import die_with_parent, pid_alive, wait_tcp
from ivr.dialplan.loader import PlanRegistry
from ivr.edge import sip_options_ping
from ivr.queues.store import QueueStore
from ivr.runtime.supervisor import build_prompts
from tests.conftest import kill_matching
from tests.desktop import AgentDesktop
from tests.e2e.conftest import Hotline
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sniffer import RtpView

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
NS_PREFIX = "ivrmh"     # network namespaces: ivrmh<pid>-hostA
LINK_PREFIX = "imh"     # root-side veth ends: imh<pid>a (<= 15 characters with the peer's "n")
WORKER_SIP_PORT = 5070  # inside each namespace (fresh network stack: nothing else binds there)
WORKER_RTP_PORT = 20000
ALAW_SILENCE = {0xD5, 0x55, 0xD4, 0x54}
TOKENS = {"agent1": "agent1-multihost-token", "super1": "super1-multihost-token", "desk1": "desk1-multihost-token"}
DESK_PASSWORD = "desk1-multihost-sip-password"
REALM = "hotline"  # one digest realm for every role (the default, edge.host, differs between the roles here)


# ----- network namespaces ------------------------------------------------------------------------

def ip_cmd(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


def remove_namespaces(owner: int | None = None) -> None:
    """Delete our namespaces and veths: those of ``owner`` (a pid), or of test runs that are gone.
    Processes still inside a namespace (ours, from a crashed run) are killed by pid first: a
    namespace with processes in it outlives ``ip netns del``."""
    for line in ip_cmd("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{NS_PREFIX}(\d+)-host[AB]", name)
        if not m:
            continue
        pid = int(m.group(1))
        if (owner is not None and pid != owner) or (owner is None and pid_alive(pid)):
            continue
        for p in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                                timeout=15, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(p), signal.SIGKILL)
        ip_cmd("netns", "del", name, check=False)
    for line in ip_cmd("-o", "link", "show", check=False).splitlines():
        m = re.match(rf"\d+: ({LINK_PREFIX}(\d+)[ab])[@:]", line)
        if not m:
            continue
        pid = int(m.group(2))
        if (owner is not None and pid != owner) or (owner is None and pid_alive(pid)):
            continue
        ip_cmd("link", "del", m.group(1), check=False)


def pick_subnet() -> ipaddress.IPv4Network:
    """A private /24 that no address or route of the root namespace touches."""
    used = []
    for line in ip_cmd("-o", "-4", "addr", "show").splitlines():
        m = re.search(r"inet (\S+)", line)
        if m:
            used.append(ipaddress.ip_interface(m.group(1)).network)
    for line in ip_cmd("-4", "route", "show", "table", "all").splitlines():
        dst = line.split()[0] if line.split() else ""
        if dst.startswith(("default", "broadcast", "local")) or not dst[:1].isdigit():
            continue
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(dst, strict=False))
    start = os.getpid() % 200
    for i in range(200):
        net = ipaddress.ip_network(f"10.231.{(start + i) % 200 + 20}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free private /24 in 10.231.0.0/16")


@dataclass
class Host:
    label: str         # hostA
    ns: str            # ivrmh<pid>-hostA
    veth: str          # root-side end
    root_ip: str       # root-side address (the edge, Redis and the phones as this host sees them)
    ip: str            # the host's own address (its worker binds it)

    @property
    def worker_name(self) -> str:
        return f"{self.label}-w0"


class Network:
    def __init__(self) -> None:
        self.owner = os.getpid()
        self.subnet = pick_subnet()
        a = list(self.subnet.hosts())
        self.hosts = [
            Host("hostA", f"{NS_PREFIX}{self.owner}-hostA", f"{LINK_PREFIX}{self.owner}a", str(a[0]), str(a[1])),
            Host("hostB", f"{NS_PREFIX}{self.owner}-hostB", f"{LINK_PREFIX}{self.owner}b", str(a[4]), str(a[5])),
        ]

    def up(self) -> None:
        for h in self.hosts:
            ip_cmd("netns", "add", h.ns)
            ip_cmd("link", "add", h.veth, "type", "veth", "peer", "name", f"{h.veth}n", "netns", h.ns)
            for ifname, ns in ((h.veth, None), (f"{h.veth}n", h.ns)):
                ip_cmd("link", "set", "dev", ifname, "addrgenmode", "none", ns=ns, check=False)  # no IPv6 chatter
            ip_cmd("addr", "add", f"{h.root_ip}/30", "dev", h.veth)
            ip_cmd("link", "set", h.veth, "up")
            ip_cmd("addr", "add", f"{h.ip}/30", "dev", f"{h.veth}n", ns=h.ns)
            ip_cmd("link", "set", "lo", "up", ns=h.ns)
            ip_cmd("link", "set", f"{h.veth}n", "up", ns=h.ns)
            # the rest of the test /24 (the other root-side address) via the root namespace; no default route
            ip_cmd("route", "add", str(self.subnet), "via", h.root_ip, ns=h.ns)

    def down(self) -> None:
        remove_namespaces(owner=self.owner)


# ----- processes ---------------------------------------------------------------------------------

class Proc:
    """A child in its own process group with stdout+stderr in a log file; dies with the test process."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_parent, process_group=0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await self.proc.wait()
        self.signal(signal.SIGKILL)  # stragglers of the group

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            await self.proc.wait()

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return f"--- {self.name} ---\n" + "\n".join(lines[-n:])


async def wait_until(what: str, check: Any, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


# ----- wire capture on the root-side veths -------------------------------------------------------

@dataclass(frozen=True)
class Packet(RtpView):
    ts: float
    src_ip: str
    dst_ip: str
    src: int
    dst: int
    payload: bytes



class VethSniffer:
    """UDP datagrams on the given interfaces, both directions (a veth shows each packet once)."""

    def __init__(self, ifnames: list[str], ports: set[int], max_seconds: float = 90.0) -> None:
        self.ports, self.max_seconds = ports, max_seconds
        self.packets: list[Packet] = []
        self._socks = []
        for ifname in ifnames:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            s.bind((ifname, 0))
            self._socks.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="veth-sniffer", daemon=True)

    def __enter__(self) -> VethSniffer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self._socks:
            s.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select(self._socks, [], [], 0.2)
            for s in ready:
                frame = s.recv(65535)
                ts = time.time()
                if len(frame) < 42 or frame[12:14] != b"\x08\x00":
                    continue
                ipv4 = frame[14:]
                ihl = (ipv4[0] & 0x0F) * 4
                if ipv4[9] != 17:
                    continue
                src, dst, length = struct.unpack("!HHH", ipv4[ihl:ihl + 6])
                if src not in self.ports and dst not in self.ports:
                    continue
                self.packets.append(Packet(ts, socket.inet_ntoa(ipv4[12:16]), socket.inet_ntoa(ipv4[16:20]),
                                           src, dst, bytes(ipv4[ihl + 8:ihl + length])))

    def sip_requests(self, method: str, dst: int) -> list[Packet]:
        return [p for p in self.packets if p.dst == dst and p.payload.startswith(method.encode() + b" ")]

    def rtp(self, *, src: int | None = None, dst: int | None = None, after: float = 0.0) -> list[Packet]:
        return [p for p in self.packets if p.is_rtp and p.ts >= after and p.rtp_payload_type == 8
                and (src is None or p.src == src) and (dst is None or p.dst == dst)]


def voiced(payload: bytes) -> bool:
    return sum(b not in ALAW_SILENCE for b in payload) > len(payload) // 2


# ----- the deployment ----------------------------------------------------------------------------

@dataclass
class Multihost:
    workdir: Path
    net: Network = field(default_factory=Network)
    redis_port: int = field(default_factory=free_udp_tcp_port)
    redis_password: str = field(default_factory=lambda: secrets.token_hex(16))
    edge_port: int = field(default_factory=free_udp_tcp_port)
    api_port: int = field(default_factory=free_udp_tcp_port)
    agent_port: int = field(default_factory=free_udp_tcp_port)
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def a(self) -> Host:
        return self.net.hosts[0]

    @property
    def b(self) -> Host:
        return self.net.hosts[1]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def edge_dir(self) -> Path:
        return self.workdir / "edge-render" / "kamailio"

    def redis_url(self, host: str) -> str:
        return f"redis://:{self.redis_password}@{host}:{self.redis_port}/0"

    def config(self, role: str, **extra: Any) -> Path:
        cfg: dict[str, Any] = {
            "var_dir": str(self.workdir / role / "var"),
            "dialplans_dir": str(ROOT / "dialplans"),
            # the test process's prompt cache (tests/e2e/conftest.py): rendering every prompt again with
            # espeak-ng took most of this rig's start
            "prompts": {"dir": str(ROOT / "prompts"),
                        "cache_dir": str(Hotline.shared_prompt_cache or self.workdir / "prompt-cache")},
            "redis": {"url": self.redis_url("127.0.0.1")},
            "speech": {"enabled": False},
            "routing": {"wrapup_s": 1.0},
            "users": [
                {"id": "agent1", "name": "Ada", "skills": {"billing": 4},
                 "sip_uri": f"sip:agent1@{self.a.root_ip}:{self.agent_port}", "token": TOKENS["agent1"]},
                {"id": "super1", "name": "Sam", "role": "supervisor", "token": TOKENS["super1"]},
                # a phone that registers at the edge, wherever the agent sits (ivr-phones polls it)
                {"id": "desk1", "name": "Dee", "skills": {"billing": 3}, "phone": "registered",
                 "sip_password": DESK_PASSWORD, "token": TOKENS["desk1"]},
            ],
        }
        if "edge" in extra:
            extra = {**extra, "edge": {"registrar": {"realm": REALM}, **extra["edge"]}}
        for key, value in extra.items():
            cfg[key] = {**cfg.get(key, {}), **value}
        path = self.workdir / f"{role}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url("127.0.0.1"))

    def store(self, redis: Redis) -> QueueStore:
        return QueueStore(redis, "ivr")

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs.values())

    # --- start/stop ---

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.net.up)
        await self._start_redis()
        # the API stores desk1's address of record at the edge (sip:desk1@<edge.host>:<edge.port>), where
        # the workers send its offers: an edge address both worker hosts reach
        api_cfg = self.config("api", api={"port": self.api_port},
                              edge={"host": self.a.root_ip, "port": self.edge_port})
        settings = load_settings(api_cfg)
        await asyncio.to_thread(build_prompts, settings, PlanRegistry.from_dir(settings.dialplans_dir))
        redis = self.redis()
        try:
            await self.store(redis).register_agent("agent1", name="Ada", skills={"billing": 4},
                                                   sip_uri=f"sip:agent1@{self.a.root_ip}:{self.agent_port}",
                                                   languages=["en"])
        finally:
            await redis.aclose()
        for h in self.net.hosts:
            await self.start_worker(h)
        await self._start_edge()
        self.procs["api"] = Proc("api", [sys.executable, "-m", "ivr.cli", "api", "--config", str(api_cfg)],
                                 self.workdir / "api.log")
        await self.procs["api"].start()
        await wait_tcp("127.0.0.1", self.api_port, 20)
        await wait_until("both workers active at the edge", self._all_active, 20)

    async def _start_redis(self) -> None:
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        proc = Proc("redis", [
            "redis-server", "--bind", "127.0.0.1", self.a.root_ip, self.b.root_ip, "--port", str(self.redis_port),
            "--requirepass", self.redis_password, "--protected-mode", "yes", "--dir", str(data),
            "--appendonly", "yes", "--save", "", "--logfile", ""], self.workdir / "redis.log")
        self.procs["redis"] = proc
        await proc.start()
        await wait_tcp("127.0.0.1", self.redis_port, 10)

    async def start_worker(self, h: Host) -> None:
        # the edge's part of the shared config too: a worker admits calls from the edge's sockets only
        cfg = self.config(f"worker-{h.label}", redis={"url": self.redis_url(h.root_ip)},
                          workers={"host": h.ip, "count": 1, "sip_port_base": WORKER_SIP_PORT,
                                   "rtp_port_base": WORKER_RTP_PORT},
                          edge={"host": "127.0.0.1", "port": self.edge_port,
                                "extra_listen": [self.a.root_ip, self.b.root_ip]})
        proc = Proc(h.worker_name, ["ip", "netns", "exec", h.ns, sys.executable, "-m", "ivr.cli", "worker",
                                    "--config", str(cfg), "--index", "0", "--name", h.worker_name],
                    self.workdir / f"{h.worker_name}.log")
        self.procs[h.worker_name] = proc
        await proc.start()
        redis = self.redis()
        try:
            key = self.store(redis).keys.worker_alive(h.worker_name)

            async def alive() -> bool:
                assert proc.running, f"worker {h.worker_name} exited:\n{proc.tail()}"
                return bool(await redis.exists(key))

            await wait_until(f"{h.worker_name} alive in Redis", alive, 30)
        finally:
            await redis.aclose()

    async def _start_edge(self) -> None:
        cfg = self.config("edge", edge={"host": "127.0.0.1", "port": self.edge_port, "probe_interval_s": 1,
                                        "trusted_networks": ["127.0.0.0/8", str(self.net.subnet)],
                                        "extra_listen": [self.a.root_ip, self.b.root_ip]},
                          workers={"remote": [f"{h.ip}:{WORKER_SIP_PORT}" for h in self.net.hosts]})
        out = self.workdir / "edge-render"
        res = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "ivr.cli", "deploy", "render", "--config", str(cfg),
                             "--out", str(out), "--only", "kamailio"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, f"ivr deploy render failed:\n{res.stdout}\n{res.stderr}"
        kam = self.edge_dir
        # what ivr-edge.service runs, under the guard so Kamailio's children die with the test
        proc = Proc("edge", [sys.executable, "-m", "ivr.runtime.guard", "--", "kamailio", "-DD", "-E",
                             "-f", str(kam / "kamailio.cfg"), "-Y", str(kam), "-w", str(kam),
                             "-P", str(kam / "kamailio.pid")], self.workdir / "edge.log")
        self.procs["edge"] = proc
        await proc.start()

        async def ready() -> bool:
            assert proc.running, f"kamailio exited:\n{proc.tail()}"
            return await sip_options_ping("127.0.0.1", self.edge_port, within_s=0.5)

        await wait_until("the edge answering OPTIONS", ready, 15)
        # what ivr-phones.service runs next to it: the edge's registrations to Redis
        self.procs["phones"] = Proc("phones", [sys.executable, "-m", "ivr.cli", "phones", "--config", str(cfg),
                                               "--edge-dir", str(kam), "--name", "edge-1"], self.workdir / "phones.log")
        await self.procs["phones"].start()

    async def dispatcher_flags(self) -> dict[str, str]:
        """{worker uri: dispatcher flags} from the edge's control socket ("AP" active, "IP" inactive)."""
        res = await asyncio.to_thread(subprocess.run, ["kamcmd", "-s", "unix:kamailio_ctl", "dispatcher.list"],
                                      cwd=self.edge_dir, capture_output=True, text=True, timeout=10, check=False)
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", res.stdout))

    def uri(self, h: Host) -> str:
        return f"sip:{h.ip}:{WORKER_SIP_PORT}"

    async def _all_active(self) -> bool:
        flags = await self.dispatcher_flags()
        return all(flags.get(self.uri(h), "").startswith("A") for h in self.net.hosts)

    async def stop(self) -> None:
        for name in ["api", "phones", "edge", *[h.worker_name for h in self.net.hosts], "redis"]:
            if name in self.procs:
                with contextlib.suppress(Exception):
                    await self.procs[name].stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def multihost(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Multihost]:
    await asyncio.to_thread(remove_namespaces)  # stale namespaces/veths of test runs that died
    mh = Multihost(tmp_path_factory.mktemp("multihost"))
    try:
        await mh.start()
        yield mh
    finally:
        try:
            await mh.stop()
        finally:
            kill_matching(str(mh.workdir))  # safety net: nothing started for this test outlives it
            await asyncio.to_thread(mh.net.down)


# ----- phones and desktop ------------------------------------------------------------------------

def caller_scenario(out: Path, **values: Any) -> str:
    """caller.xml with its SDP on sipp's media address (-mi) instead of its signalling address: the
    caller signals to the edge on 127.0.0.1 but its RTP goes straight to a worker host."""
    path = Path(render_scenario("caller.xml", out, **values))
    text = path.read_text()
    assert text.count("c=IN IP[local_ip_type] [local_ip]") == 1
    path.write_text(text.replace("c=IN IP[local_ip_type] [local_ip]", "c=IN IP[media_ip_type] [media_ip]"))
    return str(path)


async def run_caller(mh: Multihost, scenario_file: str, workdir: Path, tag: str, *, calls: int = 1,
                     concurrent: int = 1, media_port: int | None = None,
                     limit_s: float = 45) -> tuple[int | None, str]:
    """sipp caller: signalling 127.0.0.1 -> edge, media on hostA's root-side address; ``calls`` calls,
    at most ``concurrent`` at a time."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    port, media = free_udp_tcp_port(), media_port or free_udp_tcp_port()
    argv = ["sipp", f"127.0.0.1:{mh.edge_port}", "-sf", scenario_file, "-s", "1000",
            "-i", "127.0.0.1", "-p", str(port), "-mi", mh.a.root_ip, "-mp", str(media), "-ci", "127.0.0.1",
            "-nostdin", "-trace_msg", "-message_file", str(workdir / f"{tag}.messages.log"),
            "-trace_err", "-error_file", str(workdir / f"{tag}.errors.log"),
            "-m", str(calls), "-l", str(concurrent), "-r", "10", "-timeout", f"{int(limit_s)}s", "-timeout_error"]
    proc = Proc(f"sipp-{tag}", argv, workdir / f"{tag}.screen.txt")
    await proc.start()
    assert proc.proc is not None
    try:
        code: int | None = await asyncio.wait_for(proc.proc.wait(), limit_s + 10)
    except TimeoutError:
        code = None
    finally:
        await proc.stop(timeout=2)
    errors = (workdir / f"{tag}.errors.log")
    return code, (errors.read_text(errors="replace")[-3000:] if errors.exists() else "") + proc.tail(30)


def agent_phone(mh: Multihost, scenario_file: str, workdir: Path, tag: str, media_port: int) -> Proc:
    """The agent's phone (sipp UAS, one call) on hostA's root-side address: both worker hosts reach it."""
    ip = mh.a.root_ip
    return Proc(f"sipp-{tag}", [
        "sipp", "-sf", scenario_file, "-i", ip, "-p", str(mh.agent_port), "-mi", ip, "-mp", str(media_port),
        "-ci", "127.0.0.1", "-nostdin", "-m", "1", "-timeout", "60s",
        "-trace_msg", "-message_file", str(workdir / f"{tag}.messages.log"),
        "-trace_err", "-error_file", str(workdir / f"{tag}.errors.log")], workdir / f"{tag}.screen.txt")


async def set_state(http: aiohttp.ClientSession, mh: Multihost, state: str) -> None:
    async with http.post(f"{mh.api}/api/v1/agents/agent1/state", json={"state": state},
                         headers={"Authorization": f"Bearer {TOKENS['agent1']}"}) as r:
        assert r.status == 200, await r.text()


async def calls_started_since(mh: Multihost, last_id: str) -> list[tuple[str, str]]:
    """(call id, worker) of every call.started event after ``last_id``, each checked against the
    call record's ``worker`` field."""
    redis = mh.redis()
    try:
        store = mh.store(redis)
        out = []
        for ev in await store.read_events(last_id, count=1000):
            if ev.type == "call.started":
                record = await store.get_call(ev.data["call_id"])
                assert record is not None and record["worker"] == ev.data["worker"], (ev, record)
                out.append((ev.data["call_id"], record["worker"]))
        return out
    finally:
        await redis.aclose()


async def last_event(mh: Multihost) -> str:
    redis = mh.redis()
    try:
        return await mh.store(redis).last_event_id()
    finally:
        await redis.aclose()


# ----- the tests ---------------------------------------------------------------------------------

async def test_calls_alternate_between_hosts_and_complete_through_each(
        multihost: Multihost, tmp_path: Path) -> None:
    mh = multihost
    by_ip = {h.ip: h for h in mh.net.hosts}
    seen: dict[str, str] = {}  # worker name -> call id
    async with aiohttp.ClientSession() as http:
        desktop = AgentDesktop(mh.api, "agent1", TOKENS["agent1"])
        await desktop.start(http)
        await set_state(http, mh, "available")
        filler: asyncio.Future[tuple[int | None, str]] | None = None
        for n in range(2):
            work = tmp_path / f"call{n}"
            if n == 1:
                # A caller lingering in the menu keeps the first call's host loaded (ties go to the
                # first worker in the list), so the edge sends the second full call to the other host.
                filler_sf = caller_scenario(work / "filler", keep="caller-hangs-up", drop="remote-hangs-up",
                                            digit=9, dtmf_at_ms=25000, talk_ms=100)
                fmarker = await last_event(mh)
                filler = asyncio.ensure_future(run_caller(mh, filler_sf, work / "filler", "filler", limit_s=60))
                await wait_until("the filler call to start", _started_since(mh, fmarker), 15)
            caller_media, agent_media = free_udp_tcp_port(), free_udp_tcp_port()
            caller_sf = caller_scenario(work, keep="remote-hangs-up", drop="caller-hangs-up", digit=2,
                                        dtmf_at_ms=1000, talk_ms=30000)
            agent_sf = render_scenario("agent_phone.xml", work, keep="agent-hangs-up", drop="remote-hangs-up",
                                       ring_ms=300, talk_ms=4000)
            marker = await last_event(mh)
            phone = agent_phone(mh, agent_sf, work, "agent", agent_media)
            ports = {caller_media, agent_media, mh.agent_port, WORKER_SIP_PORT}
            with VethSniffer([h.veth for h in mh.net.hosts], ports) as sniff:
                await phone.start()
                try:
                    code, why = await run_caller(mh, caller_sf, work, "caller", media_port=caller_media)
                    assert code == 0, why + "\n" + mh.logs()
                    await wait_until("call.ended on the desktop", _ended_count(desktop, n + 1), 20)
                    await asyncio.sleep(0.3)
                finally:
                    await phone.stop(timeout=3)

            # --- which host: the call record, the agent INVITE's source, the edge's dispatch ---------
            started = await calls_started_since(mh, marker)
            assert len(started) == 1, started
            call_id, worker = started[0]
            invites = sniff.sip_requests("INVITE", dst=mh.agent_port)
            assert invites, "the agent's phone never got an INVITE"
            host = by_ip[invites[0].src_ip]
            assert worker == host.worker_name, (worker, invites[0].src_ip)
            seen[worker] = call_id

            # --- the screen-pop reached agent1's WebSocket before the phone rang -------------------
            events = desktop.of(call_id)
            assert [e["type"] for _, e in events] == ["call.offered", "call.answered", "call.ended"], events
            pop_at, pop = events[0]
            assert pop["queue"] == "billing" and pop["agent_id"] == "agent1" and pop["dnis"] == "1000"
            assert pop["journey"]["steps"][0]["digit"] == "2"
            assert pop_at < invites[0].ts, (pop_at, invites[0].ts)

            # --- bridged audio both ways, on the wire between the root namespace and the host -------
            answered_at = events[1][0]
            from_caller = b"".join(p.rtp_payload for p in sniff.rtp(src=caller_media))
            from_agent = b"".join(p.rtp_payload for p in sniff.rtp(src=agent_media))
            to_agent = [p for p in sniff.rtp(dst=agent_media, after=answered_at) if voiced(p.rtp_payload)]
            to_caller = [p for p in sniff.rtp(dst=caller_media, after=answered_at + 0.3) if voiced(p.rtp_payload)]
            assert len(to_agent) > 50 and len(to_caller) > 50, (len(to_agent), len(to_caller))
            assert {p.src_ip for p in to_agent} == {host.ip} == {p.src_ip for p in to_caller}
            assert sum(p.rtp_payload in from_caller for p in to_agent) > 0.5 * len(to_agent)
            assert sum(p.rtp_payload in from_agent for p in to_caller) > 0.5 * len(to_caller)

            # --- the call record is closed; agent1 is back after wrap-up ---------------------------
            redis = mh.redis()
            try:
                store = mh.store(redis)
                call = await store.get_call(call_id)
                assert call is not None and call["state"] == "ended" and call["outcome"] == "completed", call
                assert call["agent_id"] == "agent1" and call["end_reason"] == "agent_hangup"

                await wait_until("agent1 available again", _agent_state(store, "available"), 15)
                assert await redis.llen(store.keys.worker_inbox(worker)) == 0
            finally:
                await redis.aclose()
        await desktop.stop()
    assert filler is not None
    code, why = await filler
    assert code == 0, why

    assert set(seen) == {"hostA-w0", "hostB-w0"}, f"the second call should go to the idle host: {seen}"
    edge_log = (mh.workdir / "edge.log").read_text(errors="replace")
    for h in mh.net.hosts:
        assert f"dispatched to {mh.uri(h)}" in edge_log


async def test_a_registered_phone_is_offered_calls_through_the_edge_poller(
        multihost: Multihost, tmp_path: Path) -> None:
    """desk1's phone registers at the edge (digest, the password of the configuration file); the
    `ivr phones` poller next to the edge (ivr-phones.service) writes it into Redis and onto the
    event stream; a caller for billing is offered to desk1, the worker (on either host) sends the
    offer to desk1's address of record at the edge, which forks it to the registered contact.
    Unregistered, desk1 is told so (agent.phone) and routing skips it."""
    mh = multihost
    desk_port, desk_media, caller_media = free_udp_tcp_port(), free_udp_tcp_port(), free_udp_tcp_port()
    marker = await last_event(mh)
    async with aiohttp.ClientSession() as http:
        await set_state(http, mh, "break")  # agent1 (static phone) takes no call here
        await register_desk(mh, tmp_path, desk_port, expires=60, tag="register")
        view = await wait_until("desk1's phone registered in Redis", _desk_phone(http, mh, True), 10)
        assert view == {"mode": "registered", "registered": True, "contacts": 1}, view
        async with http.post(f"{mh.api}/api/v1/agents/desk1/state", json={"state": "available"},
                             headers={"Authorization": f"Bearer {TOKENS['desk1']}"}) as r:
            assert r.status == 200, await r.text()

        desk_sf = render_scenario("registered_phone.xml", tmp_path / "desk", keep="agent-hangs-up",
                                  drop="remote-hangs-up", ring_ms=300, talk_ms=2000)
        caller_sf = caller_scenario(tmp_path / "caller", keep="remote-hangs-up", drop="caller-hangs-up", digit=2,
                                    dtmf_at_ms=1000, talk_ms=30000)
        # the registered contact is 127.0.0.1:desk_port (root namespace); its RTP on hostA's root-side
        # address, which both worker hosts reach
        desk = Proc("sipp-desk", [
            "sipp", "-sf", desk_sf, "-i", "127.0.0.1", "-p", str(desk_port), "-mi", mh.a.root_ip,
            "-mp", str(desk_media), "-ci", "127.0.0.1", "-nostdin", "-m", "1", "-timeout", "60s",
            "-trace_msg", "-message_file", str(tmp_path / "desk.messages.log"),
            "-trace_err", "-error_file", str(tmp_path / "desk.errors.log")], tmp_path / "desk.screen.txt")
        await desk.start()
        try:
            code, why = await run_caller(mh, caller_sf, tmp_path / "caller", "caller", media_port=caller_media)
            assert code == 0, why + "\n" + mh.logs()
        finally:
            await desk.stop(timeout=3)
        desk_log = (tmp_path / "desk.messages.log").read_text(errors="replace")
        assert f"INVITE sip:desk1@127.0.0.1:{desk_port}" in desk_log, "the edge forked the offer to the contact"

        # unregistered: the poller says so, on the stream too
        await register_desk(mh, tmp_path, desk_port, expires=0, tag="unregister")
        await wait_until("desk1's phone unregistered in Redis", _desk_phone(http, mh, False), 10)
        async with http.post(f"{mh.api}/api/v1/agents/desk1/state", json={"state": "offline"},
                             headers={"Authorization": f"Bearer {TOKENS['desk1']}"}) as r:
            assert r.status == 200, await r.text()
    redis = mh.redis()
    try:
        store = mh.store(redis)
        events = await store.read_events(marker, count=1000)
        phone_events = [(e.data["registered"], e.data["reason"]) for e in events if e.type == "agent.phone"]
        assert phone_events == [(True, "registered"), (False, "unregistered")], phone_events
        [started] = [e.data for e in events if e.type == "call.started"]
        record = await store.get_call(started["call_id"])
        assert record is not None and record["agent_id"] == "desk1" and record["outcome"] == "completed", record
        assert record["end_reason"] == "agent_hangup", record
    finally:
        await redis.aclose()


async def register_desk(mh: Multihost, workdir: Path, port: int, *, expires: int, tag: str) -> None:
    """desk1's phone (re)registers from 127.0.0.1:``port`` with digest auth (sipp, one REGISTER)."""
    sf = str(ROOT / "tests" / "sipp" / "phone_register.xml")
    argv = ["sipp", f"127.0.0.1:{mh.edge_port}", "-sf", sf, "-i", "127.0.0.1", "-p", str(port), "-m", "1",
            "-s", "desk1", "-au", "desk1", "-ap", DESK_PASSWORD, "-key", "expires", str(expires),
            "-nostdin", "-timeout", "10s", "-timeout_error",
            "-trace_err", "-error_file", str(workdir / f"{tag}.errors.log")]
    proc = Proc(f"sipp-{tag}", argv, workdir / f"{tag}.screen.txt")
    await proc.start()
    assert proc.proc is not None
    try:
        code = await asyncio.wait_for(proc.proc.wait(), 15)
    finally:
        await proc.stop(timeout=2)
    assert code == 0, proc.tail(30)


def _desk_phone(http: aiohttp.ClientSession, mh: Multihost, registered: bool) -> Any:
    async def check() -> dict[str, Any] | None:
        async with http.get(f"{mh.api}/api/v1/agents/desk1",
                            headers={"Authorization": f"Bearer {TOKENS['desk1']}"}) as r:
            assert r.status == 200, await r.text()
            phone: dict[str, Any] = (await r.json())["phone"]
        return phone if phone["registered"] is registered else None
    return check


async def test_killed_host_is_probed_out_and_back_in(multihost: Multihost, tmp_path: Path) -> None:
    mh = multihost
    short = caller_scenario(tmp_path, keep="caller-hangs-up", drop="remote-hangs-up", digit=2,
                            dtmf_at_ms=300, talk_ms=1200)
    async with aiohttp.ClientSession() as http:
        await set_state(http, mh, "break")  # callers queue and hang up: no agent leg needed

    # hostA's worker dies (SIGKILL: no clean-up, no goodbye); the edge's OPTIONS probes take it out
    await mh.procs[mh.a.worker_name].kill()
    flags = await wait_until("the edge to mark hostA inactive", _async_flags(mh, mh.a, "I"), 15)
    assert flags[mh.uri(mh.b)].startswith("A"), flags
    # the probe's event route logs it (in the process that flipped the flag: may land a moment later)
    await wait_until("the edge to log hostA down", _edge_logged(mh, f"worker {mh.uri(mh.a)} is DOWN"), 5)

    marker = await last_event(mh)
    code, why = await run_caller(mh, short, tmp_path / "down", "caller", calls=3)
    assert code == 0, why + "\n" + mh.logs()
    started = await calls_started_since(mh, marker)
    assert [w for _, w in started] == ["hostB-w0"] * 3, f"{started}\n{mh.logs()}"

    # back: restarted, probed in again, and calls in progress side by side spread over both hosts
    await mh.start_worker(mh.a)
    await wait_until("the edge to mark hostA active", _async_flags(mh, mh.a, "A"), 15)
    marker = await last_event(mh)
    code, why = await run_caller(mh, short, tmp_path / "up", "caller", calls=4, concurrent=2)
    assert code == 0, why + "\n" + mh.logs()
    started = await calls_started_since(mh, marker)
    assert len(started) == 4 and {w for _, w in started} == {"hostA-w0", "hostB-w0"}, f"{started}\n{mh.logs()}"


def _started_since(mh: Multihost, marker: str) -> Any:
    async def check() -> bool:
        return bool(await calls_started_since(mh, marker))
    return check


def _ended_count(desktop: AgentDesktop, n: int) -> Any:
    async def check() -> bool:
        return sum(e["type"] == "call.ended" for _, e in desktop.events) >= n
    return check


def _agent_state(store: QueueStore, state: str) -> Any:
    async def check() -> bool:
        agent = await store.get_agent("agent1")
        return bool(agent and agent["state"] == state)
    return check


def _edge_logged(mh: Multihost, text: str) -> Any:
    async def check() -> bool:
        return text in await asyncio.to_thread((mh.workdir / "edge.log").read_text, errors="replace")
    return check


def _async_flags(mh: Multihost, h: Host, prefix: str) -> Any:
    async def check() -> dict[str, str] | None:
        flags = await mh.dispatcher_flags()
        return flags if flags.get(mh.uri(h), "").startswith(prefix) else None
    return check
