"""The leg budget counts a leg as used until pjsua really lets go of it (issue 17, leftover).

A consult target's phone rings (180) and then never answers the CANCEL (no 200, no 487): pjsua
reports the leg DISCONNECTED at once when it is hung up, but keeps its call slot until the INVITE
session really ends. Before, the engine counted that slot as free: it admitted one more caller
than the library had legs for, and the next offer's agent leg found no slot (``NoLineFree``; the
offer waited ``LINE_WAIT_S`` and failed). Now the ended leg counts until its slot is empty: this
worker refuses the next caller (503 + Retry-After, the edge gives it to another worker) and the
caller it has gets its next agent leg at once. (Before: B was admitted, B's agent leg took the
last slot, and A's next offer found none.)

The real engine (``SipThread``, pjsua2) runs in a child process, as in a worker; the answering
phones are sipp, the deaf phone is a UDP socket of this test.
"""

from __future__ import annotations

import asyncio
import re
import sys
import textwrap
from pathlib import Path

from tests.ports import free_udp_tcp_port
from tests.sipp_helpers import LOOPBACK, SippServer, run_sipp, scenario

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, sys
    from ivr.sip.bridge import SipThread
    from ivr.sip.engine import EngineConfig, NoLineFree, SipEngine, WorkerFull
    from ivr.sip.events import Disconnected, MediaReady, Ringing

    async def main(port: int, rtp: int, phone: str, deaf: str) -> None:
        ids = iter(range(1000))
        events: dict[tuple[str, str], asyncio.Event] = {}
        kinds = {Ringing: "ringing", MediaReady: "media", Disconnected: "ended"}

        def seen(leg: str, kind: str) -> asyncio.Event:
            return events.setdefault((leg, kind), asyncio.Event())

        def on_event(event: object) -> None:
            kind = kinds.get(type(event))
            if kind:
                seen(event.leg_id, kind).set()

        async def wait(leg: str, kind: str) -> None:
            await asyncio.wait_for(seen(leg, kind).wait(), 10)

        def state(engine: SipEngine) -> str:
            return f"legs={len(engine.legs)} callers={len(engine.callers)} extras={len(engine.extras)} " \\
                   f"extra_legs={engine.extra_legs()} grants_extra={engine.grants_extra()}"

        sip = SipThread(EngineConfig(host="127.0.0.1", sip_port=port, rtp_port=rtp, rtp_port_range=16),
                        on_event, poll_ms=50, new_leg_id=lambda: f"in{next(ids)}")
        await sip.start()
        try:
            # caller A (a customer called back: a caller slot) and its agent, both answer
            await sip.call(SipEngine.make_call, phone, "A", True)
            await sip.call(SipEngine.make_call, phone, "A-agent")
            await wait("A", "media")
            await wait("A-agent", "media")
            # a consult for A: the target rings, the agent cancels, the target never answers the CANCEL
            await sip.call(SipEngine.make_call, deaf, "C", False, True)
            await wait("C", "ringing")
            await sip.call(SipEngine.hangup, "C")
            await wait("C", "ended")
            print("AFTER_CANCEL", await sip.call(state), flush=True)
            # A's agent hangs up: A waits for its next offer
            await sip.call(SipEngine.hangup, "A-agent")
            await wait("A-agent", "ended")
            await asyncio.sleep(0.5)  # the BYE's answer comes back
            print("AFTER_AGENT", await sip.call(state), flush=True)
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)  # the test has sent caller B
            print("AFTER_B", await sip.call(state), flush=True)
            if "in0" in await sip.call(lambda engine: set(engine.callers)):  # B was admitted: its offer first
                try:
                    await sip.call(SipEngine.make_call, phone, "B-agent")
                    print("B_OFFER dialled", flush=True)
                except NoLineFree:
                    print("B_OFFER no_line", flush=True)
            # A's next offer: its agent leg is dialled at once
            try:
                await sip.call(SipEngine.make_call, phone, "A-agent2")
                await wait("A-agent2", "media")
                print("OFFER ok", flush=True)
            except NoLineFree as exc:
                print("OFFER no_line", str(exc).replace(chr(10), " "), flush=True)
            # one more customer for this worker: the budget says no while the deaf phone's slot is held
            try:
                await sip.call(SipEngine.make_call, phone, "D", True)
                print("CUSTOMER admitted", flush=True)
            except WorkerFull:
                print("CUSTOMER refused", flush=True)
            print("END", await sip.call(state), flush=True)
        finally:
            await sip.stop()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]))
