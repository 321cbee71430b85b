"""Transcripts, quality scores, manual reviews and the per-agent quality report over the API
(docs/quality.md).

Access is the recording's (:func:`ivr.cti.recording_access.may_hear`): whoever may hear a call may
read what was said in it and its quality checks. A refusal is a 403 and an audit entry
``recording.denied``; every transcript read (``transcript.view``), search (``transcript.search``),
review (``review.added``) and report (``quality.report``) is audited too. Reviews are for
supervisors and admins; the report shows an agent its own row only. Search text, transcripts and
comments never go to the logs.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core.errors import BadRequest, Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.cti import cursor
from ivr.cti.agents import AGENT_ID
from ivr.cti.auth import User
from ivr.cti.calls import time_param
from ivr.cti.context import SETTINGS, STORE, body, limit_param, user
from ivr.cti.recording_access import may_hear
from ivr.quality.rules import CHANNELS, Word, find_phrase, normalise
from ivr.queues.quality import QualityStore

log = get_logger(__name__)

RECORDING_ID = r"^R[0-9a-f]{20}$"
_RECORDING_ID = re.compile(RECORDING_ID)
_AGENT = re.compile(AGENT_ID)
_QUEUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
Q_MAX_CHARS = 200
SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 100
SNIPPET_WORDS = 6  # words shown before and after a match
#: a review's comment: lines (line feeds only), no other control character
COMMENT = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]*$"
CSV_COLUMNS = ("agent_id", "calls", "talk_s", "scored", "avg_score", "min_score", "flagged", "flags", "reviews",
               "avg_review")


class ReviewAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = Field(ge=0, le=100, description="the reviewer's score, 0-100")
    comment: str = Field("", max_length=2000, pattern=COMMENT, description="what the reviewer says to the agent "
                         "(lines; no other control characters)")


def _quality(request: web.Request) -> QualityStore:
    return QualityStore(request.app[STORE])


def _recording_id(request: web.Request) -> str:
    rid = request.match_info["recording_id"]
    if not _RECORDING_ID.fullmatch(rid):
        raise NotFound(f"no recording {rid[:40]!r}", code="recording.not_found")
    return rid


async def _audit(request: web.Request, who: User, action: str, target: str, call_id: str = "",
                 **detail: str) -> None:
    if action == "recording.denied":  # as the recording routes say it (ivr.cti.recordings)
        detail["route"] = request.method + " " + request.path.rsplit("/", 1)[-1][:40]
    await request.app[STORE].audit(action, by=who.id, role=who.role, target=target, call_id=call_id, detail=detail)


async def _heard(request: web.Request, what: str) -> tuple[User, str, dict[str, Any]]:
    """The caller, the recording id and record, when the caller may hear it (else 403, audited)."""
    who = await user(request)
    rid = _recording_id(request)
    rec = await request.app[STORE].get_recording(rid)
    if rec is None:
        raise NotFound(f"no recording {rid}", code="recording.not_found")
    if not may_hear(who, rec, request.app[SETTINGS]):
        await _audit(request, who, "recording.denied", rid, str(rec.get("call_id", "")), what=what)
        raise Forbidden(f"{who.role} {who.id} may not hear recording {rid}", code="auth.forbidden")
    return who, rid, rec


def _words(raw: list[Any]) -> list[dict[str, Any]]:
    out = []
    for w in raw:
        if isinstance(w, list) and len(w) >= 3:
            out.append({"word": str(w[0]), "start": float(w[1]), "end": float(w[2]),
                        "conf": float(w[3]) if len(w) > 3 else 1.0})
    return out


async def get_transcript(request: web.Request) -> web.Response:
    who, rid, rec = await _heard(request, "transcript")
    t = await _quality(request).get_transcript(rid)
    if t is None:
        raise NotFound(f"recording {rid} has no transcript (not transcribed yet, or transcription is off)",
                       code="transcript.not_found")
    await _audit(request, who, "transcript.view", rid, str(rec.get("call_id", "")))
    return web.json_response({
        "recording_id": rid, "call_id": t.get("call_id", ""), "agent_id": t.get("agent_id", ""),
        "queue": t.get("queue", ""), "started_at": t["started_at"], "duration_ms": t["duration_ms"],
        "status": t.get("status", ""), "error": t.get("error", ""), "language": t.get("language", ""),
        "model": t.get("model", ""), "decoded_at": t["decoded_at"],
        "channels": {ch: {"text": t.get(f"text_{ch}", ""), "words": _words(t[f"words_{ch}"])} for ch in CHANNELS}})


async def get_quality(request: web.Request) -> web.Response:
    who, rid, rec = await _heard(request, "quality")
    qs = _quality(request)
    q = await qs.get_quality(rid) or {}
    reviews = await qs.reviews(rid)
    await _audit(request, who, "transcript.view", rid, str(rec.get("call_id", "")), what="quality")
    count = int(q.get("reviews") or 0)
    return web.json_response({
        "recording_id": rid, "call_id": rec.get("call_id", ""), "agent_id": rec.get("agent_id", ""),
        "queue": rec.get("queue", ""), "score": q.get("score"), "flags": q.get("flags", []),
        "checks": q.get("checks", []), "rules": q.get("rules", ""), "scored_at": q.get("scored_at") or None,
        "review_count": count, "review_avg": round(int(q.get("review_sum") or 0) / count, 1) if count else None,
        "reviews": reviews})


async def add_review(request: web.Request) -> web.Response:
    who = await user(request)
    if who.role not in ("supervisor", "admin"):
        rid = request.match_info["recording_id"]
        await _audit(request, who, "recording.denied", rid[:40], what="review")
        raise Forbidden(f"role {who.role} may not review calls", code="auth.forbidden")
    who, rid, rec = await _heard(request, "review")
    data = await body(request, ReviewAdd)
    review = await _quality(request).add_review(rid, by=who.id, role=who.role, score=data.score,
                                                comment=data.comment)
    await _audit(request, who, "review.added", rid, str(rec.get("call_id", "")), score=str(data.score))
    return web.json_response(review, status=201)


def _filter(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    raw = request.query.get(name, "")
    if raw and not pattern.fullmatch(raw):
        raise BadRequest(f"{name} is not a valid {name} name", code="request.invalid")
    return raw


def _period(request: web.Request) -> tuple[int, int]:
    """``since`` .. ``until`` (excluded) as epoch ms; an empty period when until is not after since."""
    since = time_param(request, "since")
    until = time_param(request, "until")
    lo = since or 0
    return lo, max(lo, until if until is not None else cursor.MAX_MS)


def _snippets(t: dict[str, Any], q: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ch in CHANNELS:
        words = [Word.from_list(w) for w in t[f"words_{ch}"] if isinstance(w, list) and len(w) >= 3]
        for start, end in find_phrase(words, q)[:3]:
            i = next(n for n, w in enumerate(words) if w.start >= start)
            j = max(n for n, w in enumerate(words) if w.end <= end)
            text = " ".join(w.word for w in words[max(0, i - SNIPPET_WORDS):j + 1 + SNIPPET_WORDS])
            out.append({"channel": ch, "start": round(start, 2), "end": round(end, 2), "text": text})
    return out


async def search_transcripts(request: web.Request) -> web.Response:
    who = await user(request)
    settings = request.app[SETTINGS]
    raw_q = request.query.get("q", "")
    if len(raw_q) > Q_MAX_CHARS:
        raise BadRequest(f"q: at most {Q_MAX_CHARS} characters", code="request.invalid")
    terms = normalise(raw_q)
    agent = _filter(request, "agent", _AGENT)
    queue = _filter(request, "queue", _QUEUE)
    lo, hi = _period(request)
    limit = limit_param(request, SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX)
    if who.role == "agent":  # its own calls only
        if agent and agent != who.id:
            await _audit(request, who, "recording.denied", f"agent:{agent}", what="search")
            raise Forbidden("an agent searches its own calls only", code="auth.forbidden")
        agent = who.id
    if (who.role == "supervisor" and not settings.recording.supervisors_hear_all) or (
            who.role == "agent" and not settings.recording.agents_hear_own):
        await _audit(request, who, "recording.denied", "transcripts", what="search")
        raise Forbidden(f"{who.role} {who.id} may not read transcripts", code="auth.forbidden")
    filters = [" ".join(terms), agent, queue, lo, hi, who.id if who.role == "agent" else ""]
    after = None
    if "cursor" in request.query:
        after = cursor.decode_cursor(filters, request.query["cursor"], _RECORDING_ID)
    qs = _quality(request)
    page = await qs.search(terms=sorted(set(terms)), phrase=" ".join(terms) if len(terms) > 1 else "",
                           agent_id=agent, queue=queue, from_ms=lo, to_ms=hi, after=after, limit=limit)
    store = request.app[STORE]
    hits = []
    for rid, started in page.hits:
        rec = await store.get_recording(rid)
        t = await qs.get_transcript(rid)
        if rec is None or t is None or not may_hear(who, rec, settings):
            continue
        q = await qs.get_quality(rid) or {}
        hits.append({"recording_id": rid, "call_id": t.get("call_id", ""), "agent_id": t.get("agent_id", ""),
                     "queue": t.get("queue", ""), "started_at": started, "duration_ms": t["duration_ms"],
                     "score": q.get("score"), "flags": q.get("flags", []),
                     "matches": _snippets(t, raw_q) if terms else []})
    await _audit(request, who, "transcript.search", "transcripts", terms=str(len(terms)), agent=agent, queue=queue,
                 hits=str(len(hits)))
    nxt = cursor.encode_cursor(filters, page.next) if page.next else None
    return web.json_response({"hits": hits, "next_cursor": nxt})


def report_csv(rows: list[dict[str, Any]]) -> str:
    """The report as CSV (one row per agent; ``flags`` as ``name=count`` pairs joined by ``;``)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        flags = r.get("flags") or {}
        w.writerow([_cell(r["agent_id"]), r["calls"], r["talk_s"], r["scored"], _blank(r["avg_score"]),
                    _blank(r["min_score"]), sum(flags.values()), ";".join(f"{k}={v}" for k, v in flags.items()),
                    r["reviews"], _blank(r["avg_review"])])
    return out.getvalue()


