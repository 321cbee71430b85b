"""What the log processors let through: no caller number in full, no secret, whatever the call site."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.core.logging import configure, get_logger, mask_number, mask_numbers

#: a caller number as SIP and the CRM write it: optional +, 8..15 digits, maybe separators
numbers = st.builds(lambda plus, digits, sep: plus + sep.join([digits[:3], digits[3:]]),
                    st.sampled_from(["", "+"]), st.text("0123456789", min_size=8, max_size=15),
                    st.sampled_from(["", "-", " ", "."]))
number_keys = st.sampled_from(["ani", "caller", "caller_id", "callback_number", "customer_number", "msisdn",
                               "phone", "from_number", "CALLER"])


@pytest.fixture
def json_log(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    configure("debug", "json")
    yield capsys
    structlog.reset_defaults()


def digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


@given(numbers, number_keys)
def test_a_number_under_a_number_key_keeps_only_its_last_two_digits(number: str, key: str) -> None:
    masked = mask_numbers(None, "info", {key: number})[key]
    assert digits(masked) == digits(number)[-2:]
    assert len(masked) == len(number)


@given(numbers, st.sampled_from(["sip:{}@10.0.0.1:5060", "<sips:{};user=phone@h>;tag=1", "tel:{}",
                                 'From: "A" <sip:{}@[::1]>', "dialing SIP:{}@trunk.example"]),
       st.sampled_from(["uri", "error", "why", "event_detail"]))
def test_a_number_in_a_uri_is_masked_under_any_key(number: str, template: str, key: str) -> None:
    masked = mask_numbers(None, "info", {key: template.format(number)})[key]
    assert digits(number) not in digits(masked)


def test_short_numbers_are_all_masked_and_other_values_left_alone() -> None:
    assert mask_number("1234") == "****"
    out = mask_numbers(None, "info", {"dnis": "1000", "uri": "sip:agent1@127.0.0.1:5090", "count": 12345678})
    assert out == {"dnis": "1000", "uri": "sip:agent1@127.0.0.1:5090", "count": 12345678}


FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # each input reads its own line


@FIXTURE_OK
@given(numbers)
def test_call_incoming_shows_no_full_caller_number(json_log: pytest.CaptureFixture[str], number: str) -> None:
    get_logger("t").info("call.incoming", ani=number, dnis="1000", uri=f"sip:{number}@127.0.0.1")
    line = json.loads(json_log.readouterr().err.strip().splitlines()[-1])
    assert digits(number) not in digits(json.dumps({k: v for k, v in line.items() if k != "timestamp"}))
    assert line["dnis"] == "1000"


@FIXTURE_OK
@given(st.text(min_size=4, max_size=40).filter(lambda s: s.strip() and s not in "***"),
       st.sampled_from(["token", "password", "redis_password", "Authorization", "pin", "card_pin", "otp",
                        "api_key", "cookie", "secret"]))
def test_secret_keys_are_masked(json_log: pytest.CaptureFixture[str], secret: str, key: str) -> None:
    get_logger("t").info("x", **{key: secret})
    line = json.loads(json_log.readouterr().err.strip().splitlines()[-1])
    assert line[key] == "***"


def test_a_traceback_shows_no_full_number(json_log: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError("dial sip:+821012345678@trunk failed")
    except RuntimeError:
        get_logger("t").exception("callback.failed")
    assert "821012345678" not in json_log.readouterr().err


@given(st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=%", min_size=0,
               max_size=40), st.sampled_from(["redis://:{}@10.0.0.5:6379/0", "https://crm:{}@crm.example/api",
                                              "error connecting to rediss://default:{}@h:6380"]))
def test_a_password_in_a_url_is_masked(tail: str, template: str) -> None:
    password = "Pw7" + tail  # a prefix the templates do not contain
    out = mask_numbers(None, "info", {"url": template.format(password)})["url"]
    assert password not in out and "***@" in out


def test_the_log_throttle_lets_one_line_per_key_and_period_through_and_counts_the_rest() -> None:
    from ivr.core.logging import LogThrottle

    now = [0.0]
    t = LogThrottle(every_s=10.0, max_keys=2, clock=lambda: now[0])
    assert t.allow("a") == (True, 0)
    assert [t.allow("a") for _ in range(3)] == [(False, 0)] * 3
    assert t.allow("b") == (True, 0)
    now[0] = 10.5
    assert t.allow("a") == (True, 3)  # the lines held back are counted on the next one
    t.allow("c")  # a third key: the oldest one remembered goes (bounded memory)
    assert len(t._seen) == 2
