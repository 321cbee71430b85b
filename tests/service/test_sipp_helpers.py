"""The sipp helpers themselves: a UAS whose chosen port is taken before sipp binds it moves on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.sipp_helpers import LOOPBACK, SippServer, scenario


async def test_a_server_whose_chosen_port_was_taken_starts_on_a_fresh_one(tmp_path: Path) -> None:
    server = SippServer(scenario("edge_uas_busy.xml"), workdir=tmp_path, tag="uas")
    first = server.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, first))  # another process got there between the check and the bind
        await server.start()
        try:
            assert server.port != first and server.process is not None and server.process.running
            note = (tmp_path / "uas.port-taken.txt").read_text()
            assert f"port {first} taken" in note
        finally:
            await server.stop()


async def test_a_port_the_test_asked_for_is_never_replaced(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        port = squatter.getsockname()[1]
        server = SippServer(scenario("edge_uas_busy.xml"), workdir=tmp_path, tag="uas", port=port)
        with pytest.raises(RuntimeError, match="Unable to bind main socket"):
            await server.start()
        assert server.port == port