""")


class DeafPhone(asyncio.DatagramProtocol):
    """Rings (100, 180) for every INVITE and never answers anything else: no 200 to the CANCEL,
    no 487 to the INVITE."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.invites = 0
        self.cancels = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        if text.startswith("CANCEL "):
            self.cancels += 1
        if not text.startswith("INVITE ") or self.transport is None:
            return
        self.invites += 1
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        keep = [h for h in head[1:] if re.match(r"(?i)(via|from|call-id|cseq):", h)]
        to = next(h for h in head[1:] if re.match(r"(?i)to:", h))
        for status in ("100 Trying", "180 Ringing"):
            tag = "" if status.startswith("100") else ";tag=deaf"
            lines = [f"SIP/2.0 {status}", *keep, to + tag, "Content-Length: 0"]
            if tag:
                lines.insert(-1, f"Contact: <sip:deaf@{LOOPBACK}>")
            self.transport.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)


def state_of(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:])


async def test_a_cancel_nobody_answers_keeps_the_leg_counted_and_the_next_offer_gets_its_leg(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deaf_port = free_udp_tcp_port()
    transport, deaf = await loop.create_datagram_endpoint(DeafPhone, local_addr=(LOOPBACK, deaf_port))
    port = free_udp_tcp_port()
    phones = SippServer(scenario("reference_uas.xml"), workdir=tmp_path / "phones", tag="phones",
                        extra=["-mp", str(free_udp_tcp_port())])
    try:
        async with phones:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CHILD, str(port), str(free_udp_tcp_port()),
                f"sip:agent@{LOOPBACK}:{phones.address[1]}", f"sip:target@{LOOPBACK}:{deaf_port}", cwd=ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            assert child.stdin is not None and child.stdout is not None
            out = child.stdout
            lines: list[str] = []

            async def line(prefix: str) -> str:
                while True:
                    raw = (await asyncio.wait_for(out.readline(), 30)).decode()
                    assert raw, "the child ended early:\n" + "".join(lines[-30:])
                    lines.append(raw)
                    if raw.startswith(prefix):
                        return raw.strip()

            try:
                after_cancel = state_of(await line("AFTER_CANCEL"))
                after_agent = state_of(await line("AFTER_AGENT"))
                await line("READY")
                # caller B comes to this worker
                caller_b = await run_sipp(scenario("edge_uac_503.xml"), (LOOPBACK, port), workdir=tmp_path / "b")
                child.stdin.write(b"go\n")
                await child.stdin.drain()
                after_b = state_of(await line("AFTER_B"))
                offer = await line("OFFER")
                customer = await line("CUSTOMER")
                end = state_of(await line("END"))
                await asyncio.wait_for(child.wait(), 30)
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
    finally:
        transport.close()
    assert deaf.invites == 1 and deaf.cancels >= 1, (deaf.invites, deaf.cancels)
    # the cancelled consult leg is gone for the asyncio side, but still one of the library's legs
    assert after_cancel["extras"] == "0" and after_cancel["extra_legs"] == "1", after_cancel
    assert after_cancel["grants_extra"] == "True", after_cancel  # A's pair + the held slot: one slot is free
    assert after_agent["extra_legs"] == "1", after_agent
    # this worker refused caller B (503 + Retry-After: the edge gives it to another worker) ...
    assert caller_b.ok, caller_b.describe() + "\n" + "".join(lines[-30:])
    assert after_b["callers"] == "1", after_b
    # ... and A's next offer got its agent leg at once (no NoLineFree, no LINE_WAIT_S)
    assert offer == "OFFER ok", offer + "\n" + "".join(lines[-30:])
    assert customer == "CUSTOMER refused", customer
    assert end["legs"] == "2", end
