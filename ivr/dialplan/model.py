"""The dial-plan language: what an admin writes in ``dialplans/*.yaml``.

Validated with pydantic (unknown fields are errors); the JSON Schema for editors comes from these
models. Node types are a discriminated union on ``type``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompt(_Strict):
    """A prompt is a file under ``prompts/<language>/`` or text spoken by the TTS engine."""

    file: str | None = None
    text: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Prompt:
        if not self.file and not self.text:
            raise ValueError("a prompt needs a file or a text")
        return self


class MenuOption(_Strict):
    digit: str | None = Field(None, pattern=r"^[0-9*#]$")
    say: list[str] = []
    goto: str

    @model_validator(mode="after")
    def _has_trigger(self) -> MenuOption:
        if self.digit is None and not self.say:
            raise ValueError("an option needs a digit or phrases to say")
        return self


class MenuNode(_Strict):
    type: Literal["menu"]
    prompt: Prompt
    options: list[MenuOption] = Field(min_length=1)
    timeout_s: float = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=10)
    no_input: Prompt | None = None
    no_match: Prompt | None = None
    on_failure: str | None = None
    barge_in: bool = True


class PlayNode(_Strict):
    type: Literal["play"]
    prompt: Prompt
    next: str | None = None


class QueueNode(_Strict):
    type: Literal["queue"]
    queue: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    skill: str | None = None
    priority: int = Field(0, ge=0, le=9)
    prompt: Prompt | None = None


class HangupNode(_Strict):
    type: Literal["hangup"]
    prompt: Prompt | None = None


Node = Annotated[MenuNode | PlayNode | QueueNode | HangupNode, Field(discriminator="type")]


class Plan(_Strict):
    name: str
    numbers: list[str] = Field(min_length=1, description="dialed numbers (DNIS) this plan answers")
    language: str = "en"
    start: str
    nodes: dict[str, Node]

    @model_validator(mode="after")
    def _references(self) -> Plan:
        missing: list[str] = []
        if self.start not in self.nodes:
            missing.append(f"start -> {self.start}")
        for name, node in self.nodes.items():
            for target in node_targets(node):
                if target not in self.nodes:
                    missing.append(f"{name} -> {target}")
        if missing:
            raise ValueError("unknown node(s): " + ", ".join(missing))
        return self

    def prompts(self) -> list[Prompt]:
        out: list[Prompt] = []
        for node in self.nodes.values():
            for attr in ("prompt", "no_input", "no_match"):
                p = getattr(node, attr, None)
                if p is not None:
                    out.append(p)
        return out


def node_targets(node: MenuNode | PlayNode | QueueNode | HangupNode) -> list[str]:
    if isinstance(node, MenuNode):
        return [o.goto for o in node.options] + ([node.on_failure] if node.on_failure else [])
    if isinstance(node, PlayNode):
        return [node.next] if node.next else []
    return []
