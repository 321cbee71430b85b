"""Browser phones on the real parts: what rtpengine costs per call, agents per core, setup to ringing.

``python bench/webrtc.py`` (``make bench-webrtc``, about 6 minutes; ``--quick`` about 2). One hotline
from ``ivr run`` (tests.e2e.conftest.Hotline via bench/capacity.make_hotline: Redis, the Kamailio edge
with SIP over WSS, rtpengine, pjsua2 workers, the API) on loopback. Callers are sipp
(tests/sipp/cc_caller.xml: press 1, the sales queue, send a 2300 Hz tone, wait for the hotline's BYE).
Agents are of two kinds, all with the skill sales:

- **desk** agents, whose phone is one sipp UAS on UDP (tests/sipp/cc_phone.xml: 180, 200 after
  ``RING_MS``, a 2700 Hz tone): the path without rtpengine;
- **browser** agents: one headless Chromium (Debian's, through Playwright), one browser context (its
  own renderer) per agent, fake microphone (``--use-file-for-fake-audio-capture``: a 1 kHz WAV), on
  a minimal page served on loopback by the benchmark (its origin added to
  ``edge.webrtc.allowed_origins``) with the SIP.js of ``make install``, that registers over WSS with
  the agent's SIP password, sends 180 Ringing on
  an INVITE and answers ``RING_MS`` later, plays the received audio, and reports getStats. The
  page is not the desktop: it has no screen-pop and no meters (with the desktop, the worker sends
  the INVITE after the pop is painted, so the pop adds no time between the INVITE and the ring).

Parts, in this order, on the one hotline:

1. **idle**: CPU of rtpengine, the workers and Kamailio with no call.
2. **desk** (``--calls`` calls, default 4) and **browser** (the same number): the calls are set up
   one after the other under a kernel-stamped loopback capture (tests/e2e/test_media.py
   StampedSniffer): the worker's INVITE to the agent -> the 180 and the 200 back at the worker
   (setup, p50/p95), and, for the browser, each RTP packet into rtpengine matched (RTP sequence
   number and timestamp, which SRTP leaves in clear) with the packet it sends on: the one-way delay
   rtpengine adds, both directions. Then all calls held ``--plateau-s``: the CPU of rtpengine, the
   workers and Kamailio, desk vs browser; rtpengine's CPU seconds per call-minute.
3. **agents per core** (``--steps``, default 2,4,6,8 concurrent browser calls): at each step the
   CPU of the Chromium processes (idle with the tabs registered, then in call), rtpengine and the
   workers over ``--plateau-s``; per agent in call, and agents per core (100 % of one core / the
   CPU one agent's call costs: Chromium's share alone, and Chromium + rtpengine + workers). The
   ramp stops after the first step where the three together use one core or more. The calls of a
   step are placed together (2 per second) under a capture of the workers' SIP only (stopped before
   the CPU is measured): setup over every step's offers (``setup_all_steps``).

``--page desktop`` makes the agent desktop itself the browser agent: each tab signs in with the
agent's token, types the SIP password into the Browser phone card and registers; the worker waits
for the pop (``api.pop_wait_ms``) before its INVITE, and the card's Answer button is clicked
``RING_MS`` after the card rings (a script added to the tab, which also keeps the page's
RTCPeerConnections for getStats). ``--hide-meters`` hides the card's two level meters (display: none:
they still run, but there is nothing to paint), to see what painting them costs.

Every browser call must show received packets in the page (getStats inbound-rtp) and the browser's
selected ICE pair must end at rtpengine; a step where that fails is reported as such. The load
average is recorded: the machine is shared. Results: bench/results/webrtc-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from playwright.async_api import Browser, BrowserContext, Page, async_playwright  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from bench.call_control import LONG_MS, Rig, load_average  # noqa: E402
from bench.capacity import latency_summary, log_problems, make_hotline, raise_open_files, sliding_port_range  # noqa: E402
from bench.harness import save  # noqa: E402
from bench.procfs import CLK_TCK, cmdline, cpu_ticks, descendants, pids_matching  # noqa: E402
from tests.browser import chromium_path  # noqa: E402
from tests.call_audio import AGENT_HZ, CALLER_HZ, tone_pcap  # noqa: E402
from tests.e2e.conftest import Hotline, merge  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.scenarios import render_scenario  # noqa: E402
from tests.sipp_helpers import SippServer  # noqa: E402

CORES = os.cpu_count() or 1
RING_MS = 100          # desk (sipp) and browser agents alike answer this long after their 180
BROWSER_TONE_HZ = 1000.0
PASSWORD = "bench-browser-sip-password"
ENGINE_PORTS = 400     # rtpengine's media port range
PAGE = "/phone.html"  # served with SIP.js by the benchmark's own loopback server (an allowed Origin)
SIPJS = ROOT / "deploy" / "npm" / "node_modules" / "sip.js" / "lib"

# --- pure helpers (tests/unit/test_bench_webrtc.py) ----------------------------------------------


def rtp_key(payload: bytes) -> tuple[int, int] | None:
    """(sequence number, timestamp) of an RTP or SRTP packet (SRTP leaves the header in clear);
    None for RTCP (payload types 72-76 with the marker: 200-204), STUN, DTLS or anything shorter."""
    if len(payload) < 12 or payload[0] >> 6 != 2 or 72 <= payload[1] & 0x7F <= 76:
        return None
    return int.from_bytes(payload[2:4], "big"), int.from_bytes(payload[4:8], "big")


@dataclass(frozen=True)
class Packet:
    ts: float
    src: int
    dst: int
    payload: bytes


def forwarding_delays(packets: Iterable[Packet], engine: range, workers: range,
                      max_s: float = 1.0) -> dict[str, list[float]]:
    """ms from each RTP packet into rtpengine to the packet with the same (sequence, timestamp) out
    of it, per direction: ``to_browser`` (worker -> rtpengine -> browser) and ``to_worker``. A
    packet never seen leaving (lost, or the capture started after) counts nothing."""
    seen: dict[tuple[str, tuple[int, int]], float] = {}
    out: dict[str, list[float]] = {"to_browser": [], "to_worker": []}
    for p in packets:
        key = rtp_key(p.payload)
        if key is None:
            continue
        if p.dst in engine and p.src not in engine:
            way = "to_browser" if p.src in workers else "to_worker"
            seen.setdefault((way, key), p.ts)
        elif p.src in engine and p.dst not in engine:
            way = "to_worker" if p.dst in workers else "to_browser"
            t0 = seen.pop((way, key), None)
            if t0 is not None and 0 <= p.ts - t0 <= max_s:
                out[way].append((p.ts - t0) * 1000)
    return out


_CALL_ID = re.compile(r"^(?:Call-ID|i)\s*:\s*(\S+)", re.M | re.I)
_CSEQ = re.compile(r"^CSeq\s*:\s*\d+\s+(\w+)", re.M | re.I)


def offer_times(packets: Iterable[Packet], workers: range, agents: set[str]) -> dict[str, dict[str, float]]:
    """Per SIP Call-ID of a worker's offer to one of ``agents``: when its INVITE left the worker (a
    packet from one of the ``workers`` SIP ports: ``invite``) and when the first 180 and 200 to that
    INVITE reached the worker (``ringing``, ``ok``); wall-clock seconds from the capture."""
    calls: dict[str, dict[str, float]] = {}
    for p in packets:
        if p.payload[:4] not in (b"INVI", b"SIP/"):
            continue
        text = p.payload.decode("utf-8", "replace")
        cid = _CALL_ID.search(text)
        if cid is None:
            continue
        call_id = cid.group(1)
        if p.src in workers and text.startswith("INVITE "):
            user = re.match(r"INVITE sips?:([^@;> ]+)@", text)
            if user and user.group(1) in agents and call_id not in calls:
                calls[call_id] = {"invite": p.ts}
        elif p.dst in workers and call_id in calls and text.startswith("SIP/2.0 "):
            cseq = _CSEQ.search(text)
            if cseq is None or cseq.group(1).upper() != "INVITE":
                continue
            status = text[8:11]
            name = {"180": "ringing", "183": "ringing", "200": "ok"}.get(status)
            if name:
                calls[call_id].setdefault(name, p.ts)
    return calls


def ng_times(packets: Iterable[Packet], ng_port: int) -> dict[str, list[float]]:
    """ms from each ng control request the edge sent rtpengine (``<cookie> d7:command5:offer...``)
    to rtpengine's reply with the same cookie, by command: rtpengine's own share of the setup."""
    asked: dict[bytes, tuple[str, float]] = {}
    out: dict[str, list[float]] = {}
    for p in packets:
        cookie, _, body = p.payload.partition(b" ")
        if p.dst == ng_port:
            m = re.search(rb"7:command(\d+):", body)
            if m:
                start = m.end()
                asked[cookie] = (body[start:start + int(m.group(1))].decode("ascii", "replace"), p.ts)
        elif p.src == ng_port and cookie in asked:
            command, t0 = asked.pop(cookie)
            out.setdefault(command, []).append((p.ts - t0) * 1000)
    return out


def setup_figures(calls: dict[str, dict[str, float]],
                  page: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """INVITE -> 180 and INVITE -> 200 at the worker (ms); with the pages' own stamps (ms since the
    epoch, by SIP Call-ID), INVITE -> the page's INVITE event and -> the page's ringing."""
    ring = [(c["ringing"] - c["invite"]) * 1000 for c in calls.values() if "ringing" in c]
    ok = [(c["ok"] - c["invite"]) * 1000 for c in calls.values() if "ok" in c]
    out: dict[str, Any] = {"offers": len(calls), "invite_to_180_ms": summary(ring), "invite_to_200_ms": summary(ok),
                           "_samples_ms": {"INVITE -> 180": ring}}
    if page is not None:
        got = [page[cid]["invite_at"] - c["invite"] * 1000 for cid, c in calls.items() if cid in page]
        rang = [page[cid]["ring_at"] - c["invite"] * 1000 for cid, c in calls.items()
                if page.get(cid, {}).get("ring_at")]
        out.update({"invite_to_page_invite_ms": summary(got), "invite_to_page_ringing_ms": summary(rang),
                    "matched_in_pages": len(got)})
    return out


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """n, p50, p95, p99, max (ms, two decimals), mean."""
    s = latency_summary([round(x, 2) for x in samples])
    if samples:
        s["mean"] = round(statistics.fmean(samples), 2)
    return s


def pct_of_core(ticks: int, seconds: float) -> float:
    return round(100 * ticks / CLK_TCK / max(seconds, 1e-3), 2)


def agents_per_core(per_agent_pct: float | None) -> float | None:
    """How many agents one core (100 %) carries at ``per_agent_pct`` % of a core each."""
    return round(100 / per_agent_pct, 1) if per_agent_pct and per_agent_pct > 0 else None


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x (None below two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in points), statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def sine_wav(path: Path, hz: float = BROWSER_TONE_HZ, seconds: float = 10.0, rate: int = 48000) -> Path:
    """A mono 16-bit sine tone: the browsers' microphone (Chromium loops the file)."""
    n = int(seconds * rate)
    frames = b"".join(int(0.3 * 32767 * math.sin(2 * math.pi * hz * i / rate)).to_bytes(2, "little", signed=True)
                      for i in range(n))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def spki_hash(cert: Path) -> str:
    """base64 SHA-256 of the certificate's public key: Chromium's ``--ignore-certificate-errors-spki-list``."""
    pem = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(cert)], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pem, check=True,
                         capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


