"""The desktop's browser phone (ivr/cti/static/softphone.js, ivr/cti/webrtc.py) in headless Chromium
with a fake microphone, against the real CTI API on a real Redis and SIP.js from the npm lock's
install. The edge's WebSocket is a stand-in registrar written here (aiohttp, WSS, subprotocol
"sip"): it challenges each REGISTER (401) and checks the digest answer against the password the API
set (200), as Kamailio's registrar does; the real edge is tested in tests/service/test_edge_webrtc*.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from redis.asyncio import Redis

from ivr.core.config import EdgeSettings, Settings
from ivr.cti import webrtc
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from tests.browser import Tab, artifacts_dir, chromium_path
from tests.conftest import RedisServer, free_port
from tests.service.pages import page_settings, serving

PREFIX = "softphone"
TIMEOUT_MS = 10_000
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
AGENT2 = {"Authorization": "Bearer agent2-demo-token"}
SUPER = {"Authorization": "Bearer super1-demo-token"}
FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


# --- the stand-in registrar ---------------------------------------------------------------------------

def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SIP digest (RFC 2617) is MD5


def parse_sip(text: str) -> tuple[str, list[tuple[str, str]], str]:
    head, _, body = text.partition("\r\n\r\n")
    first, *lines = head.split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    return first, headers, body


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in headers if k.lower() == name.lower()), "")


@dataclass
class Registrar:
    """A SIP registrar on a WSS socket: digest auth (qop=auth) in ``realm`` against ``password``."""

    realm: str
    password: str = ""
    registers: list[dict[str, Any]] = field(default_factory=list)  # every REGISTER: authorized or not
    messages: list[str] = field(default_factory=list)  # everything the browser sent
    replies: list[str] = field(default_factory=list)  # the browser's replies to our requests (first lines)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    contact: str = ""
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    def authorized(self, auth: str, method: str) -> bool:
        p = dict(re.findall(r'(\w+)="?([^",]*)"?', auth))
        ha1 = md5(f"{p.get('username')}:{self.realm}:{self.password}")
        ha2 = md5(f"{method}:{p.get('uri')}")
        want = md5(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}")
        return p.get("nonce") == self.nonce and p.get("response") == want

    def reply(self, headers: list[tuple[str, str]], status: str, *extra: str) -> str:
        keep = [f"{k}: {v}" for k, v in headers if k.lower() in ("via", "from", "call-id", "cseq")]
        to = header(headers, "To")
        return "\r\n".join([f"SIP/2.0 {status}", *keep, f"To: {to}{'' if 'tag=' in to else ';tag=reg1'}",
                            *extra, "Content-Length: 0", "", ""])

    def answer(self, text: str) -> str | None:
        first, headers, _ = parse_sip(text)
        if first.startswith("SIP/2.0"):
            self.replies.append(first)
            return None
        method = first.split(" ", 1)[0]
        if method != "REGISTER":
            return None if method == "ACK" else self.reply(headers, "200 OK")
        auth = header(headers, "Authorization")
        ok = bool(auth) and self.authorized(auth, "REGISTER")
        in_contact = re.search(r";expires=(\d+)", header(headers, "Contact"))
        expires = in_contact.group(1) if in_contact else header(headers, "Expires") or "300"
        self.registers.append({"authorized": ok, "expires": expires, "auth": bool(auth)})
        if not ok:
            return self.reply(headers, "401 Unauthorized",
                              f'WWW-Authenticate: Digest realm="{self.realm}", nonce="{self.nonce}", qop="auth", '
                              'algorithm=MD5')
        contact = header(headers, "Contact")
        self.contact = "" if expires == "0" else contact
        return self.reply(headers, "200 OK", f"Contact: {contact.split(';expires')[0]};expires={expires}")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("sip",))
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append(msg.data)
                    out = self.answer(msg.data)
                    if out:
                        await ws.send_str(out)
        finally:
            self.sockets.discard(ws)
        return ws

    def answers(self) -> list[tuple[str, str]]:
        """The browser's replies: (first line, whole message)."""
        return [(m.split("\r\n", 1)[0], m) for m in self.messages if m.startswith("SIP/2.0")]

    async def ack(self, ok: str) -> None:
        """ACK a 2xx the browser sent to our INVITE (as the caller's side does through the edge)."""
        _, headers, _ = parse_sip(ok)
        target = re.search(r"<([^>]+)>", header(headers, "Contact"))
        assert target, ok
        lines = [f"ACK {target.group(1)} SIP/2.0",
                 f"Via: SIP/2.0/WSS edge.invalid;branch=z9hG4bK{uuid.uuid4().hex[:10]}",
                 "Max-Forwards: 70", f"From: {header(headers, 'From')}", f"To: {header(headers, 'To')}",
                 f"Call-ID: {header(headers, 'Call-ID')}", "CSeq: 1 ACK", "Content-Length: 0", "", ""]
        await next(iter(self.sockets)).send_str("\r\n".join(lines))

    async def drop(self) -> None:
        """The network drops: every connection closes."""
        for ws in list(self.sockets):
            await ws.close()

    @property
    def registered(self) -> int:
        return sum(1 for r in self.registers if r["authorized"] and r["expires"] != "0")

    async def invite(self, call_id: str | None) -> str:
        """An INVITE to the registered contact (the browser), as the edge forks an offer; its Call-ID."""
        ws = next(iter(self.sockets))
        sip_call = uuid.uuid4().hex
        target = re.search(r"<([^>]+)>", self.contact)
        assert target, self.contact
        sdp = "\r\n".join([
            "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
            "m=audio 30000 UDP/TLS/RTP/SAVPF 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
            "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtcp-mux", "a=sendrecv", ""])
        lines = [f"INVITE {target.group(1)} SIP/2.0",
                 f"Via: SIP/2.0/WSS edge.invalid;branch=z9hG4bK{uuid.uuid4().hex[:10]}",
                 "Max-Forwards: 70", 'From: "+15550001" <sip:+15550001@127.0.0.1>;tag=edge1',
                 f"To: <{target.group(1)}>", f"Call-ID: {sip_call}", "CSeq: 1 INVITE",
                 "Contact: <sip:worker@edge.invalid;transport=ws>", "Content-Type: application/sdp"]
        if call_id:
            lines.append(f"X-Ivr-Call-Id: {call_id}")
        await ws.send_str("\r\n".join([*lines, f"Content-Length: {len(sdp.encode())}", "", sdp]))
        return sip_call


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "edge.pem", directory / "edge.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    return cert, key


