"""The private Redis wants a password: every role's client sends the one ``ivr run`` generated
(read from its 0600 file), a client without it is refused."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError

from ivr.core.config import Settings, load_settings
from ivr.queues.connection import close, connect
from ivr.queues.store import QueueStore
from ivr.runtime.credentials import apply_first_start, write_private
from tests.conftest import free_port, stop_process, wait_port


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[Settings, int]]:
    """A redis-server started like ``ivr run`` starts its private one: password from a 0600 config file."""
    port = free_port()
    settings = Settings(var_dir=tmp_path / "var", redis={"port": port})
    apply_first_start(settings)
    conf = tmp_path / "redis.conf"
    write_private(conf, f"requirepass {settings.redis.secret()}\n")
    proc = subprocess.Popen(["redis-server", str(conf), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 10, proc)
        yield settings, port
    finally:
        stop_process(proc)


async def test_every_role_connects_with_the_generated_password(private_redis: tuple[Settings, int],
                                                               tmp_path: Path) -> None:
    settings, _ = private_redis
    child = tmp_path / "settings.json"  # what the supervisor hands its children
    write_private(child, settings.dump_for_children())
    for s in (settings, load_settings(child)):
        redis = connect(s.redis)
        try:
            store = QueueStore(redis, "t")
            await store.register_agent("a1", name="A", skills={"billing": 2}, sip_uri=None, languages=["en"])
            assert (await store.get_agent("a1") or {})["state"] == "offline"
        finally:
            await close(redis)


async def test_a_client_without_the_password_gets_nothing(private_redis: tuple[Settings, int]) -> None:
    _, port = private_redis
    for password in (None, "", "wrong-password"):
        anonymous = Redis(host="127.0.0.1", port=port, password=password or None)
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.hgetall("ivr:tokens")
        finally:
            await anonymous.aclose()