# --- the browser agents ------------------------------------------------------------------------

PHONE_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>bench phone</title></head>
<body><audio id="remote" autoplay></audio><pre id="state">starting</pre>
<script type="module">
const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const bench = window.bench = {state: "starting", error: "", calls: {}, session: null};
const show = (s) => { bench.state = s; document.getElementById("state").textContent = s; };
try {
  const {UserAgent, Registerer, RegistererState, SessionState} = await import("/static/lib/sip.js/index.js");
  const ua = new UserAgent({
    uri: UserAgent.makeURI(cfg.aor), transportOptions: {server: cfg.ws_url, connectionTimeout: 5},
    authorizationUsername: cfg.username, authorizationPassword: cfg.password,
    logBuiltinEnabled: false, logLevel: "error", sendInitialProvisionalResponse: false,
    delegate: {onInvite: (inv) => {
      const rec = {invite_at: Date.now(), ring_at: 0, established_at: 0, ended_at: 0, error: ""};
      bench.calls[inv.request.callId] = rec;
      bench.session = inv;
      inv.stateChange.addListener((s) => {
        if (s === SessionState.Established) {
          rec.established_at = Date.now();
          const audio = document.getElementById("remote");
          audio.srcObject = inv.sessionDescriptionHandler.remoteMediaStream;
          audio.play().catch(() => {});
        }
        if (s === SessionState.Terminated) rec.ended_at = Date.now();
      });
      inv.progress().catch((e) => { rec.error = String(e); });
      rec.ring_at = Date.now();
      setTimeout(() => inv.accept({sessionDescriptionHandlerOptions: {constraints: {audio: true, video: false}}})
        .catch((e) => { rec.error = String(e); }), cfg.ring_ms);
    }},
  });
  const registerer = new Registerer(ua, {expires: 300});
  registerer.stateChange.addListener((s) => { if (s === RegistererState.Registered) show("registered"); });
  window.benchStop = async () => { await registerer.unregister().catch(() => {}); await ua.stop(); };
  await ua.start();
  await registerer.register({requestDelegate: {onReject: (r) => show(`failed ${r.message.statusCode}`)}});
} catch (e) { bench.error = String(e); show("error"); }
</script></body></html>"""


#: ``--page desktop``: the agent desktop itself (sign-in, the Browser phone card, pop before ring). This
#: script runs in each of its tabs before the page's own: it keeps the page's RTCPeerConnections (for
#: getStats), mirrors the card's registration state into ``window.bench`` and answers with the card's
#: Answer button ``ring_ms`` after the card rings, as an agent would click it.
DESKTOP_INIT = """(() => {
const Native = window.RTCPeerConnection;
const pcs = window.__benchPcs = [];
window.RTCPeerConnection = function (...args) { const pc = new Native(...args); pcs.push(pc); return pc; };
window.RTCPeerConnection.prototype = Native.prototype;
Object.setPrototypeOf(window.RTCPeerConnection, Native);
const bench = window.bench = {state: "loading", error: "", calls: {}, rings: 0};
document.addEventListener("DOMContentLoaded", () => {
  const state = document.getElementById("sp-state"), card = document.getElementById("phone-card");
  if (!state || !card) { bench.state = "error"; bench.error = "no phone card"; return; }
  if (HIDE_METERS) {  // --hide-meters: the level meters still run, but display: none (nothing to paint)
    for (const id of ["sp-in-level", "sp-out-level"]) document.getElementById(id).style.display = "none";
  }
  new MutationObserver(() => { bench.state = state.textContent.trim(); })
    .observe(state, {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => {
    if (card.dataset.call !== "ringing") return;
    bench.rings += 1;
    bench.calls[`ring-${bench.rings}`] = {ring_at: Number(card.dataset.ringAt || Date.now())};
    setTimeout(() => document.getElementById("sp-answer").click(), RING_MS);
  }).observe(card, {attributes: true, attributeFilter: ["data-call"]});
});
})();"""

STATS_JS = """async () => {
  const bench = window.bench || {};
  const sdh = bench.session && bench.session.sessionDescriptionHandler;
  const pcs = window.__benchPcs || [];
  const pc = (sdh && sdh.peerConnection) || pcs[pcs.length - 1];
  if (!pc) return null;
  const out = {inbound: 0, outbound: 0, energy: 0, remote: ""};
  const stats = await pc.getStats();
  const byId = new Map();
  stats.forEach((r) => byId.set(r.id, r));
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      out.inbound = r.packetsReceived;
      out.energy = r.totalAudioEnergy || 0;
    }
    if (r.type === "outbound-rtp" && r.kind === "audio") out.outbound = r.packetsSent;
    if (r.type === "transport" && r.selectedCandidatePairId) {
      const pair = byId.get(r.selectedCandidatePairId);
      const remote = pair && byId.get(pair.remoteCandidateId);
      if (remote) out.remote = `${remote.address || remote.ip}:${remote.port}`;
    }
  });
  return out;
}"""


@dataclass
class Agent:
    id: str
    context: BrowserContext
    page: Page

    async def state(self) -> str:
        return str(await self.page.evaluate("window.bench ? window.bench.state : 'loading'"))

    async def calls(self) -> dict[str, dict[str, Any]]:
        return dict(await self.page.evaluate("window.bench ? window.bench.calls : {}"))

    async def stats(self) -> dict[str, Any] | None:
        result = await self.page.evaluate(STATS_JS)
        return dict(result) if result else None


@dataclass
class Browsers:
    browser: Browser
    h: Hotline
    origin: str
    desktop: bool = False
    hide_meters: bool = False
    agents: list[Agent] = field(default_factory=list)

    async def open(self, agent: str) -> Agent:
        ctx = await self.browser.new_context()
        page = await ctx.new_page()
        if self.desktop:
            await ctx.add_init_script(DESKTOP_INIT.replace("RING_MS", str(RING_MS))
                                      .replace("HIDE_METERS", "true" if self.hide_meters else "false"))
            await page.goto(f"{self.h.api}/")
            await page.fill("#agent", agent)
            await page.fill("#token", self.h.tokens[agent])
            await page.click("#login-form button[type=submit]")
            await page.wait_for_selector("#conn[data-status=connected]", timeout=20_000)
            await page.fill("#sp-password", PASSWORD)
            await page.click("#sp-register")
            a = Agent(agent, ctx, page)
            self.agents.append(a)
            return a
        cfg = {"aor": f"sip:{agent}@127.0.0.1", "username": agent, "password": PASSWORD, "ring_ms": RING_MS,
               "ws_url": f"wss://127.0.0.1:{self.h.edge_port + 3}"}
        await page.goto(f"{self.origin}{PAGE}#{json.dumps(cfg)}")
        a = Agent(agent, ctx, page)
        self.agents.append(a)
        return a

    async def ensure(self, ids: Sequence[str], within_s: float = 30) -> None:
        """Every agent of ``ids`` has a page, registered at the edge."""
        have = {a.id for a in self.agents}
        for agent in ids:
            if agent not in have:
                await self.open(agent)
        deadline = time.monotonic() + within_s
        wanted = [a for a in self.agents if a.id in ids]
        while time.monotonic() < deadline:
            states = [await a.state() for a in wanted]
            if all(s == "registered" for s in states):
                return
            if any(s.startswith(("failed", "error")) for s in states):
                break
            await asyncio.sleep(0.2)
        errors = [await a.page.evaluate("window.bench && window.bench.error") for a in wanted]
        raise RuntimeError(f"browser agents not registered: {states} {errors}")

    def of(self, ids: Iterable[str]) -> list[Agent]:
        wanted = set(ids)
        return [a for a in self.agents if a.id in wanted]

    async def close(self) -> None:
        for a in self.agents:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(a.page.evaluate("window.benchStop && window.benchStop()"), 3)
            with contextlib.suppress(Exception):
                await a.context.close()
        self.agents.clear()


def chromium_pids() -> list[int]:
    """The Chromium processes this benchmark started (below this process: Playwright's driver, then Chromium)."""
    return [p for p in descendants(os.getpid()) if p != os.getpid() and "chromium" in cmdline(p)]


# --- the rig ---------------------------------------------------------------------------------------

@dataclass
class Parts:
    """Which processes are which, and the port ranges that tell rtpengine's legs apart."""

    h: Hotline
    engine_ports: range
    worker_rtp: range
    worker_sip: range

    def rtpengine(self) -> list[int]:
        pid_file = self.h.var / "run" / "rtpengine" / "rtpengine.pid"
        with contextlib.suppress(OSError, ValueError):
            return [int(pid_file.read_text().strip())]
        return []

    def groups(self) -> dict[str, list[int]]:
        workdir = str(self.h.workdir)
        return {"rtpengine": self.rtpengine(), "workers": pids_matching(workdir, also="worker"),
                "kamailio": pids_matching(workdir, also="kamailio"), "chromium": chromium_pids()}


async def measure(parts: Parts, seconds: float) -> dict[str, float]:
    """% of one core used by each group of processes over ``seconds``."""
    groups = parts.groups()
    a = {name: cpu_ticks(pids) for name, pids in groups.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {name: pct_of_core(cpu_ticks(pids) - a[name], elapsed) for name, pids in groups.items()}


def users(h: Hotline, desks: int, browsers: int, phone_port: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"id": "super1", "name": "Sam", "role": "supervisor", "token": h.tokens["super1"]}]
    for i in range(1, desks + 1):
        agent = f"d{i:02d}"
        h.tokens[agent] = f"{agent}-bench-token"
        out.append({"id": agent, "name": agent, "skills": {"sales": 1}, "token": h.tokens[agent],
                    "sip_uri": f"sip:{agent}@127.0.0.1:{phone_port}"})
    for i in range(1, browsers + 1):
        agent = f"b{i:02d}"
        h.tokens[agent] = f"{agent}-bench-token"
        out.append({"id": agent, "name": agent, "skills": {"sales": 1}, "token": h.tokens[agent],
                    "phone": "registered", "sip_password": PASSWORD})
    return out


@contextlib.asynccontextmanager
async def page_server(port: int) -> AsyncIterator[str]:
    """The agents' page and SIP.js on 127.0.0.1:``port`` (a loopback origin, as the desktop's is:
    Chromium lets only such pages open a WebSocket to a loopback edge). Yields the origin."""
    from aiohttp import web

    async def phone(_: web.Request) -> web.Response:
        return web.Response(text=PHONE_HTML, content_type="text/html")

    app = web.Application()
    app.router.add_get(PAGE, phone)
    app.router.add_static("/static/lib/sip.js/", SIPJS)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def rig(work: Path, desks: int, browser_agents: int, desktop: bool = False,
              hide_meters: bool = False) -> AsyncIterator[tuple[Rig, Parts, Browsers]]:
    workers = math.ceil(max(desks, browser_agents) / 2) + 2  # two callers (caller + agent legs) per worker
    engine = sliding_port_range(ENGINE_PORTS)
    phone_port, page_port = free_udp_tcp_port(), free_udp_tcp_port()
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "log_level": "warning", "workers": {"drain_s": 2}, "routing": {"wrapup_s": 0.3},
        "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]},
                 "webrtc": {"enabled": True, "rtp_port_min": engine, "rtp_port_max": engine + ENGINE_PORTS - 1}}}
    h = make_hotline(work / "hotline", workers, base)
    base["edge"]["webrtc"]["allowed_origins"] = [f"http://127.0.0.1:{page_port}", h.api]
    h.overrides = {**merge(h.overrides, base), "users": users(h, desks, browser_agents, phone_port)}
    per_worker = int(h.overrides["workers"]["rtp_ports_per_worker"])
    parts = Parts(h, range(engine, engine + ENGINE_PORTS), range(h.rtp_base, h.rtp_base + workers * per_worker),
                  range(h.sip_base, h.sip_base + workers))
    pcaps = {p: tone_pcap(hz, 120, work / f"{p}.pcap") for p, hz in (("caller", CALLER_HZ), ("agent", AGENT_HZ))}
    sf = render_scenario("cc_phone.xml", work / "rendered" / "phone", keep="remote-hangs-up", drop="agent-hangs-up",
                         ring_ms=RING_MS, talk_ms=LONG_MS, audio_pcap=pcaps["agent"])
    phone = SippServer(sf, workdir=work / "sipp", tag="desks", port=phone_port, max_runtime=900,
                       trace_messages=False, extra=["-mp", str(free_udp_tcp_port())])
    wav = await asyncio.to_thread(sine_wav, work / "browser-tone.wav")
    try:
        for attempt in (1, 2):  # on a shared machine the workers may miss the supervisor's start window
            try:
                await h.start(timeout=180)
                break
            except AssertionError as exc:
                await asyncio.to_thread(h.stop, 30)
                if attempt == 2:
                    raise RuntimeError(f"the hotline did not start twice: {str(exc)[-300:]}") from exc
                print("  the hotline did not start; once more", flush=True)
        spki = await asyncio.to_thread(spki_hash, h.var / "run" / "certs" / "webrtc-localhost.crt")
        args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}", f"--ignore-certificate-errors-spki-list={spki}",
                "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection"]
        async with phone, aiohttp.ClientSession() as http, page_server(page_port) as origin, \
                async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
            browsers = Browsers(browser, h, origin, desktop, hide_meters)
            r = Rig(h, http, work, phone, pcaps["agent"], pcaps["caller"])
            try:
                yield r, parts, browsers
            finally:
                await r.hang_up_all()
                await browsers.close()
                await browser.close()
    finally:
        await asyncio.to_thread(h.stop, 60)


