"""The pure evaluator (ivr.alerts.evaluator) on its own: hysteresis both ways, no verdict, rules that
go away, and the messages. The Redis side is in tests/service/test_alerts.py."""

from __future__ import annotations

from ivr.alerts.config import EffectiveRule, rules_for
from ivr.alerts.evaluator import evaluate, fmt, message
from ivr.core.config import AlertRule, Settings

RULE = AlertRule(name="sl", metric="service_level", threshold=0.8, clear_at=0.85, for_s=60, clear_for_s=120,
                 severity="critical")


def sl_rule() -> list[EffectiveRule]:
    return rules_for(Settings(alerts={"rules": [RULE]}), "billing")


def test_below_rules_raise_under_the_threshold_and_clear_above_clear_at() -> None:
    rules = sl_rule()
    key = "sl|billing"
    c = evaluate(rules, {key: 0.7}, {}, {}, 1000)
    assert c.pending == {key: 1000} and not c.raise_
    c = evaluate(rules, {key: 0.7}, {}, {key: 1000}, 60_999)
    assert not c and not c.raise_  # still waiting, nothing to change
    c = evaluate(rules, {key: 0.7}, {}, {key: 1000}, 61_000)
    assert [a["rule"] for a in c.raise_] == ["sl"]
    assert c.raise_[0]["message"] == "billing: service level (10 s) 70% below 80%"
    active = {key: {"rule": "sl", "metric": "service_level", "queue": "billing"}}
    c = evaluate(rules, {key: 0.82}, active, {}, 70_000)  # above the threshold, under clear_at: stays
    assert not c
    c = evaluate(rules, {key: 0.9}, active, {}, 80_000)
    assert c.pending == {key: 80_000}
    c = evaluate(rules, {key: 0.83}, active, {key: 80_000}, 90_000)  # back into the band: the clear timer stops
    assert c.unpend == [key] and not c.clear
    c = evaluate(rules, {key: 0.9}, active, {key: 80_000}, 200_000)
    assert [x["key"] for x in c.clear] == [key] and c.clear[0]["value"] == 0.9


def test_no_value_is_no_verdict() -> None:
    rules = sl_rule()
    key = "sl|billing"
    assert evaluate(rules, {key: None}, {}, {key: 5}, 10**9).unpend == [key]
    active = {key: {"rule": "sl", "metric": "service_level", "queue": "billing"}}
    c = evaluate(rules, {key: None}, active, {}, 10**9)
    assert not c.clear and not c.raise_  # the alert stays until its clear condition


def test_a_timer_from_the_future_restarts_now() -> None:
    c = evaluate(sl_rule(), {"sl|billing": 0.5}, {}, {"sl|billing": 10**12}, 5000)
    assert c.pending == {"sl|billing": 5000}


def test_alerts_and_timers_of_rules_no_longer_in_force_go() -> None:
    active = {"gone|billing": {"rule": "gone", "metric": "waiting", "queue": "billing"}}
    c = evaluate(sl_rule(), {}, active, {"gone|sales": 1}, 10)
    assert [x["key"] for x in c.clear] == ["gone|billing"] and c.clear[0]["value"] is None
    assert c.clear[0]["message"] == "billing: gone no longer in force"
    assert "gone|sales" in c.unpend


def test_values_as_the_wallboard_shows_them() -> None:
    assert fmt("abandon_rate", 0.125) == "12%" and fmt("longest_wait_s", 130.4) == "130 s"
    assert fmt("waiting", 12.0) == "12" and fmt("worker_load", None) == "—"
    system = rules_for(Settings(), None)
    speech = next(r for r in system if r.metric == "speech_down")
    assert message(speech, 1.0) == "speech service down"
    workers = next(r for r in system if r.metric == "worker_load")
    assert message(workers, 0.95) == "worker load 95% above 90%"
