"""The desktops' queue counts are read once per queue per LIVE_TTL_S per API instance (ivr/cti/floor.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ivr.core.errors import NotFound
from ivr.cti import floor


class CountingStore:
    def __init__(self) -> None:
        self.reads = 0

    async def queue_stats(self, queue: str, *, since_s: int) -> Any:
        self.reads += 1
        if queue == "gone":
            raise NotFound("no queue", code="queue.not_found")
        return SimpleNamespace(waiting=self.reads, longest_wait_s=1.0, agents={"available": 1})


async def test_reads_within_the_ttl_share_one_snapshot_and_fresh_reads_now(monkeypatch: pytest.MonkeyPatch) -> None:
    store, live = CountingStore(), floor.LiveCounts()
    now = [100.0]
    monkeypatch.setattr(floor.time, "monotonic", lambda: now[0])
    first = await live.get(store, "billing")  # type: ignore[arg-type]
    assert first == {"waiting": 1, "longest_wait_s": 1.0, "agents": {"available": 1}}
    assert await live.get(store, "billing") == first and store.reads == 1  # type: ignore[arg-type]
    assert (await live.get(store, "billing", fresh=True) or {})["waiting"] == 2  # type: ignore[arg-type]
    now[0] += floor.LIVE_TTL_S
    assert (await live.get(store, "billing") or {})["waiting"] == 3 and store.reads == 3  # type: ignore[arg-type]
    assert await live.get(store, "gone") is None  # type: ignore[arg-type]
