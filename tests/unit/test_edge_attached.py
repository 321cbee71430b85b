"""AttachedEdge (ivr/edge/control.py): the poller's handle on an edge that systemd runs. No Kamailio
here (tests/service/test_phones_role.py runs one): the HA1 table on disk is what is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.core.config import Settings
from ivr.core.errors import Unavailable
from ivr.edge import AttachedEdge

ADA, BEN = "a" * 32, "b" * 32


def attached(tmp_path: Path) -> AttachedEdge:
    return AttachedEdge(Settings(edge={"host": "127.0.0.1", "registrar": {"realm": "r"}}), tmp_path / "kamailio")


async def test_the_table_is_written_again_whenever_the_edge_re_rendered_it(tmp_path: Path) -> None:
    edge = attached(tmp_path)
    table = edge.db_dir / "sipauth"
    assert not edge.live  # no control socket: no RPC is tried
    await edge.set_sip_credentials({"ada": ADA})
    assert not table.exists(), "not rendered yet: the edge's own render writes the directory"
    edge.db_dir.mkdir(parents=True)
    assert await edge.set_sip_credentials({"ada": ADA}) is True
    assert "ada:0:0:" + ADA in table.read_text() and table.stat().st_mode & 0o777 == 0o600
    assert await edge.set_sip_credentials({"ada": ADA}) is False, "unchanged: not rewritten"
    # ivr-edge restarted: its render wrote the table from the configuration file alone
    table.write_text(table.read_text().replace("ada:0:0:" + ADA + ":0\n", ""))
    assert await edge.set_sip_credentials({"ada": ADA}) is True
    assert "ada:0:0:" + ADA in table.read_text()
    assert await edge.set_sip_credentials({"ada": ADA, "ben": BEN}) is True
    assert "ben:0:0:" + BEN in table.read_text()


async def test_an_attached_edge_is_never_started_or_stopped_by_the_poller(tmp_path: Path) -> None:
    edge = attached(tmp_path)
    with pytest.raises(Unavailable):
        await edge.start()
    with pytest.raises(Unavailable):
        await edge.stop()
    with pytest.raises(Unavailable, match="not running"):
        await edge.registrations()
