"""What every benchmark shares: a private redis-server, and where a run on its own writes its
figures (``bench/results/<name>-<date>.json``)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import wait_port
from tests.ports import free_udp_tcp_port

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` as JSON, print it, and return the file."""
    out = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y-%m-%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written {out}")
    return out


@contextlib.contextmanager
def private_redis(*, appendonly: bool = False) -> Iterator[str]:
    """A private redis-server on a free loopback port, no snapshots; with ``appendonly`` its
    append-only file is written (fsync every second), as in production. Yields its URL."""
    port = free_udp_tcp_port()
    aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if appendonly else ["--appendonly", "no"]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                                 "--save", "", *aof], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 10, proc)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(5)