def _blank(v: Any) -> Any:
    return "" if v is None else v


def _cell(v: str) -> str:
    """No cell a spreadsheet would run as a formula."""
    return "'" + v if v[:1] in ("=", "+", "-", "@") else v


async def agent_report(request: web.Request) -> web.Response:
    who = await user(request)
    lo, hi = _period(request)
    agent = _filter(request, "agent", _AGENT)
    fmt = request.query.get("format", "")
    if fmt not in ("", "json", "csv"):
        raise BadRequest("format must be json or csv", code="request.invalid")
    if who.role == "agent":
        if agent and agent != who.id:
            await _audit(request, who, "recording.denied", f"agent:{agent}", what="report")
            raise Forbidden("an agent sees its own quality only", code="auth.forbidden")
        agent = who.id
    report = await _quality(request).report(from_ms=lo, to_ms=hi, agent_id=agent)
    await _audit(request, who, "quality.report", f"agent:{agent}" if agent else "agents",
                 agents=str(len(report["agents"])))
    want_csv = fmt == "csv" or (not fmt and "text/csv" in request.headers.get("Accept", ""))
    if want_csv:
        return web.Response(text=report_csv(report["agents"]), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="quality-agents.csv"'})
    return web.json_response({**report, "since": lo, "until": hi})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/recordings/{recording_id}/transcript", get_transcript),
        web.get("/api/v1/recordings/{recording_id}/quality", get_quality),
        web.post("/api/v1/recordings/{recording_id}/reviews", add_review),
        web.get("/api/v1/transcripts", search_transcripts),
        web.get("/api/v1/quality/agents", agent_report),
    ]
