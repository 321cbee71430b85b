"""Recordings after the call, against a real Redis, real ffmpeg and real files (docs/recording.md):
the finisher turns two WAV channels into one stereo Opus file in the store and indexes it; a WAV
whose writer died (no sizes in its header) is finished too; one that cannot be is set aside, never
deleted; the list pages; retention deletes the file and every index entry; the store refuses keys
that are not its own; the audit trail filters and pages."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from redis.asyncio import Redis

from ivr.calls.recording import RecordingFinisher, delete_expired, policy_for
from ivr.core.config import Settings
from ivr.core.errors import BadRequest, NotFound
from ivr.core.recording_store import BadKey, LocalDirStore, recording_key
from ivr.queues.store import QueueStore
from tests.call_audio import analyse

PREFIX = "rst"
RATE = 8000


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


def settings(tmp_path: Path, **recording: object) -> Settings:
    return Settings(var_dir=tmp_path / "var", recording=recording)  # type: ignore[arg-type]


def tone_wav(path: Path, hz: float, seconds: float, *, header: bool = True) -> None:
    n = int(seconds * RATE)
    pcm = np.array([int(9000 * math.sin(2 * math.pi * hz * i / RATE)) for i in range(n)], dtype="<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    if not header:  # as a recorder whose process died leaves it: sizes never written
        raw = bytearray(path.read_bytes())
        raw[4:8] = raw[40:44] = b"\0\0\0\0"
        path.write_bytes(bytes(raw))


def job(spool: Path, rid: str, call_id: str, *, header: bool = True, queue: str = "billing") -> Path:
    d = spool / rid
    d.mkdir(parents=True)
    tone_wav(d / "caller.wav", 2300, 2.0, header=header)
    tone_wav(d / "agent.wav", 2700, 2.0, header=header)
    (d / "meta.json").write_text(json.dumps({
        "recording_id": rid, "call_id": call_id, "started_at": 1_765_000_000_000, "clock_rate": RATE,
        "queue": queue, "agents": ["agent1"], "pauses": [[500, 900]], "ivr": False}))
    return d


def decode(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "2",
                          "-ar", str(RATE), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<i2").reshape(-1, 2)


async def test_a_finished_recording_is_one_stereo_file_in_the_store_and_indexed(tmp_path: Path,
                                                                              store: QueueStore) -> None:
    s = settings(tmp_path)
    media = LocalDirStore(s.recordings_dir)
    fin = RecordingFinisher(s, store, media, worker="w0")
    await store.call_start("c1", "w0", ani="+15550001", dnis="1000", hotline="Demo", language="en", plan_version=1)
    rid = "R" + "a1" * 10
    d = job(fin.spool, rid, "c1", header=False)  # the leftover of a dead worker
    assert fin.leftovers() == [d]
    assert await fin.finish(d, leftover=True) == rid
    assert not d.exists(), "the spool is emptied once the file is stored"
    rec = await store.get_recording(rid)
    assert rec is not None
    assert rec["call_id"] == "c1" and rec["agents"] == ["agent1"] and rec["pauses"] == [[500, 900]]
    assert rec["format"] == "opus" and 1900 <= rec["duration_ms"] <= 2100, rec
    path = media.path(rec["key"])
    assert path.stat().st_size == rec["bytes"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"]
    stereo = decode(path)
    assert analyse(stereo[2000:14000, 0]).only("caller"), analyse(stereo[2000:14000, 0])
    assert analyse(stereo[2000:14000, 1]).only("agent"), analyse(stereo[2000:14000, 1])
    assert rec["delete_after"] == rec["started_at"] + 90 * 86_400_000
    call = await store.get_call("c1") or {}
    assert call.get("recording_id") == rid, call
    assert str(call.get("recording_ms")) == str(rec["duration_ms"]) and call.get("recording_sha256") == rec["sha256"]
    events = [f[b"type"].decode() for _, f in await store.redis.xrange(store.keys.events)]
    assert "recording.saved" in events
    assert await store.redis.lrange(store.keys.transcribe_jobs, 0, -1) == [], "transcription is off by default"


async def test_a_recording_that_cannot_be_finished_is_set_aside_not_lost(tmp_path: Path, store: QueueStore) -> None:
    s = settings(tmp_path)
    fin = RecordingFinisher(s, store, LocalDirStore(s.recordings_dir), worker="w0")
    d = job(fin.spool, "R" + "b2" * 10, "c2")
    (d / "agent.wav").write_bytes(b"RIFF")  # truncated
    assert await fin.finish(d, leftover=True) is None
    assert fin.failed == 1 and not d.exists()
    aside = d.with_name(d.name + ".failed")
    assert (aside / "caller.wav").is_file() and (aside / "meta.json").is_file()
    assert fin.leftovers() == [], "a set-aside job is not retried on every start"


async def test_list_pages_and_retention_deletes_file_and_index(tmp_path: Path, store: QueueStore) -> None:
    s = settings(tmp_path)
    media = LocalDirStore(s.recordings_dir)
    ids = []
    for n in range(5):
        rid = f"R{n:020x}"
        key = recording_key(rid, 1_765_000_000_000 + n * 1000, "opus")
        src = tmp_path / f"{rid}.opus"
        src.write_bytes(b"x" * 10)
        media.put(key, src)
        await store.recording_saved({
            "id": rid, "call_id": f"c{n}", "started_at": 1_765_000_000_000 + n * 1000, "duration_ms": 1000,
            "format": "opus", "key": key, "agents": json.dumps(["agent1" if n % 2 else "agent2"]),
            "agent_id": "agent1" if n % 2 else "agent2", "queue": "billing",
            "delete_after": 1_000 if n < 2 else 2**50, "pauses": "[]", "bytes": 10, "sha256": "0"},
            transcribe=True)
        ids.append(rid)
    page, nxt = await store.list_recordings(limit=2)
    assert [r["id"] for r in page] == [ids[4], ids[3]] and nxt is not None
    page2, nxt2 = await store.list_recordings(limit=2, after=nxt)
    assert [r["id"] for r in page2] == [ids[2], ids[1]]
    page3, nxt3 = await store.list_recordings(limit=2, after=nxt2)
    assert [r["id"] for r in page3] == [ids[0]] and nxt3 is None
    mine, _ = await store.list_recordings(agent_id="agent1", limit=10)
    assert [r["id"] for r in mine] == [ids[3], ids[1]]
    assert len(await store.redis.lrange(store.keys.transcribe_jobs, 0, -1)) == 5

    assert await delete_expired(store, media, now_ms=2_000) == 2
    for rid in ids[:2]:
        assert await store.get_recording(rid) is None
        assert not list(s.recordings_dir.rglob(f"{rid}.opus")), "the file went with the index"
    assert [r["id"] for r in (await store.list_recordings(limit=10))[0]] == ids[:1:-1]
    assert set(await store.redis.lrange(store.keys.transcribe_jobs, 0, -1)) == {r.encode() for r in ids[2:]}
    assert ids[0].encode() not in await store.redis.zrange(store.keys.agent_recordings("agent2"), 0, -1)
    assert await delete_expired(store, media, now_ms=2_000) == 0


async def test_an_agent_and_queue_filter_fills_each_page_before_paging(store: QueueStore) -> None:
    # agent1's recordings, newest first: sales, sales, sales, billing, sales, billing
    queues = ["billing", "sales", "billing", "sales", "sales", "sales"]
    ids = [f"R{n:020x}" for n in range(len(queues))]
    for n, (rid, queue) in enumerate(zip(ids, queues, strict=True)):
        await store.recording_saved({
            "id": rid, "call_id": f"c{n}", "started_at": 1_765_000_000_000 + n * 1000, "duration_ms": 1000,
            "format": "opus", "key": f"2025/12/06/{rid}.opus", "agents": json.dumps(["agent1"]),
            "agent_id": "agent1", "queue": queue, "delete_after": 2**50, "pauses": "[]", "bytes": 10, "sha256": "0"},
            transcribe=False)
    page, nxt = await store.list_recordings(agent_id="agent1", queue="billing", limit=2)
    assert [r["id"] for r in page] == [ids[2], ids[0]], "a full page of billing: the filter is not after the paging"
    assert nxt is not None
    assert (await store.list_recordings(agent_id="agent1", queue="billing", limit=2, after=nxt)) == ([], None)
    # a bounded scan: a short page and where to go on, never a lost recording
    short, go_on = await store.list_recordings(agent_id="agent1", queue="billing", limit=2, budget=2)
    assert short == [] and go_on is not None
    rest, _ = await store.list_recordings(agent_id="agent1", queue="billing", limit=2, after=go_on)
    assert [r["id"] for r in rest] == [ids[2], ids[0]]


def test_the_store_touches_nothing_outside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    media = LocalDirStore(root)
    secret = tmp_path / "secret.opus"
    secret.write_text("x")
    for key in ("../secret.opus", "/etc/passwd", "2026/01/01/../../../secret.opus", "2026/01/01/Rzz.opus",
                "2026/01/01/" + "R" + "0" * 20 + ".wav", "", "2026/01/01/R" + "0" * 20 + ".opus\x00"):
        with pytest.raises(BadKey):
            media.path(key)
        with pytest.raises(BadKey):
            media.delete(key)
    # a symlink inside the store that leads out of it
    key = "2026/01/01/R" + "1" * 20 + ".opus"
    (root / "2026/01/01").mkdir(parents=True)
    (root / key).symlink_to(secret)
    with pytest.raises(BadKey):
        media.path(key)
    with pytest.raises(BadKey):
        media.delete(key)
    assert secret.exists()


async def test_the_audit_trail_filters_and_pages(store: QueueStore) -> None:
    for n in range(7):
        await store.audit("recording.play" if n % 2 else "monitor.start", by=f"u{n % 3}", role="supervisor",
                          target=f"R{n}", call_id=f"c{n}", detail={"n": str(n)})
    everything, _ = await store.audit_entries(limit=100)
    assert [e["target"] for e in everything] == [f"R{n}" for n in range(6, -1, -1)]
    assert everything[0]["detail"] == {"n": "6"} and everything[0]["role"] == "supervisor"
    plays, _ = await store.audit_entries(action="recording.play")
    assert [e["target"] for e in plays] == ["R5", "R3", "R1"]
    prefixed, _ = await store.audit_entries(action="recording.*")
    assert prefixed == plays
    first, cursor = await store.audit_entries(limit=3)
    rest, end = await store.audit_entries(limit=10, before=cursor)
    assert [e["target"] for e in first + rest] == [e["target"] for e in everything] and end is None
    by_u1, _ = await store.audit_entries(by="u1")
    assert [e["target"] for e in by_u1] == ["R4", "R1"]


def test_the_policy_of_a_call(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, recording={"policy": "on_demand"},  # type: ignore[arg-type]
                 routing={"queues": {"vip": {"recording": "always"}, "hr": {"recording": "never"}}})
    assert policy_for(s, "billing") == "on_demand"
    assert policy_for(s, "vip") == "always" and policy_for(s, "hr") == "never"
    assert policy_for(s, "hr", "always") == "always", "the plan's queue node wins"
    off = Settings(var_dir=tmp_path, recording={"enabled": False, "policy": "always"})  # type: ignore[arg-type]
    assert policy_for(off, "billing", "always") == "never"


async def test_the_call_record_says_whether_it_is_recorded(store: QueueStore) -> None:
    await store.call_start("c9", "w0", ani="+15550009", dnis="1000", hotline="Demo", language="en", plan_version=1)
    for what, field in (("started", "on"), ("paused", "paused"), ("resumed", "on"), ("stopped", None)):
        await store.recording_state("c9", what, by="policy")  # type: ignore[arg-type]
        assert (await store.get_call("c9") or {}).get("recording") == field, what
    with pytest.raises(BadRequest):
        await store.recording_state("c9", "erased", by="x")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await store.recording_state("nope", "started", by="x")
    events = [f[b"type"].decode() for _, f in await store.redis.xrange(store.keys.events)]
    assert events.count("recording.started") == 1 and events.count("recording.resumed") == 1