@contextlib.asynccontextmanager
async def registrar_on(port: int, realm: str, cert: tuple[Path, Path]) -> AsyncIterator[Registrar]:
    reg = Registrar(realm)
    app = web.Application()
    app.router.add_get("/", reg.handle)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(cert[0]), str(cert[1]))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        yield reg
    finally:
        await reg.drop()  # else the cleanup waits for the browser to close its socket
        await runner.cleanup()


# --- fixtures --------------------------------------------------------------------------------------------

def with_wss_port(tmp_path: Path, redis_server: RedisServer, port: int) -> Settings:
    """The page settings with ``edge.webrtc.wss_port`` = ``port`` (the edge's WebRTC settings, or a
    stand-in for them until they exist on this branch)."""
    if "webrtc" in EdgeSettings.model_fields:
        return page_settings(tmp_path, redis_server, PREFIX, edge={"webrtc": {"wss_port": port}})
    settings = page_settings(tmp_path, redis_server, PREFIX)
    object.__setattr__(settings.edge, "webrtc", SimpleNamespace(enabled=True, wss_port=port))
    return settings


@pytest.fixture
def wss_port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer, wss_port: int) -> Settings:
    return with_wss_port(tmp_path, redis_server, wss_port)


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=StatsConfig(short_abandon_s=0))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("wss"))


@pytest.fixture
async def registrar(settings: Settings, wss_port: int, cert: tuple[Path, Path]) -> AsyncIterator[Registrar]:
    async with registrar_on(wss_port, settings.edge.sip_realm, cert) as reg:
        yield reg


@pytest.fixture
async def phone_browser() -> AsyncIterator[Browser]:
    """Chromium with a fake microphone (a tone) that the page may use without a prompt."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path(), headless=True, args=FAKE_MEDIA)
        try:
            yield b
        finally:
            await b.close()


async def sip_password(http: aiohttp.ClientSession, api: str, store: QueueStore, agent: str = "agent1") -> str:
    """``agent``'s phone registers at the edge; an admin sets its SIP password (shown once)."""
    await store.register_agent(agent, name="Ada", skills={"billing": 4}, sip_uri=f"sip:{agent}@127.0.0.1",
                               languages=["en"], phone="registered")
    async with http.post(f"{api}/api/v1/agents/{agent}/sip-password", headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["sip_password"])


