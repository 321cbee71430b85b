"""The wait estimate (a pure function) and the announcement texts."""

from __future__ import annotations

import pytest

from ivr.calls.announce import announcement_text, text_language
from ivr.queues.estimate import DEFAULT_AHT_S, FRESH_S, QueueHistory, estimate_wait, wait_minutes


def test_recent_departures_give_position_times_departure_interval() -> None:
    h = QueueHistory(gap_s=40.0, last_departure_age_s=12.0, departures=7, aht_s=300.0, handled=5)
    assert estimate_wait(1, h, staffed=3) == (40.0, "departures")
    assert estimate_wait(4, h, staffed=3) == (160.0, "departures")  # staffing is already in the interval


def test_stale_departures_fall_back_to_handle_time_over_staffed_agents() -> None:
    h = QueueHistory(gap_s=40.0, last_departure_age_s=FRESH_S + 1, departures=7, aht_s=300.0, handled=5)
    assert estimate_wait(2, h, staffed=3) == (200.0, "handle_time")
    assert estimate_wait(2, h, staffed=0) == (600.0, "handle_time")  # nobody logged in: as if one


def test_no_history_uses_the_default_handle_time() -> None:
    assert estimate_wait(3, QueueHistory(), staffed=2) == (3 * DEFAULT_AHT_S / 2, "default")
    assert estimate_wait(0, QueueHistory(), staffed=1) == (DEFAULT_AHT_S, "default")  # position at least 1


def test_interval_without_a_departure_time_is_not_used() -> None:
    h = QueueHistory(gap_s=40.0, last_departure_age_s=None, aht_s=60.0, handled=1)
    assert estimate_wait(1, h, staffed=1) == (60.0, "handle_time")


def test_estimate_moves_as_the_caller_moves_up() -> None:
    h = QueueHistory(gap_s=50.0, last_departure_age_s=1.0, departures=3)
    waits = [estimate_wait(p, h, staffed=1)[0] for p in (5, 4, 3, 2, 1)]
    assert waits == sorted(waits, reverse=True) and len(set(waits)) == 5


@pytest.mark.parametrize(("seconds", "minutes"), [(0, 0), (59.9, 0), (60, 1), (89, 1), (90, 2), (150, 3),
                                                  (600, 10)])
def test_minutes(seconds: float, minutes: int) -> None:
    assert wait_minutes(seconds) == minutes


def test_english_texts() -> None:
    assert announcement_text("en", position=2, wait_s=180) == (
        "You are number 2 in the queue. The estimated wait is about 3 minutes.")
    assert announcement_text("en", position=1, wait_s=30) == (
        "You are number 1 in the queue. The estimated wait is less than a minute.")
    assert announcement_text("en", position=None, wait_s=70) == "The estimated wait is about 1 minute."
    assert announcement_text("en", position=4, wait_s=None) == "You are number 4 in the queue."


def test_korean_texts() -> None:
    assert announcement_text("ko", position=2, wait_s=180) == "대기 순번은 2번입니다. 예상 대기 시간은 약 3분입니다."
    assert announcement_text("ko", position=1, wait_s=10) == "대기 순번은 1번입니다. 예상 대기 시간은 1분 미만입니다."


def test_language_falls_back_to_the_plan_default_then_english() -> None:
    assert text_language("ko") == "ko"
    assert text_language("ko-KR") == "ko"
    assert text_language("fr", "ko") == "ko"
    assert text_language("fr", "de") == "en"
