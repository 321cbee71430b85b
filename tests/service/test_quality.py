"""Transcripts and quality checks on real parts: recordings made of espeak-ng's Korean voice (stereo
Opus by ffmpeg, caller left, agent right), the real Korean Vosk model, a real Redis and the real API.

The transcriber runs as ``ivr transcriber`` does (:class:`Transcriber.run`: BLMOVE from the job list
the recording index fills, at most ``workers`` decodes at once) over three recordings, once for the
module; the tests then read what it stored through the store and the API.

What the model hears reliably from espeak-ng (16 kHz, Opus 24 kb/s, free-form, each phrase alone
after a second or more of quiet, early in the channel): ``여보세요``, ``라디오``, ``아버지`` (8 of 8
across speeds 160-205 wpm and two lead-in lengths). Not reliable free-form: ``안녕하세요``,
``감사합니다``, ``고객센터``, ``상담원``, ``비디오``, ``메시지`` (half the time), most other words;
telephone-band audio (8 kHz) loses ``여보세요`` too; a phrase after more than ~10 s of quiet on its
channel often comes out as other words (so what the tests assert is said early, and the words after
the long quiet of the "bad" call only have to be some words).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.recording_store import open_store, recording_key
from ivr.quality.transcriber import Decoder, Transcriber, consumer_name, default_model_dir
from ivr.queues.quality import QualityStore
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import Api

pytestmark = pytest.mark.asyncio(loop_scope="module")

PREFIX = "qa"
RATE = 16000
CONSUMER = "test-host"
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
AGENT2 = {"Authorization": "Bearer agent2-demo-token"}
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
RULES = {
    "required": [{"name": "greeting", "phrase": "여보세요", "within_s": 3},
                 {"name": "closing", "phrase": "아버지", "last_s": 4}],
    "forbidden": ["라디오"], "max_silence_s": 6, "max_overtalk_s": 0.1, "talk_ratio": [0.2, 0.9],
}


@cache
def synth(text: str) -> array[int]:
    """``text`` in espeak-ng's Korean voice, 16 kHz mono 16-bit."""
    wav = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True,
                         timeout=30).stdout
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(RATE), "-ac", "1", "-f", "s16le",
                          "pipe:1"], input=wav, check=True, capture_output=True, timeout=30).stdout
    return array("h", pcm)


def stereo_opus(path: Path, seconds: float, caller: list[tuple[float, str]], agent: list[tuple[float, str]]) -> None:
    """A two-channel recording as the recorder makes it: each phrase at its time on its side."""
    n = int(seconds * RATE)
    sides = [array("h", bytes(2 * n)), array("h", bytes(2 * n))]
    for side, said in zip(sides, (caller, agent), strict=True):
        for at, text in said:
            pcm, o = synth(text), int(at * RATE)
            side[o:o + len(pcm)] = pcm
    both = array("h", bytes(4 * n))
    both[0::2], both[1::2] = sides
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "s16le", "-ar", str(RATE), "-ac", "2", "-i", "pipe:0",
                    "-c:a", "libopus", "-b:a", "24k", str(path)], input=both.tobytes(), check=True, timeout=60)


CALLS: dict[str, dict[str, Any]] = {
    # the agent greets at once, the caller answers, the agent closes: nothing to flag
    "good": {"agent": "agent1", "queue": "billing", "seconds": 9.0,
             "caller": [(3.5, "라디오")], "agent_says": [(1.0, "여보세요"), (6.0, "아버지")]},
    # the agent says a forbidden word over the caller's hello, never greets nor closes; 9 s of dead air
    "bad": {"agent": "agent1", "queue": "billing", "seconds": 14.0,
            "caller": [(1.2, "여보세요"), (11.0, "아버지")], "agent_says": [(1.0, "라디오")]},
    # another agent's call in another queue (default rules): what search filters and access keep apart
    "other": {"agent": "agent2", "queue": "support", "seconds": 6.0,
              "caller": [(3.0, "아버지")], "agent_says": [(1.0, "여보세요")]},
}


def settings_for(tmp: Path, redis_server: RedisServer) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp / "var", dialplans_dir=tmp / "dialplans",
                    redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_udp_tcp_port()},
                    quality={"transcribe": True, "workers": 2, "rules": {"billing": RULES}})


