"""Routing targets: how a queue's settings and the dial plan's node make a caller's route."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.core.config import EscalationStep, QueueSettings, load_settings
from ivr.core.errors import BadRequest, ConfigError
from ivr.queues.routing import Requirement, Route, Stage, resolve_route

QUEUES = {
    "vip": QueueSettings(skills=["vip", "billing"], min_proficiency=4, language_required=True,
                         strategy="best_proficiency", no_agents="fallback", escalation=[
                             EscalationStep(after_s=30, min_proficiency=2),
                             EscalationStep(after_s=60, add_skills=["billing"]),
                             EscalationStep(after_s=90, move_to="general", min_proficiency=3),
                             EscalationStep(after_s=120, min_proficiency=5)]),
    "general": QueueSettings(min_proficiency=4, strategy="round_robin"),
}


def test_a_queue_without_settings_routes_to_its_name_as_skill_any_language() -> None:
    assert resolve_route({}, "billing", language="ko") == Route((Requirement(("billing",), 1),))
    assert resolve_route({}, "billing", language="ko", language_required=True).language == "ko"
    assert Route.skill("sales").primary_skill == "sales"


def test_configured_queue_with_its_escalation_stages() -> None:
    r = resolve_route(QUEUES, "vip", language="ko", can_fall_back=True)
    assert r.alternatives == (Requirement(("vip", "billing"), 4),)
    assert (r.language, r.strategy, r.no_agents) == ("ko", "best_proficiency", "fallback")
    assert r.stages == (
        Stage(30, (Requirement(("vip", "billing"), 2),)),
        Stage(60, (Requirement(("vip", "billing"), 2), Requirement(("billing",), 2))),
        Stage(90, (Requirement(("general",), 3),), queue="general", strategy="round_robin"),
        Stage(120, (Requirement(("general",), 3),)),  # escalation never raises the minimum
    )


def test_the_plan_node_overrides_skills_language_and_proficiency() -> None:
    r = resolve_route(QUEUES, "vip", skills=("vip",), language="en", language_required=False, min_proficiency=5)
    assert r.alternatives == (Requirement(("vip",), 5),) and r.language == ""
    assert r.no_agents == "queue"  # no on_timeout to fall back to: wait anyway
    assert r.stages[0].alternatives == (Requirement(("vip",), 2),)


def test_route_json_is_what_the_scripts_read() -> None:
    r = resolve_route(QUEUES, "general", language="en")
    assert r.to_json() == ('{"lang": "", "strategy": "round_robin", "no_agents": "queue", '
                           '"alts": [{"skills": ["general"], "m": 4}]}')
    assert resolve_route(QUEUES, "vip", language="en").stages_json().startswith(
        '[{"after_s": 30.0, "alts": [{"skills": ["vip", "billing"], "m": 2}]}')


@pytest.mark.parametrize("skills", [(), ("a+b",), ("has space",), ("x:y",)])
def test_bad_skill_names_are_refused(skills: tuple[str, ...]) -> None:
    with pytest.raises(BadRequest) as exc:
        Route((Requirement(skills),))
    assert exc.value.code == "queue.invalid"


def test_queue_settings_are_validated_from_the_config_file(tmp_path: Path) -> None:
    good = tmp_path / "ok.yml"
    good.write_text("routing:\n  queues:\n    vip: {skills: [vip], escalation: [{after_s: 20, move_to: general}]}\n")
    assert load_settings(good).routing.queues["vip"].escalation[0].move_to == "general"
    for bad in ("{strategy: fastest}", "{escalation: [{after_s: 20}]}",
                "{escalation: [{after_s: 20, min_proficiency: 2}, {after_s: 10, add_skills: [x]}]}",
                "{min_proficiency: 6}", "{skills: ['a b']}"):
        path = tmp_path / "bad.yml"
        path.write_text(f"routing:\n  queues:\n    vip: {bad}\n")
        with pytest.raises(ConfigError):
            load_settings(path)
