"""`ivr deploy render` and the systemd units in deploy/.

The rendered Kamailio config must pass `kamailio -c`; the rendered redis.conf and sentinel.conf must
start real redis-server / Sentinel processes (loopback only) that demand the password from the
included secret file, and the committed examples in deploy/ must match what the renderer writes.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.sentinel import Sentinel

from ivr.cli import main as cli_main
from ivr.core.config import EdgeSettings, load_settings
from ivr.core.errors import ConfigError
from ivr.runtime.render import MultiHomedEdge, RedisLayout, parse_hostport, render_all, worker_targets
from tests.conftest import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLE = DEPLOY / "kamailio" / "example-hotline.yaml"


def write_config(tmp_path: Path, **sections: Any) -> Path:
    path = tmp_path / "hotline.yaml"
    path.write_text(yaml.safe_dump({"var_dir": str(tmp_path / "var"), **sections}))
    return path


# ----- addresses -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.1.11:5070", ("10.0.1.11", 5070)),
    (" worker-a.example:5071 ", ("worker-a.example", 5071)),
    ("[fd00::5]:5070", ("fd00::5", 5070)),
])
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text, "workers.remote") == expected


@pytest.mark.parametrize("text", ["10.0.1.11", "10.0.1.11:0", "10.0.1.11:70000", "10.0.1.11:x",
                                  "fd00::5:5070", "[fd00::5", "999.1.1.1:5070", "bad host:5070"])
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_hostport(text, "workers.remote")


def test_bare_host_takes_the_default_port() -> None:
    assert parse_hostport("10.0.0.21", "--sentinel", default_port=26379) == ("10.0.0.21", 26379)


def test_worker_targets_remote_else_local(tmp_path: Path) -> None:
    local = load_settings(write_config(tmp_path, workers={"count": 3, "host": "10.0.1.11", "sip_port_base": 6000}))
    assert worker_targets(local) == [("10.0.1.11", 6000), ("10.0.1.11", 6001), ("10.0.1.11", 6002)]
    remote = load_settings(write_config(tmp_path, workers={"remote": ["10.0.1.11:5070", "10.0.1.12:5070"]}))
    assert worker_targets(remote) == [("10.0.1.11", 5070), ("10.0.1.12", 5070)]
    dup = load_settings(write_config(tmp_path, workers={"remote": ["10.0.1.11:5070", "10.0.1.11:5070"]}))
    with pytest.raises(ConfigError, match="more than once"):
        worker_targets(dup)


# ----- Kamailio ------------------------------------------------------------------------------------

def multihost_config(tmp_path: Path, **extra: Any) -> Path:
    return write_config(
        tmp_path,
        edge={"host": "127.0.0.1", "port": 5999, "extra_listen": ["127.0.0.2"],
              "trusted_networks": ["127.0.0.0/8"]},
        workers={"remote": ["127.0.0.3:5070", "127.0.0.3:5071", "127.0.0.4:5070"]},
        redis={"url": "redis://:pw-from-the-url@127.0.0.1:6399/0"},
        **extra,
    )


def test_kamailio_config_listens_on_every_address_and_passes_kamailio_check(tmp_path: Path) -> None:
    assert shutil.which("kamailio"), "kamailio is installed by deploy/install-system.sh"
    settings = load_settings(multihost_config(tmp_path))
    written = render_all(settings, tmp_path / "out", RedisLayout(), only=["kamailio"])  # runs kamailio -c
    assert [p.name for p in written[:2]] == ["kamailio.cfg", "dispatcher.list"]
    cfg, dispatcher = (p.read_text() for p in written[:2])
    listens = re.findall(r"^listen=(\S+)$", cfg, flags=re.M)
    assert listens[:2] == ["EDGE_LISTEN_UDP", "EDGE_LISTEN_TCP"]
    assert "udp:127.0.0.2:5999" in listens and "tcp:127.0.0.2:5999" in listens
    assert re.search(r"^mhomed=1$", cfg, flags=re.M)
    assert f'#!define DS_LIST_FILE "{(tmp_path / "out" / "kamailio" / "dispatcher.list").resolve()}"' in cfg
    targets = re.findall(r"^1 (sip:\S+) 0 0 duid=worker-\d+$", dispatcher, flags=re.M)
    assert targets == ["sip:127.0.0.3:5070", "sip:127.0.0.3:5071", "sip:127.0.0.4:5070"]
    # the check really ran: a broken template is refused with Kamailio's own message
    broken = tmp_path / "broken.cfg"
    broken.write_text((ROOT / "ivr" / "edge" / "kamailio.cfg").read_text() + "\nroute[BROKEN] { nonsense( }\n")
    edge = MultiHomedEdge(settings, directory=tmp_path / "broken", template=broken)
    with pytest.raises(ConfigError, match="kamailio rejected"):
        edge.render()


def test_single_address_edge_adds_nothing(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, edge={"host": "127.0.0.1", "extra_listen": []}))
    cfg = MultiHomedEdge(settings, directory=tmp_path / "k").render_config()
    assert "mhomed" not in cfg
    assert re.findall(r"^listen=(\S+)$", cfg, flags=re.M)[:2] == ["EDGE_LISTEN_UDP", "EDGE_LISTEN_TCP"]


def test_extra_listen_must_not_be_a_worker(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, edge={"host": "127.0.0.1", "port": 5070,
                                                          "extra_listen": ["127.0.0.3"]},
                                          workers={"remote": ["127.0.0.3:5070"]}))
    with pytest.raises(ConfigError, match="also a worker"):
        MultiHomedEdge(settings, directory=tmp_path / "k").render_config()


def test_cli_renders_everything_and_relocates_the_edge_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = multihost_config(tmp_path)
    out = tmp_path / "out"
    code = cli_main(["deploy", "render", "--config", str(cfg), "--out", str(out),
                     "--edge-dir", "/run/ivr-edge/kamailio", "--replica", "127.0.0.5"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    names = sorted(str(Path(p).relative_to(out)) for p in printed if Path(p).parent.name != "db")
    assert names == ["kamailio/dispatcher.list", "kamailio/kamailio.cfg", "redis/redis.conf",
                     "redis/replica-1.conf", "sentinel/sentinel-1.conf", "sentinel/sentinel-2.conf",
                     "sentinel/sentinel-3.conf"]
    kam = (out / "kamailio" / "kamailio.cfg").read_text()
    assert '#!define DS_LIST_FILE "/run/ivr-edge/kamailio/dispatcher.list"' in kam
    assert str(out) not in kam
    for path in out.rglob("*"):
        if path.is_file():
            assert "pw-from-the-url" not in path.read_text(), f"{path} contains the password of redis.url"


def test_cli_reports_a_bad_worker_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, workers={"remote": ["10.0.1.11"]})
    assert cli_main(["deploy", "render", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-check"]) == 2
    assert "workers.remote" in capsys.readouterr().err


# ----- Redis and Sentinel --------------------------------------------------------------------------

def test_redis_conf_is_durable_bound_protected_and_has_no_secret(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, redis={"url": "redis://:s3cr3t-value@10.0.0.5:6379/0"}))
    layout = RedisLayout(etc_dir=Path("/etc/ivr"), state_dir=Path("/var/lib/ivr"), replicas=["10.0.0.6"],
                         sentinels=["10.0.0.5", "10.0.0.6", "10.0.0.1"])
    primary, replica, *sentinels = render_all(settings, tmp_path / "out", layout, only=["redis", "sentinel"])
    p = primary.read_text()
    for line in ["bind 127.0.0.1 10.0.0.5", "port 6379", "protected-mode yes", "appendonly yes",
                 "appendfsync everysec", "maxmemory-policy noeviction", 'dir "/var/lib/ivr/redis"',
                 "include /etc/ivr/redis-auth.conf"]:
        assert re.search(rf"^{re.escape(line)}$", p, flags=re.M), line
    assert not re.search(r"^\s*(requirepass|masterauth)\s", p, flags=re.M)
    r = replica.read_text()
    assert "bind 127.0.0.1 10.0.0.6" in r and re.search(r"^replicaof 10\.0\.0\.5 6379$", r, flags=re.M)
    assert [s.name for s in sentinels] == ["sentinel-1.conf", "sentinel-2.conf", "sentinel-3.conf"]
    for s, host in zip(sentinels, ["10.0.0.5", "10.0.0.6", "10.0.0.1"], strict=True):
        text = s.read_text()
        assert f"bind 127.0.0.1 {host}" in text
        assert re.search(r"^sentinel monitor hotline 10\.0\.0\.5 6379 2$", text, flags=re.M)
        assert text.rstrip().endswith("include /etc/ivr/sentinel-auth.conf")
    for path in [primary, replica, *sentinels]:
        assert "s3cr3t-value" not in path.read_text()


def test_fewer_than_three_sentinels_is_refused(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    with pytest.raises(ConfigError, match="at least 3"):
        render_all(settings, tmp_path / "o", RedisLayout(sentinels=["10.0.0.5", "10.0.0.6"]), only=["sentinel"])


class _Server:
    def __init__(self, argv: list[str], log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    started: list[_Server] = []
    yield started
    for s in reversed(started):
        s.stop()


def test_rendered_redis_and_sentinel_start_and_require_the_password(tmp_path: Path, servers: list[_Server]) -> None:
    """Real processes on loopback: the primary from redis.conf, one Sentinel from sentinel-1.conf, and
    the redis-py Sentinel client the hotline would need (docs/deployment.md, "Redis with Sentinel")."""
    assert shutil.which("redis-server")
    redis_port, s_ports = free_port(), [free_port() for _ in range(3)]
    etc, state = tmp_path / "etc", tmp_path / "state"
    for d in (etc, state / "redis", state / "sentinel"):
        d.mkdir(parents=True)
    (etc / "redis-auth.conf").write_text("requirepass redis-test-secret\nmasterauth redis-test-secret\n")
    (etc / "sentinel-auth.conf").write_text(
        "requirepass sentinel-test-secret\nsentinel sentinel-pass sentinel-test-secret\n"
        "sentinel auth-pass hotline redis-test-secret\n")
    settings = load_settings(write_config(tmp_path, redis={"host": "127.0.0.1", "port": redis_port}))
    layout = RedisLayout(etc_dir=etc, state_dir=state, sentinels=[f"127.0.0.1:{p}" for p in s_ports])
    primary, s1, *_ = render_all(settings, tmp_path / "out", layout, only=["redis", "sentinel"])
    # installed as the units do: into the state directory (Sentinel and failover rewrite them)
    shutil.copy(primary, state / "redis" / "redis.conf")
    shutil.copy(s1, state / "sentinel" / "sentinel.conf")

    servers.append(_Server(["redis-server", str(state / "redis" / "redis.conf")], tmp_path / "redis.log"))
    wait_port(redis_port, 10, servers[-1].proc, tmp_path / "redis.log")
    servers.append(_Server(["redis-server", str(state / "sentinel" / "sentinel.conf"), "--sentinel"],
                           tmp_path / "sentinel.log"))
    wait_port(s_ports[0], 10, servers[-1].proc, tmp_path / "sentinel.log")

    anonymous = Redis(port=redis_port, socket_timeout=2)
    with pytest.raises((AuthenticationError, ResponseError)):
        anonymous.ping()  # NOAUTH: the password from the included file is in force
    anonymous.close()
    r = Redis(port=redis_port, password="redis-test-secret", socket_timeout=2)
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    r.close()

    sentinel = Sentinel([("127.0.0.1", s_ports[0])], socket_timeout=2,
                        sentinel_kwargs={"password": "sentinel-test-secret", "socket_timeout": 2})
    assert sentinel.discover_master("hotline") == ("127.0.0.1", redis_port)
    master = sentinel.master_for("hotline", password="redis-test-secret", socket_timeout=2)
    master.set("ivr:deploy-test", "1")
    assert master.get("ivr:deploy-test") == b"1"
    master.close()
    for conn in sentinel.sentinels:
        conn.close()


# ----- systemd units -------------------------------------------------------------------------------

UNITS = ["ivr-edge.service", "ivr-worker@.service", "ivr-api.service", "ivr-speech.service",
         "ivr-redis.service", "ivr-sentinel.service", "ivr-phones.service", "ivr-transcriber.service"]


def read_unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


@pytest.mark.parametrize("name", UNITS)
def test_units_are_hardened_and_restart(name: str) -> None:
    unit = read_unit(name)
    svc = unit["Service"]
    assert svc["User"] == "ivr" and svc["Group"] == "ivr"
    assert svc["NoNewPrivileges"] == "yes"
    assert svc["ProtectSystem"] == "strict"
    # ivr-phones also writes the edge's HA1 table and talks to its control socket
    assert svc["ReadWritePaths"] == ("/var/lib/ivr /run/ivr-edge" if name == "ivr-phones.service" else "/var/lib/ivr")
    assert svc["PrivateTmp"] == "yes"
    assert svc["Restart"] == "always" and svc["RestartSec"] == "1"
    assert int(svc["LimitNOFILE"]) >= 65536
    assert unit["Unit"]["PartOf"] == "hotline.target"
    assert unit["Install"]["WantedBy"] == "hotline.target"
    if name.startswith(("ivr-edge", "ivr-worker", "ivr-api", "ivr-speech", "ivr-phones", "ivr-transcriber")):
        assert svc["EnvironmentFile"] == "/etc/ivr/env"
        assert "--config /etc/ivr/hotline.yaml" in svc["ExecStart"] or name == "ivr-edge.service"


def test_worker_unit_passes_index_and_a_host_unique_name() -> None:
    argv = shlex.split(read_unit("ivr-worker@.service")["Service"]["ExecStart"])
    assert argv[1:3] == ["worker", "--config"]
    assert argv[argv.index("--index") + 1] == "%i"
    assert argv[argv.index("--name") + 1] == "%l-w%i"


def test_edge_unit_runs_what_it_renders(tmp_path: Path) -> None:
    """ExecStartPre is a valid `ivr deploy render` command whose output ExecStart runs."""
    svc = read_unit("ivr-edge.service")["Service"]
    pre = shlex.split(svc["ExecStartPre"])
    start = shlex.split(svc["ExecStart"])
    out = Path(pre[pre.index("--out") + 1])
    assert pre[1:3] == ["deploy", "render"] and pre[pre.index("--only") + 1] == "kamailio"
    assert start[0] == "/usr/sbin/kamailio" and "-DD" in start and "-E" in start
    # the unit gives Kamailio the memory the defaults give it under `ivr run` (Edge.argv)
    assert start[start.index("-m") + 1] == str(EdgeSettings().shm_mb)
    assert start[start.index("-M") + 1] == str(EdgeSettings().pkg_mb)
    kam = out / "kamailio"
    assert start[start.index("-f") + 1] == str(kam / "kamailio.cfg")
    assert start[start.index("-w") + 1] == str(kam) == start[start.index("-Y") + 1]
    assert svc["RuntimeDirectory"] == out.name and str(out.parent) == "/run"
    # the same command against a test config and a temporary directory
    args = [a.replace("/etc/ivr/hotline.yaml", str(multihost_config(tmp_path))).replace(str(out), str(tmp_path / "run"))
            for a in pre[1:]]
    assert cli_main(args) == 0
    assert (tmp_path / "run" / "kamailio" / "kamailio.cfg").is_file()


def test_phones_unit_polls_the_edge_of_its_host(tmp_path: Path) -> None:
    """ivr-phones (the edge host's poller of registrations) runs `ivr phones` on the directory
    ivr-edge renders into and runs Kamailio from, which ivr-edge keeps across its restarts; and the
    rendered edge starts with the configuration file's SIP passwords (as HA1s, 0600)."""
    edge, phones = read_unit("ivr-edge.service"), read_unit("ivr-phones.service")
    start = shlex.split(edge["Service"]["ExecStart"])
    argv = shlex.split(phones["Service"]["ExecStart"])
    assert argv[0] == "/opt/ivr/.venv/bin/ivr" and argv[1:4] == ["phones", "--config", "/etc/ivr/hotline.yaml"]
    edge_dir = argv[argv.index("--edge-dir") + 1]
    assert edge_dir == start[start.index("-w") + 1]
    assert Path(edge_dir).parent == Path("/run") / edge["Service"]["RuntimeDirectory"]
    assert edge["Service"]["RuntimeDirectoryPreserve"] == "yes"
    assert argv[argv.index("--name") + 1] == "%l"  # one picture per edge host
    assert "ivr-edge.service" in phones["Unit"]["Requires"].split()
    assert "ivr-edge.service" in phones["Unit"]["After"].split()
    settings = load_settings(multihost_config(tmp_path, users=[
        {"id": "ada", "name": "Ada", "phone": "registered", "sip_password": "ada-file-secret", "token": "t" * 24}]))
    render_all(settings, tmp_path / "out", RedisLayout(), only=["kamailio"], check=False)
    table = tmp_path / "out" / "kamailio" / "db" / "sipauth"
    assert table.stat().st_mode & 0o777 == 0o600
    text = table.read_text()
    assert "ada-file-secret" not in text
    assert re.search(r"^ada:0:0:[0-9a-f]{32}:0$", text, flags=re.M), text


def test_units_pass_systemd_analyze_verify() -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze comes with the systemd package (deploy/install-system.sh)"
    files = [str(DEPLOY / "systemd" / n) for n in [*UNITS, "hotline.target"]]
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", *files], capture_output=True, text=True,
                         timeout=60, check=False)
    # the ivr command is installed under /opt/ivr on a real host only
    problems = [ln for ln in (res.stdout + res.stderr).splitlines()
                if ln.strip() and "/opt/ivr/.venv/bin/ivr is not executable" not in ln]
    assert not problems, problems