async def save_recording(store: QueueStore, settings: Settings, src: Path, *, call_id: str, agent: str, queue: str,
                         seconds: float, started_at: int, transcribe: bool = True) -> str:
    """A finished recording put in the store and indexed as the recorder does (A1, A2)."""
    rid = "R" + secrets.token_hex(10)
    key = recording_key(rid, started_at, "opus")
    size = open_store(settings).put(key, src)
    await store.recording_saved({
        "id": rid, "call_id": call_id, "started_at": started_at, "ended_at": started_at + int(seconds * 1000),
        "duration_ms": int(seconds * 1000), "format": "opus", "channels": "caller,agent", "clock_rate": RATE,
        "bytes": size, "sha256": "0" * 64, "key": key, "store": "local", "agents": json.dumps([agent]),
        "agent_id": agent, "queue": queue, "pauses": "[]", "ivr": "0",
        "delete_after": started_at + 86_400_000}, transcribe=transcribe)
    return rid


class Rig:
    def __init__(self, settings: Settings, store: QueueStore, ids: dict[str, str], t0: int) -> None:
        self.settings, self.store, self.ids, self.t0 = settings, store, ids, t0
        self.quality = QualityStore(store)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> AsyncIterator[Rig]:
    """The three calls recorded, queued and transcribed by one transcriber run (two decodes at once);
    the "other" call sits on the consumer's working list as if a transcriber had crashed with it."""
    tmp = tmp_path_factory.mktemp("quality")
    settings = settings_for(tmp, redis_server)
    redis = Redis.from_url(redis_server.url)
    for key in await redis.keys(f"{PREFIX}:*"):
        await redis.delete(key)
    store = QueueStore(redis, PREFIX)
    decoder = Decoder(default_model_dir(settings))
    await asyncio.to_thread(decoder.load)
    t0 = int(time.time() * 1000) - 3_600_000
    ids: dict[str, str] = {}
    for i, (name, c) in enumerate(CALLS.items()):
        src = tmp / f"{name}.opus"
        stereo_opus(src, c["seconds"], c["caller"], c["agent_says"])
        ids[name] = await save_recording(store, settings, src, call_id=f"call-{name}", agent=c["agent"],
                                         queue=c["queue"], seconds=c["seconds"], started_at=t0 + i * 60_000,
                                         transcribe=name != "other")
    await redis.lpush(store.keys.transcribe_working(CONSUMER), ids["other"])  # taken, then the process died
    transcriber = Transcriber(settings, store, open_store(settings), decoder, consumer=CONSUMER)
    stop = asyncio.Event()
    run = asyncio.create_task(transcriber.run(stop, poll_s=0.2))
    quality = QualityStore(store)
    try:
        for _ in range(600):  # 60 s at most
            done = [await quality.get_transcript(rid) for rid in ids.values()]
            if all(t is not None for t in done) or run.done():
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
    yield Rig(settings, store, ids, t0)
    await redis.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def api(rig: Rig) -> AsyncIterator[str]:
    a = Api(rig.settings)
    await a.start()
    yield a.url
    await a.stop()


async def get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def post(url: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, headers=headers, json=body) as r:
        return r.status, await r.json()


async def audit(rig: Rig) -> list[dict[str, Any]]:
    entries, _ = await rig.store.audit_entries(limit=500)
    return entries


# --- the transcriber ---------------------------------------------------------------------------

async def test_each_channel_holds_the_korean_phrase_its_side_said_with_word_times(rig: Rig) -> None:
    t = await rig.quality.get_transcript(rig.ids["good"])
    assert t is not None and t["status"] == "done", t
    assert "여보세요" in t["text_agent"] and "아버지" in t["text_agent"], t["text_agent"]
    assert "라디오" in t["text_caller"] and "여보세요" not in t["text_caller"], t["text_caller"]
    hello = next(w for w in t["words_agent"] if w[0] == "여보세요")
    assert 0.7 <= hello[1] < hello[2] <= 2.5 and 0 < hello[3] <= 1  # said at 1.0 s, for about half a second
    radio = next(w for w in t["words_caller"] if w[0] == "라디오")
    assert 3.2 <= radio[1] <= 4.0
    assert t["call_id"] == "call-good" and t["agent_id"] == "agent1" and t["queue"] == "billing"
    assert t["language"] == "ko" and t["audio_ms"] == 9000


