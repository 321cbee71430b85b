"""Browsers' phones, configuration side: the certificate `ivr run` makes, the settings' checks, the
multi-host rendering (`ivr deploy render`: kamailio.cfg checked by the real `kamailio -c`, rtpengine.conf
read by the real rtpengine) and the systemd unit."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from ivr.core.config import Settings, load_settings
from ivr.core.errors import ConfigError
from ivr.core.process import ManagedProcess
from ivr.edge import Edge
from ivr.edge.webrtc import RtpEngine, allowed_origins, cert_paths, ensure_certificate, ng_ping
from ivr.runtime.render import RedisLayout, render_all
from tests.ports import free_port_range, free_udp_tcp_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_loopback_certificate_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")

    cert, key = ensure_certificate(settings)
    first = (cert.read_bytes(), key.read_bytes())
    again = ensure_certificate(settings)
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(cert)], capture_output=True,
                          text=True, check=True).stdout

    assert again == (cert, key) and (cert.read_bytes(), key.read_bytes()) == first, "made once, then kept"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert key.parent == settings.run_dir / "certs"
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    ctx = ssl.create_default_context(cafile=str(cert))  # a client trusting it can verify 127.0.0.1
    ctx.load_verify_locations(cafile=str(cert))


def test_configured_certificate_paths_are_used_as_they_are(tmp_path: Path) -> None:
    own = Settings(var_dir=tmp_path / "own")
    cert, key = ensure_certificate(own)
    settings = Settings(var_dir=tmp_path / "var", edge={"webrtc": {"cert": str(cert), "key": str(key)}})

    assert ensure_certificate(settings) == (cert, key)
    assert not (settings.run_dir / "certs").exists(), "nothing generated when a pair is configured"


@pytest.mark.parametrize("webrtc", [
    {"cert": "/etc/ssl/a.pem"},                               # a cert without its key
    {"rtp_port_min": 43000, "rtp_port_max": 43001},           # no room for one call
    {"allowed_origins": ["https://desk.example.com/"]},      # a path, not an origin
    {"allowed_origins": ["desk.example.com"]},                # no scheme
    {"allowed_origins": ["https://a.example\r\nX: y"]},       # header injection
    {"wss_port": 70000},
    {"rtp_port_min": 80},
])
def test_hostile_webrtc_settings_are_refused(tmp_path: Path, webrtc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(var_dir=tmp_path / "var", edge={"webrtc": webrtc})


def test_ports_default_next_to_the_edge_and_clashes_are_config_errors(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", edge={"port": 15060})
    assert (settings.edge.webrtc.wss_port, settings.edge.webrtc.rtpengine_ng_port) == (15063, 15062)
    cert, key = ensure_certificate(settings)
    Edge(settings, [("127.0.0.1", 15070)], webrtc=True).defines()  # the defaults are fine
    tls = {"tls_port": 15061, "tls_cert": str(cert), "tls_key": str(key)}
    for edge in ({"port": 15060, "webrtc": {"wss_port": 15060}},
                 {"port": 15060, **tls, "webrtc": {"wss_port": 15061}},
                 {"port": 15060, "webrtc": {"rtpengine_ng_port": 15060}},
                 {"port": 15060, "webrtc": {"rtpengine_host": "rtp.example.com"}}):
        bad = Settings(var_dir=tmp_path / "var", edge=edge)
        with pytest.raises(ConfigError, match=r"edge\.webrtc"):
            Edge(bad, [("127.0.0.1", 15070)], webrtc=True).defines()


def test_a_missing_or_mismatched_certificate_is_a_config_error(tmp_path: Path) -> None:
    a = ensure_certificate(Settings(var_dir=tmp_path / "a"))
    b = ensure_certificate(Settings(var_dir=tmp_path / "b"))
    for cert, key in ((a[0], b[1]), (tmp_path / "nope.pem", a[1])):
        settings = Settings(var_dir=tmp_path / "var", edge={"webrtc": {"cert": str(cert), "key": str(key)}})
        with pytest.raises(ConfigError, match=r"edge\.webrtc"):
            Edge(settings, [("127.0.0.1", 15070)], webrtc=True).defines()


def test_default_origins_are_the_apis_own(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", api={"host": "127.0.0.1", "port": 8123})
    public = Settings(var_dir=tmp_path / "var", api={"host": "10.1.2.3", "port": 443})

    assert allowed_origins(settings) == ["http://127.0.0.1:8123", "http://localhost:8123",
                                         "https://127.0.0.1:8123", "https://localhost:8123"]
    assert allowed_origins(public) == ["http://10.1.2.3:443", "https://10.1.2.3:443"]


def test_an_edge_without_webrtc_has_no_wss_socket_and_no_certificate(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", edge={"port": free_udp_tcp_port()})
    cfg = Edge(settings, [("127.0.0.1", free_udp_tcp_port())]).render_config()
    disabled = Settings(var_dir=tmp_path / "var", edge={"port": free_udp_tcp_port(), "webrtc": {"enabled": False}})
    cfg_disabled = Edge(disabled, [("127.0.0.1", free_udp_tcp_port())], webrtc=True).render_config()

    for text in (cfg, cfg_disabled):
        assert "#!define WITH_WEBRTC" not in text and "#!define WITH_TLS_MODULE" not in text
    assert not (settings.run_dir / "certs").exists()


# ----- multi-host ---------------------------------------------------------------------------------

def deploy_config(tmp_path: Path, **webrtc: Any) -> Path:
    rtp = free_port_range(8)
    path = tmp_path / "hotline.yaml"
    path.write_text(yaml.safe_dump({
        "var_dir": str(tmp_path / "var"),
        "edge": {"host": "127.0.0.1", "port": free_udp_tcp_port(),
                 "webrtc": {"rtp_address": "127.0.0.1", "rtp_port_min": rtp, "rtp_port_max": rtp + 7,
                            "rtpengine_ng_port": free_udp_tcp_port(), **webrtc}},
        "workers": {"remote": ["127.0.0.3:5070"]},
    }))
    return path


async def test_multi_host_render_with_a_certificate_runs_under_kamailio_and_rtpengine(tmp_path: Path) -> None:
    cert, key = ensure_certificate(Settings(var_dir=tmp_path / "certs"))
    settings = load_settings(deploy_config(tmp_path, cert=str(cert), key=str(key),
                                           allowed_origins=["https://desk.example.com"]))
    out = tmp_path / "out"

    written = render_all(settings, out, RedisLayout(), only=None)  # kamailio -c runs on the edge's config
    cfg = (out / "kamailio" / "kamailio.cfg").read_text()
    tls = (out / "kamailio" / "tls.cfg").read_text()
    conf = out / "rtpengine" / "rtpengine.conf"
    proc = ManagedProcess("rtpengine", ["rtpengine", "-f", "-E", f"--config-file={conf}"])
    await proc.start()
    try:
        w = settings.edge.webrtc
        assert w.rtpengine_ng_port is not None
        answered = await _ping_within(w.rtpengine_host, w.rtpengine_ng_port, 10)
    finally:
        await proc.stop()

    assert conf in written
    assert "#!define WITH_WEBRTC" in cfg and f"#!define WSS_PORT {w.wss_port}" in cfg
    assert f"certificate = {cert}" in tls
    assert (out / "kamailio" / "db" / "wsorigins").read_text().splitlines()[1].startswith("https\\://desk")
    assert "table = -1" in conf.read_text()
    assert answered, "the rendered rtpengine.conf runs rtpengine with its ng control where Kamailio looks"


def test_multi_host_render_without_a_certificate_leaves_browsers_out(tmp_path: Path) -> None:
    settings = load_settings(deploy_config(tmp_path))
    out = tmp_path / "out"

    written = render_all(settings, out, RedisLayout(), only=None, check=False)
    cfg = (out / "kamailio" / "kamailio.cfg").read_text()

    assert "#!define WITH_WEBRTC" not in cfg
    assert not any(p.parent.name == "rtpengine" for p in written)
    assert not (settings.run_dir / "certs").exists(), "no loopback certificate for a multi-host edge"
    with pytest.raises(ConfigError, match=r"edge\.webrtc\.cert"):
        render_all(settings, out, RedisLayout(), only=["rtpengine"])


def test_the_rtpengine_unit_passes_systemd_analyze_verify() -> None:
    assert shutil.which("systemd-analyze")
    unit = ROOT / "deploy" / "systemd" / "ivr-rtpengine.service"
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit),
                          str(ROOT / "deploy" / "systemd" / "hotline.target")],
                         capture_output=True, text=True, timeout=60, check=False)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines()
                if ln.strip() and "/opt/ivr/.venv/bin/ivr is not executable" not in ln]
    text = unit.read_text()

    assert not problems, problems
    assert "--only rtpengine" in text and "--config-file=/run/ivr-rtpengine/rtpengine/rtpengine.conf" in text


def test_ivr_run_command_line_is_userspace_on_loopback(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", edge={"port": 15060})
    argv = RtpEngine(settings).process.argv

    assert "--table=-1" in argv and "--config-file=none" in argv
    assert "--interface=127.0.0.1" in argv and "--listen-ng=127.0.0.1:15062" in argv
    assert f"--pidfile={settings.run_dir / 'rtpengine' / 'rtpengine.pid'}" in argv
    assert cert_paths(settings)[0].parent == settings.run_dir / "certs"


async def _ping_within(host: str, port: int, within_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if await ng_ping(host, port, within_s=0.5):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_missing_rtpengine_is_a_clear_config_error(tmp_path: Path) -> None:
    engine = RtpEngine(Settings(var_dir=tmp_path / "var"), rtpengine=str(tmp_path / "no-rtpengine"))

    with pytest.raises(ConfigError, match="install rtpengine-daemon"):
        await engine.start()
    assert not engine.process.running
