"""The alert rules in force for a queue (or for the whole system): ``alerts.rules`` with the queue's
changes (``routing.queues.<q>.alerts``) and the defaults each metric takes from the settings.

Shared by the evaluator, the API (``GET /api/v1/alerts/rules``, the queues' thresholds) and the
Prometheus rules file, so that the wallboard, the alerts and Prometheus use one set of thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ivr.core.config import QUEUE_METRICS, AlertRule, Settings

#: The direction of each metric: the alert is raised *below* the threshold for these, above for the rest.
BELOW = frozenset({"service_level"})
#: A threshold left unset: the service level's comes from the queue's target; the others' are here.
DEFAULT_THRESHOLD = {"longest_wait_s": 60.0, "abandon_rate": 0.1, "waiting": 5.0, "staffing_gap": 0.0,
                     "webhook_backlog": 1000.0, "dead_letters": 0.0, "worker_load": 0.9, "speech_down": 0.5}


@dataclass(frozen=True)
class EffectiveRule:
    """A rule as it applies to one queue (``queue`` None: a system rule)."""

    name: str
    metric: str
    queue: str | None
    threshold: float
    clear_at: float
    below: bool
    for_s: float
    clear_for_s: float
    window_s: int
    min_calls: int
    severity: str
    sound: bool
    threshold_s: int | None = None  # service_level: the answer-time threshold the share is measured at

    def breached(self, value: float) -> bool:
        return value < self.threshold if self.below else value > self.threshold

    def cleared(self, value: float) -> bool:
        """Back past the clear level (the hysteresis band)."""
        return value >= self.clear_at if self.below else value <= self.clear_at

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "queue": self.queue, "threshold": self.threshold,
                "clear_at": self.clear_at, "direction": "below" if self.below else "above", "for_s": self.for_s,
                "clear_for_s": self.clear_for_s, "window_s": self.window_s, "min_calls": self.min_calls,
                "severity": self.severity, "sound": self.sound, "threshold_s": self.threshold_s}


def _applies(rule: AlertRule, queue: str) -> bool:
    return any(fnmatchcase(queue, pattern) for pattern in rule.queues)


def effective(rule: AlertRule, settings: Settings, queue: str | None) -> EffectiveRule | None:
    """``rule`` for ``queue`` (None for a system metric), or None when it does not apply or is off."""
    is_queue_metric = rule.metric in QUEUE_METRICS
    if is_queue_metric != (queue is not None):
        return None
    threshold, clear_at, severity, enabled = rule.threshold, rule.clear_at, rule.severity, rule.enabled
    threshold_s = None
    if queue is not None:
        if not _applies(rule, queue):
            return None
        change = settings.routing.queues[queue].alerts.get(rule.name) if queue in settings.routing.queues else None
        if change is not None:
            enabled = change.enabled if change.enabled is not None else enabled
            if change.threshold is not None:
                threshold, clear_at = change.threshold, change.clear_at  # a new threshold brings its own band
            elif change.clear_at is not None:
                clear_at = change.clear_at
            severity = change.severity or severity
        if rule.metric == "service_level":
            share, threshold_s = settings.routing.target(queue)
            threshold = share if threshold is None else threshold
    if not enabled:
        return None
    t = float(threshold if threshold is not None else DEFAULT_THRESHOLD.get(rule.metric, 0.0))
    c = float(clear_at) if clear_at is not None else t
    below = rule.metric in BELOW
    if (below and c < t) or (not below and c > t):
        c = t  # a clear level on the wrong side of the threshold would never clear: the threshold itself
    return EffectiveRule(rule.name, rule.metric, queue, t, c, below, rule.for_s, rule.clear_for_s, rule.window_s,
                         rule.min_calls, severity, rule.sound, threshold_s)


def rules_for(settings: Settings, queue: str | None) -> list[EffectiveRule]:
    """Every rule in force for ``queue`` (None: the system rules)."""
    out = [effective(r, settings, queue) for r in settings.alerts.rules]
    return [r for r in out if r is not None]