async def set_state(r: Rig, agents: Iterable[str], state: str) -> None:
    for agent in agents:
        async with r.http.post(f"{r.h.api}/api/v1/agents/{agent}/state", json={"state": state},
                               headers=r.auth(agent)) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{agent} {state}: {resp.status} {await resp.text()}")


async def settle(r: Rig, within_s: float = 20) -> None:
    """Hang up every call and wait until none is left."""
    await r.hang_up_all()
    for _ in range(int(within_s / 0.3)):  # bounded
        if not await r.active():
            break
        await asyncio.sleep(0.3)
    await asyncio.sleep(1)


async def connect(r: Rig, n: int, one_by_one: bool) -> None:
    """``n`` callers into the sales queue, connected to the agents logged in."""
    if one_by_one:
        for i in range(n):
            r.call_in(1, tag=f"c{time.monotonic_ns()}")
            await r.wait_connected(i + 1, timeout=40)
    else:
        r.call_in(1, calls=n, tag=f"c{time.monotonic_ns()}")
        await r.wait_connected(n, timeout=40 + n)


async def media_check(agents: Sequence[Agent]) -> dict[str, Any]:
    """Packets each page received and sent (getStats), twice 2 s apart: every call's inbound grows."""
    first = [await a.stats() for a in agents]
    await asyncio.sleep(2)
    second = [await a.stats() for a in agents]
    growing = sum(1 for x, y in zip(first, second, strict=True) if x and y and y["inbound"] > x["inbound"])
    sending = sum(1 for x, y in zip(first, second, strict=True) if x and y and y["outbound"] > x["outbound"])
    remotes = sorted({str(s["remote"]) for s in second if s})
    out: dict[str, Any] = {"calls": len(agents), "inbound_growing": growing, "outbound_growing": sending,
                           "audio_energy_min": min((float(s["energy"]) for s in second if s), default=0.0),
                           "selected_remote_ports": remotes[:4]}
    if growing < len(agents):  # what the pages saw, to explain it
        out["pages"] = {a.id: {"stats": y, "calls": list((await a.calls()).values())}
                        for a, y in zip(agents, second, strict=True)}
    return out


