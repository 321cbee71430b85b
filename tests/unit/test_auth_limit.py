"""The failed-authentication limiter on its own, with a hand-driven clock."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from ivr.cti.auth_limit import FailedAuthLimiter, client_key
from ivr.cti.client_address import resolve


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


PROXIES = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64")]
addresses = st.ip_addresses().map(str)


@given(st.lists(st.one_of(addresses, st.text(max_size=20)), max_size=30), addresses)
def test_forwarded_for_from_an_untrusted_peer_is_ignored(hops: list[str], peer: str) -> None:
    if any(ipaddress.ip_address(peer) in net for net in PROXIES):
        return
    assert resolve(peer, ", ".join(hops), PROXIES) == peer


@given(st.lists(addresses, min_size=1, max_size=10), st.lists(st.sampled_from(["10.0.0.7", "fd00::9"]), max_size=4))
def test_through_trusted_proxies_the_client_is_the_rightmost_untrusted_hop(
        chosen_by_client: list[str], proxies: list[str]) -> None:
    chain = [*chosen_by_client, *proxies]
    expected = next((h for h in reversed(chain) if not any(ipaddress.ip_address(h) in n for n in PROXIES)),
                    None)
    got = resolve("10.0.0.1", ", ".join(chain), PROXIES)
    if expected is None:
        assert got in chain
    elif chain.index(expected) >= len(chain) - 16:
        assert got == expected


def test_garbage_forwarded_for_falls_back_to_the_last_vouched_address() -> None:
    assert resolve("10.0.0.1", "203.0.113.9, not-an-ip", PROXIES) == "10.0.0.1"
    assert resolve("10.0.0.1", "", PROXIES) == "10.0.0.1"
    assert resolve("10.0.0.1", None, []) == "10.0.0.1"


def test_each_further_block_of_an_address_lasts_twice_as_long_up_to_the_cap() -> None:
    clock = Clock()
    lim = FailedAuthLimiter(max_failures=2, window_s=60, block_s=30, block_max_s=100, clock=clock)
    seen = []
    for _ in range(4):
        lim.failed("10.0.0.9")
        lim.failed("10.0.0.9")
        wait = lim.retry_after("10.0.0.9")
        assert wait is not None
        seen.append(wait)
        clock.now += wait
        assert lim.retry_after("10.0.0.9") is None
    assert seen == [30, 60, 100, 100]


@given(st.lists(st.tuples(st.integers(0, 300), st.text("0123456789abcdef", min_size=64, max_size=64)),
                max_size=300), st.integers(16, 64))
def test_proven_tokens_are_remembered_in_bounded_memory(events: list[tuple[int, str]], cap: int) -> None:
    lim = FailedAuthLimiter(max_clients=cap)
    for n, digest in events:
        lim.succeeded(f"10.0.{n // 256}.{n % 256}", digest)
        assert lim.proven(f"10.0.{n // 256}.{n % 256}", digest)
        assert len(lim._proven) <= cap