async def test_a_job_a_crashed_transcriber_held_is_taken_again_and_the_queue_ends_empty(rig: Rig) -> None:
    t = await rig.quality.get_transcript(rig.ids["other"])
    assert t is not None and t["status"] == "done" and "여보세요" in t["text_agent"]
    assert await rig.store.redis.llen(rig.store.keys.transcribe_working(CONSUMER)) == 0
    assert await rig.quality.backlog() == 0
    stats = await rig.quality.stats()
    assert stats["done"] == 3 and stats["audio_ms"] == 29000 and stats["lag_ms_max"] >= stats["lag_ms_last"] > 0
    assert await rig.store.redis.hlen(rig.store.keys.transcribe_attempts) == 0


async def test_the_backlog_jobs_and_lag_are_on_the_metrics(rig: Rig, api: str) -> None:
    status, text = await get(f"{api}/metrics", ADMIN)
    assert status == 200 and 'ivr_transcribe_jobs_total{status="done"} 3.0' in text, text
    assert "ivr_transcribe_backlog 0.0" in text and 'ivr_transcribe_lag_seconds{which="max"}' in text


async def test_events_carry_ids_and_scores_only(rig: Rig) -> None:
    events = await rig.store.events_after("0", 500)
    ready = [e.data for e in events if e.type == "transcript.ready"]
    scored = {e.data["recording_id"]: e.data for e in events if e.type == "quality.scored"}
    assert len(ready) == 3 and set(scored) == set(rig.ids.values())
    assert set(ready[0]) == {"recording_id", "call_id", "agent_id", "queue", "words", "ts", "v"}
    assert scored[rig.ids["good"]]["score"] == 100 and scored[rig.ids["good"]]["flags"] == 0
    assert "여보세요" not in json.dumps([e.data for e in events], ensure_ascii=False)


# --- the rules on the decoded audio ------------------------------------------------------------

async def test_the_queues_rules_pass_a_good_call_and_flag_what_went_wrong_in_a_bad_one(rig: Rig) -> None:
    good = await rig.quality.get_quality(rig.ids["good"])
    bad = await rig.quality.get_quality(rig.ids["bad"])
    assert good is not None and bad is not None
    assert good["rules"] == bad["rules"] == "billing"
    assert good["score"] == 100 and good["flags"] == [], good["checks"]
    assert set(bad["flags"]) == {"greeting", "closing", "forbidden", "silence", "overtalk"}, bad["checks"]
    checks = {c["name"]: c for c in bad["checks"]}
    assert checks["forbidden"]["found"][0] == {"word": "라디오", "channel": "agent", "at_s": checks["forbidden"]
                                               ["found"][0]["at_s"]} and checks["forbidden"]["found"][0]["at_s"] < 2
    assert checks["silence"]["longest_s"] > 6 and 1.2 < checks["silence"]["at_s"] < 3
    assert checks["overtalk"]["total_s"] > 0.1 and checks["talk_ratio"]["passed"]
    assert bad["score"] == 10  # only the talk ratio (10 of 100) passed
    other = await rig.quality.get_quality(rig.ids["other"])
    assert other is not None and other["rules"] == "default" and other["score"] is not None


# --- the API -----------------------------------------------------------------------------------

async def test_the_transcript_over_the_api_and_who_may_read_it(rig: Rig, api: str) -> None:
    url = f"{api}/api/v1/recordings/{rig.ids['good']}/transcript"
    status, t = await get(url, AGENT1)  # agent1 is heard on it
    assert status == 200 and "여보세요" in t["channels"]["agent"]["text"], t
    assert t["channels"]["agent"]["words"][0].keys() == {"word", "start", "end", "conf"}
    for headers in (SUPER, ADMIN):
        assert (await get(url, headers))[0] == 200
    status, err = await get(url, AGENT2)
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    assert (await get(url, {}))[0] == 401
    assert (await get(f"{api}/api/v1/recordings/R{'0' * 20}/transcript", ADMIN))[0] == 404
    assert (await get(f"{api}/api/v1/recordings/..%2Fetc/transcript", ADMIN))[0] == 404
    assert (await get(f"{api}/api/v1/recordings/{rig.ids['bad']}/quality", AGENT2))[0] == 403
    entries = await audit(rig)
    denied = [e for e in entries if e["action"] == "recording.denied" and e["by"] == "agent2"]
    assert {(e["target"], e["detail"].get("what"), e["detail"].get("route")) for e in denied} >= {
        (rig.ids["good"], "transcript", "GET transcript"), (rig.ids["bad"], "quality", "GET quality")}
    views = [e for e in entries if e["action"] == "transcript.view" and e["target"] == rig.ids["good"]]
    assert {e["by"] for e in views} >= {"agent1", "super1", "admin"} and views[0]["call_id"] == "call-good"


