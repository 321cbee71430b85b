"""CallRecord's checks: each field and the callback number, against a recording fake store."""

from __future__ import annotations

import asyncio
import os
import wave
from pathlib import Path
from typing import Any, cast

import pytest

from ivr.calls.call_record import (
    VARIABLES_MAX,
    CallRecord,
    case_variables,
    check_csat,
    check_disposition,
    check_number,
    check_variables,
    check_voicemail,
)
from ivr.core.config import Settings
from ivr.core.errors import BadRequest
from ivr.core.media_store import voicemail_file
from ivr.dialplan.journey import Journey
from ivr.queues.store import QueueStore


def wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var")


def code_of(exc: pytest.ExceptionInfo[BadRequest]) -> str:
    return exc.value.code


@pytest.mark.parametrize("value,expected", [(1, 1), (5, 5), (3, 3), ("4", 4)])
def test_csat_accepts_1_to_5(value: Any, expected: int) -> None:
    assert check_csat(value) == expected


@pytest.mark.parametrize("value", [0, 6, -1, True, 3.0, "x", "", "10", None, [3]])
def test_csat_refuses_anything_else(value: Any) -> None:
    with pytest.raises(BadRequest) as exc:
        check_csat(value)
    assert code_of(exc) == "record.csat_invalid"


@pytest.mark.parametrize("raw,clean", [
    ("+821012345678", "+821012345678"),
    ("010-1234-5678", "01012345678"),
    ("(02) 555.0100", "025550100"),
    ("123", "123"),
    ("1" * 20, "1" * 20),
])
def test_callback_numbers_are_digits_with_optional_plus(raw: str, clean: str) -> None:
    assert check_number(raw) == clean


@pytest.mark.parametrize("raw", [
    "12", "1" * 21, "", "anonymous", "sip:123@evil.example", "123;transport=tcp", "123@host",
    "<sip:123>", "123\r\nVia: x", "12 3\"", "+", "++123", "12+34", "1" * 40, None, 1234567,
])
def test_callback_numbers_that_could_inject_or_are_not_numbers_are_refused(raw: Any) -> None:
    with pytest.raises(BadRequest) as exc:
        check_number(raw)
    assert code_of(exc) == "callback.number_invalid"


def test_voicemail_under_var_voicemail_is_accepted_with_its_resolved_path(settings: Settings) -> None:
    f = wav(settings.var_dir / "voicemail" / "sales" / "c1.wav")
    out = check_voicemail({"mailbox": "sales", "path": str(f), "seconds": 3, "ended_by": "terminator"}, settings)
    assert out == {"mailbox": "sales", "path": str(f.resolve()), "seconds": 3.0, "ended_by": "terminator"}


def test_voicemail_outside_the_voicemail_dir_is_refused(settings: Settings, tmp_path: Path) -> None:
    outside = wav(tmp_path / "secret.wav")
    inside_then_up = settings.var_dir / "voicemail" / ".." / ".." / "secret.wav"
    link = settings.var_dir / "voicemail" / "link.wav"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, link)
    not_wav = settings.var_dir / "voicemail" / "notes.txt"
    not_wav.write_text("x")
    missing = settings.var_dir / "voicemail" / "missing.wav"
    for path in (outside, inside_then_up, link, not_wav, missing, Path("voicemail/x.wav")):
        with pytest.raises(BadRequest) as exc:
            check_voicemail({"mailbox": "sales", "path": str(path), "seconds": 1.0, "ended_by": "hangup"}, settings)
        assert code_of(exc) == "record.voicemail_path", path
    assert voicemail_file(inside_then_up, settings) is None


@pytest.mark.parametrize("meta", [
    "c1.wav",
    {"mailbox": "sales", "path": "x.wav", "seconds": 1.0},
    {"mailbox": "sales", "path": "x.wav", "seconds": 1.0, "ended_by": "bored"},
    {"mailbox": "sales/../x", "path": "x.wav", "seconds": 1.0, "ended_by": "hangup"},
    {"mailbox": "sales", "path": "x.wav", "seconds": -1.0, "ended_by": "hangup"},
    {"mailbox": "sales", "path": "x.wav", "seconds": "1", "ended_by": "hangup"},
    {"mailbox": "sales", "path": "x.wav", "seconds": 1.0, "ended_by": "hangup", "extra": 1},
])
def test_voicemail_fields_are_checked(meta: Any, settings: Settings) -> None:
    with pytest.raises(BadRequest) as exc:
        check_voicemail(meta, settings)
    assert code_of(exc) == "record.voicemail_invalid"


