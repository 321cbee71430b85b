"""The hotline's Redis client through a real Sentinel: the primary is found by name, with auth."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.core.config import RedisSettings, load_settings
from ivr.queues.connection import close, connect
from ivr.queues.store import QueueStore
from tests.conftest import free_port, stop_process, wait_port


@pytest.fixture
def sentinel_pair(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A password-protected primary and one Sentinel monitoring it as "hotline"."""
    rport, sport = free_port(), free_port()
    primary = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(tmp_path), "--requirepass", "s3cret-pw"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sport}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor hotline 127.0.0.1 {rport} 1\n"
                    f"sentinel auth-pass hotline s3cret-pw\n"
                    f"sentinel down-after-milliseconds hotline 2000\n")
    sentinel = subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(rport, 10, primary)
        wait_port(sport, 10, sentinel)
        yield rport, sport
    finally:
        for proc in (sentinel, primary):
            stop_process(proc)


async def test_queue_store_works_through_sentinel(sentinel_pair: tuple[int, int]) -> None:
    rport, sport = sentinel_pair
    settings = RedisSettings(sentinels=[f"127.0.0.1:{sport}"], sentinel_master="hotline", password="s3cret-pw")
    assert settings.external
    redis = connect(settings)
    try:
        store = QueueStore(redis, "t")
        await store.register_agent("a1", name="A", skills={"billing": 2}, sip_uri=None, languages=["en"])
        agent = await store.get_agent("a1")
        assert agent is not None and agent["state"] == "offline"
        # the client really talks to the primary the Sentinel named
        info = await redis.info("server")
        assert int(info["tcp_port"]) == rport
    finally:
        await close(redis)


def test_children_get_the_redis_secrets_and_bad_addresses_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("redis: {sentinels: ['127.0.0.1:26379'], password: pw1, sentinel_password: pw2}\n")
    s = load_settings(cfg)
    child = tmp_path / "settings.json"
    child.write_text(s.dump_for_children())
    again = load_settings(child)
    assert again.redis.password is not None and again.redis.password.get_secret_value() == "pw1"
    assert again.redis.sentinel_password is not None and again.redis.sentinel_password.get_secret_value() == "pw2"
    with pytest.raises(ValueError, match="host:port"):
        RedisSettings(sentinels=["no-port"]).sentinel_addresses()