async def test_search_by_words_agent_queue_and_date_with_matches_in_context(rig: Rig, api: str) -> None:
    search = f"{api}/api/v1/transcripts"
    status, r = await get(f"{search}?q=여보세요", SUPER)
    assert status == 200, r  # newest first; the bad call's caller said it
    assert [h["recording_id"] for h in r["hits"]] == [rig.ids["other"], rig.ids["bad"], rig.ids["good"]]
    hit = next(h for h in r["hits"] if h["recording_id"] == rig.ids["good"])
    assert hit["matches"][0]["channel"] == "agent" and 0.7 <= hit["matches"][0]["start"] <= 2.5
    assert next(h for h in r["hits"] if h["recording_id"] == rig.ids["bad"])["matches"][0]["channel"] == "caller"
    status, r = await get(f"{search}?q=라디오", SUPER)
    assert {h["recording_id"] for h in r["hits"]} == {rig.ids["good"], rig.ids["bad"]}
    status, r = await get(f"{search}?q=라디오&agent=agent1&queue=billing", ADMIN)
    assert {h["recording_id"] for h in r["hits"]} == {rig.ids["good"], rig.ids["bad"]}
    status, r = await get(f"{search}?q=여보세요&queue=support", ADMIN)
    assert [h["recording_id"] for h in r["hits"]] == [rig.ids["other"]]
    since = (rig.t0 + 30_000) / 1000  # after the good call started
    status, r = await get(f"{search}?q=라디오&since={since}", ADMIN)
    assert [h["recording_id"] for h in r["hits"]] == [rig.ids["bad"]]
    status, r = await get(f"{search}?q=라디오 여보세요", ADMIN)  # a phrase: in a row on one side, never
    assert status == 200 and r["hits"] == []
    status, page = await get(f"{search}?agent=agent1&limit=1", ADMIN)  # no words: every transcript, paged
    assert len(page["hits"]) == 1 and page["next_cursor"]
    status, rest = await get(f"{search}?agent=agent1&limit=1&cursor={page['next_cursor']}", ADMIN)
    assert [h["recording_id"] for h in page["hits"] + rest["hits"]] == [rig.ids["bad"], rig.ids["good"]]
    status, err = await get(f"{search}?agent=agent2&limit=1&cursor={page['next_cursor']}", ADMIN)
    assert status == 400 and err["error"]["code"] == "request.invalid"  # another query's cursor
    # an agent finds its own calls only, and may not ask for another's
    status, r = await get(f"{search}?q=여보세요", AGENT2)
    assert [h["recording_id"] for h in r["hits"]] == [rig.ids["other"]]
    assert (await get(f"{search}?q=여보세요&agent=agent1", AGENT2))[0] == 403
    assert (await get(f"{search}?since=2024-05-02&until=2024-05-01", ADMIN))[1]["hits"] == []
    for bad in ("q=" + "가" * 201, "agent=no%20such", "since=yesterday", "limit=0", "cursor=!!"):
        status, err = await get(f"{search}?{bad}", ADMIN)
        assert status == 400 and err["error"]["code"] == "request.invalid", bad
    searches = [e for e in await audit(rig) if e["action"] == "transcript.search"]
    assert searches and "여보세요" not in json.dumps(searches, ensure_ascii=False)


