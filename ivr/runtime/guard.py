"""``python -m ivr.runtime.guard -- CMD ...``: run CMD so that it and everything it forks die
with the supervisor.

``PR_SET_PDEATHSIG`` reaches only a direct child; Kamailio forks a dozen processes that would
outlive a supervisor killed with SIGKILL. The guard shares a process group with CMD and its
children: when the supervisor dies the guard is sent SIGHUP and kills the whole group. SIGTERM
and SIGINT are passed on to CMD for a graceful stop; the guard exits with CMD's exit code.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m ivr.runtime.guard -- CMD [ARGS...]", file=sys.stderr)
        return 2
    parent = os.getppid()

    def kill_group(_sig: int = 0, _frame: FrameType | None = None) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGHUP, kill_group)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGHUP)
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        kill_group()
    child = subprocess.Popen(argv)

    def forward(sig: int, _frame: FrameType | None) -> None:
        child.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
