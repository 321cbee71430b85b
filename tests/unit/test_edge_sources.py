"""Where a worker accepts new calls from: the edge's SIP sockets (ivr.edge.edge_sources)."""

from __future__ import annotations

from pathlib import Path

from ivr.core.config import Settings
from ivr.edge import edge_sources


def test_edge_sources_are_every_edge_address_at_the_edge_port(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, edge={"host": "127.0.0.1", "port": 5099,
                                                "extra_listen": ["10.0.0.1", "2001:db8::1"]})
    # as pjsip writes a source address: ip:port, [ip6]:port; the edge relays from its listen port
    assert edge_sources(settings) == {"127.0.0.1:5099", "10.0.0.1:5099", "[2001:db8::1]:5099"}


def test_a_host_name_stands_for_its_addresses(tmp_path: Path) -> None:
    sources = edge_sources(Settings(var_dir=tmp_path, edge={"host": "localhost", "port": 5060}))
    assert "127.0.0.1:5060" in sources
    assert all(s.endswith(":5060") for s in sources)