def test_variables_are_named_strings_bounded_in_number_and_size() -> None:
    assert check_variables({"order_id": "A-1", "crm.tier": "gold"}) == {"order_id": "A-1", "crm.tier": "gold"}
    for bad in ({"order id": "1"}, {"n": 1}, {"n": None}, {"": "x"}, ["a"], {"n": "x" * 2000},
                {f"v{i}": "x" for i in range(VARIABLES_MAX + 1)}):
        with pytest.raises(BadRequest) as exc:
            check_variables(bad)
        assert code_of(exc) == "record.variables_invalid", bad
    with pytest.raises(BadRequest) as exc:
        check_variables({f"v{i}": "x" * 1000 for i in range(20)})
    assert code_of(exc) == "record.too_large"


def test_disposition_is_a_short_code() -> None:
    assert check_disposition("resolved") == "resolved"
    for bad in ("", "two words", 3, "x" * 65):
        with pytest.raises(BadRequest):
            check_disposition(bad)


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, args, kw))
            if name == "request_callback":
                return kw["callback_id"], 90_000_000_000_000, True
            return None
        return record


def record_of(store: FakeStore, settings: Settings) -> CallRecord:
    return CallRecord(cast(QueueStore, store), "c1", settings=settings)


async def test_save_writes_every_checked_field(settings: Settings) -> None:
    store = FakeStore()
    f = wav(settings.var_dir / "voicemail" / "sales" / "c1.wav")
    await record_of(store, settings).save({
        "csat": "5", "variables": {"order": "77"}, "disposition": "resolved",
        "voicemail": {"mailbox": "sales", "path": str(f), "seconds": 2.5, "ended_by": "silence"}})
    names = [c[0] for c in store.calls]
    assert names == ["record_variables", "record_field", "record_voicemail", "record_csat"]
    assert store.calls[3][1] == ("c1", 5)
    assert store.calls[1][1] == ("c1", "disposition", "resolved")


async def test_a_bad_or_unknown_field_writes_nothing(settings: Settings) -> None:
    store = FakeStore()
    rec = record_of(store, settings)
    with pytest.raises(BadRequest) as exc:
        await rec.save({"csat": 4, "colour": "blue"})
    assert code_of(exc) == "record.field_unknown" and "colour" in exc.value.message
    with pytest.raises(BadRequest) as exc:
        await rec.save({"csat": 4, "variables": {"n": 5}})
    assert code_of(exc) == "record.variables_invalid"
    assert store.calls == []


async def test_request_callback_sends_the_clean_number_and_the_journey(settings: Settings) -> None:
    store = FakeStore()
    journey = Journey(plan="main", plan_version="v1", language="en")
    journey.step("offer", "callback", digit="1")
    cb_id = await record_of(store, settings).request_callback(queue="billing", number="010-555-0100",
                                                              journey=journey)
    name, args, kw = store.calls[0]
    assert name == "request_callback" and args == ("c1",) and kw["callback_id"] == cb_id
    assert kw["number"] == "0105550100" and kw["queue"] == "billing"
    assert kw["journey"]["steps"][0]["digit"] == "1"
    for queue, number, code in (("bill ing", "123", "callback.queue_invalid"),
                                ("billing", "123>", "callback.number_invalid")):
        with pytest.raises(BadRequest) as exc:
            await record_of(store, settings).request_callback(queue=queue, number=number, journey=journey)
        assert code_of(exc) == code
    assert len(store.calls) == 1


def test_case_variables_name_the_newest_unfinished_case() -> None:
    now = 1_800_000_000_000
    newest = {"id": "CS9", "tier": "urgent", "status": "open", "overdue": False, "due_at": now - 1}
    older = {"id": "CS2", "tier": "normal", "status": "contacted", "overdue": True, "due_at": now - 999}
    assert case_variables([newest, older], now_ms=now) == {
        "case.id": "CS9", "case.tier": "urgent", "case.status": "open", "case.overdue": "true", "case.count": "2"}
    # overdue only while it waits for contact: marked by the scan, or past due before the scan ran
    assert case_variables([older], now_ms=now)["case.overdue"] == "false"
    assert case_variables([{**newest, "due_at": now + 1}], now_ms=now)["case.overdue"] == "false"
    assert case_variables([{**newest, "status": "reopened", "overdue": True, "due_at": now + 1}],
                          now_ms=now)["case.overdue"] == "true"
    assert case_variables([], now_ms=now) == {}


async def test_a_slow_case_lookup_does_not_hold_the_call(settings: Settings) -> None:
    class Slow(FakeStore):
        async def open_cases_for(self, customer: str, limit: int = 5) -> list[dict[str, Any]]:
            self.calls.append(("open_cases_for", (customer,), {"limit": limit}))
            await asyncio.sleep(30)
            return []

    store = Slow()
    rec = record_of(store, settings)
    assert await rec.repeat_caller("+15550001", timeout_s=0.05) == {}
    assert [c[0] for c in store.calls] == ["open_cases_for"]
    assert await rec.repeat_caller("anonymous") == {} and len(store.calls) == 1  # no number: not looked up
