"""``ivr report calls``, ``intervals`` and ``cases``: CSV exports for supervisors and spreadsheets.

``calls``: one row per call that **ended** in [--from, --to) (as a CDR is written when a call ends),
found through the ``call.ended`` events of the event stream, with the fields of the call's record
(blank but for the event's own fields once the record expired, see ``routing.call_ttl_s``).

``intervals``: one row per queue and statistics interval starting in [--from, --to), with the
counters and figures defined in :mod:`ivr.queues.stats`.

``cases``: one row per complaint case **opened** in [--from, --to) (the customer's number masked to
its last 4 digits), or with ``--summary`` the time to first contact per tier like a service level:
the classes of :meth:`QueueStore.iter_case_report` and the figures of
:func:`ivr.queues.store.first_contact_figures`, as ``QueueStore.case_first_contact`` (the counts API)
gives them, plus the 90th percentile.

All read the Redis of the settings (``--config`` YAML or ``--settings`` JSON, ``IVR_...``), write
as they read (any size), and take ISO 8601 dates or date-times (without an offset: this host's
local time). Times in the output are ISO 8601 UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from redis.exceptions import RedisError

from ivr.core.case_states import CASE_TIERS
from ivr.core.config import Settings, load_settings
from ivr.core.errors import BadRequest
from ivr.core.event_catalogue import parse
from ivr.queues.connection import close, connect
from ivr.queues.stats import Interval, StatsConfig, figures, iso, parse_time
from ivr.queues.store import QueueStore, StreamEvent, first_contact_figures

CALL_COLUMNS = ("call_id", "started_at", "ended_at", "ani", "dnis", "hotline", "language", "plan_version",
                "queue", "priority", "queued_at", "answered_at", "agent_id", "offers", "waited_s", "talk_s",
                "duration_s", "outcome", "end_reason", "csat", "disposition", "callback_id", "direction",
                "hold_s", "hold_count", "handle_s", "transfers", "transferred_from")

CASE_COLUMNS = ("id", "tier", "status", "opened_at", "due_at", "contacted_at", "first_contact_s", "met",
                "resolved_at", "closed_at", "reopened", "owner", "customer", "hotline", "opened_by", "calls",
                "overdue")

CASE_SUMMARY_COLUMNS = ("tier", "opened", "contacted", "within_due", "overdue_waiting", "met",
                        "avg_first_contact_s", "p90_first_contact_s")

#: A case's ``first_contact`` class (lua/lib/cases.lua CS.first_contact_class) as its ``met`` column.
MET = {"met": "yes", "late": "no", "overdue": "overdue"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("report", help="export call records and queue interval statistics as CSV")
    rsub = rp.add_subparsers(dest="report", required=True)
    calls = rsub.add_parser("calls", help="one row per call that ended in the period")
    intervals = rsub.add_parser("intervals", help="one row per queue and statistics interval of the period")
    intervals.add_argument("--queue", action="append", help="only this queue (repeatable; default: every queue)")
    cases = rsub.add_parser("cases", help="one row per complaint case opened in the period (customer masked)")
    cases.add_argument("--summary", action="store_true",
                       help="instead: the time to first contact per tier (and all), like a service level")
    for p, func in ((calls, report_calls), (intervals, report_intervals), (cases, report_cases)):
        p.add_argument("--from", dest="start", required=True, type=_time,
                       help="start, ISO 8601 (2024-05-01, 2024-05-01T08:00:00+09:00); no offset = local time")
        p.add_argument("--to", dest="end", type=_time, help="end (excluded), ISO 8601; default: now")
        p.add_argument("-o", "--output", help="CSV file to write (default: standard output)")
        p.add_argument("--config", help="YAML settings file (as given to ivr run)")
        p.add_argument("--settings", help="settings JSON written by ivr run (<var>/run/settings.json)")
        p.set_defaults(func=func)


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def report_calls(args: argparse.Namespace) -> int:
    return _run(args, _write_calls)


def report_intervals(args: argparse.Namespace) -> int:
    return _run(args, _write_intervals)


def report_cases(args: argparse.Namespace) -> int:
    return _run(args, _write_case_summary if args.summary else _write_cases, epoch_only=True)


def _run(args: argparse.Namespace, write: Any, *, epoch_only: bool = False) -> int:
    start, end = args.start, args.end if args.end is not None else time.time()
    if end <= start:
        print(f"ivr report: --to ({iso(end)}) must be after --from ({iso(start)})", file=sys.stderr)
        return 2
    if epoch_only and not (0 <= start and end < 10**11):  # the cases' times are epoch ms below 10**14
        print("ivr report: --from and --to must be between 1970 and 5138", file=sys.stderr)
        return 2
    path = args.settings or args.config
    settings = load_settings(Path(path) if path else None)
    with _output(args.output) as out:
        try:
            rows = asyncio.run(write(settings, args, start, end, csv.writer(out)))
        except RedisError as exc:
            print(f"ivr report: Redis at {settings.redis.dsn}: {exc}", file=sys.stderr)
            return 1
        except BadRequest as exc:
            print(f"ivr report: {exc}", file=sys.stderr)
            return 2
    print(f"ivr report {args.report}: {rows} rows written to {args.output or 'standard output'}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        yield f


def _store(settings: Settings) -> QueueStore:
    return QueueStore(connect(settings.redis), settings.redis.prefix, settings.routing.events_maxlen,
                      StatsConfig.from_routing(settings.routing))


async def _write_calls(settings: Settings, args: argparse.Namespace, start: float, end: float, w: Any) -> int:
    store = _store(settings)
    n = 0
    try:
        w.writerow(CALL_COLUMNS)
        async for ev, call in store.iter_ended_calls(int(start * 1000), int(end * 1000)):
            w.writerow(call_row(ev, call))
            n += 1
    finally:
        await close(store.redis)
    return n


def call_row(ev: StreamEvent, call: Mapping[str, str] | None) -> list[str]:
    """The CSV row of one ended call: from its record, or from its ``call.ended`` event alone."""
    d = ev.data
    if call is None:
        try:  # the catalogue's call.ended; an entry missing its fields gives what it has
            src: Mapping[str, Any] = asdict(parse(ev.type, d))
        except ValueError:
            src = d
        row = {"call_id": src.get("call_id", ""), "ended_at": iso(float(src.get("ts") or 0) / 1000),
               "queue": src.get("queue", ""), "agent_id": src.get("agent_id", ""), "outcome": src.get("outcome", ""),
               "end_reason": src.get("reason", ""), "duration_s": _num(src.get("duration_s"))}
        return [str(row.get(c, "")) for c in CALL_COLUMNS]

    def ms(name: str) -> float | None:
        v = call.get(name)
        return float(v) if v not in (None, "") else None

    queued, answered, ended = ms("queued_at"), ms("answered_at"), ms("ended_at")
    wait_end = answered or ms("left_queue_at") or (ended if call.get("outcome") in ("abandoned", "lost") else None)
    talk_end = ms("agent_left_at") or ended
    row = {**call, "end_reason": call.get("end_reason", d.get("reason", ""))}
    for name in ("started_at", "ended_at", "queued_at", "answered_at"):
        t = ms(name)
        row[name] = iso(t / 1000) if t is not None else ""
    waited = ms("waited_ms")  # measured once, when the agent answered (the pop and the queue stats show it too)
    if waited is not None and answered is not None:
        row["waited_s"] = _num(waited / 1000)
    else:
        row["waited_s"] = _num((wait_end - queued) / 1000) if queued is not None and wait_end is not None else ""
    hold = call_hold_s(call)
    connected = (talk_end - answered) / 1000 if answered is not None and talk_end is not None else None
    # talk + hold = the time the agent was connected; AHT = talk + hold + wrap-up (handle_s, without wrap-up
    # here: the record does not keep it, the interval statistics do)
    row["talk_s"] = _num(max(0.0, connected - hold)) if connected is not None else ""
    row["hold_s"] = _num(hold) if hold or call.get("hold_count") else ""
    row["handle_s"] = _num(connected) if connected is not None else ""
    row["direction"] = call.get("direction") or "inbound"
    row["transfers"] = str(len(_json_list(call.get("transfers")))) if call.get("transfers") else ""
    started = ms("started_at")
    row["duration_s"] = _num((ended - started) / 1000) if ended is not None and started is not None else ""
    return [str(row.get(c, "")) for c in CALL_COLUMNS]


def call_hold_s(call: Mapping[str, str]) -> float:
    """Seconds the call spent on hold: the record's ``hold_s`` (closed holds) plus the hold still
    under way when the call ended (``held_at``, kept only while held, to ``ended_at``). Unreadable
    values count as none."""
    try:
        hold = max(0.0, float(call.get("hold_s") or 0))
    except ValueError:
        hold = 0.0
    try:
        if call.get("held_at") and call.get("ended_at"):
            hold += max(0.0, float(call["ended_at"]) - float(call["held_at"])) / 1000
    except ValueError:
        pass
    return hold


def _json_list(raw: str | None) -> list[Any]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def interval_columns(thresholds: tuple[int, ...]) -> list[str]:
    return ["queue", "interval_start", "length_s", "offered", "answered",
            *(f"answered_within_{t}s" for t in thresholds), *(f"sl1_{t}s" for t in thresholds),
            *(f"sl2_{t}s" for t in thresholds), "asa_s", "max_answer_wait_s", "abandoned", "short_abandoned",
            "abandon_rate", "avg_abandon_wait_s", "max_abandon_wait_s", "timeouts", "left", "callbacks", "lost",
            "handled", "aht_s", "avg_hold_s", "transfer_abandoned"]


def interval_row(queue: str, iv: Interval, thresholds: tuple[int, ...]) -> list[str]:
    f = figures(iv.counts, thresholds)
    sl = f["service_level"]
    return [queue, iso(iv.start_s), str(iv.length_s), *(str(f[c]) for c in ("offered", "answered")),
            *(str(sl[str(t)]["answered_within"]) for t in thresholds),
            *(_num(sl[str(t)]["sl1"]) for t in thresholds), *(_num(sl[str(t)]["sl2"]) for t in thresholds),
            _num(f["asa_s"]), _num(f["max_answer_wait_ms"] / 1000), str(f["abandoned"]), str(f["short_abandoned"]),
            _num(f["abandon_rate"]), _num(f["avg_abandon_wait_s"]), _num(f["max_abandon_wait_ms"] / 1000),
            *(str(f[c]) for c in ("timeouts", "left", "callbacks", "lost", "handled")), _num(f["aht_s"]),
            _num(f["avg_hold_s"]), str(f["transfer_abandoned"])]


async def _write_intervals(settings: Settings, args: argparse.Namespace, start: float, end: float, w: Any) -> int:
    store = _store(settings)
    thresholds = store.stats_config.service_level_s
    n = 0
    try:
        queues = args.queue or sorted(await store.queue_names())
        w.writerow(interval_columns(thresholds))
        for queue in queues:
            async for iv in store.iter_intervals(queue, int(start), int(end)):
                w.writerow(interval_row(queue, iv, thresholds))
                n += 1
    finally:
        await close(store.redis)
    return n


async def _write_cases(settings: Settings, args: argparse.Namespace, start: float, end: float, w: Any) -> int:
    store = _store(settings)
    n = 0
    try:
        w.writerow(CASE_COLUMNS)
        async for case in store.iter_case_report(since_ms=_ms(start), until_ms=_ms(end)):
            w.writerow(case_row(case))
            n += 1
    finally:
        await close(store.redis)
    return n


def case_row(case: Mapping[str, Any]) -> list[str]:
    """The CSV row of one case (as :meth:`QueueStore.iter_case_report` gives it)."""
    def at(name: str) -> str:
        t = case.get(name)
        return iso(t / 1000) if t is not None else ""

    fc = case.get("first_contact_ms")
    row = {"id": case.get("id", ""), "tier": case.get("tier", ""), "status": case.get("status", ""),
           **{name: at(name) for name in ("opened_at", "due_at", "contacted_at", "resolved_at", "closed_at")},
           "first_contact_s": _num(fc / 1000) if fc is not None and case.get("contacted_at") is not None else "",
           "met": MET.get(case.get("first_contact") or "", ""), "reopened": str(case.get("reopened", 0)),
           "owner": case.get("owner", ""), "customer": mask_number(str(case.get("customer") or "")),
           "hotline": case.get("hotline", ""), "opened_by": case.get("opened_by", ""),
           "calls": str(len(case.get("calls") or [])), "overdue": "yes" if case.get("overdue") else "no"}
    return [str(row[c]) for c in CASE_COLUMNS]


def mask_number(number: str) -> str:
    """The customer's number with every digit but the last 4 as ``*`` (customer data is protected:
    the report is a file that travels): ``+4930123456`` -> ``+******3456``."""
    hide = max(0, sum(ch in "0123456789" for ch in number) - 4)
    out = []
    for ch in number:
        if hide and ch in "0123456789":
            out.append("*")
            hide -= 1
        else:
            out.append(ch)
    return "".join(out)


async def _write_case_summary(settings: Settings, args: argparse.Namespace, start: float, end: float,
                              w: Any) -> int:
    """One row per tier and ``all``: the totals of the cases' first-contact classes (as
    ``case_first_contact.lua`` counts them) through :func:`first_contact_figures`, plus the 90th
    percentile of the first contacts (nearest rank; one number per contacted case is kept)."""
    store = _store(settings)
    groups = (*CASE_TIERS, "all")
    totals = {g: {"opened": 0, "contacted": 0, "within_due": 0, "overdue_waiting": 0, "first_contact_ms": 0}
              for g in groups}
    firsts: dict[str, list[int]] = {g: [] for g in groups}
    try:
        async for case in store.iter_case_report(since_ms=_ms(start), until_ms=_ms(end)):
            if case.get("tier") not in CASE_TIERS:
                continue
            cls = case.get("first_contact") or ""
            for g in (case["tier"], "all"):
                t = totals[g]
                t["opened"] += 1
                if cls in ("met", "late"):
                    t["contacted"] += 1
                    t["first_contact_ms"] += case.get("first_contact_ms") or 0
                    t["within_due"] += cls == "met"
                    firsts[g].append(case.get("first_contact_ms") or 0)
                elif cls == "overdue":
                    t["overdue_waiting"] += 1
    finally:
        await close(store.redis)
    w.writerow(CASE_SUMMARY_COLUMNS)
    for g in groups:
        f = first_contact_figures(totals[g])
        p90 = p90_ms(firsts[g])
        w.writerow([g, *(str(f[c]) for c in ("opened", "contacted", "within_due", "overdue_waiting")),
                    _num(f["met"]), _num(f["avg_first_contact_s"]), _num(p90 / 1000 if p90 is not None else None)])
    return len(groups)


def p90_ms(values: list[int]) -> int | None:
    """The 90th percentile (nearest rank: the smallest value at or above 90 % of them), None for none."""
    if not values:
        return None
    values.sort()
    return values[(9 * len(values) + 9) // 10 - 1]  # rank ceil(0.9 n), in integers


def _ms(epoch_s: float) -> int:
    return round(epoch_s * 1000)


def _num(v: Any) -> str:
    """A figure for the CSV: blank when undefined, else up to 3 decimals (4 for ratios)."""
    if v is None or v == "":
        return ""
    x = float(v)
    return str(round(x, 4)).removesuffix(".0") if abs(x) < 1 else f"{x:.3f}".rstrip("0").rstrip(".")
