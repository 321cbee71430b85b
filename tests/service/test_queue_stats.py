"""Queue statistics against a real Redis: interval counters kept by the scripts through realistic call
sequences, the real-time snapshot, the CTI API, and ``ivr report`` run as an operator runs it.

Waits are made long by moving a call's ``queued_at`` / ``answered_at`` back (the scripts measure
from those fields), so no test sleeps for the seconds it talks about."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.errors import NotFound
from ivr.core.events import AgentState
from ivr.cti.app import init_app
from ivr.queues.stats import Interval, StatsConfig, figures, iso, merge
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]
PREFIX = "st"
CONFIG = StatsConfig(interval_s=900, service_level_s=(10, 20), short_abandon_s=5.0, keep_days=35)
SUPER = {"Authorization": "Bearer super1-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX, stats=CONFIG)
    for aid, skills in (("agent1", {"billing": 3, "sales": 3}), ("agent2", {"billing": 3, "support": 5}),
                        ("a3", {"sales": 2})):
        await s.register_agent(aid, name=aid, skills=skills, sip_uri=f"sip:{aid}@127.0.0.1:5999", languages=["en"])
    return s


async def start(store: QueueStore, cid: str, worker: str = "w0") -> None:
    await store.call_start(cid, worker, ani=f"+1555000{cid[-1]}", dnis="1000", hotline="demo", language="en",
                           plan_version="v7")


async def queue(store: QueueStore, cid: str, *, ago_s: float = 0, priority: int = 0, worker: str = "w0") -> None:
    """Call ``cid`` starts and waits in billing (nobody free), as if it had been queued ``ago_s`` ago."""
    await start(store, cid, worker)
    assert await store.enqueue(cid, queue="billing", skill="billing", priority=priority, journey={}) is None
    if ago_s:
        await backdate(store, cid, "queued_at", ago_s)


async def backdate(store: QueueStore, cid: str, field: str, ago_s: float) -> None:
    call = await store.get_call(cid)
    assert call is not None
    await store.set_call_field(cid, field, str(int(call[field]) - int(ago_s * 1000)))


async def talked(store: QueueStore, cid: str, seconds: float) -> None:
    """The connected call ``cid`` as if its agent had answered ``seconds`` ago (the whole call moves back)."""
    for name in ("started_at", "queued_at", "offered_at", "answered_at"):
        await backdate(store, cid, name, seconds)


async def answer(store: QueueStore, agent_id: str, cid: str) -> None:
    offer = await store.set_agent_state(agent_id, AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == cid
    assert await store.offer_answered(cid, offer.offer_id) == agent_id


async def all_intervals(store: QueueStore, q: str = "billing") -> list[Interval]:
    return [iv async for iv in store.iter_intervals(q, 0, int(time.time()) + 86400)]


async def day_of_calls(store: QueueStore) -> None:
    """Seven calls enter billing: 2 answered (waits 8 s and 15 s), 1 abandoned after 30 s, 1 short
    abandon, 1 timeout, 1 callback, 1 lost with its worker; both answered calls are then handled."""
    await queue(store, "c1", ago_s=8)
    await answer(store, "agent1", "c1")
    await queue(store, "c2", ago_s=15)
    await answer(store, "agent2", "c2")
    await queue(store, "c3", ago_s=30)
    assert await store.end_call("c3", reason="caller_hangup", wrapup_s=2, ttl_s=600) == "abandoned"
    await queue(store, "c4", ago_s=1)
    assert await store.end_call("c4", reason="caller_hangup", wrapup_s=2, ttl_s=600) == "abandoned"
    await queue(store, "c5", ago_s=60)
    assert await store.leave_queue("c5", "timeout")
    await queue(store, "c6", ago_s=20)
    await store.request_callback("c6", callback_id="cb6", queue="billing", number="5550106", journey={})
    await queue(store, "c7", ago_s=3, worker="w9")
    assert await store.reap_worker("w9", wrapup_s=2, ttl_s=600) == 1
    await talked(store, "c1", 60)
    assert await store.end_call("c1", reason="caller_hangup", wrapup_s=2, ttl_s=600) == "completed"
    await talked(store, "c2", 30)
    assert await store.agent_left("c2", wrapup_s=0) == "agent2"
    assert await store.end_call("c2", reason="caller_hangup", wrapup_s=0, ttl_s=600) == "completed"


# --- counters and figures ----------------------------------------------------------------------

async def test_a_day_of_calls_adds_up_in_the_interval_counters(store: QueueStore) -> None:
    await day_of_calls(store)
    counts = merge(await all_intervals(store))
    exact = {k: counts.get(k, 0) for k in ("offered", "answered", "answered_within_10", "answered_within_20",
                                           "abandoned", "short_abandoned", "timeouts", "callbacks", "lost",
                                           "handled", "left")}
    assert exact == {"offered": 7, "answered": 2, "answered_within_10": 1, "answered_within_20": 2,
                     "abandoned": 1, "short_abandoned": 1, "timeouts": 1, "callbacks": 1, "lost": 1,
                     "handled": 2, "left": 0}
    assert 23_000 <= counts["answer_wait_ms"] < 24_000          # 8 s + 15 s
    assert 15_000 <= counts["max_answer_wait_ms"] < 16_000
    assert 30_000 <= counts["abandon_wait_ms"] < 31_000         # the short abandon is not in it
    assert 92_000 <= counts["handle_ms"] < 93_000               # (60 s talk + 2 s wrap-up) + 30 s talk

    f = figures(counts, CONFIG.service_level_s)
    assert f["service_level"]["10"] == {"answered_within": 1, "sl1": 0.5, "sl2": round(1 / 3, 4)}
    assert f["service_level"]["20"] == {"answered_within": 2, "sl1": 1.0, "sl2": round(2 / 3, 4)}
    assert f["abandon_rate"] == round(1 / 6, 4)                  # short abandon out of both sides
    assert f["asa_s"] is not None and 11.5 <= f["asa_s"] < 12
    assert f["aht_s"] is not None and 46 <= f["aht_s"] < 46.5
    assert f["avg_abandon_wait_s"] is not None and 30 <= f["avg_abandon_wait_s"] < 31


async def test_abandons_are_on_the_event_stream_with_their_wait_and_shortness(store: QueueStore) -> None:
    await day_of_calls(store)
    events = await store.read_events("0-0")
    abandoned = {e.data["call_id"]: e.data for e in events if e.type == "call.abandoned"}
    assert set(abandoned) == {"c3", "c4"}  # not the lost call, not the timeout or callback
    assert abandoned["c3"]["short"] is False and 30 <= abandoned["c3"]["waited_s"] < 31
    assert abandoned["c4"]["short"] is True and abandoned["c4"]["queue"] == "billing"
    ended = [e.data["call_id"] for e in events if e.type == "call.ended"]
    assert sorted(ended) == ["c1", "c2", "c3", "c4", "c7"]  # c5 and c6 are still in the plan
    assert [e.type for e in events if e.data.get("call_id") == "c3"][-2:] == ["call.abandoned", "call.ended"]


async def test_an_abandon_while_the_agent_rings_and_an_answer_after_a_failed_offer(store: QueueStore) -> None:
    await queue(store, "c1", ago_s=12)
    offer = await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert offer is not None
    await store.offer_failed("c1", offer.offer_id, "ring_no_answer")  # back in queue: not offered twice
    await answer(store, "agent2", "c1")
    await queue(store, "c2", ago_s=6)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert (await store.get_call("c2") or {})["state"] == "offered"
    assert await store.end_call("c2", reason="caller_hangup", wrapup_s=0, ttl_s=600) == "abandoned"
    counts = merge(await all_intervals(store))
    assert (counts["offered"], counts["answered"], counts.get("answered_within_10", 0),
            counts["answered_within_20"], counts["abandoned"]) == (2, 1, 0, 1, 1)
    assert (await store.get_agent("agent1"))["state"] == "available"  # released by the abandon


async def test_intervals_are_aligned_kept_for_the_configured_days_and_indexed(store: QueueStore,
                                                                               redis: Redis) -> None:
    before = int(time.time())
    await queue(store, "c1")
    after = int(time.time())
    ivs = await all_intervals(store)
    assert len(ivs) == 1
    iv = ivs[0]
    assert iv.length_s == 900 and iv.start_s % 900 == 0
    assert CONFIG.interval_start(before) <= iv.start_s <= CONFIG.interval_start(after)
    key = store.keys.queue_interval("billing", iv.start_s)
    assert 35 * 86400 - 60 <= await redis.ttl(key) <= 35 * 86400
    assert 0 < await redis.ttl(store.keys.queue_intervals("billing")) <= 35 * 86400
    assert [iv.start_s async for iv in store.iter_intervals("billing", iv.start_s + 1, iv.start_s + 900)] == []


# --- the real-time snapshot -----------------------------------------------------------------------

async def test_snapshot_shows_waiting_callers_longest_wait_and_agents_by_state(store: QueueStore) -> None:
    await store.set_agent_state("agent1", AgentState.BREAK, "lunch")
    await store.set_agent_state("a3", AgentState.AVAILABLE)  # sales only: not billing's
    await queue(store, "c1", ago_s=40, priority=0)
    await queue(store, "c2", ago_s=10, priority=5)  # ahead of c1, but c1 waited longer
    snap = await store.queue_stats("billing", since_s=0)
    assert snap.skill == "billing" and snap.waiting == 2
    assert 40 <= snap.longest_wait_s < 41
    assert snap.agents == {"offline": 1, "available": 0, "reserved": 0, "oncall": 0, "wrapup": 0, "break": 1}

    offer = await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "c2"
    snap = await store.queue_stats("billing", since_s=0)
    assert snap.waiting == 1 and 40 <= snap.longest_wait_s < 41
    assert snap.agents["reserved"] == 1 and snap.agents["offline"] == 1

    # a waiting score outside the priority bands (not one enqueue writes): every caller is read
    await queue(store, "c3", ago_s=90)
    await store.redis.zadd(store.keys.waiting("billing"), {"c3": 2e14})
    assert 90 <= (await store.queue_stats("billing", since_s=0)).longest_wait_s < 91
    await store.redis.zrem(store.keys.waiting("billing"), "c3")

    d = snap.to_dict()
    assert d["interval"]["start"] == iso(CONFIG.interval_start(snap.at_ms / 1000))
    assert d["interval"]["length_s"] == 900 and d["period"]["offered"] == 2
    assert d["interval"]["offered"] <= 2  # both, unless the quarter hour turned in between
    with pytest.raises(NotFound):
        await store.queue_stats("nowhere")


async def test_snapshot_figures_cover_today_by_default(store: QueueStore) -> None:
    await day_of_calls(store)
    snap = (await store.queue_stats("billing")).to_dict()
    assert snap["waiting"] == 0 and snap["longest_wait_s"] == 0
    p = snap["period"]
    assert p["offered"] == 7 and p["answered"] == 2 and p["short_abandoned"] == 1
    assert p["service_level"]["20"]["sl1"] == 1.0 and p["abandon_rate"] == round(1 / 6, 4)
    assert snap["agents"]["wrapup"] == 1 and snap["agents"]["available"] == 1  # agent1 wraps up, agent2 free
    future = await store.queue_stats("billing", since_s=int(time.time()) + 3600)
    assert future.period == []


# --- the API -----------------------------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "hotline.yaml").write_text(PLAN)
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_port()}, dialplans_dir=plans,
                    routing={"service_level_s": [10, 20], "service_level_target": 0.8,
                             "queues": {"vip": {"skills": ["sales", "vip"], "service_level_target": 0.95,
                                                "service_level_threshold_s": 20,
                                                "alerts": {"long_wait": {"threshold": 30},
                                                           "many_waiting": {"enabled": False}}}}})


# A plan whose queue node names a queue no call has entered yet (and billing, which calls enter).
PLAN = """\
name: Hotline
numbers: ["1000"]
start: menu
nodes:
  menu:
    type: menu
    prompt: {text: "Press 1 for billing, 2 for complaints"}
    options:
      - {digit: "1", goto: billing}
      - {digit: "2", goto: complaints}
    on_failure: billing
  billing:
    type: queue
    queue: billing
  complaints:
    type: queue
    queue: complaints
    skills: [support]