# --- the parts -----------------------------------------------------------------------------------

async def latency_part(r: Rig, parts: Parts, browsers: Browsers, n: int, plateau_s: float,
                       idle: dict[str, float]) -> dict[str, Any]:
    from tests.e2e.test_media import StampedSniffer  # a test module: only imported when this part runs

    out: dict[str, Any] = {}
    ng_port = r.h.edge_port + 2
    ports = {*parts.worker_sip, *parts.engine_ports, *parts.worker_rtp, ng_port}
    for kind in ("desk", "browser"):
        ids = [f"{kind[0]}{i:02d}" for i in range(1, n + 1)]
        if kind == "browser":
            await browsers.ensure(ids)
        await set_state(r, ids, "available")
        sniffer = StampedSniffer(ports)
        sniffer.max_seconds = 120
        with sniffer:
            await connect(r, n, one_by_one=True)
            await asyncio.sleep(3)  # the rtpengine delay: a few seconds of media under the capture
        packets = [Packet(p.ts, p.src, p.dst, p.payload) for p in sniffer.packets]
        offers = offer_times(packets, parts.worker_sip, set(ids))
        section: dict[str, Any] = {"calls": n, "capture_drops": sniffer.drops}
        if kind == "browser":
            page: dict[str, dict[str, float]] = {}
            for a in browsers.of(ids):
                page.update(await a.calls())
            section["setup"] = setup_figures(offers, page)
            section["setup"]["rtpengine_ng_reply_ms"] = {c: summary(v) for c, v in ng_times(packets, ng_port).items()}
            delays = forwarding_delays(packets, parts.engine_ports, parts.worker_rtp)
            section["rtpengine_added_one_way_ms"] = {way: summary(d) for way, d in delays.items()}
            section["rtpengine_added_one_way_ms"]["_samples_ms"] = {f"rtpengine {w}": d for w, d in delays.items()}
            section["media"] = await media_check(browsers.of(ids))
        else:
            section["setup"] = setup_figures(offers)
        cpu = await measure(parts, plateau_s)
        section["cpu_pct_of_one_core"] = cpu
        section["server_cpu_pct_of_one_core"] = round(cpu["rtpengine"] + cpu["workers"] + cpu["kamailio"], 2)
        added = cpu["rtpengine"] - idle["rtpengine"]
        section["rtpengine_cpu_s_per_call_minute"] = round(added / 100 * 60 / n, 4)
        out[kind] = section
        print(f"  {kind}: setup {section['setup']['invite_to_180_ms']}, cpu {cpu}", flush=True)
        await settle(r)
        await set_state(r, ids, "offline")
    d, b = out["desk"], out["browser"]
    out["browser_minus_desk"] = {
        "server_cpu_pct_of_one_core_per_call": round((b["server_cpu_pct_of_one_core"]
                                                      - d["server_cpu_pct_of_one_core"]) / n, 3),
        "invite_to_180_p50_ms": _diff(b["setup"]["invite_to_180_ms"], d["setup"]["invite_to_180_ms"], "p50"),
        "invite_to_200_p50_ms": _diff(b["setup"]["invite_to_200_ms"], d["setup"]["invite_to_200_ms"], "p50")}
    return out


