"""Who hears whom in each call-control mode (ivr/calls/media_plan.py): the one table."""

from __future__ import annotations

import pytest

from ivr.calls.media_plan import Mode, Parties, links, music

P = Parties("c", "a", "t")


def both(x: str, y: str) -> set[tuple[str, str]]:
    return {(x, y), (y, x)}


def test_talk_joins_caller_and_agent_and_mute_silences_the_agent_only() -> None:
    assert links(Mode.TALK, Parties("c", "a")) == both("c", "a")
    assert links(Mode.TALK, Parties("c", "a"), muted=True) == {("c", "a")}
    assert music(Mode.TALK, Parties("c", "a")) == frozenset()


def test_hold_links_nobody_and_plays_music_to_the_caller() -> None:
    assert links(Mode.HELD, Parties("c", "a")) == frozenset()
    assert music(Mode.HELD, Parties("c", "a")) == {"c"}


def test_consult_joins_agent_and_target_while_the_caller_hears_music() -> None:
    assert links(Mode.CONSULT, P) == both("a", "t")
    assert music(Mode.CONSULT, P) == {"c"}
    assert links(Mode.CONSULT, P, muted=True) == {("t", "a")}


def test_swap_puts_the_target_on_music_and_the_agent_back_with_the_caller() -> None:
    assert links(Mode.SWAPPED, P) == both("c", "a")
    assert music(Mode.SWAPPED, P) == {"t"}


def test_conference_joins_everyone_and_a_muted_agent_is_heard_by_nobody() -> None:
    assert links(Mode.CONFERENCE, P) == both("c", "a") | both("c", "t") | both("a", "t")
    assert links(Mode.CONFERENCE, P, muted=True) == both("c", "t") | {("c", "a"), ("t", "a")}
    assert music(Mode.CONFERENCE, P) == frozenset()


@pytest.mark.parametrize("mode", list(Mode))
def test_no_mode_links_a_leg_to_itself_or_to_a_party_that_is_not_there(mode: Mode) -> None:
    alone = Parties("c")
    assert all(src != dst for src, dst in links(mode, P))
    assert links(mode, alone) == frozenset()
    assert music(mode, alone) <= {"c"}
