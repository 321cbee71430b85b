"""The CRM connector's pure parts: call variables (masked ones left out), caller-number formats,
requests from templates, records from JSON replies, and its settings."""

from __future__ import annotations

import json

import pytest

from ivr.core.config import CrmLookup, CrmSettings, Settings
from ivr.cti.crm import allowed_host, call_context, caller_formats, masked, records_of, render_body, request_for


def lookup(**kw: object) -> CrmLookup:
    base: dict[str, object] = {"name": "by_phone", "url": "https://crm.example.com/api/contacts?phone={ani}"}
    return CrmLookup.model_validate({**base, **kw})


def test_masked_values_are_recognised() -> None:
    assert masked("****") and masked("****34") and masked("**")
    assert not masked("1234") and not masked("*") and not masked("12**") and not masked("")


def test_the_call_context_leaves_masked_variables_out_and_the_call_fields_win() -> None:
    ctx = call_context({"call_id": "c1", "ani": "+821012345678", "dnis": "1588", "queue": "billing",
                        "journey": {"data": {"account": "778899", "pin": "****", "card": "****12",
                                             "ani": "spoofed", "empty": "", "vip": True}}}, "KR")
    assert ctx["account"] == "778899" and ctx["vip"] == "true"
    assert "pin" not in ctx and "card" not in ctx and "empty" not in ctx
    assert ctx["ani"] == "+821012345678" and ctx["ani_e164"] == "+821012345678"
    assert ctx["ani_national"] == "01012345678" and ctx["ani_digits"] == "821012345678"
    assert ctx["call_id"] == "c1" and ctx["queue"] == "billing" and "hotline" not in ctx


@pytest.mark.parametrize(("ani", "region", "e164", "national"), [
    ("01012345678", "KR", "+821012345678", "01012345678"),
    ("+15555550100", None, "+15555550100", "5555550100"),
    ("5555550100", "US", "+15555550100", "5555550100"),
])
def test_caller_number_formats(ani: str, region: str | None, e164: str, national: str) -> None:
    out = caller_formats(ani, region)
    assert out["ani"] == ani and out["ani_e164"] == e164 and out["ani_national"] == national


def test_a_number_that_does_not_parse_keeps_its_raw_forms_only() -> None:
    assert caller_formats("anonymous", None) == {"ani": "anonymous", "ani_digits": ""}
    assert caller_formats("5555550100", None) == {"ani": "5555550100", "ani_digits": "5555550100"}


def test_requests_are_built_from_templates_with_values_encoded() -> None:
    lk = lookup(url="https://crm.example.com/api/contacts?phone={ani}&x=1")
    req = request_for(lk, {"ani": "+1 555/0100?&"})
    assert req is not None and req.method == "GET" and req.body is None
    assert req.url == "https://crm.example.com/api/contacts?phone=%2B1%20555%2F0100%3F%26&x=1"
    post = lookup(name="acct", needs="account", method="POST", url="https://crm.example.com/search",
                  body={"q": {"number": "{account}", "tags": ["{queue}", 3]}, "limit": 5})
    req = request_for(post, {"account": "42", "queue": "billing"})
    assert req is not None and req.body == {"q": {"number": "42", "tags": ["billing", 3]}, "limit": 5}
    assert request_for(post, {"ani": "1"}) is None  # its key variable is not set
    assert render_body({"a": "{x}{{y}}"}, {"x": "1"}) == {"a": "1{y}"}


def test_the_cache_digest_depends_on_the_request_not_on_who_asks() -> None:
    lk = lookup()
    a, b, c = (request_for(lk, {"ani": n}) for n in ("1", "1", "2"))
    assert a is not None and b is not None and c is not None
    assert a.digest == b.digest != c.digest and len(a.digest) == 64