def _diff(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    return round(a[key] - b[key], 2) if a.get(key) is not None and b.get(key) is not None else None


async def agents_part(r: Rig, parts: Parts, browsers: Browsers, steps: Sequence[int], plateau_s: float,
                      idle: dict[str, float]) -> dict[str, Any]:
    from tests.e2e.test_media import StampedSniffer

    levels: list[dict[str, Any]] = []
    offers: dict[str, dict[str, float]] = {}
    ng: dict[str, list[float]] = {}
    ng_port = r.h.edge_port + 2
    for k in steps:
        ids = [f"b{i:02d}" for i in range(1, k + 1)]
        await browsers.ensure(ids)
        tabs_idle = await measure(parts, min(plateau_s, 8))
        await set_state(r, ids, "available")
        level: dict[str, Any] = {"agents": k, "tabs_idle_chromium_pct": tabs_idle["chromium"]}
        sniffer = StampedSniffer({*parts.worker_sip, ng_port})  # SIP only, and stopped before the CPU is measured
        sniffer.max_seconds = 120
        try:
            with sniffer:
                await connect(r, k, one_by_one=False)
                await asyncio.sleep(1)
        except (RuntimeError, RedisError) as exc:  # e.g. Redis not answering on an overloaded machine
            level["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
            levels.append(level)
            await settle(r)
            break
        packets = [Packet(p.ts, p.src, p.dst, p.payload) for p in sniffer.packets]
        offers.update(offer_times(packets, parts.worker_sip, set(ids)))
        for command, samples in ng_times(packets, ng_port).items():
            ng.setdefault(command, []).extend(samples)
        await asyncio.sleep(1)
        cpu = await measure(parts, plateau_s)
        media = await media_check(browsers.of(ids))
        per_agent_chromium = cpu["chromium"] / k
        server_added = (cpu["rtpengine"] - idle["rtpengine"]) + (cpu["workers"] - idle["workers"])
        per_agent_all = per_agent_chromium + server_added / k
        level.update({"cpu_pct_of_one_core": cpu, "media": media,
                      "chromium_pct_per_agent": round(per_agent_chromium, 2),
                      "chromium_added_pct_per_agent": round((cpu["chromium"] - tabs_idle["chromium"]) / k, 2),
                      "rtpengine_pct_per_call": round((cpu["rtpengine"] - idle["rtpengine"]) / k, 3),
                      "workers_pct_per_call": round((cpu["workers"] - idle["workers"]) / k, 3),
                      "all_pct_per_agent": round(per_agent_all, 2),
                      "agents_per_core_chromium": agents_per_core(per_agent_chromium),
                      "agents_per_core_all": agents_per_core(per_agent_all),
                      "chromium_rtpengine_workers_pct": round(cpu["chromium"] + server_added, 1),
                      "load_average": load_average()})
        levels.append(level)
        print(f"  {k} browser agents: {cpu}, media {media['inbound_growing']}/{k}", flush=True)
        await settle(r)
        await set_state(r, ids, "offline")
        if level["chromium_rtpengine_workers_pct"] >= 100:
            break
    page: dict[str, dict[str, float]] = {}
    for a in browsers.agents:
        page.update(await a.calls())
    setup = setup_figures(offers, page)
    setup["rtpengine_ng_reply_ms"] = {c: summary(v) for c, v in ng.items()}
    good = [lv for lv in levels if "error" not in lv and lv["media"]["inbound_growing"] == lv["agents"]]
    fit = slope([(lv["agents"], lv["cpu_pct_of_one_core"]["chromium"]) for lv in good])
    out: dict[str, Any] = {"levels": levels, "setup_all_steps": setup,
                           "chromium_marginal_pct_per_agent": round(fit, 2) if fit else None,
                           "agents_per_core_marginal_chromium": agents_per_core(fit)}
    if good:
        top = good[-1]
        out["at_largest_step"] = {k: top[k] for k in ("agents", "chromium_pct_per_agent", "all_pct_per_agent",
                                                      "agents_per_core_chromium", "agents_per_core_all")}
    return out


async def webrtc_bench(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """Fills ``result`` as it goes (what was measured stays there if a later part fails)."""
    raise_open_files()
    steps = args.steps
    work = Path("/tmp") / f"ivr-bench-webrtc-{os.getpid()}"
    git = _git_commit()
    result.update({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git,
        "machine": {"cores": CORES, "cpu": _cpu_model(), "chromium": _chromium_version()},
        "load_average_start": load_average(), "steps": steps, "calls": args.calls, "plateau_s": args.plateau_s,
        "ring_ms": RING_MS, "page": args.page, "hide_meters": args.hide_meters,
        "command": "nice -n 5 " + " ".join(["python", "bench/webrtc.py", *sys.argv[1:]])})
    t0 = time.monotonic()
    desktop = args.page == "desktop"
    agents = max(args.calls, steps[-1])
    async with rig(work, args.calls, agents, desktop, args.hide_meters) as (r, parts, browsers):
        result["startup_s"] = round(time.monotonic() - t0, 1)
        result["workers"] = r.h.workers
        idle = await measure(parts, args.idle_s)
        result["idle_cpu_pct_of_one_core"] = idle
        print(f"webrtc: idle {idle}", flush=True)
        result["desk_vs_browser"] = await latency_part(r, parts, browsers, args.calls, args.plateau_s, idle)
        result["agents_per_core"] = await agents_part(r, parts, browsers, steps, args.plateau_s, idle)
        result["log_problems"] = log_problems(r.h)
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["load_average_end"] = load_average()
    await asyncio.to_thread(shutil.rmtree, work, True)  # kept only when the run failed, to look into
    return result


def _git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def _chromium_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([chromium_path(), "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=4, help="calls of the desk vs browser part")
    ap.add_argument("--steps", default="2,4,6,8", help="concurrent browser agents per step")
    ap.add_argument("--plateau-s", type=float, default=15.0, help="seconds of CPU measurement per level")
    ap.add_argument("--idle-s", type=float, default=8.0)
    ap.add_argument("--page", choices=("minimal", "desktop"), default="minimal",
                    help="the browser agents' page: the benchmark's minimal SIP.js page, or the agent desktop")
    ap.add_argument("--hide-meters", action="store_true",
                    help="with --page desktop: the level meters hidden (display: none): what painting them costs")
    ap.add_argument("--quick", action="store_true", help="--calls 2 --steps 1,2 --plateau-s 6")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.steps, args.plateau_s, args.idle_s = 2, "1,2", 6.0, 4.0
    try:
        args.steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    except ValueError:
        ap.error("--steps: comma-separated numbers of agents")
    if not args.steps or args.steps[0] < 1 or args.steps[-1] > 40 or not 1 <= args.calls <= 20 \
            or not 1 <= args.plateau_s <= 300 or not 1 <= args.idle_s <= 300:
        ap.error("--steps: 1..40 agents, --calls: 1..20, --plateau-s and --idle-s: 1..300")
    result: dict[str, Any] = {}
    try:
        asyncio.run(webrtc_bench(args, result))
    except Exception as exc:  # what was measured until then is kept, with the reason it stopped
        result["error"] = f"{type(exc).__name__}: {str(exc)[-500:]}"
        save("webrtc", result)
        raise
    save("webrtc", result)


if __name__ == "__main__":
    main()