async def test_reviews_by_supervisors_and_the_per_agent_report_as_json_and_csv(rig: Rig, api: str) -> None:
    reviews = f"{api}/api/v1/recordings/{rig.ids['bad']}/reviews"
    status, r = await post(reviews, SUPER, {"score": 40, "comment": "인사 없음; forbidden word at 0:01"})
    assert status == 201 and r["by"] == "super1" and r["score"] == 40, r
    assert (await post(reviews, ADMIN, {"score": 60}))[0] == 201
    status, err = await post(reviews, AGENT1, {"score": 100, "comment": "me"})
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    bodies: list[Any] = [{"score": 101}, {"score": -1}, {"score": "x"}, {"score": 5, "comment": "x" * 2001},
                         {"score": 5, "extra": 1}, {"score": 5, "comment": "a\x00b"}, []]
    for body in bodies:
        status, err = await post(reviews, SUPER, body)
        assert status == 400, body
    status, err = await post(f"{api}/api/v1/recordings/R{'1' * 20}/reviews", SUPER, {"score": 5})
    assert status == 404 and err["error"]["code"] == "recording.not_found"
    status, q = await get(f"{api}/api/v1/recordings/{rig.ids['bad']}/quality", AGENT1)
    assert status == 200 and q["review_count"] == 2 and q["review_avg"] == 50.0
    assert [v["score"] for v in q["reviews"]] == [60, 40] and q["reviews"][1]["comment"].startswith("인사")
    entries = await audit(rig)
    assert any(e["action"] == "review.added" and e["by"] == "super1" for e in entries)
    assert any(e["action"] == "recording.denied" and e["by"] == "agent1" and e["detail"].get("what") == "review"
               for e in entries)
    events = [e.data for e in await rig.store.events_after("0", 500) if e.type == "quality.reviewed"]
    assert {(e["by"], e["score"], e["agent_id"]) for e in events} == {("super1", 40, "agent1"), ("admin", 60, "agent1")}

    report = f"{api}/api/v1/quality/agents"
    status, rep = await get(report, SUPER)
    assert status == 200, rep
    rows = {r["agent_id"]: r for r in rep["agents"]}
    assert rows["agent1"]["calls"] == 2 and rows["agent1"]["scored"] == 2 and rows["agent1"]["avg_score"] == 55.0
    assert rows["agent1"]["min_score"] == 10 and rows["agent1"]["flags"]["forbidden"] == 1
    assert rows["agent1"]["reviews"] == 2 and rows["agent1"]["avg_review"] == 50.0 and rows["agent1"]["talk_s"] == 23.0
    assert rows["agent2"]["calls"] == 1
    status, text = await get(f"{report}?format=csv", ADMIN)
    lines = text.strip().split("\r\n")
    assert status == 200 and lines[0].split(",")[:3] == ["agent_id", "calls", "talk_s"], text
    agent1 = next(line.split(",") for line in lines if line.startswith("agent1,"))
    assert agent1[:6] == ["agent1", "2", "23.0", "2", "55.0", "10"] and "forbidden=1" in agent1[7]
    status, text = await get(report, {**SUPER, "Accept": "text/csv"})
    assert status == 200 and text.startswith("agent_id,")
    status, own = await get(report, AGENT2)  # an agent: its own row only
    assert [r["agent_id"] for r in own["agents"]] == ["agent2"]
    assert (await get(f"{report}?agent=agent1", AGENT2))[0] == 403
    status, none = await get(f"{report}?until={rig.t0 / 1000}", ADMIN)
    assert status == 200 and none["agents"] == []
    assert (await get(f"{report}?format=xml", ADMIN))[0] == 400
    assert any(e["action"] == "quality.report" for e in await audit(rig))
    # read in slices (one short script each), the figures add up to the same
    whole = await rig.quality.report(from_ms=0, to_ms=2**53)
    sliced = await rig.quality.report(from_ms=0, to_ms=2**53, slice_size=1)
    assert sliced["agents"] == whole["agents"] and sliced["looked"] == whole["looked"] == 3
    assert (await rig.quality.report(from_ms=0, to_ms=2**53, slice_size=1, budget=2))["truncated"]


# --- the job queue without decoding ----------------------------------------------------------------

