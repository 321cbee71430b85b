"""``ivr run``: the whole hotline on one machine.

Starts, in order: a private redis-server (AOF on, data under var/) unless an external Redis is
configured; prompt pre-build; the API (it needs only Redis, and loads while the workers do); the
speech service; the transcriber when ``quality.transcribe`` (niced: recordings to text after the
calls); N workers; with ``edge.webrtc.enabled`` rtpengine (the browsers' media relay, userspace, on
loopback; docs/webrtc.md) and the WSS certificate (a self-signed loopback pair made once unless one is
configured); the Kamailio edge once the workers are alive. Prints the banner when every
role is up. Restarts children that die. On SIGTERM/SIGINT the workers drain first, then the others
stop in reverse order, and it exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.errors import ConfigError, PromptError
from ivr.core.logging import get_logger
from ivr.core.process import ChildProcess, ManagedProcess, wait_tcp
from ivr.core.tasks import TaskGroup
from ivr.dialplan.loader import PlanRegistry
from ivr.dialplan.prompt_build import build_prompts as build_plan_and_moh_prompts
from ivr.dialplan.registry import LiveRegistry, VersionArchive
from ivr.edge import Edge
from ivr.edge.webrtc import RtpEngine, ensure_certificate, wss_url
from ivr.queues.connection import close, connect
from ivr.queues.store import QueueStore
from ivr.runtime.credentials import GeneratedUsers, apply_first_start, write_private
from ivr.runtime.forked import ForkedWorker, WorkerPool
from ivr.runtime.phones import PhoneRegistry

log = get_logger(__name__)
RESTART_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


def build_prompts(settings: Settings, plans: PlanRegistry) -> int:
    """Render every prompt of every plan (all its languages) and the music on hold into the cache.

    Any prompt that cannot be played stops the start: a broken prompt must never reach a call.
    """
    report = build_plan_and_moh_prompts(settings, [(str(lp.path), lp.plan) for lp in plans.plans])
    for issue in report.issues:
        (log.error if issue.severity == "error" else log.warning)(
            "prompt.build_" + issue.severity, plan=issue.plan, node=issue.node, field=issue.field,
            language=issue.language, code=issue.code, error=issue.message)
    if report.errors:
        raise PromptError(f"{len(report.errors)} prompt(s) cannot be played; first: {report.errors[0]}",
                          code=report.errors[0].code)
    return report.rendered + report.cached + report.templates


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[ChildProcess] = []
        self.workers: dict[int, ChildProcess] = {}
        self.retiring: dict[int, ChildProcess] = {}
        self.pool: WorkerPool | None = None  # the parent the workers are forked from (workers.fork)
        self.redis_proc: ManagedProcess | None = None
        self.edge: Edge | None = None
        self.rtpengine: RtpEngine | None = None
        self._served: tuple[list[str], set[str]] = ([], set())  # numbers and plan versions in service
        self.tasks = TaskGroup("supervisor")
        self.stopping = False
        self.generated: GeneratedUsers | None = None

    def _role(self, name: str, *args: str) -> ManagedProcess:
        return ManagedProcess(name, [sys.executable, "-m", "ivr.cli", *args, "--settings",
                                     str(self.settings_file)])

    async def run(self, stop: asyncio.Event) -> int:
        s = self.settings
        s.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        s.run_dir.chmod(0o700)
        self.generated = await asyncio.to_thread(apply_first_start, s)
        self.settings_file = s.run_dir / "settings.json"
        write_private(self.settings_file, s.dump_for_children())
        plans = await asyncio.to_thread(
            LiveRegistry, s.dialplans_dir, VersionArchive(s.var_dir / "dialplans", s.dialplan.keep_versions),
            by="supervisor")
        try:
            await self._start_all(plans)
        except BaseException:
            await self._stop_all()
            raise
        self._banner()
        await stop.wait()
        await self._stop_all()
        return 0

    async def _start_all(self, plans: PlanRegistry) -> None:
        s = self.settings
        if not s.redis.external:
            data = (s.var_dir / "redis").resolve()
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            data.chmod(0o700)  # the AOF holds every call record
            self.redis_proc = ManagedProcess("redis", [
                "redis-server", str(self._redis_conf()), "--bind", s.redis.host, "--port", str(s.redis.port),
                "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--protected-mode", "yes", "--logfile", ""], stdout=asyncio.subprocess.DEVNULL)
            await self.redis_proc.start()
            await wait_tcp(s.redis.host, s.redis.port, 10)
            # a Redis that dies (or is restarted by an operator) comes back with its append-only file;
            # every client reconnects (ivr/queues/connection.py)
            self.tasks.spawn("watch.redis", self._watch(self.redis_proc))
        t0 = time.monotonic()
        count = await asyncio.to_thread(build_prompts, s, plans)
        log.info("prompts.built", prompts=count, seconds=round(time.monotonic() - t0, 2))
        # The API starts (imports, connects to Redis) while the workers load: it needs only Redis, and
        # its /readyz says 503 until the workers are alive. The banner still waits for every role.
        api = self._role("api", "api")
        await self._start(api)
        if s.speech.enabled:
            speech = self._role("speech", "speech")
            await self._start(speech)
        if s.quality.transcribe:  # niced by itself (quality.nice): live calls come first
            await self._start(self._role("transcriber", "transcriber"))
        for i in range(s.workers.count):
            await self._start_worker(i)
        await self._wait_workers_alive()
        if s.edge.webrtc.enabled:
            # before the edge: its rtpengine module looks for rtpengine when it starts
            await asyncio.to_thread(ensure_certificate, s)
            self.rtpengine = RtpEngine(s)
            await self.rtpengine.start()
            self.children.append(self.rtpengine.process)
            self.tasks.spawn("watch.rtpengine", self._watch(self.rtpengine.process))
        # The edge knows the whole possible pool; probing marks workers that are not running as down.
        self.edge = Edge(s, workers=[(s.workers.host, s.workers.sip_port(i)) for i in range(s.workers.maximum)],
                         numbers=list(plans.by_number), webrtc=s.edge.webrtc.enabled)
        phones_redis = connect(s.redis)
        phones = PhoneRegistry(s, self.edge, QueueStore(phones_redis, s.redis.prefix), source="supervisor")
        self.edge.sip_credentials = phones.initial_credentials()
        await self.edge.start()
        self.children.append(self.edge.process)
        self.tasks.spawn("watch.edge", self._watch(self.edge.process))
        self.tasks.spawn("phones", self._phones(phones, phones_redis))
        await wait_tcp(s.api.host, s.api.port, 20)
        if s.speech.enabled:
            await self._wait_speech_loaded(180)
        if s.workers.maximum > s.workers.count:
            self.tasks.spawn("autoscale", self._autoscale())
        if isinstance(plans, LiveRegistry):
            self._served = (sorted(plans.by_number), {lp.version for lp in plans.plans})
            self.tasks.spawn("dialplans", plans.watch(s.dialplan.reload_poll_s, self._plans_changed))

    def _redis_conf(self) -> Path:
        """The private Redis's password goes in a 0600 file, never on its command line (``ps`` shows
        that to every local user)."""
        password = self.settings.redis.secret()
        if password is None:
            raise ConfigError("the private Redis needs a password (redis.password or redis.password_file)")
        if any(c.isspace() or c in "\"'" for c in password):
            raise ConfigError("the Redis password may not contain spaces or quotes")
        conf = self.settings.run_dir / "redis.conf"
        write_private(conf, f"requirepass {password}\n")
        return conf

    async def _plans_changed(self, plans: LiveRegistry) -> None:
        """A plan file changed (the workers reload it themselves): the edge must accept the numbers
        the plans now answer, and new prompts are rendered before the first call needs them."""
        numbers, versions = sorted(plans.by_number), {lp.version for lp in plans.plans}
        if (numbers, versions) == self._served:
            return
        if versions != self._served[1]:
            try:
                count = await asyncio.to_thread(build_prompts, self.settings, plans.snapshot)
                log.info("prompts.built", prompts=count, reason="dialplan_reload")
            except PromptError as exc:  # each prompt's problem is logged; calls fail loudly on it
                log.error("dialplans.prompts_broken", error=exc.message)
        if numbers != self._served[0] and self.edge is not None:
            await self.edge.set_numbers(numbers)
        self._served = (numbers, versions)

    async def _start_worker(self, index: int) -> None:
        proc: ChildProcess
        if self.settings.workers.fork:
            if self.pool is None:
                self.pool = WorkerPool(self.settings_file)
            proc = ForkedWorker(f"worker-{index}", self.pool, index)
        else:
            proc = self._role(f"worker-{index}", "worker", "--index", str(index))
        self.workers[index] = proc
        await self._start(proc)

    async def _retire_worker(self, index: int) -> None:
        """Stop a worker above the minimum: it drains (refuses new calls) and exits when idle."""
        proc = self.workers.pop(index)
        self.retiring[index] = proc
        self.children.remove(proc)
        log.info("pool.shrink", worker=index, workers=len(self.workers))
        try:
            await proc.stop(timeout=self.settings.workers.drain_s + 10)
        finally:
            del self.retiring[index]

    async def _autoscale(self, interval_s: float = 1.0) -> None:
        """Grow the pool when most caller slots are busy; retire workers idle for a while."""
        w = self.settings.workers
        redis = connect(self.settings.redis)
        store = QueueStore(redis, self.settings.redis.prefix)
        busy_since: dict[int, float] = {}
        try:
            while True:
                await asyncio.sleep(interval_s)
                now = time.monotonic()
                load = {i: await store.worker_load(f"w{i}") for i in self.workers}
                for i, calls in load.items():
                    if calls or i not in busy_since:
                        busy_since[i] = now
                slots = len(self.workers) * w.callers_per_worker
                if sum(load.values()) >= w.scale_up_at * slots and len(self.workers) < w.maximum:
                    free = set(range(w.maximum)) - set(self.workers) - set(self.retiring)
                    if not free:
                        continue
                    index = min(free)
                    log.info("pool.grow", worker=index, busy=sum(load.values()), slots=slots)
                    await self._start_worker(index)
                    busy_since[index] = now
                    continue
                idle = [i for i in sorted(self.workers, reverse=True)
                        if not load.get(i) and now - busy_since.get(i, now) >= w.scale_down_idle_s]
                if idle and len(self.workers) > w.count:
                    busy_since.pop(idle[0], None)
                    self.tasks.spawn(f"retire.{idle[0]}", self._retire_worker(idle[0]))
        finally:
            await close(redis)

    async def _phones(self, phones: PhoneRegistry, redis: Redis) -> None:
        """Agents' SIP credentials to the edge, the edge's registrations to Redis (ivr/runtime/phones.py)."""
        try:
            await phones.run()
        finally:
            await close(redis)

    async def _wait_speech_loaded(self, timeout: float) -> None:
        """The speech service answers /healthz 200 once its model is loaded."""
        s = self.settings.speech
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"http://{s.host}:{s.port}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"speech service not ready after {timeout}s")

    async def _start(self, proc: ChildProcess) -> None:
        await proc.start()
        self.children.append(proc)
        self.tasks.spawn(f"watch.{proc.name}", self._watch(proc))

    async def _watch(self, proc: ChildProcess) -> None:
        while True:
            code = await proc.wait()
            if self.stopping or proc in self.retiring.values():
                return
            delay = RESTART_BACKOFF_S[min(proc.restarts, len(RESTART_BACKOFF_S) - 1)]
            log.warning("process.died", process=proc.name, code=code, restart_in_s=delay)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            if proc in self.retiring.values():
                return
            proc.restarts += 1
            try:
                await proc.start()
            except Exception as exc:  # e.g. the workers' parent died mid-request: try again, backing off
                log.error("process.start_failed", process=proc.name, error=str(exc) or type(exc).__name__)

    async def _wait_workers_alive(self) -> None:
        """Wait until every worker has announced itself in Redis. A big pool on a busy host takes
        a while (each worker initialises pjsua2 and loads its plans), so what fails the start is no
        progress: ``workers.start_stall_s`` seconds in which not one more worker came up."""
        s = self.settings
        stall_s = s.workers.start_stall_s
        redis = connect(s.redis)
        store = QueueStore(redis, s.redis.prefix)
        names = [f"w{i}" for i in range(s.workers.count)]
        try:
            best, progress_at = -1, time.monotonic()
            while True:
                alive = await store.workers_alive(names)
                if alive == s.workers.count:
                    return
                if alive > best:
                    best, progress_at = alive, time.monotonic()
                elif time.monotonic() - progress_at > stall_s:
                    raise TimeoutError(f"only {alive}/{s.workers.count} workers came up "
                                       f"(none more in the last {stall_s:.0f} s)")
                await asyncio.sleep(0.05)
        finally:
            await close(redis)

    async def _stop_all(self) -> None:
        """Drain: workers refuse new calls and finish theirs (up to workers.drain_s) while the
        edge, API and speech service keep serving them; then everything else stops."""
        self.stopping = True
        await self.tasks.cancel_all()
        if self.edge is not None and self.edge.process.running:
            try:
                await self.edge.set_draining(True)  # new calls get 503 at the edge at once
            except Exception as exc:
                log.warning("edge.drain_failed", error=str(exc))
        workers = list(self.workers.values())
        others = [p for p in self.children if p not in workers]
        drain_s = self.settings.workers.drain_s
        await asyncio.gather(*(w.stop(timeout=drain_s + 10) for w in workers))
        if self.pool is not None:
            await self.pool.stop()
        for proc in reversed(others):
            await proc.stop(timeout=10)
        if self.redis_proc is not None:
            await self.redis_proc.stop(timeout=10)
        log.info("supervisor.stopped")

    def _banner(self) -> None:
        """Where to point a phone and a browser, and where the credentials are. Tokens are shown only
        on the start that generated them (never configured ones, never twice)."""
        s = self.settings
        lines = [
            "",
            "Hotline is up.",
            f"  Call it:        point a SIP phone at sip:1000@{s.edge.host}:{s.edge.port} (UDP or TCP)",
            f"  Agent desktop:  http://{s.api.host}:{s.api.port}/",
            *([f"  Browser phones: {wss_url(s)} (SIP over WebSocket; media through rtpengine)"]
              if s.edge.webrtc.enabled else []),
            f"  Wallboard:      http://{s.api.host}:{s.api.port}/wallboard (a supervisor's token)",
            *self._credential_lines(),
            "  Ctrl-C stops everything.",
            "",
        ]
        print("\n".join(lines), flush=True)

    def _credential_lines(self) -> list[str]:
        g = self.generated
        if g is None:
            return ["  Credentials:    the users: of your configuration"]
        if not g.created:
            return [f"  Credentials:    generated on first start, kept in {g.path} (mode 0600)"]
        return [
            f"  Credentials generated on this first start (shown once; kept in {g.path}, mode 0600):",
            *[f"    {u.id:8} {u.token.get_secret_value()}  {u.sip_uri or '(' + u.role + ')'}" for u in g.users],
        ]


def main(settings: Settings) -> int:
    async def _main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await Supervisor(settings).run(stop)

    return asyncio.run(_main())

