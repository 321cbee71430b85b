"""`ivr run` (what `make run` starts) runs rtpengine for the browsers' phones and stops it with the rest.

The whole hotline on free loopback ports: the supervisor makes the loopback certificate, starts
rtpengine (ng control on edge.port + 2) before the edge, and the edge serves SIP over WSS on
edge.port + 3, where a WebSocket SIP client registers desk1 with its SIP password (digest, as a desk
phone does) and the API shows desk1's phone registered. After SIGTERM rtpengine is gone.
"""

from __future__ import annotations

import os
import ssl

import aiohttp
import pytest

from ivr.edge.webrtc import ng_ping
from tests.e2e.conftest import Hotline
from tests.e2e.test_registered_phone import DESK_PASSWORD, USERS, wait_phone
from tests.service.test_edge_webrtc import WsPhone

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.hotline(overrides={"users": USERS, "edge": {"webrtc": {"enabled": True}}})
async def test_ivr_run_starts_rtpengine_serves_wss_and_stops_rtpengine(hotline: Hotline) -> None:
    run = hotline.var / "run"
    ng_port, wss_port = hotline.edge_port + 2, hotline.edge_port + 3
    pid = int((run / "rtpengine" / "rtpengine.pid").read_text().strip())
    up = await ng_ping("127.0.0.1", ng_port, within_s=2)
    ctx = ssl.create_default_context(cafile=str(run / "certs" / "webrtc-localhost.crt"))
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"wss://127.0.0.1:{wss_port}", protocols=("sip",), ssl=ctx,
                                   headers={"Origin": f"http://127.0.0.1:{hotline.api_port}"}) as ws:
            phone = WsPhone(ws, "127.0.0.1", user="desk1")
            reply = await phone.register(DESK_PASSWORD)
            await wait_phone(http, hotline, registered=True)
    banner = hotline.log_text()

    code = hotline.stop()  # returns once the supervisor has exited (it waits for its children)

    assert up, f"rtpengine answers ping on its ng port\n{hotline.log_tail()}"
    assert reply.startswith("SIP/2.0 200 "), reply
    assert f"Browser phones: wss://127.0.0.1:{wss_port}" in banner
    assert code == 0
    assert not _alive(pid), "rtpengine stopped with the hotline"
    assert not await ng_ping("127.0.0.1", ng_port, within_s=0.5)
