"""Speech taps across back-to-back listening calls on one worker (issue 18: two workers died with
SIGSEGV, each soon after a new call opened its tap while an earlier tap was about to be freed).

One worker's SIP side - the real ``SipThread`` and pjsua2 engine, in a child process as in ``ivr
run`` - answers sipp callers that come two at a time, back to back, each sending audio. Every
call listens in short turns (stop, then a new listen), as a dial plan's re-prompts do, but many
times a second, so taps are stopped and opened again all the time. The child's event loop also
does Python work of its own (as a worker's does: the speech client, the dial plan), so the media
clock thread often waits for the GIL while it calls a tap.

Before the fix a stopped tap was deleted 0.5 s later while the bridge clock kept calling it; the
clock thread then ran ``onFrameReceived`` on the half-deallocated Python object (AttributeError:
no ``sink``; then "Fatal Python error: ... Immortal interned string died" or SIGSEGV). Now a tap
is never deleted while the clock runs (``ivr/sip/engine.py``, ``_Tap``): a stopped one is reused.
This test needs about 35 s; it is load-sensitive by design (it hunts a race), hence ``serial``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import re
import sys
import textwrap
from pathlib import Path

import pytest

from tests import rtp_pcap
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import LOOPBACK, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

ROOT = Path(__file__).resolve().parents[2]
CALLS = 60
AT_ONCE = 2     # a worker's caller slots: 4 legs, 2 per caller
CALL_MS = 900   # each call sends audio and listens this long after the answer
TURN_MS = 40    # one listen turn

CHILD = textwrap.dedent("""
    import asyncio, sys
    from ivr.sip.bridge import FrameSink, SipThread
    from ivr.sip.engine import EngineConfig, LegGone, SipEngine, SipFailed
    from ivr.sip.events import Disconnected, IncomingCall, MediaReady

    async def busy() -> None:  # the worker's own Python work beside the SIP thread
        while True:
            sum(range(20_000))
            await asyncio.sleep(0.002)

    async def main(port: int, rtp: int, turn_s: float) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        ids = iter(range(1_000_000))
        sip = SipThread(EngineConfig(host="127.0.0.1", sip_port=port, rtp_port=rtp, rtp_port_range=40),
                        events.put_nowait, poll_ms=50, new_leg_id=lambda: f"leg{next(ids)}")
        await sip.start()
        stats = {"calls": 0, "listens": 0, "heard": 0}
        up: set[str] = set()
        tasks: set[asyncio.Task] = set()

        async def listen_turns(leg: str) -> None:
            while leg in up:
                sink = FrameSink(loop)
                try:
                    tap = await sip.call(SipEngine.start_listen, leg, sink.push)
                except (LegGone, SipFailed):
                    return  # the caller hung up meanwhile
                stats["listens"] += 1
                await asyncio.sleep(turn_s)
                await sip.call(SipEngine.stop_listen, tap)
                sink.close()
                stats["heard"] += sink.frames > 0

        async def handle() -> None:
            while True:
                event = await events.get()
                if isinstance(event, IncomingCall):
                    stats["calls"] += 1
                    await sip.call(SipEngine.answer, event.leg_id, 200)
                elif isinstance(event, MediaReady) and event.leg_id not in up:
                    up.add(event.leg_id)
                    task = asyncio.create_task(listen_turns(event.leg_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif isinstance(event, Disconnected):
                    up.discard(event.leg_id)

        workers = [asyncio.create_task(busy()), asyncio.create_task(handle())]
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the test's calls are over
        for task in workers:
            task.cancel()
        created = await sip.call(lambda engine: engine.taps_created)
        print("STATS", stats["calls"], stats["listens"], stats["heard"], created, flush=True)
        await sip.stop()
        print("STOPPED", flush=True)

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
""")


def tone_pcap(path: Path, seconds: float) -> Path:
    """A 440 Hz tone as A-law RTP (the caller's audio)."""
    pcm = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(int(8000 * seconds))))
    return rtp_pcap.write_pcap(path, rtp_pcap.rtp_packets("pcma", rtp_pcap.alaw_encode(pcm)))


def crash_excerpt(seen: list[str]) -> str:
    """The worker's output around the first Python traceback or fatal error (else its end)."""
    out = "".join(seen)
    found = re.search(r"Traceback|Fatal Python error|Segmentation fault", out)
    at = found.start() if found else len(out)
    return out[max(0, at - 1500):at + 3000]


async def read_until(stream: asyncio.StreamReader, prefix: str, seen: list[str], within_s: float) -> str:
    """Read lines until one starts with ``prefix`` (pjsip and log lines may come first)."""
    async def scan() -> str:
        while True:
            line = (await stream.readline()).decode(errors="replace")
            assert line, f"the worker ended before {prefix}:\n" + "".join(seen[-40:])
            seen.append(line)
            if line.startswith(prefix):
                return line.strip()
    return await asyncio.wait_for(scan(), within_s)


async def test_back_to_back_listening_calls_keep_the_worker_alive(tmp_path: Path) -> None:
    port = free_udp_tcp_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "faulthandler", "-c", CHILD, str(port), str(free_udp_tcp_port()),
        str(TURN_MS / 1000), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert child.stdin is not None and child.stdout is not None
    seen: list[str] = []
    try:
        await read_until(child.stdout, "READY", seen, 30)
        output = asyncio.create_task(read_until(child.stdout, "STATS", seen, 150))
        pcap = await asyncio.to_thread(tone_pcap, tmp_path / "tone.pcap", CALL_MS / 1000)
        actions = (f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
                   f'  <pause milliseconds="{CALL_MS}"/>\n')
        xml = render_scenario("speech_caller.xml", tmp_path, keep="caller", drop="none", ani="+15550301",
                              actions=actions)
        calling = asyncio.create_task(run_sipp(
            xml, (LOOPBACK, port), workdir=tmp_path, calls=CALLS, limit_s=90, trace_messages=False,
            extra=["-s", "2001", "-l", str(AT_ONCE), "-r", "20", "-mp", str(free_udp_tcp_port())]))
        died = asyncio.create_task(child.wait())
        await asyncio.wait({calling, died}, return_when=asyncio.FIRST_COMPLETED)
        if died.done():  # the worker is gone: stop calling it and show how it ended
            calling.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await calling
            with contextlib.suppress(AssertionError):
                await output
            pytest.fail(f"the worker died (exit code {died.result()}) during the calls:\n" + crash_excerpt(seen))
        result = calling.result()
        assert child.stdin is not None
        child.stdin.write(b"done\n")
        await child.stdin.drain()
        stats = (await output).split()
        stopped = await read_until(child.stdout, "STOPPED", seen, 30)
        code = await asyncio.wait_for(died, 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert "Traceback" not in "".join(seen), "a tap callback failed:\n" + crash_excerpt(seen)
    assert result.ok, result.describe() + "\n" + "".join(seen[-40:])
    assert stopped == "STOPPED" and code == 0, (code, seen[-40:])
    calls, listens, heard, created = (int(x) for x in stats[1:])
    print(f"tap lifetime: {calls} calls, {listens} listens, {heard} heard audio, {created} tap ports made")
    assert calls == CALLS, stats
    # every call listened in many turns, and the taps heard the callers
    assert listens >= CALLS * 5, stats
    assert heard >= listens // 2, stats
    # stopped taps were reused (a few ports for hundreds of listens) and all freed at shutdown
    assert created <= 4 * AT_ONCE, stats
    freed = len(re.findall(r"sip\.tap_freed", "".join(seen)))
    assert freed == created, (freed, created)
