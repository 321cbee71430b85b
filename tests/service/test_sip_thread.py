"""The SIP thread boundary (ivr/sip/bridge.py) with the real pjsua2 library, in a child process
(one pjsua2 library per process, as in a worker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.ports import free_udp_tcp_port

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, sys
    from ivr.sip.bridge import SipThread
    from ivr.sip.engine import EngineConfig, SipEngine

    async def main(port: int, rtp: int) -> None:
        ids = iter(range(100))
        sip = SipThread(EngineConfig(host="127.0.0.1", sip_port=port, rtp_port=rtp, rtp_port_range=8),
                        lambda event: None, poll_ms=50, new_leg_id=lambda: f"leg{next(ids)}")
        await sip.start()
        try:
            await sip.call(SipEngine.make_call, "this is no uri", "leg-x")
        except Exception as exc:
            print("RAISED", type(exc).__name__, "|", exc, flush=True)
        else:
            print("NOT RAISED", flush=True)
        finally:
            await sip.stop()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
""")


def test_a_refused_pjsua2_command_reaches_asyncio_as_sipfailed_with_pjsips_reason() -> None:
    """pj.Error's str() is empty: without the conversion the worker logged `error=""` for a failed
    agent dial, and the pjsua2 object itself crossed to the asyncio thread."""
    res = subprocess.run([sys.executable, "-c", CHILD, str(free_udp_tcp_port()), str(free_udp_tcp_port())],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(("RAISED", "NOT RAISED")))
    assert line.startswith("RAISED SipFailed | pjsua_call_make_call("), line
    assert "PJSIP_EINVALIDREQURI" in line, line
