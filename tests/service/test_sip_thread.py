"""The SIP thread boundary (ivr/sip/bridge.py) and the engine's bookkeeping with the real pjsua2
library, in a child process (one pjsua2 library per process, as in a worker)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from tests.ports import free_udp_tcp_port
from tests.sipp_helpers import LOOPBACK, run_sipp, scenario

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, sys
    from ivr.sip.bridge import SipThread
    from ivr.sip.engine import EngineConfig, SipEngine

    async def main(port: int, rtp: int) -> None:
        ids = iter(range(1000))
        sip = SipThread(EngineConfig(host="127.0.0.1", sip_port=port, rtp_port=rtp, rtp_port_range=8),
                        lambda event: None, poll_ms=50, new_leg_id=lambda: f"leg{next(ids)}")
        await sip.start()
        try:
            try:
                await sip.call(SipEngine.make_call, "this is no uri", "leg-x")
            except Exception as exc:
                print("RAISED", type(exc).__name__, "|", exc, flush=True)
            else:
                print("NOT RAISED", flush=True)
            await sip.call(SipEngine.set_draining, True)  # every INVITE is refused with 503
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)  # the test has sent its INVITEs
            await asyncio.sleep(1.0)
            held = await sip.call(lambda engine: (len(engine._rejecting), len(engine.legs)))
            print("HELD", *held, flush=True)
        finally:
            await sip.stop()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
""")


async def test_the_sip_thread_reports_refusals_and_keeps_nothing_of_refused_calls(tmp_path: Path) -> None:
    port = free_udp_tcp_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(port), str(free_udp_tcp_port()), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert child.stdin is not None and child.stdout is not None
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "READY":
            line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
            assert line, f"the child ended early: {lines}"
            lines.append(line.strip())
        # pj.Error's str() is empty: without the conversion a failed agent dial was logged as
        # error="", and the pjsua2 object itself crossed to the asyncio thread
        raised = next(ln for ln in lines if ln.startswith(("RAISED", "NOT RAISED")))
        assert raised.startswith("RAISED SipFailed | pjsua_call_make_call("), raised
        assert "PJSIP_EINVALIDREQURI" in raised, raised

        # a draining worker refuses every caller with 503 + Retry-After ...
        result = await run_sipp(scenario("edge_uac_503.xml"), (LOOPBACK, port), workdir=tmp_path / "sipp",
                                calls=12)
        assert result.ok, result.describe()
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        held: list[str] = []
        while not held or held[0] != "HELD":  # pjsip's own log lines may come first
            line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
            assert line, "the child ended before reporting"
            held = line.split()
        # ... and keeps none of the refused calls (they piled up when DISCONNECTED came from inside
        # hangup(), before the call was listed as being refused)
        assert held == ["HELD", "0", "0"], held
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
