"""Agents' phones that register at the edge: credentials to Kamailio, registrations to Redis.

Runs next to the edge, every ``edge.registrar.poll_interval_s``: as a task of the ``ivr run``
supervisor (which runs the edge), or as the ``ivr phones`` role (``ivr-phones.service``) on the edge
host of a multi-host deployment, where systemd runs Kamailio (``ivr-edge.service``) and this process
reaches it through the files and the control socket of its runtime directory
(:class:`~ivr.edge.AttachedEdge`). Each poll:

1. the HA1 table the edge checks REGISTERs against = the passwords of the configuration file
   (``users[].sip_password``) + those admins set over the API (Redis); rewritten and reloaded in
   Kamailio only when it changed (a rotated password also drops the agent's old bindings);
2. the edge's registrations (``ul.dump`` over the control socket) are written to Redis
   (:meth:`QueueStore.record_phones`), where routing reads them: an agent with ``phone: registered``
   is offered calls only while its phone is registered.

Why polling from here rather than Kamailio writing Redis itself (``ndb_redis``): no extra Kamailio
package, Redis credentials stay out of the edge, and each poll writes the whole picture, so nothing
is lost or left stale by a missed event: a registration shows up within one poll (1 s), an edge
restart (usrloc is in memory) empties it at the next poll, and a supervisor or edge that stops
answering makes such agents unroutable after ``stale_after_s`` (the last picture expires) rather than
having calls offered to phones nobody can reach. Redis down: nothing can be routed anyway; the next
poll after it is back writes the picture again. Failures are logged once per outage, not every second.

Why a role of its own rather than part of ``ivr-edge.service``: Kamailio stays the edge unit's main
process (no Python in the SIP path), and a poller that fails or restarts never restarts Kamailio,
whose registrations live in memory only (an edge restart unregisters every phone).

More than one poller is safe: each writes its own picture under its ``source`` name (the host name
by default); a phone counts as registered while any fresh picture has it (see ``agent_phones.lua``).
The same edge polled twice gives the same picture, and the standby edge's empty picture never
unregisters the phones of the active one, so no leader is needed.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from redis.exceptions import RedisError

from ivr.core.config import Settings
from ivr.core.errors import IvrError
from ivr.core.logging import get_logger
from ivr.core.sip_auth import effective_credentials, seed_credentials
from ivr.core.tasks import TaskGroup
from ivr.edge import AttachedEdge, Edge
from ivr.queues.connection import close, connect
from ivr.queues.store import QueueStore

log = get_logger(__name__)


class PhoneRegistry:
    def __init__(self, settings: Settings, edge: Edge, store: QueueStore, source: str = "edge") -> None:
        self.settings = settings
        self.edge = edge
        self.store = store
        self.source = source
        self.realm = settings.edge.sip_realm
        self.seeded = seed_credentials(settings.users, self.realm)
        self._failing: str | None = None  # what failed last time (logged once per outage)
        self._last: dict[str, int] | None = None

    def initial_credentials(self) -> dict[str, str]:
        """The configuration file's HA1s: the edge starts with these, the API's follow at the first poll."""
        return effective_credentials(self.seeded, {}, self.realm)

    async def run(self) -> None:
        interval = self.settings.edge.registrar.poll_interval_s
        while True:
            await self.poll_once()
            await asyncio.sleep(interval)

    async def poll_once(self) -> None:
        step = "credentials"
        try:
            stored = await self.store.sip_credentials()
            credentials = effective_credentials(self.seeded, stored, self.realm)
            await self.edge.set_sip_credentials(credentials)
            if not credentials and self._last == {}:
                return  # nobody can register (a hotline of static phones): no dump every second
            step = "edge"
            registered = await self.edge.registrations()
            step = "redis"
            offers = await self.store.record_phones(registered, self.settings.edge.registrar.stale_after_s,
                                                    self.source)
        except (IvrError, RedisError, OSError) as exc:
            if self._failing != step:
                log.warning("phones.poll_failed", step=step, error=str(exc)[:300])
                self._failing = step
            return
        if self._failing is not None:
            log.info("phones.poll_recovered", after=self._failing)
            self._failing = None
        if registered != self._last:
            log.info("phones.registrations", agents=len(registered), contacts=sum(registered.values()),
                     offers=offers)
            self._last = registered


def main(settings: Settings, edge_dir: Path, name: str | None = None) -> None:
    """``ivr phones``: poll the edge that runs from ``edge_dir`` (its kamailio.cfg, db/ tables and
    control socket) until SIGTERM."""
    source = name or socket.gethostname()

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        redis = connect(settings.redis)
        registry = PhoneRegistry(settings, AttachedEdge(settings, edge_dir), QueueStore(redis, settings.redis.prefix),
                                 source=source)
        log.info("phones.started", edge_dir=str(edge_dir), source=source,
                 interval_s=settings.edge.registrar.poll_interval_s)
        tasks = TaskGroup("phones")
        poller = tasks.spawn("poll", registry.run())
        poller.add_done_callback(lambda _: stop.set())  # it ends only by a bug: exit, systemd restarts us
        try:
            await stop.wait()
        finally:
            await tasks.cancel_all()
            await close(redis)
            log.info("phones.stopped", source=source)
        if not poller.cancelled() and poller.exception() is not None:
            raise SystemExit(1)

    asyncio.run(_main())
