"""The failed-authentication limiter on its own, with a hand-driven clock."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from ivr.cti.auth_limit import FailedAuthLimiter, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_after_max_failures_then_freed() -> None:
    clock = Clock()
    lim = FailedAuthLimiter(max_failures=3, window_s=60, block_s=30, clock=clock)
    for _ in range(2):
        lim.failed("10.0.0.1")
        assert lim.retry_after("10.0.0.1") is None
    lim.failed("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == 30
    assert lim.retry_after("10.0.0.2") is None  # others are not affected
    clock.now += 29.5
    assert lim.retry_after("10.0.0.1") == 1
    clock.now += 1
    assert lim.retry_after("10.0.0.1") is None


def test_failures_spread_over_windows_do_not_block() -> None:
    clock = Clock()
    lim = FailedAuthLimiter(max_failures=3, window_s=60, block_s=30, clock=clock)
    for _ in range(10):
        lim.failed("10.0.0.1")
        lim.failed("10.0.0.1")
        clock.now += 61
        assert lim.retry_after("10.0.0.1") is None


@given(st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 100)), max_size=400), st.integers(16, 64))
def test_memory_stays_bounded_whatever_the_addresses(events: list[tuple[int, float]], cap: int) -> None:
    clock = Clock()
    lim = FailedAuthLimiter(max_failures=2, window_s=10, block_s=10, max_clients=cap, clock=clock)
    for n, dt in events:
        clock.now += dt
        lim.failed(str(ipaddress.IPv4Address(n)))
        assert len(lim) <= cap


@given(st.ip_addresses(v=6))
def test_ipv6_counts_per_64(address: ipaddress.IPv6Address) -> None:
    key = client_key(str(address))
    if address.ipv4_mapped is not None:
        assert key == str(address.ipv4_mapped)
    else:
        assert ipaddress.ip_address(str(address)) in ipaddress.ip_network(key)
        assert key.endswith("/64")


@given(st.one_of(st.none(), st.text(max_size=40)))
def test_any_remote_has_a_key(remote: str | None) -> None:
    assert client_key(remote)
