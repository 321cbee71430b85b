"""Transcripts, quality scores and reviews in Redis (docs/quality.md): the transcriber's job queue and
what it stores, the search, the per-agent report. Every change is one Lua script
(``lua/scripts/transcript_*.lua``, ``quality_*.lua``; the shared part in ``lua/lib/quality.lua``).

The job queue: ``recording_saved`` LPUSHes a recording id on ``Keys.transcribe_jobs``; a consumer
takes the oldest with ``BLMOVE jobs -> its working list`` (so a crash loses nothing: on start its
working list goes back to the jobs), and the job leaves the working list when its result is saved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ivr.core.errors import BadRequest, IvrError, NotFound
from ivr.queues.store import QueueStore

_ERRORS: dict[str, type[IvrError]] = {"recording.not_found": NotFound, "request.invalid": BadRequest}
SEARCH_BUDGET = 5000  # transcripts one search page looks at, at most
REPORT_BUDGET = 200_000  # recordings one report looks at, at most
REPORT_SLICE = 2000  # recordings one report script looks at (Redis stays responsive)


@dataclass(frozen=True)
class Claim:
    """A job taken from the queue: ``attempts`` how often it was taken (this one included);
    ``dropped`` when that was once too often (it is marked failed already)."""

    recording_id: str
    attempts: int
    dropped: bool


@dataclass(frozen=True)
class SearchPage:
    hits: list[tuple[str, int]]  # (recording id, started_at ms), newest first
    next: tuple[int, str] | None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class QualityStore:
    """The quality section of the state layer; it runs its scripts through the :class:`QueueStore`."""

    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys

    async def _run(self, name: str, *args: Any) -> Any:
        return await self.store._run(name, *args, errors=_ERRORS)

    # --- the job queue -----------------------------------------------------------------------
    async def requeue(self, consumer: str) -> int:
        """Put what ``consumer`` took and did not finish back on the jobs list (its start)."""
        return int(await self._run("transcribe_requeue", consumer))

    async def take(self, consumer: str, *, timeout_s: float, max_attempts: int, max_backlog: int) -> Claim | None:
        """The oldest waiting job, moved to ``consumer``'s working list (waits up to ``timeout_s``),
        or None; the backlog beyond ``max_backlog`` is shed (marked skipped) on the way."""
        raw = await self.redis.blmove(self.keys.transcribe_jobs, self.keys.transcribe_working(consumer),
                                      timeout_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
        rid = _s(raw) if raw is not None else ""
        attempts, _shed = await self._run("transcribe_claim", rid, consumer, max_attempts, max_backlog)
        if not rid:
            return None
        return Claim(rid, int(attempts), int(attempts) > max_attempts)

    async def give_back(self, consumer: str, recording_id: str) -> None:
        """A job that failed for a passing reason (Redis away mid-save, a bug): off ``consumer``'s
        working list and back at the taking end of the jobs list, at once (its attempts still count)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self.keys.transcribe_working(consumer), 1, recording_id)
            pipe.rpush(self.keys.transcribe_jobs, recording_id)
            await pipe.execute()

    async def backlog(self) -> int:
        return int(await self.redis.llen(self.keys.transcribe_jobs))

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.transcribe_stats)
        return {_s(k): int(_s(v)) for k, v in raw.items()}

    async def save_transcript(self, recording_id: str, consumer: str, *, transcript: Mapping[str, str],
                              score: int, flags: Sequence[str], checks: Sequence[Mapping[str, Any]], rules: str,
                              lag_ms: int) -> bool:
        """Store a transcript and its quality, index it, end the job, emit ``transcript.ready`` and
        ``quality.scored``. False when the recording was deleted meanwhile (nothing stored)."""
        quality = {"score": score, "flags": json.dumps(list(flags), ensure_ascii=False),
                   "checks": json.dumps(list(checks), ensure_ascii=False), "rules": rules}
        return bool(await self._run("transcript_save", recording_id, consumer,
                                    json.dumps(dict(transcript), ensure_ascii=False),
                                    json.dumps(quality, ensure_ascii=False), lag_ms))

    async def fail_transcript(self, recording_id: str, consumer: str, *, status: str, error: str) -> None:
        """End a job without a transcript: ``status`` failed or skipped, ``error`` a short reason."""
        await self._run("transcript_fail", recording_id, consumer, status, error[:200])

    # --- reading -----------------------------------------------------------------------------
    async def get_transcript(self, recording_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys.transcript(recording_id))
        if not raw:
            return None
        t: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
        for f in ("started_at", "duration_ms", "decode_ms", "decoded_at", "audio_ms", "version"):
            t[f] = int(t.get(f) or 0)
        for f in ("words_caller", "words_agent", "terms"):
            t[f] = _json_list(t.get(f))
        return t

    async def get_quality(self, recording_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys.quality(recording_id))
        if not raw:
            return None
        q: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
        q["score"] = int(q["score"]) if q.get("score") else None
        for f in ("started_at", "scored_at", "reviews", "review_sum", "reviewed_at"):
            q[f] = int(q.get(f) or 0)
        q["review_last"] = int(q["review_last"]) if q.get("review_last") else None
        q["flags"] = _json_list(q.get("flags"))
        q["checks"] = _json_list(q.get("checks"))
        return q

    async def reviews(self, recording_id: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.redis.lrange(self.keys.quality_reviews(recording_id), 0, limit - 1)
        return [json.loads(_s(r)) for r in rows]

    async def add_review(self, recording_id: str, *, by: str, role: str, score: int, comment: str,
                         now_ms: int | None = None) -> dict[str, Any]:
        """A manual review (score 0-100, comment); ``quality.reviewed``. 404 ``recording.not_found``."""
        raw = await self._run("quality_review", recording_id, by, role, score, comment,
                              "" if now_ms is None else now_ms)
        review: dict[str, Any] = json.loads(_s(raw))
        return review

    async def search(self, *, terms: Sequence[str], phrase: str = "", agent_id: str = "", queue: str = "",
                     from_ms: int = 0, to_ms: int = 2**53, after: tuple[int, str] | None = None,
                     limit: int = 50, budget: int = SEARCH_BUDGET) -> SearchPage:
        """Transcripts that started in [from_ms, to_ms) with every word of ``terms`` (normalised) and,
        when given, ``phrase`` (those words in a row on one side), of ``agent_id`` and ``queue`` when
        given; newest first, after ``after``. A page may be short when ``budget`` transcripts were
        looked at: its ``next`` says where to go on."""
        raw = await self._run("transcript_search", json.dumps(list(terms), ensure_ascii=False), phrase, agent_id,
                              queue, from_ms, to_ms, "" if after is None else after[0],
                              "" if after is None else after[1], limit, budget)
        data = json.loads(_s(raw))
        hits = [(str(h[0]), int(h[1])) for h in data.get("hits") or []]
        nxt = data.get("next")
        return SearchPage(hits, (int(nxt[0]), str(nxt[1])) if isinstance(nxt, list) else None)

    async def report(self, *, from_ms: int, to_ms: int, agent_id: str = "", budget: int = REPORT_BUDGET,
                     slice_size: int = REPORT_SLICE) -> dict[str, Any]:
        """Per-agent figures of the recordings that started in [from_ms, to_ms): calls, talk time,
        scored calls, average and lowest score, flags per name, reviews and their average. Read in
        slices of ``slice_size`` (each one short script); at most ``budget`` recordings (``truncated``)."""
        totals: dict[str, dict[str, Any]] = {}
        looked = 0
        while looked < budget:
            raw = json.loads(_s(await self._run("quality_report", from_ms, to_ms, looked,
                                                min(slice_size, budget - looked), agent_id)))
            n = int(raw.get("looked") or 0)
            looked += n
            for aid, a in (raw.get("agents") or {}).items():
                t = totals.setdefault(aid, {"calls": 0, "talk_ms": 0, "scored": 0, "score_sum": 0, "score_min": None,
                                            "flags": {}, "reviews": 0, "review_sum": 0})
                for f in ("calls", "talk_ms", "scored", "score_sum", "reviews", "review_sum"):
                    t[f] += int(a.get(f) or 0)
                if a.get("score_min") is not False and a.get("score_min") is not None:
                    low = int(a["score_min"])
                    t["score_min"] = low if t["score_min"] is None else min(t["score_min"], low)
                if isinstance(a.get("flags"), dict):
                    for name, count in a["flags"].items():
                        t["flags"][name] = t["flags"].get(name, 0) + int(count)
            if n < slice_size:
                break
        rows = []
        for aid in sorted(totals):
            a = totals[aid]
            scored, reviews = a["scored"], a["reviews"]
            rows.append({
                "agent_id": aid, "calls": a["calls"], "talk_s": round(a["talk_ms"] / 1000, 1), "scored": scored,
                "avg_score": round(a["score_sum"] / scored, 1) if scored else None, "min_score": a["score_min"],
                "flags": dict(sorted(a["flags"].items())), "reviews": reviews,
                "avg_review": round(a["review_sum"] / reviews, 1) if reviews else None})
        return {"agents": rows, "looked": looked, "truncated": looked >= budget,
                "generated_at": int(time.time() * 1000)}


def _json_list(raw: str | None) -> list[Any]:
    try:
        v = json.loads(raw or "[]")
    except ValueError:
        return []
    return v if isinstance(v, list) else []
