"""Agents' phones that register at the edge: credentials to Kamailio, registrations to Redis.

One task of the supervisor (the process that runs the edge and holds its control socket), every
``edge.registrar.poll_interval_s``:

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
"""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from ivr.core.config import Settings
from ivr.core.errors import IvrError
from ivr.core.logging import get_logger
from ivr.core.sip_auth import effective_credentials, seed_credentials
from ivr.edge import Edge
from ivr.queues.store import QueueStore

log = get_logger(__name__)


class PhoneRegistry:
    def __init__(self, settings: Settings, edge: Edge, store: QueueStore) -> None:
        self.settings = settings
        self.edge = edge
        self.store = store
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
            offers = await self.store.record_phones(registered, self.settings.edge.registrar.stale_after_s)
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
