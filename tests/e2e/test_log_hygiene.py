"""Every log line of a whole hotline run, grepped for what must never be there.

A real ``ivr run`` (edge, worker, API, Redis) takes hostile API traffic (guessed tokens, a token in a
query string, an oversized Authorization header, a WebSocket signed in by sub-protocol) and a real
call: the caller types a PIN at a ``sensitive`` collect node, waits in a queue, agent1 gets the
screen-pop on its desktop and answers on its phone. Then the log of every process must hold no
token, no Redis password, no PIN digits and no full caller number (docs/security.md: logs show the
last two digits), while the agent's pop still carries the full number.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import yaml

from tests.desktop import AgentDesktop
from tests.e2e.conftest import Hotline
from tests.e2e.test_dialplan_calls import key, place_call
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = pytest.mark.e2e

ANI = "+15550977"
PIN = "73915824"  # distinct digits: sipp replays one RFC 2833 event per pcap
GUESSES = [f"guess-{i}-Zq8rT2vWx" for i in range(12)]
MARKER = "QsTokenInQuery9931"
PLAN = {"name": "PIN check", "numbers": ["3100"], "language": "en", "start": "pin", "nodes": {
    "pin": {"type": "collect", "variable": "pin", "min_digits": 4, "max_digits": 10, "terminator": "#",
            "timeout_s": 8, "sensitive": True, "listen": {"enabled": False},
            "prompt": {"text": "Please enter your PIN, then the hash key."}, "next": "wait"},
    "wait": {"type": "queue", "queue": "billing"}}}


@pytest_asyncio.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "pin.yaml").write_text(yaml.safe_dump(PLAN))
    h = Hotline(tmp_path / "hotline", workers=1, overrides={"dialplans_dir": str(plans), "log_level": "debug"})
    try:
        await h.start()
        yield h
    finally:
        h.stop()


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        out = b""
        for _ in range(1000):
            chunk = conn.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


async def hostile_api_traffic(h: Hotline, http: aiohttp.ClientSession) -> None:
    # the guesser comes from another loopback address: it gets blocked, the agents below do not
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as guesser:
        for guess in GUESSES:
            async with guesser.get(f"{h.api}/api/v1/agents", headers={"Authorization": f"Bearer {guess}"}) as r:
                assert r.status in (401, 429)
        assert r.status == 429
    async with http.get(f"{h.api}/api/v1/agents?token={MARKER}") as r:
        assert r.status in (401, 429)
    reply = await asyncio.to_thread(raw_request, h.api_port, b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer " + MARKER.encode() * 1000 + b"\r\n\r\n")
    assert b" 431 " in reply.split(b"\r\n")[0] and MARKER.encode() not in reply
    async with aiohttp.ClientSession() as other:  # the desktop's way: the token as a sub-protocol
        ws = await other.ws_connect(f"{h.api}/api/v1/agents/agent1/events",
                                    protocols=[f"bearer.{h.tokens['agent1']}"])
        await ws.close()


@pytest.mark.timeout(240)
async def test_no_token_password_pin_or_full_caller_number_in_any_log_line(
        hotline: Hotline, tmp_path: Path) -> None:
    h = hotline
    agent_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=300, talk_ms=30000)
    async with aiohttp.ClientSession() as http:
        await hostile_api_traffic(h, http)
        desktop = AgentDesktop(h.api, "agent1", h.tokens["agent1"])
        await desktop.start(http)
        async with http.post(f"{h.api}/api/v1/agents/agent1/state", json={"state": "available"},
                             headers={"Authorization": f"Bearer {h.tokens['agent1']}"}) as r:
            assert r.status == 200, await r.text()
        phone = SippServer(agent_sf, workdir=tmp_path, tag="agent", port=h.agent_sip_port,
                           extra=["-m", "1", "-mp", str(free_udp_tcp_port())])
        async with phone:
            steps = [(key(d), 1500 + 400 * i) for i, d in enumerate(PIN + "#")]
            await place_call(h, tmp_path, ani=ANI, number="3100", steps=steps, hangup_ms=14000)
            await desktop.wait_for("call.ended")
        await desktop.stop()
    _, offered = await desktop.wait_for("call.offered")
    assert offered["ani"] == ANI, "the agent's pop keeps the full number"
    assert PIN not in json.dumps(offered)
    password = (h.var / "secrets" / "redis.password").read_text().strip()
    h.stop()  # every process's last lines too

    text = h.log_path.read_text(errors="replace")
    events = {r.get("event") for r in h.log_records()}
    # the log really covers the run: the call, the hostile requests, the access log
    assert {"call.incoming", "call.digits", "http.access", "http.rejected", "auth.client_blocked"} <= events, \
        sorted(map(str, events))
    incoming = next(r for r in h.log_records() if r.get("event") == "call.incoming")
    assert incoming["ani"].endswith(ANI[-2:]) and "*" in incoming["ani"]
    forbidden = {"token": [*h.tokens.values(), *GUESSES, MARKER], "redis password": [password], "PIN": [PIN]}
    for what, values in forbidden.items():
        for value in values:
            assert value not in text, f"{what} in the log: {[ln for ln in text.splitlines() if value in ln][:3]}"
    digits = re.sub(r"\D", "", ANI)
    leaks = [ln for ln in text.splitlines() if digits in re.sub(r"[^\d\n]", "", ln)]
    assert not leaks, f"full caller number in the log: {leaks[:3]}"
    assert "Traceback" not in text
