"""The one way every role connects to Redis: explicit timeouts, retries with backoff.

Blocking reads (BLPOP, XREAD BLOCK) must stay shorter than ``socket_timeout``; ``BLOCK_S`` is the
longest block any caller should ask for.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

SOCKET_TIMEOUT_S = 10.0
BLOCK_S = 5.0


def connect(dsn: str) -> Redis:
    return Redis.from_url(
        dsn,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        retry_on_error=[ConnectionError, TimeoutError],
    )
