"""Browser agents for end-to-end tests of the desktop's browser phone through the real edge.

- :func:`tone_wav`: a sine tone as a WAV file, what Chromium plays as the fake microphone
  (``--use-file-for-fake-audio-capture``).
- :func:`spki_pin`: the base64 SHA-256 of a certificate's public key, for Chromium's
  ``--ignore-certificate-errors-spki-list`` (the page trusts the hotline's self-signed WSS certificate
  and nothing else: no blanket ``--ignore-certificate-errors``).
- :func:`browser_args`: the Chromium switches of a browser agent (fake microphone and camera UI, the
  pin, loopback ICE candidates).
- :class:`BrowserAgent`: one desktop tab (its own context: own sessionStorage, own WebRTC stack) signed
  in as an agent, with its browser phone registered over WSS; it records the SIP messages of the
  phone's WebSocket and reads the call's WebRTC statistics (``getStats``) from the page.
- :func:`tone_share`: how much of a signal's energy sits at one frequency (Goertzel), to tell which
  tone is in a stream of G.711 audio.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, WebSocket, expect

from tests.browser import Tab, artifacts_dir

TIMEOUT_MS = 15_000
SCREENSHOT_MS = 30_000
WAV_RATE = 48_000

# Chromium's RTCPeerConnection, wrapped once per page before any script runs: every connection the
# page makes is kept in window.__pcs, so a test can read its statistics and descriptions (the desktop
# itself never exposes its phone)
RECORD_PEER_CONNECTIONS = """
(() => {
  const Original = window.RTCPeerConnection;
  if (!Original || window.__pcs) return;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
})();
"""

# the last peer connection's statistics, flattened to what the tests judge
READ_STATS = """
async () => {
  const pcs = window.__pcs || [];
  const pc = pcs[pcs.length - 1];
  if (!pc) return null;
  const report = await pc.getStats();
  const all = new Map();
  report.forEach((s) => all.set(s.id, s));
  const out = {connections: pcs.length, state: pc.connectionState, inbound: null, outbound: null, pair: null,
               transport: null, codec: null, remote_sdp: pc.remoteDescription ? pc.remoteDescription.sdp : "",
               local_sdp: pc.localDescription ? pc.localDescription.sdp : ""};
  for (const s of all.values()) {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.inbound = {packets: s.packetsReceived, bytes: s.bytesReceived, energy: s.totalAudioEnergy || 0,
                     level: s.audioLevel || 0, duration: s.totalSamplesDuration || 0, lost: s.packetsLost};
      const codec = all.get(s.codecId);
      if (codec) out.codec = codec.mimeType;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.outbound = {packets: s.packetsSent, bytes: s.bytesSent};
    if (s.type === "transport") {
      out.transport = {dtls: s.dtlsState, cipher: s.srtpCipher || "", tls: s.tlsVersion || "", role: s.dtlsRole || ""};
      const pair = all.get(s.selectedCandidatePairId);
      if (pair) {
        const local = all.get(pair.localCandidateId), remote = all.get(pair.remoteCandidateId);
        out.pair = {state: pair.state, local: {address: local.address, port: local.port, protocol: local.protocol},
                    remote: {address: remote.address, port: remote.port, protocol: remote.protocol,
                             type: remote.candidateType}};
      }
    }
  }
  return out;
}
"""


def tone_wav(path: Path, hz: float, seconds: float = 10.0, level: float = 0.5) -> Path:
    """A mono 16-bit ``WAV_RATE`` Hz sine of ``hz`` (Chromium loops the file)."""
    n = int(seconds * WAV_RATE)
    frames = b"".join(struct.pack("<h", int(level * 32767 * math.sin(2 * math.pi * hz * i / WAV_RATE)))
                      for i in range(n))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(frames)
    return path


def spki_pin(cert: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate (openssl, as Chromium's docs show)."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], capture_output=True,
                         check=True, timeout=10).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True, timeout=10).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, capture_output=True,
                            check=True, timeout=10).stdout
    return subprocess.run(["base64", "-w0"], input=digest, capture_output=True, check=True,
                          timeout=10).stdout.decode().strip()


def browser_args(microphone: Path, pin: str) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # the microphone is allowed without a prompt
        f"--use-file-for-fake-audio-capture={microphone}",
        f"--ignore-certificate-errors-spki-list={pin}",
        # rtpengine listens on loopback: let ICE use loopback candidates, and real addresses (no mDNS)
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
    ]


@dataclass
class SipFrame:
    at: float
    sent: bool  # by the browser
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    def header(self, name: str) -> str:
        m = re.search(rf"^{re.escape(name)}\s*:\s*(.*?)\r?$", self.text, flags=re.M | re.I)
        return m.group(1).strip() if m else ""


@dataclass
class BrowserAgent:
    """An agent's desktop tab with its browser phone."""

    agent: str
    token: str
    context: BrowserContext
    tab: Tab
    frames: list[SipFrame] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)  # the WebSockets the page opened (event feed, edge)

    @property
    def page(self) -> Any:
        return self.tab.page

    @classmethod
    async def open(cls, browser: Browser, api: str, agent: str, token: str) -> BrowserAgent:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script(RECORD_PEER_CONNECTIONS)
        page = await context.new_page()
        me = cls(agent, token, context, Tab(page))
        page.on("console", lambda m: me.tab.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda exc: me.tab.errors.append(f"uncaught: {exc}"))
        page.on("websocket", me._watch)
        await page.goto(f"{api}/")
        await page.fill("#agent", agent)
        await page.fill("#token", token)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
        return me

    def _watch(self, ws: WebSocket) -> None:
        self.sockets.append(ws.url)
        if not ws.url.startswith("wss://"):
            return  # the desktop's own event feed

        def keep(sent: bool, payload: str | bytes) -> None:
            text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
            self.frames.append(SipFrame(time.time(), sent, text))

        ws.on("framesent", lambda p: keep(True, p))
        ws.on("framereceived", lambda p: keep(False, p))

    async def register(self, password: str) -> None:
        """Type the SIP password, turn the phone on; the card says registered."""
        await self.page.fill("#sp-password", password)
        await self.page.click("#sp-register")
        try:
            await expect(self.page.locator("#sp-state")).to_have_text("registered", timeout=2 * TIMEOUT_MS)
        except AssertionError as exc:
            detail = await self.page.locator("#phone-card").inner_text()
            raise AssertionError(f"{self.agent}'s phone did not register: {detail!r}; sockets {self.sockets}; "
                                 f"SIP frames {[f.first_line for f in self.frames]}; errors {self.tab.errors}") from exc

    async def available(self) -> None:
        await self.page.click("#go-available")
        await expect(self.page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)

    async def screenshot(self, name: str, full_page: bool = True) -> Path:
        """Kept in the artifacts directory; a loaded machine may take a while to paint ten tabs."""
        path = artifacts_dir() / name
        await self.page.screenshot(path=str(path), full_page=full_page, timeout=2 * SCREENSHOT_MS)
        return path

    async def stats(self) -> dict[str, Any]:
        got: dict[str, Any] | None = await self.page.evaluate(READ_STATS)
        assert got is not None, f"{self.agent}: no peer connection in the page"
        return got

    async def wait_stats(self, check: Any, timeout: float = 15.0) -> dict[str, Any]:
        """The call's statistics once ``check(stats)`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self.stats()
            if check(got) or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.2)

    def received(self, method: str) -> list[SipFrame]:
        return [f for f in self.frames if not f.sent and f.first_line.startswith(f"{method} ")]

    def sent(self, status: str) -> list[SipFrame]:
        return [f for f in self.frames if f.sent and f.first_line.startswith(f"SIP/2.0 {status}")]

    async def close(self) -> None:
        await self.context.close()


def goertzel(samples: list[int] | Any, hz: float, rate: int = 8000) -> float:
    """The power of ``samples`` at ``hz``."""
    k = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def tone_share(samples: list[int] | Any, hz: float, rate: int = 8000) -> float:
    """The share of the signal's energy at ``hz`` (about 1 for a pure tone there, about 0 for a tone elsewhere):
    Goertzel power against the total, both normalised by the window length."""
    n = len(samples)
    total = sum(float(x) * float(x) for x in samples)
    if n == 0 or total == 0:
        return 0.0
    return goertzel(samples, hz, rate) * 2 / (n * total)
