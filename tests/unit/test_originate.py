"""Click-to-dial, one module at a time: the request's validation, the idempotency digests, how a
customer's refusal becomes the record's outcome, and the tones the agent hears."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from ivr.calls.originate import failure_tone, outcome_of_customer, ringback_tone
from ivr.core.errors import BadRequest
from ivr.cti.originate import Originate, _idempotency
from ivr.dialplan.destinations import transfer_allowed


@pytest.mark.parametrize("body", [
    {"number": "+821012345678"}, {"number": "01012345678", "agent_id": "a.1_x-2"},
    {"number": "1234*#", "queue": "sales"}])
def test_valid_requests(body: dict[str, str]) -> None:
    assert Originate.model_validate(body).number == body["number"]


@pytest.mark.parametrize("body", [
    {}, {"number": ""}, {"number": "+82 10 1234"}, {"number": "sip:a@b"}, {"number": "1" * 33},
    {"number": "+8210\n"}, {"number": 821012345678}, {"number": "+8210", "agent_id": "a b"},
    {"number": "+8210", "queue": "x" * 65}, {"number": "+8210", "extra": True}, {"number": "+8210;user=phone"}])
def test_invalid_requests(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Originate.model_validate(body)


def test_the_allowlist_is_the_transfer_one() -> None:
    assert transfer_allowed("+821012345678", ["+8210*"])
    assert not transfer_allowed("+8210123*", ["+821?"]) and not transfer_allowed("+15550001", ["+8210*"])
    assert not transfer_allowed("+821012345678", [])


def _request(key: str | None) -> object:
    return make_mocked_request("POST", "/api/v1/calls", headers={} if key is None else {"Idempotency-Key": key})


def test_idempotency_digests() -> None:
    req = Originate(number="+821012345678", agent_id="a1")
    assert _idempotency(_request(None), "crm", req, "a1") == ("", "")  # type: ignore[arg-type]
    key, what = _idempotency(_request("k-1"), "crm", req, "a1")  # type: ignore[arg-type]
    assert len(key) == len(what) == 64 and "k-1" not in key
    assert _idempotency(_request("k-1"), "other", req, "a1")[0] != key  # type: ignore[arg-type]
    other = Originate(number="+821099999999", agent_id="a1")
    assert _idempotency(_request("k-1"), "crm", other, "a1") == (key, _idempotency(  # type: ignore[arg-type]
        _request("k-2"), "crm", other, "a1")[1])  # type: ignore[arg-type]
    for bad in ("", "a b", "x" * 129, "é"):
        with pytest.raises(BadRequest):
            _idempotency(_request(bad), "crm", req, "a1")  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "outcome"), [(486, "busy"), (600, "busy"), (603, "failed"), (404, "failed"),
                                               (480, "failed"), (503, "failed")])
def test_a_refusal_is_busy_or_failed(code: int, outcome: str) -> None:
    got = outcome_of_customer(code)
    assert got.outcome == outcome and got.agent_state == "available"
    assert got.reason == ("customer_busy" if outcome == "busy" else f"customer_rejected_{code}")


def test_tones_are_mono_16_bit_at_the_clock_rate_and_cached(tmp_path: Path) -> None:
    for make, seconds in ((ringback_tone, 3.0), (failure_tone, 3.0)):
        path = make(tmp_path, 8000)
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
            assert abs(w.getnframes() / 8000 - seconds) < 0.05
        mtime = path.stat().st_mtime_ns
        assert make(tmp_path, 8000) == path and path.stat().st_mtime_ns == mtime