async def open_desktop(context: BrowserContext, api: str, agent: str = "agent1") -> tuple[Tab, list[str]]:
    """A signed-in desktop tab and the list every request it makes is recorded in (URL, headers, body)."""
    page = await context.new_page()
    tab = Tab(page)
    sent: list[str] = []
    page.on("console", lambda m: tab.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda req: sent.append(f"{req.url} {req.headers} {req.post_data or ''}"))
    await page.goto(f"{api}/")
    await page.fill("#agent", agent)
    await page.fill("#token", f"{agent}-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    return tab, sent


async def connect_phone(page: Page, password: str) -> None:
    await page.fill("#sp-password", password)
    await page.click("#sp-register")


async def eventually(check: Any, timeout: float = 10) -> None:
    for _ in range(int(timeout * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()


# --- HTTP ------------------------------------------------------------------------------------------------

async def test_the_sip_library_comes_from_the_npm_lock_under_the_strict_policy(
        api: str, http: aiohttp.ClientSession, wss_port: int) -> None:
    installed = webrtc.NPM_ROOT / "sip.js" / "lib" / "index.js"
    assert installed.is_file(), "make install puts deploy/npm's lock in deploy/npm/node_modules"
    assert not list(Path(webrtc.__file__).parent.joinpath("static").rglob("sip*.js")), "nothing vendored"
    async with http.get(f"{api}/static/lib/sip.js/index.js") as r:
        assert r.status == 200
        assert r.content_type == "text/javascript"
        assert await r.read() == installed.read_bytes()
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        etag = r.headers["ETag"]
    async with http.get(f"{api}/static/lib/sip.js/index.js", headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with http.get(f"{api}/static/lib/sip.js/api/user-agent.js") as r:
        assert r.status == 200
    for bad in ("../package.json", "..%2Fpackage.json", "index.d.ts", "%2e%2e/%2e%2e/package.json", "nothing.js",
                "api/../../../package-lock.js", "Index.js"):
        async with http.get(f"{api}/static/lib/sip.js/{bad}") as r:
            assert r.status == 404, bad
    async with http.get(f"{api}/") as r:
        csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert f"connect-src 'self' wss://127.0.0.1:{wss_port};" in csp  # the edge's WebSocket, nothing else
    async with http.get(f"{api}/wallboard") as r:
        assert "connect-src 'self';" in r.headers["Content-Security-Policy"]  # no phone there


async def test_where_the_browser_phone_registers(api: str, http: aiohttp.ClientSession, store: QueueStore,
                                                 wss_port: int) -> None:
    url = f"{api}/api/v1/agents/agent1/webrtc"
    async with http.get(url, headers=AGENT1) as r:
        assert r.status == 200
        static = await r.json()
    assert static["enabled"] is False and "phone: registered" in static["reason"]
    await store.register_agent("agent1", name="Ada", skills={"billing": 4}, sip_uri="sip:agent1@127.0.0.1",
                               languages=["en"], phone="registered")
    for who in (AGENT1, SUPER, ADMIN):
        async with http.get(url, headers=who) as r:
            assert r.status == 200
            got = await r.json()
            assert got == {"enabled": True, "reason": "", "ws_url": f"wss://127.0.0.1:{wss_port}",
                           "aor": "sip:agent1@127.0.0.1:5060", "username": "agent1", "realm": "127.0.0.1",
                           "ice_servers": []}
            assert "password" not in str(got)
    async with http.get(url, headers=AGENT2) as r:
        assert r.status == 403
    async with http.get(url) as r:
        assert r.status == 401
    async with http.get(f"{api}/api/v1/agents/nobody/webrtc", headers=SUPER) as r:
        assert r.status == 404
    async with http.get(f"{api}/api/v1/agents/{'x' * 65}/webrtc", headers=SUPER) as r:
        assert r.status == 404


# --- the card --------------------------------------------------------------------------------------------

async def test_the_phone_registers_with_the_sip_password_never_sent_to_the_api_and_again_after_a_reload(
        api: str, http: aiohttp.ClientSession, store: QueueStore, registrar: Registrar,
        phone_browser: Browser) -> None:
    registrar.password = await sip_password(http, api, store)
    context = await phone_browser.new_context(ignore_https_errors=True)
    tab, sent = await open_desktop(context, api)
    page = tab.page
    await expect(page.locator("#sp-state")).to_have_attribute("data-state", "off")
    assert not any("/static/lib/" in s for s in sent), "the library loads only when the phone is turned on"
    await connect_phone(page, registrar.password)
    await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-detail")).to_have_text("sip:agent1@127.0.0.1:5060")
    assert [r["auth"] for r in registrar.registers] == [False, True]  # challenged, then the digest answer
    assert registrar.registered == 1
    assert await page.evaluate("sessionStorage.getItem('ivr.desktop.sip_password')") == registrar.password
    await expect(page.locator("#sp-mic option")).not_to_have_count(0)
    await tab.screenshot("softphone-registered.png")

    await page.reload()
    await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
    await eventually(lambda: registrar.registered == 2)  # registered again with no typing
    assert all(registrar.password not in s for s in sent), "the SIP password went to the API"
    assert all("demo-token" not in m for m in registrar.messages), "the API token went to the edge"
    assert any("/api/v1/agents/agent1/webrtc" in s for s in sent)

    await page.click("#signout")  # signing out unregisters and forgets the password
    await eventually(lambda: any(r["authorized"] and r["expires"] == "0" for r in registrar.registers))
    assert registrar.contact == ""
    assert await page.evaluate("sessionStorage.getItem('ivr.desktop.sip_password')") is None
    tab.expect_no_errors()
    await context.close()


async def test_a_network_drop_is_shown_and_the_phone_registers_again(
        api: str, http: aiohttp.ClientSession, store: QueueStore, registrar: Registrar,
        phone_browser: Browser) -> None:
    registrar.password = await sip_password(http, api, store)
    context = await phone_browser.new_context(ignore_https_errors=True)
    tab, _ = await open_desktop(context, api)
    page = tab.page
    await connect_phone(page, registrar.password)
    await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
    await registrar.drop()
    await expect(page.locator("#sp-state")).to_have_text("reconnecting…", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-error")).to_contain_text("unreachable")
    await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-error")).to_be_hidden()
    assert registrar.registered == 2
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected")  # the desktop never left
    tab.expect_no_errors("WebSocket")
    await context.close()


async def test_a_wrong_password_is_explained_and_asked_again(
        api: str, http: aiohttp.ClientSession, store: QueueStore, registrar: Registrar,
        phone_browser: Browser) -> None:
    registrar.password = await sip_password(http, api, store)
    context = await phone_browser.new_context(ignore_https_errors=True)
    tab, _ = await open_desktop(context, api)
    page = tab.page
    await connect_phone(page, "not-the-password")
    await expect(page.locator("#sp-state")).to_have_text("failed", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-error")).to_contain_text("refused the SIP password (401")
    assert await page.evaluate("sessionStorage.getItem('ivr.desktop.sip_password')") is None
    await expect(page.locator("#sp-password")).to_be_visible()  # asked again
    await tab.screenshot("softphone-wrong-password.png")
    assert registrar.registered == 0
    tab.expect_no_errors("WebSocket")
    await context.close()


async def test_an_unreachable_edge_is_explained_and_retried(
        api: str, http: aiohttp.ClientSession, store: QueueStore, settings: Settings, wss_port: int,
        cert: tuple[Path, Path], phone_browser: Browser) -> None:
    password = await sip_password(http, api, store)
    context = await phone_browser.new_context(ignore_https_errors=True)
    tab, _ = await open_desktop(context, api)
    page = tab.page
    await connect_phone(page, password)  # nothing listens on the edge's port yet
    await expect(page.locator("#sp-state")).to_have_text("reconnecting…", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-error")).to_contain_text(f"wss://127.0.0.1:{wss_port}) is unreachable")
    await tab.screenshot("softphone-edge-unreachable.png")
    async with registrar_on(wss_port, settings.edge.sip_realm, cert) as reg:
        reg.password = password
        await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
        assert reg.registered == 1
        tab.expect_no_errors("WebSocket")
        await context.close()


async def test_a_blocked_microphone_is_explained_and_nothing_registers(
        api: str, http: aiohttp.ClientSession, store: QueueStore, registrar: Registrar) -> None:
    registrar.password = await sip_password(http, api, store)
    async with async_playwright() as pw:  # no fake UI: the permission is not granted
        b = await pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=["--use-fake-device-for-media-stream"])
        try:
            context = await b.new_context(ignore_https_errors=True)
            tab, _ = await open_desktop(context, api)
            page = tab.page
            await connect_phone(page, registrar.password)
            await expect(page.locator("#sp-state")).to_have_text("failed", timeout=TIMEOUT_MS)
            await expect(page.locator("#sp-error")).to_contain_text("Microphone blocked")
            await tab.screenshot("softphone-microphone-blocked.png")
            assert registrar.registers == []
            tab.expect_no_errors()
        finally:
            await b.close()
    assert artifacts_dir().joinpath("softphone-microphone-blocked.png").is_file()


async def offer_call(store: QueueStore, cid: str) -> str:
    """A caller in queue billing offered to agent1 (as a worker would do it): the offer id."""
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0,
                                journey={"plan": "Demo hotline", "steps": [], "data": {}})
    assert offer is not None, "agent1 should have been available"
    return offer.offer_id


async def test_an_incoming_call_rings_only_after_its_pop_is_painted_and_can_be_rejected(
        api: str, http: aiohttp.ClientSession, store: QueueStore, registrar: Registrar,
        phone_browser: Browser) -> None:
    """The edge's INVITE comes before the pop here (the worst order): the phone holds it, silent,
    until the desktop has painted the pop of that call (X-Ivr-Call-Id), then rings (180)."""
    registrar.password = await sip_password(http, api, store)
    await store.record_phones({"agent1": 1}, stale_after_s=60, source="edge-a")  # the edge's poller
    context = await phone_browser.new_context(ignore_https_errors=True)
    tab, _ = await open_desktop(context, api)
    page = tab.page
    await connect_phone(page, registrar.password)
    await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)

    await registrar.invite("call-1")
    card = page.locator("#phone-card")
    await expect(card).to_have_attribute("data-call", "waiting-for-pop", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-answer")).to_be_hidden()
    assert not any("180" in r for r in registrar.replies)  # not ringing without its pop
    await offer_call(store, "call-1")
    await expect(page.locator("#pop")).to_have_attribute("data-call-id", "call-1", timeout=TIMEOUT_MS)
    await expect(card).to_have_attribute("data-call", "ringing", timeout=TIMEOUT_MS)
    await expect(page.locator("#sp-answer")).to_be_visible()
    await expect(page.locator("#sp-call-line")).to_contain_text("+15550001")
    shown = int(await page.locator("#pop").get_attribute("data-shown-at") or 0)
    rang = int(await card.get_attribute("data-ring-at") or 0)
    assert 0 < shown <= rang, (shown, rang)
    await eventually(lambda: any(r.startswith("SIP/2.0 180") for r in registrar.replies))
    await tab.screenshot("softphone-ringing.png")

    await page.click("#sp-reject")
    await eventually(lambda: any(r.startswith("SIP/2.0 486") for r in registrar.replies))
    await expect(page.locator("#sp-call")).to_be_hidden()
    await expect(card).to_have_attribute("data-call", "")
    tab.expect_no_errors()
    await context.close()


async def test_an_answered_call_can_be_muted_and_hung_up(
        api: str, http: aiohttp.ClientSession, store: QueueStore, registrar: Registrar,
        phone_browser: Browser) -> None:
    """Answered in the browser (200 OK with its SDP answer: DTLS-SRTP, ICE), muted, then hung up (BYE)."""
    registrar.password = await sip_password(http, api, store)
    await store.record_phones({"agent1": 1}, stale_after_s=60, source="edge-a")
    context = await phone_browser.new_context(ignore_https_errors=True)
    tab, _ = await open_desktop(context, api)
    page = tab.page
    await connect_phone(page, registrar.password)
    await expect(page.locator("#sp-state")).to_have_text("registered", timeout=TIMEOUT_MS)
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    await offer_call(store, "call-2")
    await expect(page.locator("#pop")).to_have_attribute("data-call-id", "call-2", timeout=TIMEOUT_MS)
    await registrar.invite("call-2")
    card = page.locator("#phone-card")
    await expect(card).to_have_attribute("data-call", "ringing", timeout=TIMEOUT_MS)
    await page.click("#sp-answer")
    await expect(card).to_have_attribute("data-call", "connected", timeout=TIMEOUT_MS)
    await eventually(lambda: any(r.startswith("SIP/2.0 200") and "INVITE" in m for r, m in registrar.answers()))
    answer = next(m for r, m in registrar.answers() if r.startswith("SIP/2.0 200") and "INVITE" in m)
    assert "a=fingerprint:" in answer and "a=ice-ufrag:" in answer  # a WebRTC answer, encrypted media
    await registrar.ack(answer)
    await page.click("#sp-mute")
    await expect(page.locator("#sp-mute")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#sp-mute")).to_have_text("Unmute")
    assert await page.evaluate("document.getElementById('sp-in-level').value") == 0
    await page.click("#sp-keypad-toggle")
    await expect(page.locator("#sp-keys button")).to_have_count(12)
    await tab.screenshot("softphone-connected.png")
    await page.click("#sp-hangup")
    await eventually(lambda: any(m.startswith("BYE ") for m in registrar.messages))
    await expect(page.locator("#sp-call")).to_be_hidden()
    tab.expect_no_errors()
    await context.close()
