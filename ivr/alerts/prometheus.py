"""The Prometheus alerting rules that mirror the alert rules (``deploy/prometheus/ivr-alerts.yml``), for
operators who run Prometheus beside the hotline. Made from the settings by :func:`rules_yaml`; the
committed file is the default settings' (a test keeps it equal), regenerate it with
``python -m ivr.alerts.prometheus > deploy/prometheus/ivr-alerts.yml`` (``--config`` for a deployment's).

Each rule reads the gauges ``GET /metrics`` exports (:mod:`ivr.cti.metrics`) and keeps the same
semantics: ``for`` is ``for_s``; the hysteresis band is an ``or`` with the alert's own ``ALERTS`` series
(once firing, it keeps firing while the value is still past ``clear_at``), and ``keep_firing_for`` is
``clear_for_s``. A windowed figure (service level, abandon rate) with fewer than ``min_calls`` calls
is not exported, so Prometheus sees no value and gives no verdict, as the evaluator does.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from fnmatch import fnmatchcase, translate
from typing import Any

import yaml

from ivr.alerts.config import EffectiveRule, effective
from ivr.alerts.evaluator import LABELS
from ivr.core.config import QUEUE_METRICS, AlertRule, Settings, load_settings

GROUP = "ivr-alerts"
HEADER = ("# Prometheus alerting rules mirroring the hotline's alert rules (docs/alerts.md).\n"
          "# Generated from the default settings by ivr/alerts/prometheus.py: do not edit; regenerate with\n"
          "#   python -m ivr.alerts.prometheus > deploy/prometheus/ivr-alerts.yml\n"
          "# Checked by promtool in tests/unit/test_alert_prometheus.py.\n")


def metric_expr(rule: EffectiveRule, selector: str) -> str:
    """The PromQL of the rule's value; ``selector`` the queue label matcher ("" for every queue)."""
    def m(name: str, *labels: str) -> str:
        inner = ",".join(x for x in (*labels, selector) if x)
        return f"{name}{{{inner}}}" if inner else name

    match rule.metric:
        case "service_level":
            return m("ivr_queue_service_level", f'threshold="{rule.threshold_s}"', f'window="{rule.window_s}"')
        case "abandon_rate":
            return m("ivr_queue_abandon_rate", f'window="{rule.window_s}"')
        case "longest_wait_s":
            return m("ivr_queue_longest_wait_seconds")
        case "waiting":
            return m("ivr_queue_waiting_calls")
        case "staffing_gap":
            return f"({m('ivr_queue_agents_required')} - {m('ivr_queue_agents_signed_in')})"
        case "webhook_backlog":
            return "sum(ivr_webhook_backlog)"
        case "dead_letters":
            return "ivr_webhook_dead_letters"
        case "worker_load":
            return "ivr_worker_load"
        case "speech_down":
            return "(1 - ivr_speech_up)"
    raise ValueError(f"no Prometheus expression for {rule.metric}")


def _num(v: float) -> str:
    return f"{v:g}"


def _duration(s: float) -> str:
    return f"{round(s)}s"


def alert(rule: EffectiveRule, selector: str, alertname: str) -> dict[str, Any]:
    value = metric_expr(rule, selector)
    op = "<" if rule.below else ">"
    on = "on(queue)" if rule.queue is not None else "on()"
    expr = f"{value} {op} {_num(rule.threshold)}"
    if rule.clear_at != rule.threshold:
        clear_op = "<" if rule.below else ">"
        expr = (f"({expr})\nor\n({value} {clear_op} {_num(rule.clear_at)}\n"
                f'  and {on} ALERTS{{alertname="{alertname}",alertstate="firing"}})')
    out: dict[str, Any] = {"alert": alertname, "expr": expr}
    if rule.for_s:
        out["for"] = _duration(rule.for_s)
    if rule.clear_for_s:
        out["keep_firing_for"] = _duration(rule.clear_for_s)
    where = "{{ $labels.queue }}: " if rule.queue is not None else ""
    label = LABELS.get(rule.metric, rule.metric)
    side = "below" if rule.below else "above"
    out["labels"] = {"severity": rule.severity, "rule": rule.name}
    out["annotations"] = {
        "summary": f"{where}{label} {{{{ $value }}}} {side} {_num(rule.threshold)}"
        if rule.metric != "speech_down" else "speech service down",
        "description": f"Mirrors the hotline's alert rule {rule.name} ({rule.metric}); it clears once back "
                       f"past {_num(rule.clear_at)} for {_duration(rule.clear_for_s)}."}
    return out


def _selector(rule: AlertRule, exclude: list[str]) -> str:
    parts = []
    if rule.queues != ["*"]:
        parts.append(f'queue=~"{_promql("|".join(_glob_re(g) for g in rule.queues))}"')
    if exclude:
        parts.append(f'queue!~"{_promql("|".join(re.escape(q) for q in exclude))}"')
    return ",".join(parts)


def _promql(pattern: str) -> str:
    """A regular expression inside a PromQL double-quoted string (its backslashes escaped)."""
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def _glob_re(glob: str) -> str:
    """A queue glob as an RE2 pattern Prometheus anchors itself."""
    return translate(glob).removeprefix("(?s:").removesuffix(")\\Z")


def rules(settings: Settings) -> dict[str, Any]:
    """The rules file as data: one alert per rule, and one per queue whose settings change the rule."""
    out: list[dict[str, Any]] = []
    probe = "\x00generic"  # a queue name no setting names: the rule as every unconfigured queue has it
    for r in settings.alerts.rules:
        if r.metric not in QUEUE_METRICS:
            e = effective(r, settings, None)
            if e is not None:
                out.append(alert(e, "", r.name))
            continue
        generic = effective(r.model_copy(update={"queues": ["*"]}), settings, probe)
        special: list[tuple[str, EffectiveRule | None]] = []
        for q in sorted(settings.routing.queues):
            if not any(fnmatchcase(q, g) for g in r.queues):
                continue  # the selector leaves it out
            e = effective(r, settings, q)
            if generic is None or e is None or e != replace(generic, queue=q):
                special.append((q, e))
        if generic is not None:
            out.append(alert(generic, _selector(r, [q for q, _ in special]), r.name))
        for q, e in special:
            if e is not None:
                out.append(alert(e, f'queue="{q}"', f"{r.name}_{re.sub(r'[^A-Za-z0-9_]', '_', q)}"))
    return {"groups": [{"name": GROUP, "rules": out}]}


class _Literal(str):
    pass


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks."""


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


_Dumper.add_representer(_Literal, _literal)


def rules_yaml(settings: Settings) -> str:
    data = rules(settings)
    for rule in data["groups"][0]["rules"]:
        if "\n" in rule["expr"]:
            rule["expr"] = _Literal(rule["expr"])
    return HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ivr.alerts.prometheus",
                                description="print the Prometheus alerting rules mirroring the alert rules")
    p.add_argument("--config", help="a settings file (default: the default settings)")
    args = p.parse_args(argv)
    settings = load_settings(args.config) if args.config else Settings()
    sys.stdout.write(rules_yaml(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
