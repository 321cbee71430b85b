"""A prompt whose template renders to nothing (its variables unset at call time) is skipped, not a
failed call (ivr/calls/session.py CallSession._prompt_path); a real prompt library (espeak-ng)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ivr.calls.session import CallSession
from ivr.dialplan.model import Prompt
from ivr.prompts.library import PromptLibrary
from ivr.sip.events import IncomingCall
from ivr.sip.legs import Leg


class NoSip:
    """The SIP side: nothing may be played on it in these tests."""

    async def call(self, fn: Any, *args: Any) -> Any:
        raise AssertionError(f"unexpected SIP call {fn.__name__}{args}")


def session(tmp_path: Path) -> CallSession:
    ctx = SimpleNamespace(prompts=PromptLibrary(tmp_path / "prompts", tmp_path / "cache"))
    leg = Leg(NoSip(), "caller-1")  # type: ignore[arg-type]
    incoming = IncomingCall("caller-1", ani="+15550001", dnis="1000", sip_call_id="x", source="127.0.0.1")
    return CallSession(ctx, leg, incoming)  # type: ignore[arg-type]


async def test_a_template_that_renders_to_nothing_is_skipped(tmp_path: Path) -> None:
    call = session(tmp_path)
    for text in ["{crm.name}", "{crm.name}. {crm.tier}!", {"en": "{a}"}]:
        prompt = Prompt(text=text)
        assert await call._prompt_path(prompt, "en", {}) is None
        await call.play(prompt, language="en", variables={})  # nothing reaches the SIP side


async def test_a_template_with_something_to_say_is_rendered(tmp_path: Path) -> None:
    call = session(tmp_path)
    path = await call._prompt_path(Prompt(text="Hello {crm.name}."), "en", {"crm.name": ""})
    assert path is not None
    assert call.ctx.prompts.duration_ms(Path(path)) > 100  # a real WAV with speech in it
