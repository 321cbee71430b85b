"""``ivr deploy render``: the configuration files of a deployment, rendered from one ``hotline.yaml``.

Writes under ``--out DIR``::

    kamailio/kamailio.cfg      the edge (the template of ivr/edge/kamailio.cfg, checked with kamailio -c)
    kamailio/dispatcher.list   every worker of every host: ``workers.remote`` ("host:port" list), or
                               the ``workers.count`` local workers on ``workers.host`` when that is empty
    redis/redis.conf           the Redis primary: AOF on, bound to loopback + the primary's address,
                               protected mode, ``maxmemory-policy noeviction``; NO secret (see below)
    redis/replica-<n>.conf     one per ``--replica HOST[:PORT]``: the same + ``replicaof`` the primary
    sentinel/sentinel-<n>.conf one per Sentinel (``--sentinel HOST[:PORT]``, three by default)
    rtpengine/rtpengine.conf   the browsers' media relay (docs/webrtc.md), read by ivr-rtpengine.service

Browsers' phones (``edge.webrtc``) are rendered only with a configured certificate
(``edge.webrtc.cert``/``key``: browsers must trust the WSS listener; the self-signed pair of ``ivr run``
is for loopback only): then kamailio.cfg gets the WSS listener and the rtpengine module, and
``rtpengine/rtpengine.conf`` is written; without one the edge is rendered without them (a warning).

Secrets never appear in rendered files. ``redis.conf`` and ``sentinel-<n>.conf`` end with
``include <etc>/redis-auth.conf`` / ``include <etc>/sentinel-auth.conf``; those two files are written
by the operator (docs/deployment.md) and a missing one stops Redis/Sentinel from starting (fail closed).
The password of ``redis.url`` is never copied anywhere.

The edge listens on ``edge.host`` plus ``edge.extra_listen`` (e.g. the public address for trunks and a
private one toward the worker hosts); with more than one address ``mhomed=1`` makes Kamailio pick, per
destination, the socket the kernel routes from (a datagram to a worker host must not leave from
127.0.0.1). :class:`MultiHomedEdge` is the :class:`~ivr.edge.Edge` that does this; the
multi-host test runs it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ivr.core.config import Settings, load_settings
from ivr.core.errors import ConfigError
from ivr.core.logging import configure, get_logger
from ivr.core.process import ManagedProcess
from ivr.core.sip_auth import effective_credentials, seed_credentials
from ivr.edge import KAMAILIO, Edge
from ivr.edge.validate import host_kind, hostport, listen
from ivr.edge.webrtc import RtpEngine

log = get_logger(__name__)

DEFAULT_ETC = Path("/etc/ivr")
DEFAULT_STATE = Path("/var/lib/ivr")
SENTINEL_PORT = 26379
MASTER_NAME = "hotline"
_LISTEN_ANCHOR = "listen=EDGE_LISTEN_TCP\n"


# ----- addresses ---------------------------------------------------------------------------------

def parse_hostport(text: str, what: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` (or a bare host when ``default_port`` is given) -> (host, port)."""
    raw = text.strip()
    host, port_s = raw, ""
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ConfigError(f"{what}: {text!r} has no closing ']'", field=what)
        host, rest = raw[1:end], raw[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{what}: {text!r} is not [address]:port", field=what)
        port_s = rest[1:]
    elif raw.count(":") == 1:
        host, port_s = raw.split(":")
    elif raw.count(":") > 1:
        raise ConfigError(f"{what}: write the IPv6 address {text!r} as [address]:port", field=what)
    if not port_s:
        if default_port is None:
            raise ConfigError(f"{what}: {text!r} has no port (host:port)", field=what)
        port = default_port
    else:
        try:
            port = int(port_s)
        except ValueError:
            raise ConfigError(f"{what}: {text!r}: port {port_s!r} is not a number", field=what) from None
    hostport(host, port, what)  # validates host and port range
    return host, port


def worker_targets(settings: Settings) -> list[tuple[str, int]]:
    """Every worker the edge dispatches over: ``workers.remote``, else the local pool."""
    w = settings.workers
    if w.remote:
        targets = [parse_hostport(t, "workers.remote") for t in w.remote]
        dup = {t for t in targets if targets.count(t) > 1}
        if dup:
            raise ConfigError(f"workers.remote lists {sorted(dup)} more than once", field="workers.remote")
        return targets
    return [(w.host, w.sip_port(i)) for i in range(w.count)]


def redis_primary(settings: Settings) -> tuple[str, int]:
    """Host and port of the Redis primary: from ``redis.url`` when set, else ``redis.host``/``port``."""
    if settings.redis.url:
        parts = urlsplit(settings.redis.url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError("redis.url must be redis://[:password@]host:port/db to render Redis configs",
                              field="redis.url")
        return parts.hostname, parts.port or 6379
    return settings.redis.host, settings.redis.port


def _ip(host: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise ConfigError(f"{what}: {host!r} must be an IP address (Redis binds addresses, not names)",
                          field=what) from None


# ----- the edge ----------------------------------------------------------------------------------

class MultiHomedEdge(Edge):
    """The edge listening on ``edge.host`` and every ``edge.extra_listen`` address (same port).

    ``directory``: where kamailio.cfg and dispatcher.list are written (default ``<run_dir>/kamailio``).
    ``runtime_dir``: where Kamailio will read them when that is another place (files rendered on one
    machine, installed on the edge host); the config names the dispatcher list by that path.
    """

    def __init__(self, settings: Settings, workers: list[tuple[str, int]] | None = None, *,
                 extra_listen: list[str] | None = None, directory: Path | None = None,
                 runtime_dir: Path | None = None, template: Path | None = None,
                 kamailio: str = KAMAILIO, webrtc: bool = False) -> None:
        super().__init__(settings, worker_targets(settings) if workers is None else workers,
                         template=template, kamailio=kamailio, webrtc=webrtc)
        self.extra_listen = list(settings.edge.extra_listen if extra_listen is None else extra_listen)
        self.runtime_dir = runtime_dir
        if directory is not None:
            self.dir = directory.resolve()
            self._process = ManagedProcess("edge", self.argv(), guard=True)

    def _relocate(self, text: str) -> str:
        """Paths into the render directory -> the same files in ``runtime_dir``."""
        if self.runtime_dir is None:
            return text
        if not self.runtime_dir.is_absolute():
            raise ConfigError(f"--edge-dir {self.runtime_dir} must be an absolute path", field="--edge-dir")
        return text.replace(f"{self.dir}/", f"{self.runtime_dir}/").replace(f'"{self.dir}"', f'"{self.runtime_dir}"')

    def listen_lines(self) -> list[str]:
        edge = self.settings.edge
        seen = {edge.host.strip("[]")}
        lines = []
        for host in self.extra_listen:
            if host.strip("[]") in seen:
                continue
            seen.add(host.strip("[]"))
            host_kind(host, "edge.extra_listen")
            if any(h.strip("[]") == host.strip("[]") and p == edge.port for h, p in self.workers):
                raise ConfigError(f"edge.extra_listen {host}:{edge.port} is also a worker's address",
                                  field="edge.extra_listen")
            lines += [f"listen={listen('udp', host, edge.port)}", f"listen={listen('tcp', host, edge.port)}"]
        return lines

    def render_config(self) -> str:
        text = self._relocate(super().render_config())
        extra = self.listen_lines()
        if not extra:
            return text
        if text.count(_LISTEN_ANCHOR) != 1:
            raise ConfigError(f"{self.template} has no single {_LISTEN_ANCHOR.strip()!r} line to add "
                              "the extra listen addresses after", path=str(self.template))
        block = "\n".join([
            "# added by `ivr deploy render` (edge.extra_listen): more addresses, same port. mhomed=1: each",
            "# datagram leaves from the address the kernel routes from (never 127.0.0.1 toward a worker host)",
            *extra,
            "mhomed=1",
        ])
        return text.replace(_LISTEN_ANCHOR, _LISTEN_ANCHOR + block + "\n")


def render_kamailio(settings: Settings, out: Path, *, check: bool = True,
                    runtime_dir: Path | None = None) -> list[Path]:
    """kamailio.cfg, dispatcher.list and whatever else the edge reads (db_text tables, tls.cfg)."""
    webrtc = webrtc_deployable(settings)
    if settings.edge.webrtc.enabled and not webrtc:
        log.warning("render.webrtc_skipped", reason="edge.webrtc.cert/key are not set: browsers' phones need a "
                    "certificate they trust (docs/webrtc.md)")
    edge = MultiHomedEdge(settings, directory=out / "kamailio", runtime_dir=runtime_dir, webrtc=webrtc)
    # the configuration file's SIP passwords (as HA1s, db/sipauth 0600): phones can register from the
    # edge's start; ivr-phones adds those set over the API (ivr/runtime/phones.py)
    realm = settings.edge.sip_realm
    edge.sip_credentials = effective_credentials(seed_credentials(settings.users, realm), {}, realm)
    edge.render(check=check)
    first = [edge.cfg_path, edge.dispatcher_list_path]
    rest = sorted(p for p in edge.dir.rglob("*") if p.is_file() and p not in first
                  and p.name not in ("kamailio.pid", "kamailio_ctl") and not p.name.startswith("."))
    return first + rest


def webrtc_deployable(settings: Settings) -> bool:
    """Browsers' phones on a multi-host edge: enabled, with a configured certificate."""
    w = settings.edge.webrtc
    return w.enabled and w.cert is not None and w.key is not None


def render_rtpengine(settings: Settings, out: Path) -> list[Path]:
    """rtpengine/rtpengine.conf (edge.webrtc); ConfigError when browsers' phones are not deployable."""
    if not webrtc_deployable(settings):
        raise ConfigError("rtpengine is rendered for browsers' phones only: set edge.webrtc.enabled, "
                          "edge.webrtc.cert and edge.webrtc.key", field="edge.webrtc")
    d = out / "rtpengine"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "rtpengine.conf"
    _write(path, RtpEngine(settings).render_config())
    return [path]


# ----- Redis and Sentinel ------------------------------------------------------------------------

@dataclass
class RedisLayout:
    etc_dir: Path = DEFAULT_ETC
    state_dir: Path = DEFAULT_STATE
    replicas: list[str] = field(default_factory=list)
    sentinels: list[str] = field(default_factory=list)
    master_name: str = MASTER_NAME
    quorum: int | None = None


def _redis_conf(settings: Settings, layout: RedisLayout, *, host: str, port: int, role: str,
                primary: tuple[str, int] | None = None) -> str:
    binds = " ".join(dict.fromkeys(["127.0.0.1", _ip(host, "redis host")]))
    lines = [
        f"# generated by `ivr deploy render`: the hotline's Redis {role} ({host}:{port})",
        "# Install as <state>/redis/redis.conf (writable by the ivr user: Sentinel failover rewrites it,",
        "# and CONFIG REWRITE copies the included secrets into it: keep it mode 0600).",
        f"bind {binds}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        "supervised systemd",
        f'dir "{layout.state_dir / "redis"}"',
        "# durability: every write goes to the append-only file, fsync once a second",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "# queues, agents and calls must never be evicted: fail writes instead",
        "maxmemory-policy noeviction",
        "tcp-keepalive 60",
        "timeout 0",
    ]
    if primary is not None:
        lines += ["# replica of the primary (Sentinel rewrites this line on failover)",
                  f"replicaof {primary[0]} {primary[1]}", "replica-read-only yes"]
    lines += [
        "# requirepass <secret>  -- NOT here. The secret and `masterauth <secret>` (same value) are in:",
        f"include {layout.etc_dir / 'redis-auth.conf'}",
        "",
    ]
    return "\n".join(lines)


def render_redis(settings: Settings, out: Path, layout: RedisLayout) -> list[Path]:
    host, port = redis_primary(settings)
    d = out / "redis"
    d.mkdir(parents=True, exist_ok=True)
    written = [d / "redis.conf"]
    _write(written[0], _redis_conf(settings, layout, host=host, port=port, role="primary"))
    for n, spec in enumerate(layout.replicas, 1):
        rhost, rport = parse_hostport(spec, "--replica", default_port=port)
        path = d / f"replica-{n}.conf"
        _write(path, _redis_conf(settings, layout, host=rhost, port=rport, role=f"replica {n}",
                                 primary=(_ip(host, "redis primary"), port)))
        written.append(path)
    return written


def sentinel_specs(settings: Settings, layout: RedisLayout) -> list[tuple[str, int]]:
    if layout.sentinels:
        specs = [parse_hostport(s, "--sentinel", default_port=SENTINEL_PORT) for s in layout.sentinels]
    else:  # a rehearsal on one machine: three Sentinels next to the primary
        host, _ = redis_primary(settings)
        specs = [(host, SENTINEL_PORT + i) for i in range(3)]
    if len(specs) < 3:
        raise ConfigError(f"{len(specs)} Sentinel(s): at least 3 are needed to survive the loss of a host",
                          field="--sentinel")
    return specs


def render_sentinels(settings: Settings, out: Path, layout: RedisLayout) -> list[Path]:
    host, port = redis_primary(settings)
    primary_ip = _ip(host, "redis primary")
    specs = sentinel_specs(settings, layout)
    quorum = layout.quorum or len(specs) // 2 + 1
    if not 1 <= quorum <= len(specs):
        raise ConfigError(f"quorum {quorum} must be 1..{len(specs)}", field="--quorum")
    d = out / "sentinel"
    d.mkdir(parents=True, exist_ok=True)
    written = []
    name = layout.master_name
    for n, (shost, sport) in enumerate(specs, 1):
        binds = " ".join(dict.fromkeys(["127.0.0.1", _ip(shost, "--sentinel")]))
        text = "\n".join([
            f"# generated by `ivr deploy render`: Sentinel {n} of {len(specs)} ({shost}:{sport}) watching the",
            f'# hotline\'s Redis primary {host}:{port} as "{name}" (quorum {quorum}).',
            "# Install ONCE as <state>/sentinel/sentinel.conf (writable: Sentinel records replicas, peers and",
            "# the current primary in it; re-rendering must not overwrite a running Sentinel's state).",
            f"bind {binds}",
            f"port {sport}",
            "protected-mode yes",
            "daemonize no",
            "supervised systemd",
            f'dir "{layout.state_dir / "sentinel"}"',
            f"sentinel monitor {name} {primary_ip} {port} {quorum}",
            f"sentinel down-after-milliseconds {name} 5000",
            f"sentinel failover-timeout {name} 60000",
            f"sentinel parallel-syncs {name} 1",
            "# secrets, NOT here: `requirepass <sentinel secret>`, `sentinel sentinel-pass <sentinel secret>`",
            f"# and `sentinel auth-pass {name} <redis secret>` are in:",
            f"include {layout.etc_dir / 'sentinel-auth.conf'}",
            "",
        ])
        path = d / f"sentinel-{n}.conf"
        _write(path, text)
        written.append(path)
    return written


# ----- command line ------------------------------------------------------------------------------

PARTS = ("kamailio", "redis", "sentinel", "rtpengine")


def render_all(settings: Settings, out: Path, layout: RedisLayout, *, only: list[str] | None = None,
               check: bool = True, edge_dir: Path | None = None) -> list[Path]:
    # rtpengine by default only where browsers' phones are deployable
    parts = only or [p for p in PARTS if p != "rtpengine" or webrtc_deployable(settings)]
    written: list[Path] = []
    if "kamailio" in parts:
        written += render_kamailio(settings, out, check=check, runtime_dir=edge_dir)
    if "redis" in parts:
        written += render_redis(settings, out, layout)
    if "sentinel" in parts:
        written += render_sentinels(settings, out, layout)
    if "rtpengine" in parts:
        written += render_rtpengine(settings, out)
    return written


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="the deployment's hotline.yaml")
    p.add_argument("--out", required=True, help="directory to write kamailio/, redis/, sentinel/, rtpengine/ into")
    p.add_argument("--only", action="append", choices=PARTS, help="render only this part (repeatable)")
    p.add_argument("--etc", default=str(DEFAULT_ETC), help="where the *-auth.conf secret files live")
    p.add_argument("--state", default=str(DEFAULT_STATE), help="data directory (redis/, sentinel/ under it)")
    p.add_argument("--replica", action="append", default=[], metavar="HOST[:PORT]",
                   help="a Redis replica host (repeatable)")
    p.add_argument("--sentinel", action="append", default=[], metavar="HOST[:PORT]",
                   help=f"a Sentinel host (repeatable, >= 3; default: 3 next to the primary, port {SENTINEL_PORT}+)")
    p.add_argument("--master-name", default=MASTER_NAME, help="the name Sentinel monitors the primary as")
    p.add_argument("--quorum", type=int, default=None, help="Sentinels that must agree (default: majority)")
    p.add_argument("--edge-dir", default=None,
                   help="where Kamailio reads kamailio.cfg/dispatcher.list at run time (default: OUT/kamailio)")
    p.add_argument("--no-check", action="store_true", help="do not run `kamailio -c` on the result")


def main(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config))
    configure(settings.log_level, settings.log_format, role="deploy")
    layout = RedisLayout(etc_dir=Path(args.etc), state_dir=Path(args.state), replicas=args.replica,
                         sentinels=args.sentinel, master_name=args.master_name, quorum=args.quorum)
    edge_dir = Path(args.edge_dir) if args.edge_dir else None
    for path in render_all(settings, Path(args.out), layout, only=args.only, check=not args.no_check,
                           edge_dir=edge_dir):
        print(path)
    return 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