async def test_missing_files_fail_and_a_backlog_beyond_the_limit_is_shed_oldest_first(rig: Rig) -> None:
    q, store = rig.quality, rig.store
    redis = store.redis
    rids = []
    for i in range(4):
        rids.append(await save_recording(store, rig.settings, _silence(rig, i), call_id=f"call-shed-{i}",
                                         agent="agent2", queue="support", seconds=1, started_at=rig.t0 + 600_000 + i))
    claim = await q.take("shedder", timeout_s=0.1, max_attempts=3, max_backlog=1)
    assert claim is not None and claim.recording_id == rids[0] and claim.attempts == 1
    assert await q.backlog() == 1  # rids[1] and rids[2] were shed, rids[3] waits
    for rid in rids[1:3]:
        t = await q.get_transcript(rid)
        assert t is not None and t["status"] == "skipped" and t["error"] == "backlog"
    # a job taken once too often (it killed its transcriber each time) is marked failed and dropped
    await redis.hset(store.keys.transcribe_attempts, rids[3], 3)
    claim = await q.take("shedder", timeout_s=0.1, max_attempts=3, max_backlog=10)
    assert claim is not None and claim.dropped and (await q.get_transcript(rids[3]) or {})["error"] == "attempts"
    # a job that failed for a passing reason goes back to be taken again, its attempts counted
    await redis.lpush(store.keys.transcribe_jobs, rids[3])
    claim = await q.take("shedder", timeout_s=0.1, max_attempts=9, max_backlog=10)
    assert claim is not None and claim.recording_id == rids[3] and claim.attempts == 1
    await q.give_back("shedder", rids[3])
    assert await redis.lrange(store.keys.transcribe_working("shedder"), 0, -1) == [rids[0].encode()]
    assert await redis.lrange(store.keys.transcribe_jobs, -1, -1) == [rids[3].encode()]  # taken next
    claim = await q.take("shedder", timeout_s=0.1, max_attempts=9, max_backlog=10)
    assert claim is not None and claim.recording_id == rids[3] and claim.attempts == 2
    await redis.lrem(store.keys.transcribe_working("shedder"), 1, rids[3])
    # a search page that runs out of its budget says where to go on
    page = await q.search(terms=[], budget=1, limit=10)
    assert len(page.hits) == 1 and page.next is not None
    # the store lost the file of the first: failed, not retried
    open_store(rig.settings).delete((await store.get_recording(rids[0]) or {})["key"])
    transcriber = Transcriber(rig.settings, store, open_store(rig.settings), Decoder(Path("/nonexistent")),
                              consumer="shedder")
    assert await transcriber.process(rids[0]) == "failed"
    assert (await q.get_transcript(rids[0]) or {})["error"] == "file missing"
    assert await redis.llen(store.keys.transcribe_working("shedder")) == 0
    # deleting a recording takes its transcript, quality and reviews with it
    assert await store.recording_deleted(rig.ids["other"], reason="admin", by="admin")
    assert await q.get_transcript(rig.ids["other"]) is None and await q.get_quality(rig.ids["other"]) is None
    page = await q.search(terms=["여보세요"])
    assert rig.ids["other"] not in {rid for rid, _ in page.hits}


async def test_the_transcriber_role_runs_niced_takes_a_job_and_stops_on_sigterm(rig: Rig, tmp_path: Path) -> None:
    """``ivr transcriber`` as ``ivr run`` starts it: its own process, niced by ``quality.nice``."""
    src = tmp_path / "role.opus"
    stereo_opus(src, 5.0, [], [(1.0, "여보세요")])
    rid = await save_recording(rig.store, rig.settings, src, call_id="call-role", agent="agent2", queue="support",
                               seconds=5.0, started_at=rig.t0 + 300_000)
    conf = tmp_path / "settings.json"
    conf.write_text(rig.settings.model_copy(update={"quality": rig.settings.quality.model_copy(
        update={"nice": 7, "workers": 1})}).dump_for_children())
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ivr.cli", "transcriber", "--settings",
                                                str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t = None
        # The niced process loads the model first: under make test's load that took over 30 s once.
        for _ in range(1200):  # 120 s at most
            t = await rig.quality.get_transcript(rid)
            if t is not None or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert t is not None and "여보세요" in t["text_agent"], (proc.returncode, t)
        stat = await asyncio.to_thread(Path(f"/proc/{proc.pid}/stat").read_text)
        assert int(stat.rsplit(")", 1)[1].split()[16]) >= 7  # its niceness
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await rig.store.redis.llen(rig.store.keys.transcribe_working(consumer_name())) == 0


def _silence(rig: Rig, i: int) -> Path:
    path = Path(rig.settings.var_dir) / f"quiet-{i}.opus"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=stereo", "-t", "1",
                    "-c:a", "libopus", str(path)], check=True, timeout=30)
    return path
