"""The pure part of the alerts: given the rules in force, the measured values and what Redis holds
(active alerts, hysteresis timers), which alerts to raise and clear at ``now_ms``.

For each rule and queue (the key ``rule|queue``):

* no active alert: the value breaches the threshold -> a timer starts (or goes on); once it has held
  ``for_s`` the alert is raised. A value that no longer breaches stops the timer.
* an active alert: the value is back past ``clear_at`` (the hysteresis band) -> a clear timer starts;
  once that has held ``clear_for_s`` the alert clears. A value between ``clear_at`` and the threshold,
  or beyond it again, stops the clear timer: the alert stays.
* no value (``None``: too few calls in the window, no forecast, nothing measured): no verdict; the
  timer stops, an active alert stays.
* an active alert whose rule is no longer in force (switched off, removed, the queue's override)
  clears at once.

Nothing here reads a clock or Redis: the tests drive it with any ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ivr.alerts.config import EffectiveRule
from ivr.queues.alerts_store import Changes, alert_key

UNITS = {"service_level": "%", "longest_wait_s": "s", "abandon_rate": "%", "waiting": "", "staffing_gap": "",
         "webhook_backlog": "", "dead_letters": "", "worker_load": "%", "speech_down": ""}
LABELS = {"service_level": "service level", "longest_wait_s": "longest wait", "abandon_rate": "abandon rate",
          "waiting": "callers waiting", "staffing_gap": "agents short of the need", "webhook_backlog":
          "webhook backlog", "dead_letters": "webhook dead letters", "worker_load": "worker load",
          "speech_down": "speech service down"}


def fmt(metric: str, v: float | None) -> str:
    """A value as the wallboard shows it (shares as percentages)."""
    if v is None:
        return "—"
    unit = UNITS.get(metric, "")
    if unit == "%":
        return f"{v * 100:.0f}%"
    if unit == "s":
        return f"{v:.0f} s"
    return f"{v:g}"


def message(rule: EffectiveRule, value: float | None) -> str:
    """``billing: service level 72% below 90%`` / ``speech service down``."""
    where = f"{rule.queue}: " if rule.queue else ""
    if rule.metric == "speech_down":
        return f"{where}speech service down"
    label = LABELS.get(rule.metric, rule.metric)
    if rule.metric == "service_level" and rule.threshold_s is not None:
        label = f"service level ({rule.threshold_s} s)"
    side = "below" if rule.below else "above"
    return f"{where}{label} {fmt(rule.metric, value)} {side} {fmt(rule.metric, rule.threshold)}"


def clear_message(rule_name: str, queue: str, metric: str, value: float | None, clear_at: float) -> str:
    where = f"{queue}: " if queue else ""
    if value is None:
        return f"{where}{rule_name} no longer in force"
    return f"{where}{LABELS.get(metric, metric)} back to {fmt(metric, value)} (clears at {fmt(metric, clear_at)})"


def alert_fields(rule: EffectiveRule, value: float) -> dict[str, Any]:
    """What a raised alert carries (the store adds id, raised_at and the rest)."""
    return {"key": alert_key(rule.name, rule.queue), "rule": rule.name, "metric": rule.metric,
            "queue": rule.queue or "", "severity": rule.severity, "value": round(float(value), 4),
            "threshold": rule.threshold, "clear_at": rule.clear_at,
            "direction": "below" if rule.below else "above", "message": message(rule, value), "sound": rule.sound,
            "threshold_s": rule.threshold_s}


def evaluate(rules: Sequence[EffectiveRule], values: Mapping[str, float | None],
             active: Mapping[str, Mapping[str, Any]], pending: Mapping[str, int], now_ms: int) -> Changes:
    """The changes at ``now_ms``: ``values`` and ``pending`` are keyed like :func:`alert_key`; ``active``
    holds the active alerts by key (their ``metric``, ``clear_at``)."""
    out = Changes()
    in_force: set[str] = set()
    for rule in rules:
        key = alert_key(rule.name, rule.queue)
        in_force.add(key)
        value = values.get(key)
        since = pending.get(key)
        if key in active:
            holds = value is not None and rule.cleared(value)
            hold_for = rule.clear_for_s
        else:
            holds = value is not None and rule.breached(value)
            hold_for = rule.for_s
        if not holds:
            if since is not None:
                out.unpend.append(key)
            continue
        start = since if since is not None and since <= now_ms else now_ms
        assert value is not None
        if now_ms - start >= hold_for * 1000:
            if key in active:
                out.clear.append({"key": key, "value": round(float(value), 4),
                                  "message": clear_message(rule.name, rule.queue or "", rule.metric, value,
                                                           rule.clear_at)})
            else:
                out.raise_.append(alert_fields(rule, value))
        elif since != start:
            out.pending[key] = start
    for key, a in active.items():
        if key not in in_force:
            out.clear.append({"key": key, "value": None,
                              "message": clear_message(str(a.get("rule", "")), str(a.get("queue", "")),
                                                       str(a.get("metric", "")), None, 0.0)})
    for key in pending:
        if key not in in_force:
            out.unpend.append(key)
    return out