def test_records_come_from_a_path_with_id_name_and_fields_and_are_deduplicated() -> None:
    lk = lookup(records="data.items", id_field="contact.id", name_field="contact.name",
                fields={"tier": "contact.tier", "city": "address.city"})
    reply = {"data": {"items": [
        {"contact": {"id": 7, "name": "Ada", "tier": "gold"}, "address": {"city": "Seoul"}},
        {"contact": {"id": 7, "name": "Ada again"}},
        {"contact": {"name": "no id"}},
        {"contact": {"id": {"nested": 1}, "name": "bad id"}},
        "not an object",
        {"contact": {"id": "B2", "name": None}}]}}
    assert records_of(reply, lk) == [
        {"id": "7", "name": "Ada", "fields": {"tier": "gold", "city": "Seoul"}},
        {"id": "B2", "name": "", "fields": {}}]


def test_one_object_is_one_record_and_anything_else_none() -> None:
    lk = lookup(records="result")
    assert records_of({"result": {"id": "x", "name": "X"}}, lk) == [{"id": "x", "name": "X", "fields": {}}]
    assert records_of({"result": None}, lk) == [] and records_of({"other": 1}, lk) == []
    assert records_of([{"id": 1}], lookup()) == [{"id": "1", "name": "", "fields": {}}]


def test_allowed_host_is_the_literal_host_and_port_of_the_template() -> None:
    assert allowed_host("https://crm.example.com/x?phone={ani}") == "crm.example.com:443"
    assert allowed_host("http://127.0.0.1:8081/{account}") == "127.0.0.1:8081"
    assert allowed_host("http://[::1]:9000/a") == "[::1]:9000"


def test_settings_refuse_templated_hosts_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="literal host"):
        lookup(url="https://{host}/contacts")
    with pytest.raises(ValueError, match="literal host"):
        lookup(link="javascript:alert(1)")
    with pytest.raises(ValueError, match="unique"):
        CrmSettings(lookups=[lookup(), lookup()])
    assert CrmSettings().timeout_ms == 800 and CrmSettings().cache_ttl_s == 60


def test_lookups_keyed_by_ivr_variables_come_before_the_caller_number() -> None:
    from ivr.cti.crm import CrmConnector

    s = CrmSettings(lookups=[lookup(name="p1"), lookup(name="a1", needs="account"),
                             lookup(name="p2", needs="ani_e164"), lookup(name="a2", needs="customer.id")])
    assert [lk.name for lk in CrmConnector(s, store=None).lookups] == ["a1", "a2", "p1", "p2"]  # type: ignore[arg-type]


def test_crm_header_secrets_reach_the_child_processes_and_nothing_else() -> None:
    s = Settings(crm={"lookups": [lookup(headers={"Authorization": "Bearer k-123"}).model_dump(mode="python")]},
                 webhooks={"endpoints": [{"name": "crm", "url": "https://crm.example.com/hook",
                                          "secret": "s" * 20, "previous_secret": "p" * 20}]})
    assert "k-123" not in repr(s) and "s" * 20 not in repr(s)
    data = json.loads(s.dump_for_children())
    assert data["crm"]["lookups"][0]["headers"] == {"Authorization": "Bearer k-123"}
    assert data["webhooks"]["endpoints"][0]["secret"] == "s" * 20
    assert data["webhooks"]["endpoints"][0]["previous_secret"] == "p" * 20
    again = Settings.model_validate(data)
    assert again.crm.lookups[0].headers["Authorization"].get_secret_value() == "Bearer k-123"


def test_the_crm_budget_must_fit_in_the_pop_wait() -> None:
    lookups = [lookup().model_dump(mode="python")]
    with pytest.raises(ValueError, match="pop_wait_ms"):
        Settings(crm={"lookups": lookups, "timeout_ms": 1500}, api={"pop_wait_ms": 1500})
    assert Settings(crm={"lookups": lookups, "timeout_ms": 1200}, api={"pop_wait_ms": 1500}).crm.timeout_ms == 1200
    assert Settings(crm={"timeout_ms": 3000}).crm.lookups == []  # no CRM: nothing to check
