"""Webhooks' pure parts: the signature and its verification, the backoff, what a reply means, the
event body, subscriptions, and the settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from ivr.core.config import WebhookEndpoint, WebhookSettings
from ivr.cti.webhooks import (
    backoff_s,
    event_entry,
    outcome_of,
    redact,
    retry_after_s,
    sign,
    signature_header,
    verify,
    wants,
)
from ivr.queues.store import stream_event

SECRET = "whsec-0123456789abcdef"


def endpoint(name: str = "crm", events: list[str] | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(name=name, url="https://crm.example.com/hooks?token=abc", secret=SECRET,
                           events=events or ["*"])


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"1-0"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == expected
    assert signature_header([SECRET], "1700000000", body) == f"v1={expected}"
    two = signature_header([SECRET, "old-secret-0123456789"], "1700000000", body)
    assert two.startswith(f"v1={expected}, v1=") and two.count("v1=") == 2


def test_a_receiver_accepts_a_fresh_signed_body_only() -> None:
    body, ts = b'{"id":"1-0","type":"call.ended"}', "1700000000"
    header = signature_header([SECRET], ts, body)
    assert verify(SECRET, header, ts, body, now=1700000100)
    assert not verify(SECRET, header, ts, body + b" ", now=1700000100)  # body changed
    assert not verify("another-secret-0123", header, ts, body, now=1700000100)
    assert not verify(SECRET, header, "1700000001", body, now=1700000100)  # timestamp changed
    assert not verify(SECRET, header, ts, body, now=1700000000 + 301)  # too old: a replay
    assert not verify(SECRET, header, "abc", body, now=1700000100)
    assert not verify(SECRET, "v0=" + sign(SECRET, ts, body), ts, body, now=1700000100)
    rotating = signature_header(["new-secret-0123456789", SECRET], ts, body)
    assert verify(SECRET, rotating, ts, body, now=1700000100)  # either secret verifies while rotating


def test_backoff_doubles_per_failure_is_capped_and_jittered_down() -> None:
    exact = [backoff_s(n, base_s=1, cap_s=300, jitter=0) for n in range(1, 12)]
    assert exact == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff_s(0, base_s=1, cap_s=300, jitter=0) == 1
    assert backoff_s(10_000, base_s=1, cap_s=300, jitter=0) == 300
    rnd = random.Random(7)
    samples = [backoff_s(4, base_s=1, cap_s=300, jitter=0.5, rnd=rnd) for _ in range(200)]
    assert all(4 <= s <= 8 for s in samples) and len(set(samples)) > 100


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "done"), (201, "done"), (204, "done"), (299, "done"),
    (400, "dead"), (401, "dead"), (403, "dead"), (404, "dead"), (410, "dead"), (422, "dead"),
    (408, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (301, "retry"),
    (None, "retry")])
def test_what_a_reply_means(status: int | None, outcome: str) -> None:
    assert outcome_of(status) == outcome


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("120") == 120
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 30
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("") is None


def test_subscriptions_take_types_and_globs() -> None:
    assert wants(["*"], "agent.state") and wants(["call.*"], "call.ended") and not wants(["call.*"], "agent.state")
    assert wants(["call.disposition", "call.ended"], "call.disposition") and not wants(["call.ended"], "call.end")
    assert not wants(["*"], "")


def test_the_body_of_an_event_and_who_gets_it() -> None:
    fields = {"type": "call.offered", "data": json.dumps({"call_id": "c1", "ani": "+1555", "ts": 1700000000123}),
              "journey": json.dumps({"plan": "main", "data": {"pin": "****"}})}
    e = event_entry(stream_event(("1700000000123-0", fields)), [endpoint("a"), endpoint("b", ["call.ended"]),
                                                endpoint("c", ["call.*"])])
    assert e.id == "1700000000123-0" and e.type == "call.offered" and e.endpoints == ("a", "c")
    assert e.at == "2023-11-14T22:13:20.123Z"
    assert json.loads(e.body) == {"id": "1700000000123-0", "type": "call.offered", "occurred_at": e.at,
                                  "data": {"call_id": "c1", "ani": "+1555", "ts": 1700000000123,
                                           "journey": {"plan": "main", "data": {"pin": "****"}}}}
    broken = event_entry(stream_event(("1700000000000-5", {"data": "{not json"})), [endpoint()])
    assert broken.endpoints == () and json.loads(broken.body)["data"] == {}
    assert broken.at == "2023-11-14T22:13:20.000Z"  # no ts: the time of the event id


def test_urls_are_shown_without_credentials_or_query() -> None:
    assert redact("https://user:pw@crm.example.com:8443/hooks/in?token=abc#x") == "https://crm.example.com:8443/hooks/in"


def test_webhook_settings() -> None:
    s = WebhookSettings()
    assert (s.max_attempts, s.backoff_base_s, s.backoff_cap_s, s.endpoints) == (24, 1.0, 300.0, [])
    with pytest.raises(ValueError, match="16 characters"):
        WebhookEndpoint(name="crm", url="https://crm.example.com/h", secret="short")
    with pytest.raises(ValueError, match="unique"):
        WebhookSettings(endpoints=[endpoint(), endpoint()])
    with pytest.raises(ValueError):
        WebhookEndpoint(name="c.r.m", url="https://crm.example.com/h", secret=SECRET)  # names have no dots
    with pytest.raises(ValueError):
        WebhookEndpoint(name="crm", url="ftp://crm.example.com/h", secret=SECRET)
    assert "abc" not in repr(endpoint().secret) and SECRET not in repr(endpoint())


def test_the_test_vector_of_the_docs_holds() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    lines = doc.splitlines()
    header = next(line for line in lines if line.startswith("X-Ivr-Signature: "))
    timestamp = next(line for line in lines if line.startswith("X-Ivr-Timestamp: ")).split(": ")[1]
    body = next(line for line in lines if line.startswith('{"id":"1700000000123-0"')).encode()
    assert verify("whsec-example-0123456789", header.split(": ")[1], timestamp, body, now=int(timestamp))
