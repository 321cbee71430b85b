"""The one way every role connects to Redis: explicit timeouts, retries with backoff, and Sentinel
when configured (the primary is looked up through the sentinels and followed after a failover).

Blocking reads (BLPOP, XREAD BLOCK) must stay shorter than ``socket_timeout``; ``BLOCK_S`` is the
longest block any caller should ask for.

Each process keeps at most ``max_connections`` connections; a burst (500 desktops connecting at
once) waits for a free one instead of failing with "Too many connections" (redis-py's default pool
refuses the 101st). With Sentinel, redis-py has no waiting pool: the limit is then a hard one.

A task cancelled while a command is under way must end: redis-py 8.2 on Python 3.11 lets about one
cancel in ten through a command unseen (the command returns its reply and the task goes on; measured
with PING/GET/EVAL in tests/service/test_redis_cancel.py), which left background loops running for
ever after their task was cancelled: a worker that never stopped, a test process hung at the end.
:class:`CancellableRedis` raises the cancellation a command swallowed, and :func:`keep_running`
checks for one after every step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ReadOnlyError, RedisError, TimeoutError

from ivr.core.config import RedisSettings
from ivr.core.logging import get_logger

log = get_logger(__name__)

SOCKET_TIMEOUT_S = 10.0
BLOCK_S = 5.0


def cancel_swallowed(before: int) -> bool:
    """Whether the current task was cancelled since it counted ``before`` pending cancellations (Task.cancelling())
    and is still running: the cancellation was swallowed on the way."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > before


def _cancellations() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


class CancellableRedis(Redis):
    """The client every role uses: a cancellation that arrives during a command is raised after it,
    even where the library swallowed it (see the module's notes)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        before = _cancellations()
        result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        if cancel_swallowed(before):
            raise asyncio.CancelledError
        return result


def _options() -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        "retry_on_error": [ConnectionError, TimeoutError, ReadOnlyError],
    }


def connect(settings: RedisSettings) -> Redis:
    if settings.sentinels:
        password = settings.secret()
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        if settings.sentinel_password:
            sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
        sentinel = Sentinel(settings.sentinel_addresses(), sentinel_kwargs=sentinel_kwargs)
        client: Redis = sentinel.master_for(settings.sentinel_master, redis_class=CancellableRedis, password=password,
                                            max_connections=settings.max_connections, **_options())
        return client
    options = _options()
    password = settings.secret()
    if password is not None:  # a password in redis.url itself is used as it is
        options["password"] = password
    pool = BlockingConnectionPool.from_url(settings.dsn, max_connections=settings.max_connections,
                                           timeout=settings.pool_timeout_s, **options)
    return CancellableRedis.from_pool(pool)  # the client owns the pool: aclose() closes it


async def close(client: Redis) -> None:
    """Close a client from :func:`connect`, including its connections to the sentinels."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    await client.aclose()
    if manager is not None:
        await manager.aclose()


async def keep_running(loop: str, step: Callable[[], Awaitable[float]], *, event: str,
                       pause_on_error_s: float = 0.5) -> NoReturn:
    """Run ``step`` until cancelled; it returns the seconds to wait before it runs again.

    While Redis is out of reach (down, failing over: any RedisError) the error is logged as
    ``event`` with the loop's name and the step is retried after ``pause_on_error_s``, so no
    background loop of a role dies or spins because Redis went away for a while."""
    while True:
        before = _cancellations()
        try:
            pause = await step()
        except RedisError as exc:
            log.warning(event, loop=loop, error=str(exc))
            pause = pause_on_error_s
        if cancel_swallowed(before):  # a step's client other than CancellableRedis, or a library's loop
            raise asyncio.CancelledError
        if pause > 0:
            await asyncio.sleep(pause)