# ----- committed examples --------------------------------------------------------------------------

def example_command() -> list[str]:
    """The render command written at the top of deploy/kamailio/example-hotline.yaml."""
    m = re.search(r"^# ivr deploy render (.*)$", EXAMPLE.read_text(), flags=re.M)
    assert m, "the example names the command that renders deploy/"
    return shlex.split(m.group(1))


def test_committed_examples_are_what_the_renderer_writes(tmp_path: Path) -> None:
    args = example_command()
    args[args.index("--out") + 1] = str(tmp_path)
    args[args.index("--config") + 1] = str(EXAMPLE)
    assert cli_main(["deploy", "render", *args]) == 0
    # the edge's db_text tables (kamailio/db/) are rendered at each start of ivr-edge; not committed
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "db")
    for rel in fresh:
        committed = DEPLOY / rel
        assert committed.is_file(), f"deploy/{rel} is missing: re-run the command in {EXAMPLE.name}"
        if rel.name == "kamailio.cfg":
            # the body is ivr/edge/kamailio.cfg at render time; what the layout decides must match
            def decided(text: str) -> list[str]:
                return [ln for ln in text.splitlines() if ln.startswith(("#!define", "listen=", "mhomed"))]
            assert decided(committed.read_text()) == decided((tmp_path / rel).read_text()), rel
        else:
            assert committed.read_text() == (tmp_path / rel).read_text(), \
                f"deploy/{rel} is stale: re-run the command in {EXAMPLE.name}"
