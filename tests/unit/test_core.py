"""Config layering and log hygiene."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from ivr.core.config import CallbackSettings, load_settings
from ivr.core.errors import ConfigError
from ivr.core.logging import configure, get_logger


def test_file_then_environment_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api: {port: 9001}\nworkers: {count: 3}\nredis: {port: 7000}\n"
                   "users: [{id: a1, name: A, token: a1-token-for-this-test}]\n")
    monkeypatch.setenv("IVR_API__PORT", "9002")
    s = load_settings(cfg, redis={"port": 7001})
    assert s.workers.count == 3        # file over default
    assert s.api.port == 9002          # environment over file
    assert s.redis.port == 7001        # argument over file
    child = load_settings_from_dump(tmp_path, s.dump_for_children())
    assert child.api.port == 9002 and child.users[0].token.get_secret_value() == s.users[0].token.get_secret_value()


def load_settings_from_dump(tmp_path: Path, dump: str):  # type: ignore[no-untyped-def]
    f = tmp_path / "settings.json"
    f.write_text(dump)
    return load_settings(f)


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workers: {max_legs: 9}\n")
    with pytest.raises(ConfigError, match="max_legs"):
        load_settings(cfg)
    cfg.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigError):
        load_settings(cfg)
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.yaml")


def test_statistics_settings_are_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("routing: {stats_interval_s: 700}\n")
    with pytest.raises(ConfigError, match="divide 86400"):
        load_settings(cfg)
    cfg.write_text("routing: {service_level_s: [0, 20]}\n")
    with pytest.raises(ConfigError, match="positive"):
        load_settings(cfg)
    cfg.write_text("routing: {service_level_s: [30, 10, 30], stats_interval_s: 1800}\n")
    routing = load_settings(cfg).routing
    assert routing.service_level_s == [10, 30] and routing.stats_interval_s == 1800


def test_case_deadlines_per_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "c.yaml", "{}\n")
    assert load_settings(cfg).cases.due_s == {"urgent": 3600, "important": 7200, "normal": 14400}
    _write(cfg, "cases: {due_s: {urgent: 1800, important: 3600, normal: 86400}, business_hours: false}\n")
    monkeypatch.setenv("IVR_CASES__DUE_SOON_S", "600")
    s = load_settings(cfg)
    assert s.cases.due_s["urgent"] == 1800 and not s.cases.business_hours and s.cases.due_soon_s == 600
    assert s.model_dump(mode="json")["cases"]["due_s"]["normal"] == 86400      # what GET /api/v1/config shows
    monkeypatch.delenv("IVR_CASES__DUE_SOON_S")
    for bad, why in [("{urgent: 60, normal: 60}", r"every tier \(missing: important"),
                     ("{urgent: 0, important: 60, normal: 60}", "between 1 second and 30 days"),
                     ("{urgent: 60, important: 60, normal: 2592001}", "between 1 second and 30 days"),
                     ("{urgent: 60, important: 60, normal: 60, someday: 60}", r"cases\.due_s\.someday")]:
        _write(cfg, f"cases: {{due_s: {bad}}}\n")
        with pytest.raises(ConfigError, match=why):
            load_settings(cfg)
    _write(cfg, "cases: {due_in: 5}\n")
    with pytest.raises(ConfigError, match=r"cases\.due_in"):
        load_settings(cfg)


def test_case_follow_up_task_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _write(tmp_path / "c.yaml", "{}\n")
    c = load_settings(cfg).cases
    assert (c.offer_before_s, c.skill, c.task_timeout_s) == (1800, "complaints", 60)
    _write(cfg, "cases: {offer_before_s: 600, skill: care.team}\n")
    monkeypatch.setenv("IVR_CASES__TASK_TIMEOUT_S", "90")
    c = load_settings(cfg).cases
    assert (c.offer_before_s, c.skill, c.task_timeout_s) == (600, "care.team", 90)
    monkeypatch.delenv("IVR_CASES__TASK_TIMEOUT_S")
    for bad, where in [("offer_before_s: 0", "offer_before_s"), ("offer_before_s: 2592001", "offer_before_s"),
                       ("skill: 'two words'", "skill"), ("skill: ''", "skill"),
                       ("task_timeout_s: 4", "task_timeout_s"), ("task_timeout_s: 3601", "task_timeout_s")]:
        _write(cfg, f"cases: {{{bad}}}\n")
        with pytest.raises(ConfigError, match=rf"cases\.{where}"):
            load_settings(cfg)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def configured_logging() -> Iterator[None]:
    configure("info", "json")
    yield
    structlog.reset_defaults()


def test_secrets_are_masked_and_call_id_is_bound(capsys: pytest.CaptureFixture[str],
                                                 configured_logging: None) -> None:
    structlog.contextvars.bind_contextvars(call_id="c-1")
    try:
        get_logger("t").info("call.thing", token="s3cret", authorization="Bearer s3cret", digit="2")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["call_id"] == "c-1" and line["digit"] == "2"
    assert line["token"] == "***" and line["authorization"] == "***"


class CountingStderr:
    """A stderr that records every write: the roles of ``ivr run`` share one log file, so a line and
    its newline must leave in one write or another process's line can land between them."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_each_log_line_is_one_write(monkeypatch: pytest.MonkeyPatch, configured_logging: None) -> None:
    err = CountingStderr()
    monkeypatch.setattr("sys.stderr", err)
    log = get_logger("t")
    log.info("call.one", n=1)
    log.warning("call.two", n=2)
    assert len(err.writes) == 2 and all(w.endswith("}\n") and w.count("\n") == 1 for w in err.writes)
    assert [json.loads(w)["event"] for w in err.writes] == ["call.one", "call.two"]


def test_callback_dial_uri_defaults_to_the_edge_and_must_carry_the_number() -> None:
    assert CallbackSettings().uri_for("+15550100", "10.0.0.5", 5060) == "sip:+15550100@10.0.0.5:5060"
    trunk = CallbackSettings(dial_uri="sip:{number}@trunk.example;transport=tcp")
    assert trunk.uri_for("0101234", "127.0.0.1", 5060) == "sip:0101234@trunk.example;transport=tcp"
    for bad in ("tel:{number}", "sip:fixed@host"):
        with pytest.raises(ValueError):
            CallbackSettings(dial_uri=bad)


async def test_a_redis_failure_in_a_handler_is_a_503_with_retry_after() -> None:
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request
    from redis.exceptions import ConnectionError as RedisConnectionError

    from ivr.cti.errors import error_middleware

    async def handler(request: web.Request) -> web.StreamResponse:
        raise RedisConnectionError("Connection refused")

    resp = await error_middleware(make_mocked_request("GET", "/api/v1/agents"), handler)
    assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    assert isinstance(resp, web.Response) and resp.text is not None
    assert json.loads(resp.text)["error"]["code"] == "redis.unavailable"
