"""Failed authentications limited per client address, in bounded memory.

After ``max_failures`` unknown tokens within ``window_s`` seconds, the address gets ``429`` with
``Retry-After`` for ``block_s`` seconds (doubled for each further block of the same address, up to
``block_max_s``), whatever token it sends (a correct guess must not show
while blocked). Other addresses are not affected: an attacker cannot lock out agents elsewhere.
Tokens that already signed in from a blocked address keep working there (agents behind the
attacker's NAT): a block slows guesses, and a guess is never a token proven from that address.
IPv6 clients count per /64 (one host usually owns a whole /64 and could rotate through it). At most
``max_clients`` addresses are remembered (least recently seen forgotten first), so a flood of
addresses costs bounded memory. Each API instance counts on its own.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ivr.core.logging import get_logger

log = get_logger(__name__)


def client_key(remote: str | None) -> str:
    """The unit failures are counted by: the IPv4 address, or the /64 of an IPv6 address."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Client:
    window_start: float
    failures: int = 0
    blocked_until: float = 0.0
    blocks: int = 0


class FailedAuthLimiter:
    def __init__(self, max_failures: int = 10, window_s: float = 60.0, block_s: float = 60.0,
                 max_clients: int = 65_536, clock: Callable[[], float] = time.monotonic,
                 block_max_s: float = 3600.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self.block_max_s = max(block_s, block_max_s)
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._proven: OrderedDict[tuple[str, str], None] = OrderedDict()  # (client, token digest), LRU

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait before trying again, or None when it may try now."""
        entry = self._clients.get(client)
        if entry is None:
            return None
        left = entry.blocked_until - self._clock()
        return math.ceil(left) if left > 0 else None

    def succeeded(self, client: str, digest: str) -> None:
        """A token (its digest) signed in from ``client``: it stays welcome there during a block."""
        key = (client, digest[:32])
        self._proven[key] = None
        self._proven.move_to_end(key)
        while len(self._proven) > self.max_clients:
            self._proven.popitem(last=False)

    def proven(self, client: str, digest: str) -> bool:
        return (client, digest[:32]) in self._proven

    def failed(self, client: str) -> None:
        now = self._clock()
        entry = self._clients.get(client)
        if entry is None or now - entry.window_start >= self.window_s:
            entry = _Client(window_start=now, blocked_until=entry.blocked_until if entry else 0.0,
                            blocks=entry.blocks if entry else 0)
        self._clients[client] = entry
        self._clients.move_to_end(client)
        entry.failures += 1
        if entry.failures >= self.max_failures and entry.blocked_until <= now:
            block_s = min(self.block_s * 2 ** min(entry.blocks, 32), self.block_max_s)
            entry.blocked_until = now + block_s
            entry.failures, entry.window_start, entry.blocks = 0, now, entry.blocks + 1
            log.warning("auth.client_blocked", client=client, failures=self.max_failures,
                        window_s=self.window_s, block_s=block_s)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
