"""The SIP torture corpus (tests/sip_torture/, messages written after the descriptions of RFC 4475
and variants of them) against the whole hotline: real Kamailio, real pjsua2 workers.

Every message goes over UDP and over TCP, through the edge and straight to a worker. After each one
(each transport) a normal sipp call must still complete through the edge, and in the end every worker must be the
same process it was at the start (none aborted, none restarted).

- ``valid-*``: the edge answers (a call that a worker answers 200 is acknowledged and hung up
  again); never 400 (malformed) and never silence, but for the few Kamailio's parser drops
  (``KAMAILIO_DROPS``).
- ``invalid-*``: never a 2xx; and nothing aborts a worker, whichever way it arrives.
- Straight to a worker, an INVITE never gets 2xx: workers admit calls from the edge only.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

import pytest

from tests.e2e.conftest import Hotline
from tests.sip_wire import LOOPBACK, exchange
from tests.sipp_helpers import run_sipp, scenario

pytestmark = [pytest.mark.e2e]

CORPUS = Path(__file__).resolve().parents[1] / "sip_torture"
KAMAILIO_DROPS = {
    # valid, but Kamailio 5.6's parser fails on them and drops them before the script runs, so the
    # edge cannot even answer: a CSeq folded between number and method, and a header name made of
    # unusual token characters (each has a variant without that one construct, which is answered)
    "valid-wsinv-folded-cseq.sip", "valid-intmeth.sip",
}


def corpus() -> list[Path]:
    files = sorted(CORPUS.glob("*.sip"))
    assert len(files) >= 30, f"the torture corpus in {CORPUS} is missing"
    return files


def _header(msg: str, *names: str) -> list[str]:
    pattern = "|".join(re.escape(n) for n in names)
    return [m.group(1).strip() for m in re.finditer(rf"^(?:{pattern})\s*:\s*(.*)$", msg, re.M | re.I)]


async def end_call(target: tuple[str, int], ok: str) -> None:
    """ACK and BYE the dialog a 2xx to one of our INVITEs set up (through the edge, over UDP)."""
    to = _header(ok, "To", "t")[0]
    from_ = _header(ok, "From", "f")[0]
    call_id = _header(ok, "Call-ID", "i")[0]
    cseq = int(_header(ok, "CSeq")[0].split()[0])
    contact = re.search(r"<([^>]+)>", _header(ok, "Contact", "m")[0])
    assert contact is not None, ok
    routes = [r for value in _header(ok, "Record-Route") for r in re.findall(r"<[^>]+>", value)]
    route = f"Route: {', '.join(routes)}\n" if routes else ""
    for method, number in (("ACK", cseq), ("BYE", cseq + 1)):
        request = (f"{method} {contact.group(1)} SIP/2.0\nVia: {{via}};branch={{branch}};rport\nMax-Forwards: 70\n"
                   f"{route}From: {from_}\nTo: {to}\nCall-ID: {call_id}\nCSeq: {number} {method}\n"
                   "Content-Length: 0\n\n")
        replies = await exchange(target, request, within_s=0.3 if method == "ACK" else 5.0,
                                 until_final=method != "ACK")
        if method == "BYE":
            assert replies.final == 200, f"the BYE of a torture call was answered {replies.codes}"


def method_of(template: str) -> str:
    return template.split(" ", 1)[0]


async def service_check(h: Hotline, workdir: Path, what: str) -> None:
    result = await run_sipp(scenario("edge_uac.xml"), (LOOPBACK, h.edge_port), workdir=workdir,
                            tag=f"check-{secrets.token_hex(3)}", calls=1, limit_s=20, extra=["-s", "1000"])
    assert result.ok, f"a normal call failed after {what}:\n{result.describe()}"


BATCH = 10  # files sent at once (each over UDP and TCP, through the edge and straight to a worker)


async def torture_one(h: Hotline, path: Path, template: str) -> list[str]:
    """Send one corpus file (``template``, the text of ``path``) every way; what went wrong."""
    edge = (LOOPBACK, h.edge_port)
    worker = (LOOPBACK, h.sip_base)
    wrong: list[str] = []
    for transport in ("udp", "tcp"):
        what = f"{path.name} over {transport}"
        replies, direct = await asyncio.gather(
            exchange(edge, template, transport=transport, within_s=3.0),
            exchange(worker, template, transport=transport, within_s=1.5))
        ok = next((m for m in replies.messages if re.match(r"SIP/2\.0 2\d\d", m)), None)
        if ok is not None and method_of(template) == "INVITE":
            await end_call(edge, ok)
        if path.name.startswith("valid-"):
            if replies.final == 400 or (replies.final is None and path.name not in KAMAILIO_DROPS):
                wrong.append(f"{what} (valid) through the edge: answered {replies.codes}")
        elif ok is not None:
            wrong.append(f"{what} (invalid) through the edge: answered {replies.codes}")
        if method_of(template) == "INVITE" and any(200 <= c < 300 for c in direct.codes):
            wrong.append(f"{what} straight to a worker: answered {direct.codes}")
    return wrong


@pytest.mark.timeout(600)
@pytest.mark.hotline(workers=2)
async def test_the_torture_corpus_neither_aborts_a_worker_nor_stops_service(hotline: Hotline,
                                                                            tmp_path: Path) -> None:
    """The corpus goes out BATCH files at a time (harder on the parsers than one by one, and a
    fraction of the time); after each batch a normal call must complete through the edge (once more
    a second later if the first found the workers still releasing the batch's calls)."""
    h = hotline
    pids = await h.worker_pids()
    assert len(pids) == 2, pids
    wrong: list[str] = []
    files = corpus()
    for i in range(0, len(files), BATCH):
        batch = files[i:i + BATCH]
        texts = [path.read_text() for path in batch]
        for found in await asyncio.gather(*(torture_one(h, p, t) for p, t in zip(batch, texts, strict=True))):
            wrong.extend(found)
        what = "the batch " + ", ".join(p.name for p in batch)
        try:
            await service_check(h, tmp_path / "sipp", what)
        except AssertionError:
            await asyncio.sleep(1.0)
            await service_check(h, tmp_path / "sipp", what)
    assert not wrong, "\n".join(wrong)
    assert await h.worker_pids() == pids, "a worker was aborted or restarted"
