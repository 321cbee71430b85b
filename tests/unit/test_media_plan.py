"""Who hears whom in each call-control mode (ivr/calls/media_plan.py): the one table."""

from __future__ import annotations

import pytest

from ivr.calls.media_plan import Mode, MonitorMode, Parties, links, music

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


# --- live supervision: a supervisor ("s") beside the call's mode -----------------------------------

S2 = Parties("c", "a", monitor="s")       # caller, agent, supervisor
S3 = Parties("c", "a", "t", monitor="s")  # with a consult or conference target
L, W, B = MonitorMode.LISTEN, MonitorMode.WHISPER, MonitorMode.BARGE


def test_listen_hears_caller_and_agent_and_nobody_hears_the_supervisor() -> None:
    assert links(Mode.TALK, S2, monitor=L) == both("c", "a") | {("c", "s"), ("a", "s")}


def test_whisper_reaches_the_agent_but_never_the_caller() -> None:
    want = both("c", "a") | {("c", "s"), ("a", "s"), ("s", "a")}
    assert links(Mode.TALK, S2, monitor=W) == want
    assert ("s", "c") not in links(Mode.TALK, S2, monitor=W)


def test_barge_makes_all_three_talk() -> None:
    assert links(Mode.TALK, S2, monitor=B) == both("c", "a") | both("c", "s") | both("a", "s")


def test_the_supervisor_follows_the_agent_through_hold_consult_swap_and_conference() -> None:
    # held: the agent hears nobody, so the supervisor hears the agent only; the caller keeps its music
    assert links(Mode.HELD, S2, monitor=L) == {("a", "s")}
    assert links(Mode.HELD, S2, monitor=B) == both("a", "s")
    assert music(Mode.HELD, S2) == {"c"}
    # consult: agent and target (the caller on music hears nobody, not even a barging supervisor)
    assert links(Mode.CONSULT, S3, monitor=L) == both("a", "t") | {("a", "s"), ("t", "s")}
    assert links(Mode.CONSULT, S3, monitor=B) == both("a", "t") | both("a", "s") | both("t", "s")
    assert links(Mode.SWAPPED, S3, monitor=W) == both("c", "a") | {("c", "s"), ("a", "s"), ("s", "a")}
    conf = both("c", "a") | both("c", "t") | both("a", "t")
    assert links(Mode.CONFERENCE, S3, monitor=L) == conf | {("c", "s"), ("a", "s"), ("t", "s")}
    assert links(Mode.CONFERENCE, S3, monitor=B) == conf | both("c", "s") | both("a", "s") | both("t", "s")
    assert all(music(mode, S3) == music(mode, P) for mode in Mode)  # the supervisor never hears music


def test_a_muted_agent_is_still_heard_by_its_supervisor_and_a_barge_still_reaches_the_caller() -> None:
    assert links(Mode.TALK, S2, muted=True, monitor=W) == {("c", "a"), ("c", "s"), ("a", "s"), ("s", "a")}
    assert links(Mode.TALK, S2, muted=True, monitor=B) == {("c", "a")} | both("c", "s") | both("a", "s")


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("monitor", [None, *MonitorMode])
def test_without_an_agent_or_a_supervisor_leg_there_is_nothing_to_supervise(
        mode: Mode, monitor: MonitorMode | None) -> None:
    assert links(mode, Parties("c", None, "t", "s"), monitor=monitor) == links(mode, Parties("c", None, "t"))
    assert links(mode, P, monitor=monitor) == links(mode, P)  # a mode with no supervisor's leg
    assert links(mode, S3) == links(mode, P)  # a supervisor's leg still ringing: no mode yet
    assert all(src != dst for src, dst in links(mode, S3, monitor=monitor))
