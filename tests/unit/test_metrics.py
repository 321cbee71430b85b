"""The metrics registry of one app: the families a snapshot gives, the webhook ones only with an outbox,
and the label values kept bounded."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ivr.cti.metrics import ApiMetrics, Snapshot


def samples(m: ApiMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_snapshot_with_a_webhook_outbox() -> None:
    m = ApiMetrics()
    m.snapshot.snapshot = Snapshot(active_calls=4, waiting={"billing": 2, "sales": 0},
                                   longest_wait_s={"billing": 12.5, "sales": 0.0}, agents={"available": 3},
                                   desktops=2, webhook_backlog={"crm": 7, "audit": 0}, dead_letters=1)
    s = samples(m)
    assert s[("ivr_active_calls", ())] == 4
    assert s[("ivr_queue_waiting_calls", (("queue", "billing"),))] == 2
    assert s[("ivr_queue_longest_wait_seconds", (("queue", "billing"),))] == 12.5
    assert s[("ivr_queue_waiting_calls", (("queue", "sales"),))] == 0
    assert s[("ivr_agents", (("state", "available"),))] == 3
    assert s[("ivr_desktop_sockets", ())] == 2
    assert s[("ivr_webhook_backlog", (("endpoint", "crm"),))] == 7
    assert s[("ivr_webhook_backlog", (("endpoint", "audit"),))] == 0
    assert s[("ivr_webhook_dead_letters", ())] == 1


def test_without_an_outbox_there_are_no_webhook_figures() -> None:
    m = ApiMetrics()
    m.snapshot.snapshot = Snapshot(active_calls=1)
    s = samples(m)
    assert s[("ivr_active_calls", ())] == 1
    assert not [name for name, _ in s if name.startswith("ivr_webhook")]


def test_pop_latency_buckets_and_request_labels() -> None:
    m = ApiMetrics()
    for seconds in (0.0005, 0.003, 0.04, 1.7, 3.0):
        m.observe_pop(seconds)
    m.observe_request("GET", "/api/v1/agents/{agent_id}", 200, 0.002)
    m.observe_request("BREW", "unmatched", 405, 0.001)  # any method name a client makes up
    m.observe_request("GET", "/api/v1/events", 101, 3600.0)  # a WebSocket's life is not a request time
    s = samples(m)
    assert s[("ivr_pop_latency_seconds_bucket", (("le", "0.001"),))] == 1
    assert s[("ivr_pop_latency_seconds_bucket", (("le", "0.005"),))] == 2
    assert s[("ivr_pop_latency_seconds_bucket", (("le", "2.0"),))] == 4
    assert s[("ivr_pop_latency_seconds_count", ())] == 5
    assert s[("ivr_http_requests_total", (("method", "other"), ("route", "unmatched"), ("status", "405")))] == 1
    assert s[("ivr_http_requests_total", (("method", "GET"), ("route", "/api/v1/events"), ("status", "101")))] == 1
    assert ("ivr_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/v1/events"))) not in s


def test_each_app_has_its_own_registry() -> None:
    a, b = ApiMetrics(), ApiMetrics()
    a.observe_pop(0.01)
    assert samples(a)[("ivr_pop_latency_seconds_count", ())] == 1
    assert samples(b)[("ivr_pop_latency_seconds_count", ())] == 0


def test_the_transcribers_backlog_jobs_and_lag_once_it_ran() -> None:
    m = ApiMetrics()
    m.snapshot.snapshot = Snapshot(transcribe={"backlog": 5, "done": 4, "failed": 1, "lag_ms_last": 2500,
                                               "lag_ms_max": 9000, "lag_ms_sum": 20000, "audio_ms": 360000,
                                               "decode_ms": 120000})
    s = samples(m)
    assert s[("ivr_transcribe_backlog", ())] == 5
    assert s[("ivr_transcribe_jobs_total", (("status", "done"),))] == 4
    assert s[("ivr_transcribe_jobs_total", (("status", "skipped"),))] == 0
    assert s[("ivr_transcribe_lag_seconds", (("which", "last"),))] == 2.5
    assert s[("ivr_transcribe_lag_seconds", (("which", "mean"),))] == 5.0
    assert s[("ivr_transcribe_audio_seconds_total", ())] == 360.0
    m.snapshot.snapshot = Snapshot()
    assert not [name for name, _ in samples(m) if name.startswith("ivr_transcribe")]
