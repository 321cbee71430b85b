"""A pjsua2 worker's SIP engine against hostile INVITEs sent straight to it (real library, in a
child process as in a worker): it never aborts, and it admits calls from the edge only."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.ports import free_udp_tcp_port
from tests.sip_wire import INVITE, LOOPBACK, exchange

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, sys
    from ivr.sip.bridge import SipThread
    from ivr.sip.engine import EngineConfig, SipEngine

    async def main(port: int, rtp: int, sources: str) -> None:
        ids = iter(range(1000))
        events = []
        cfg = EngineConfig(host="127.0.0.1", sip_port=port, rtp_port=rtp, rtp_port_range=16,
                           edge_sources=frozenset(s for s in sources.split(",") if s))
        sip = SipThread(cfg, events.append, poll_ms=20, new_leg_id=lambda: f"leg{next(ids)}")
        await sip.start()
        try:
            print("READY", flush=True)
            while True:
                line = (await asyncio.to_thread(sys.stdin.readline)).strip()
                if line in ("", "quit"):
                    break
                await asyncio.sleep(0.3)
                names = [type(e).__name__ + ":" + str(getattr(e, "code", "")) for e in events]
                print("EVENTS", *names, flush=True)
        finally:
            await sip.stop()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
""")


class Child:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []  # everything else the process printed (its log)

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    async def events(self) -> list[str]:
        """The engine's events so far; AssertionError if the process died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self.proc.returncode is None, "the worker process ended"
        self.proc.stdin.write(b"events\n")
        await self.proc.stdin.drain()
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 15)).decode()
            assert line, "the worker process ended (pjsip aborted it?)"
            if line.startswith("EVENTS"):
                return line.split()[1:]
            self.lines.append(line)


@pytest.fixture
async def start_child() -> AsyncIterator[object]:
    children: list[asyncio.subprocess.Process] = []

    async def _start(sources: str = "") -> Child:
        port = free_udp_tcp_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(port), str(free_udp_tcp_port()), sources, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        children.append(proc)
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "READY":
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, f"the child ended early: {lines}"
            lines.append(line.strip())
        return Child(proc, port)

    yield _start
    for proc in children:
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.write(b"quit\n")
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


NO_CONTENT_TYPE = INVITE.replace("Content-Type: application/sdp\n", "")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_full_worker_survives_an_invite_with_a_body_and_no_content_type(start_child: object,
                                                                                transport: str) -> None:
    child = await start_child()  # type: ignore[operator]
    # two callers fill the worker (each keeps a leg for its agent); nobody answers them here
    for _ in range(2):
        replies = await exchange(child.address, INVITE, transport=transport, within_s=1.0, until_final=False)
        assert 100 in replies.codes, replies.messages
    assert (await child.events()).count("IncomingCall:") == 2

    # the worker is full: this one is refused - and used to abort the process (pjsip assertion)
    replies = await exchange(child.address, NO_CONTENT_TYPE, transport=transport, within_s=5.0)
    assert replies.final == 503, replies.messages
    events = await child.events()
    assert events.count("Rejected:503") == 1, events

    # still serving: a well-formed INVITE is answered too (refused: still full)
    replies = await exchange(child.address, INVITE, transport=transport, within_s=5.0)
    assert replies.final == 503, replies.messages


async def test_a_worker_admits_calls_from_the_edge_only(start_child: object) -> None:
    edge_port = free_udp_tcp_port()
    child = await start_child(f"127.0.0.1:{edge_port}")  # type: ignore[operator]
    for transport in ("udp", "tcp"):
        replies = await exchange(child.address, INVITE, transport=transport, within_s=5.0)
        assert replies.final == 403, replies.messages
    events = await child.events()
    assert "IncomingCall:" not in events, events
    assert events.count("Rejected:403") == 2, events


async def test_a_flood_of_refused_calls_cannot_fill_the_log(start_child: object) -> None:
    """Anyone who reaches a worker's port can make it refuse calls: the refusal is logged once per
    sending host every 10 s, with the count held back, never once per packet."""
    child = await start_child(f"127.0.0.1:{free_udp_tcp_port()}")  # type: ignore[operator]
    for _ in range(20):  # each from a new source port of the same host
        replies = await exchange(child.address, INVITE, transport="udp", within_s=5.0)
        assert replies.final == 403, replies.messages
    events = await child.events()
    assert events.count("Rejected:403") == 20, events
    logged = [ln for ln in child.lines if "sip.not_from_edge" in ln]
    assert len(logged) == 1, logged