"""


@pytest.fixture
async def api(settings: Settings, store: QueueStore) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{settings.api.port}", http
    await runner.cleanup()


async def test_the_api_lists_queues_with_stats_for_supervisors(api: tuple[str, aiohttp.ClientSession],
                                                               store: QueueStore) -> None:
    url, http = api
    await day_of_calls(store)
    await store.set_agent_state("agent2", AgentState.BREAK)
    await queue(store, "c8", ago_s=25)
    async with http.get(f"{url}/api/v1/queues", headers=SUPER) as resp:
        assert resp.status == 200
        body = await resp.json()
    by_name = {q["queue"]: q for q in body["queues"]}
    # the configured queues are listed before their first call, with zero figures
    assert set(by_name) == {"billing", "complaints", "vip"}
    for name, skill in (("complaints", "support"), ("vip", "sales+vip")):
        idle = by_name[name]
        assert idle["skill"] == skill and idle["waiting"] == 0 and idle["stats"]["period"]["offered"] == 0
    assert by_name["complaints"]["stats"]["agents"]["break"] == 1  # agent2 has the support skill
    # the target and the alert thresholds are the server's: routing defaults, the queue's own changes
    assert by_name["billing"]["target"] == {"share": 0.8, "threshold_s": 10}
    assert by_name["vip"]["target"] == {"share": 0.95, "threshold_s": 20}
    assert by_name["billing"]["thresholds"]["longest_wait_s"] == 120
    assert by_name["vip"]["thresholds"]["longest_wait_s"] == 30
    assert by_name["billing"]["thresholds"]["service_level"] == 0.8
    assert "waiting" in by_name["billing"]["thresholds"] and "waiting" not in by_name["vip"]["thresholds"]
    billing = by_name["billing"]
    assert billing["queue"] == "billing" and billing["skill"] == "billing" and billing["waiting"] == 1
    stats = billing["stats"]
    assert 25 <= stats["longest_wait_s"] < 26
    assert stats["period"]["offered"] == 8 and stats["period"]["service_level"]["10"]["sl2"] == round(1 / 3, 4)
    assert set(stats["agents"]) == {"offline", "available", "reserved", "oncall", "wrapup", "break"}
    assert stats["interval"]["length_s"] == 900 and "aht_s" in stats["interval"]

    async with http.get(f"{url}/api/v1/queues/billing/stats", params={"since": "2000-01-01"},
                        headers=SUPER) as resp:
        assert resp.status == 200
        one = await resp.json()
    assert one["period"]["since"].startswith("1999-12-31") or one["period"]["since"].startswith("2000-01-01")
    assert one["period"]["offered"] == 8 and one["waiting"] == 1
    async with http.get(f"{url}/api/v1/queues/billing/stats", headers=AGENT1) as resp:
        assert resp.status == 403
    async with http.get(f"{url}/api/v1/queues/complaints/stats", headers=SUPER) as resp:
        assert resp.status == 200 and (await resp.json())["period"]["offered"] == 0
    async with http.get(f"{url}/api/v1/queues/nowhere/stats", headers=SUPER) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "queue.not_found"
    async with http.get(f"{url}/api/v1/queues/billing/stats", params={"since": "yesterday"},
                        headers=SUPER) as resp:
        assert resp.status == 400 and "ISO 8601" in (await resp.json())["error"]["message"]


# --- ivr report, as a process ----------------------------------------------------------------------

def report(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", "report", *args, "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(f"var_dir: {tmp_path / 'var'}\nredis:\n  url: {redis_server.url}\n  prefix: {PREFIX}\n"
                    "routing:\n  service_level_s: [10, 20]\n  stats_interval_s: 900\n  short_abandon_s: 5\n")
    return path


def rows(text: str) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_report_calls_writes_one_row_per_ended_call(store: QueueStore, redis: Redis, config: Path,
                                                          tmp_path: Path) -> None:
    begin = iso(time.time() - 5)
    await day_of_calls(store)
    await store.record_csat("c1", 5)
    await redis.delete(store.keys.call("c7"))  # its record expired: the row comes from the event alone
    out = tmp_path / "calls.csv"
    done = report(config, "calls", "--from", begin, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "ivr report calls: 5 rows written to" in done.stderr
    got = {r["call_id"]: r for r in rows(out.read_text())}
    assert list(got) == ["c3", "c4", "c7", "c1", "c2"]  # in the order they ended
    c1, c2, c3, c7 = got["c1"], got["c2"], got["c3"], got["c7"]
    assert (c1["ani"], c1["dnis"], c1["hotline"], c1["queue"], c1["agent_id"], c1["plan_version"]) == (
        "+15550001", "1000", "demo", "billing", "agent1", "v7")
    assert (c1["outcome"], c1["end_reason"], c1["csat"]) == ("completed", "caller_hangup", "5")
    assert 8 <= float(c1["waited_s"]) < 9 and 60 <= float(c1["talk_s"]) < 61
    assert c1["started_at"] and c1["answered_at"] and c1["ended_at"].endswith("+00:00")
    assert 30 <= float(c2["talk_s"]) < 31  # until the agent left, not until the survey ended
    assert c3["outcome"] == "abandoned" and 30 <= float(c3["waited_s"]) < 31 and c3["talk_s"] == ""
    assert (c7["outcome"], c7["end_reason"], c7["queue"], c7["ani"]) == ("lost", "worker_lost", "billing", "")

    later = report(config, "calls", "--from", iso(time.time() + 60), "--to", iso(time.time() + 120))
    assert later.returncode == 0 and rows(later.stdout) == [] and later.stdout.startswith("call_id,")


async def test_report_intervals_writes_figures_per_queue_and_interval(store: QueueStore, config: Path) -> None:
    await day_of_calls(store)
    await store.set_agent_state("a3", AgentState.AVAILABLE)
    await start(store, "s1")
    assert await store.enqueue("s1", queue="sales", skill="sales", priority=0, journey={}) is not None
    frm = iso(time.time() - 3 * 3600)
    done = report(config, "intervals", "--from", frm)
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert {r["queue"] for r in table} == {"billing", "sales"}
    billing = [r for r in table if r["queue"] == "billing"]
    total = {k: sum(int(r[k]) for r in billing) for k in ("offered", "answered", "abandoned", "short_abandoned",
                                                           "timeouts", "callbacks", "lost", "handled")}
    assert total == {"offered": 7, "answered": 2, "abandoned": 1, "short_abandoned": 1, "timeouts": 1,
                     "callbacks": 1, "lost": 1, "handled": 2}
    header = done.stdout.splitlines()[0].split(",")
    assert header[:5] == ["queue", "interval_start", "length_s", "offered", "answered"]
    assert {"sl1_10s", "sl2_20s", "asa_s", "abandon_rate", "aht_s"} <= set(header)
    if len(billing) == 1:  # all in one quarter hour (unless it turned during the test)
        r = billing[0]
        assert (r["sl1_10s"], r["sl1_20s"], r["sl2_10s"], r["abandon_rate"]) == ("0.5", "1", "0.3333", "0.1667")
        assert 11.5 <= float(r["asa_s"]) < 12 and 46 <= float(r["aht_s"]) < 46.5

    only = report(config, "intervals", "--from", frm, "--queue", "sales")
    assert only.returncode == 0 and {r["queue"] for r in rows(only.stdout)} == {"sales"}


def test_report_refuses_bad_dates_with_exit_2(config: Path) -> None:
    bad = report(config, "calls", "--from", "last tuesday")
    assert bad.returncode == 2 and "not an ISO 8601 date or time: 'last tuesday'" in bad.stderr
    backwards = report(config, "intervals", "--from", "2024-05-02", "--to", "2024-05-01")
    assert backwards.returncode == 2 and "must be after --from" in backwards.stderr
