"""The dial-plan engine alone: scripted caller input in, path/journey/outcome out."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.core.errors import DialplanError
from ivr.dialplan.engine import PlanRunner
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import PlanRegistry, load_plan
from ivr.dialplan.model import Prompt

ROOT = Path(__file__).resolve().parents[2]


class ScriptedCall:
    """A caller who presses the given keys: during a prompt when barge-in is on, else after it."""

    def __init__(self, keys: list[str | None]) -> None:
        self.keys = list(keys)
        self.played: list[str] = []
        self.hung_up = False

    async def play(self, prompt: Prompt, *, barge_in: bool) -> str | None:
        self.played.append(prompt.text or prompt.file or "")
        if barge_in and self.keys and self.keys[0] is not None:
            return self.keys.pop(0)
        return None

    async def get_digit(self, timeout_s: float) -> str | None:
        return self.keys.pop(0) if self.keys else None

    async def hangup(self) -> None:
        self.hung_up = True


class RecordingQueue:
    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    async def wait_for_agent(self, *, queue: str, skill: str, priority: int, journey: Journey) -> str:
        self.calls.append({"queue": queue, "skill": skill, "priority": priority, "journey": journey.to_dict()})
        return "completed"


async def run(keys: list[str | None]) -> tuple[str, ScriptedCall, RecordingQueue, PlanRunner]:
    call, queue = ScriptedCall(keys), RecordingQueue()
    runner = PlanRunner(load_plan(ROOT / "dialplans" / "hotline.yaml"), call, queue)
    return await runner.run(), call, queue, runner


async def test_pressing_2_queues_for_billing_with_the_path_in_the_journey() -> None:
    outcome, call, queue, _ = await run(["2"])
    assert outcome == "queued:completed"
    assert queue.calls[0]["queue"] == "billing" and queue.calls[0]["skill"] == "billing"
    journey = queue.calls[0]["journey"]
    assert isinstance(journey, dict)
    assert [(s["node"], s.get("digit")) for s in journey["steps"]] == [("welcome", "2"), ("billing", None)]
    assert call.played[-1] == "Please hold for the billing team."


async def test_wrong_key_then_right_key_plays_no_match_and_continues() -> None:
    outcome, call, queue, runner = await run(["7", "1"])
    assert outcome == "queued:completed" and queue.calls[0]["queue"] == "sales"
    assert "Sorry, that is not an option." in call.played
    assert [s.outcome for s in runner.journey.steps][:2] == ["no_match", "sales"]


async def test_silence_exhausts_retries_and_says_goodbye() -> None:
    outcome, call, queue, runner = await run([])
    assert outcome == "hangup" and call.hung_up and not queue.calls
    assert [s.outcome for s in runner.journey.steps if s.type == "menu"] == ["no_input"] * 3
    assert call.played[-1] == "Goodbye."


def test_broken_files_give_file_line_column_or_field_errors(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "a.yaml"
    bad_yaml.write_text("name: x\nnodes: [\n")
    with pytest.raises(DialplanError) as e:
        load_plan(bad_yaml)
    assert e.value.code == "dialplan.yaml" and f"{bad_yaml}:3:1" in e.value.message
    dangling = tmp_path / "b.yaml"
    dangling.write_text("name: x\nnumbers: ['1']\nstart: m\nnodes:\n  m:\n    type: menu\n"
                        "    prompt: {text: hi}\n    options: [{digit: '1', goto: nowhere}]\n")
    with pytest.raises(DialplanError, match="m -> nowhere"):
        load_plan(dangling)
    unknown = tmp_path / "c.yaml"
    unknown.write_text("name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: teleport}\n")
    with pytest.raises(DialplanError, match="teleport"):
        load_plan(unknown)
    no_source = tmp_path / "d.yaml"
    no_source.write_text("name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: hangup, prompt: {}}\n")
    with pytest.raises(DialplanError, match="a prompt needs a file or a text"):
        load_plan(no_source)


def test_registry_maps_numbers_and_refuses_a_number_used_twice(tmp_path: Path) -> None:
    reg = PlanRegistry.from_dir(ROOT / "dialplans")
    assert reg.for_number("1000") is not None and reg.for_number("999") is None
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            "name: x\nnumbers: ['1']\nstart: h\nnodes:\n  h: {type: hangup}\n")
    with pytest.raises(DialplanError) as e:
        PlanRegistry.from_dir(tmp_path)
    assert e.value.code == "dialplan.duplicate_number"
