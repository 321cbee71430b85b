"""The rig of the outbound e2e tests (automated calls, follow-ups, campaigns): a hotline with one
worker whose outbound calls go to sipp UASs on one loopback port (``callbacks.dial_uri``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.e2e.conftest import Hotline
from tests.ports import free_udp_tcp_port


@contextlib.asynccontextmanager
async def customers_hotline(root: Path, plans: Path, *, outbound_allow: list[str] | None = None,
                            caller_id: str = "") -> AsyncIterator[tuple[Hotline, int]]:
    """The started hotline running the plans of ``plans`` and the port its customers' phones answer on."""
    customer_port = free_udp_tcp_port()
    calls = {"outbound_allow": outbound_allow or [], **({"caller_id": caller_id} if caller_id else {})}
    h = Hotline(root / "hotline", workers=1, wrapup_s=1.0, overrides={
        "dialplans_dir": str(plans), "calls": calls,
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "ring_timeout_s": 10}})
    try:
        await h.start()
        yield h, customer_port
    finally:
        h.stop()
