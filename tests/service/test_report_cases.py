"""``ivr report cases`` against a real Redis: the store's paged read of the cases opened in a period
(cursors across pages, ties of one millisecond), and the report run as an operator runs it
(``python -m ivr.cli report cases``): one row per case with the first contact judged (on time, late,
never contacted and overdue, not yet due, reopened), the customer masked, and ``--summary``
agreeing with ``QueueStore.case_first_contact`` over the same period."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core.errors import BadRequest
from ivr.queues.stats import iso
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer

REPO = Path(__file__).resolve().parents[2]
PREFIX = "rc"
HOUR = 3_600_000
T0 = (int(time.time() * 1000) // 1000) * 1000 - 24 * HOUR  # a whole second, a day ago (all due by now)


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(f"var_dir: {tmp_path / 'var'}\nredis:\n  url: {redis_server.url}\n  prefix: {PREFIX}\n")
    return path


def report(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr.cli", "report", "cases", *args, "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def rows(text: str) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(text)))


async def open_case(store: QueueStore, *, tier: str = "urgent", at: int = T0, due_in: int = HOUR,
                    customer: str = "+4930123456", **kw: Any) -> dict[str, Any]:
    return await store.open_case(tier=tier, reason="no water since Monday", customer=customer, opened_by="ivr:demo",
                                 due_at_ms=at + due_in, now_ms=at, **kw)


async def a_day_of_cases(store: QueueStore) -> dict[str, str]:
    """Cases opened in [T0, T0 + 1 s) and two just outside; returns their ids by name."""
    ids: dict[str, str] = {}
    await open_case(store, at=T0 - 1)  # before the period
    ids["on_time"] = (await open_case(store, at=T0, owner="ada", hotline="demo"))["id"]
    ids["late"] = (await open_case(store, at=T0 + 1, customer="123"))["id"]
    ids["never"] = (await open_case(store, tier="important", at=T0 + 2, due_in=2 * HOUR, customer=""))["id"]
    ids["in_time"] = (await open_case(store, tier="normal", at=T0 + 3, due_in=48 * HOUR))["id"]
    ids["reopened"] = (await open_case(store, at=T0 + 4, call_id="call-1"))["id"]
    ids["closed"] = (await open_case(store, at=T0 + 5))["id"]
    await open_case(store, at=T0 + 1000)  # at the end of the period: excluded
    await store.set_case_status(ids["on_time"], "contacted", by="ada", now_ms=T0 + 600_000)        # 10 min
    await store.set_case_status(ids["late"], "contacted", by="ada", now_ms=T0 + 1 + 2 * HOUR)       # 2 h, late
    await store.set_case_status(ids["reopened"], "contacted", by="ada", now_ms=T0 + 4 + 1_800_000)  # 30 min
    await store.set_case_status(ids["reopened"], "resolved", by="ada", now_ms=T0 + HOUR)
    await store.set_case_status(ids["reopened"], "reopened", by="ada", due_at_ms=T0 + 30 * HOUR, now_ms=T0 + 2 * HOUR)
    await store.link_case_call(ids["reopened"], "call-2", by="ada")
    await store.set_case_status(ids["closed"], "closed", by="ada", now_ms=T0 + 60_000)  # never reached: not judged
    await store.case_deadlines(now_ms=T0 + 3 * HOUR)  # marks "never" (and the case before the period)
    return ids


async def test_the_store_pages_through_the_cases_opened_in_the_period(store: QueueStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    opened = [await open_case(store, at=T0 + i // 3) for i in range(8)]  # three per millisecond: ties
    await open_case(store, at=T0 - 1)
    await open_case(store, at=T0 + 3)
    runs = 0
    real = store._scripts.run

    async def counting(name: str, *args: Any) -> Any:
        nonlocal runs
        runs += name == "case_report"
        return await real(name, *args)

    monkeypatch.setattr(store._scripts, "run", counting)
    got = [c async for c in store.iter_case_report(since_ms=T0, until_ms=T0 + 3, page=3)]
    assert [c["id"] for c in got] == [c["id"] for c in opened]  # by opened_at, then id (CS1..CS8)
    assert len({c["id"] for c in got}) == 8 and runs == 3
    assert all(c["first_contact"] == "" and c["status"] == "open" for c in got)
    one_page = [c["id"] async for c in store.iter_case_report(since_ms=T0, until_ms=T0 + 3)]
    assert one_page == [c["id"] for c in got]
    assert [c async for c in store.iter_case_report(since_ms=T0 + 4, until_ms=T0 + 4)] == []
    with pytest.raises(BadRequest):
        [c async for c in store.iter_case_report(since_ms=-1, until_ms=T0)]
    with pytest.raises(BadRequest):
        [c async for c in store.iter_case_report(since_ms=T0, until_ms=T0 + 1, page=0)]


async def test_the_classes_are_those_case_first_contact_counts(store: QueueStore) -> None:
    ids = await a_day_of_cases(store)
    got = {c["id"]: c["first_contact"] async for c in store.iter_case_report(since_ms=T0, until_ms=T0 + 1000)}
    assert got == {ids["on_time"]: "met", ids["late"]: "late", ids["never"]: "overdue", ids["in_time"]: "",
                   ids["reopened"]: "met", ids["closed"]: ""}


async def test_report_cases_writes_one_row_per_case_opened_with_the_customer_masked(
        store: QueueStore, config: Path, tmp_path: Path) -> None:
    ids = await a_day_of_cases(store)
    out = tmp_path / "cases.csv"
    done = report(config, "--from", iso(T0 / 1000), "--to", iso((T0 + 1000) / 1000), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "ivr report cases: 6 rows written to" in done.stderr
    text = out.read_text()
    assert text.splitlines()[0] == ("id,tier,status,opened_at,due_at,contacted_at,first_contact_s,met,resolved_at,"
                                    "closed_at,reopened,owner,customer,hotline,opened_by,calls,overdue")
    got = {r["id"]: r for r in rows(text)}
    assert list(got) == [ids[n] for n in ("on_time", "late", "never", "in_time", "reopened", "closed")]
    on_time, late, never, in_time = got[ids["on_time"]], got[ids["late"]], got[ids["never"]], got[ids["in_time"]]
    reopened, closed = got[ids["reopened"]], got[ids["closed"]]
    assert (on_time["met"], on_time["first_contact_s"], on_time["overdue"]) == ("yes", "600", "no")
    assert on_time["opened_at"] == iso(T0 / 1000) and on_time["opened_at"].endswith("+00:00")
    assert on_time["due_at"] == iso((T0 + HOUR) / 1000) and on_time["contacted_at"] == iso((T0 + 600_000) / 1000)
    assert (on_time["owner"], on_time["hotline"], on_time["opened_by"], on_time["tier"]) == (
        "ada", "demo", "ivr:demo", "urgent")
    assert (late["met"], late["first_contact_s"], late["status"]) == ("no", "7200", "contacted")
    assert (never["met"], never["overdue"], never["first_contact_s"], never["contacted_at"]) == (
        "overdue", "yes", "", "")
    assert (in_time["met"], in_time["overdue"], in_time["status"]) == ("", "no", "open")
    assert (reopened["status"], reopened["reopened"], reopened["met"], reopened["first_contact_s"]) == (
        "reopened", "1", "yes", "1800")
    assert reopened["calls"] == "2" and reopened["resolved_at"] == iso((T0 + HOUR) / 1000)
    assert reopened["due_at"] == iso((T0 + 30 * HOUR) / 1000)
    assert (closed["met"], closed["closed_at"], closed["calls"]) == ("", iso((T0 + 60_000) / 1000), "0")
    # customer data is protected: every digit but the last 4 masked, nowhere the full number
    assert on_time["customer"] == "+******3456" and late["customer"] == "123" and never["customer"] == ""
    assert "+4930123456" not in text and "no water" not in text

    later = report(config, "--from", iso(time.time() + 60))
    assert later.returncode == 2 and "must be after --from" in later.stderr
    empty = report(config, "--from", iso(T0 / 1000 + 2), "--to", iso(T0 / 1000 + 3))
    assert empty.returncode == 0 and rows(empty.stdout) == [] and empty.stdout.startswith("id,tier,")


async def test_report_cases_summary_agrees_with_case_first_contact(store: QueueStore, config: Path) -> None:
    await a_day_of_cases(store)
    done = report(config, "--summary", "--from", iso(T0 / 1000), "--to", iso((T0 + 1000) / 1000))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == ("tier,opened,contacted,within_due,overdue_waiting,met,"
                                           "avg_first_contact_s,p90_first_contact_s")
    table = {r["tier"]: r for r in rows(done.stdout)}
    assert list(table) == ["urgent", "important", "normal", "all"]
    expected = await store.case_first_contact(since_ms=T0, until_ms=T0 + 1000)
    for tier, figures in expected.items():
        row = table[tier]
        for name in ("opened", "contacted", "within_due", "overdue_waiting"):
            assert int(row[name]) == figures[name], (tier, name)
        for name in ("met", "avg_first_contact_s"):
            want = figures[name]
            assert (row[name] == "") if want is None else abs(float(row[name]) - want) < 1e-3, (tier, name)
    assert expected["urgent"]["opened"] == 4 and expected["urgent"]["met"] == 2 / 3
    assert (table["urgent"]["met"], table["urgent"]["p90_first_contact_s"]) == ("0.6667", "7200")
    assert (table["important"]["met"], table["important"]["overdue_waiting"]) == ("0", "1")
    assert (table["normal"]["met"], table["normal"]["avg_first_contact_s"], table["normal"]["p90_first_contact_s"]) \
        == ("", "", "")
    assert table["all"] == {"tier": "all", "opened": "6", "contacted": "3", "within_due": "2", "overdue_waiting": "1",
                            "met": "0.5", "avg_first_contact_s": "3200",
                            "p90_first_contact_s": "7200"}


def test_report_cases_refuses_bad_dates_with_exit_2(config: Path) -> None:
    bad = report(config, "--from", "last tuesday")
    assert bad.returncode == 2 and "not an ISO 8601 date or time: 'last tuesday'" in bad.stderr
    backwards = report(config, "--summary", "--from", "2024-05-02", "--to", "2024-05-01")
    assert backwards.returncode == 2 and "must be after --from" in backwards.stderr
    ancient = report(config, "--from", "1900-01-01T00:00:00+00:00", "--to", "1900-01-02T00:00:00+00:00")
    assert ancient.returncode == 2 and "between 1970 and 5138" in ancient.stderr
