"""What the benches read from /proc: which processes there are (command line, parent), their CPU
time and memory, and the whole machine's CPU jiffies. A process that is gone reads as empty or
zero: the benches sample processes that may exit between two reads."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> str:
    """The process's arguments joined by spaces; "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and ')'):
    [0] is the state, [1] the parent, [11] utime, [12] stime."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parent(pid: int) -> int:
    try:
        return int(_stat_fields(pid)[1])
    except (OSError, IndexError, ValueError):
        return 0


def pids_matching(needle: str, *, also: str | None = None) -> list[int]:
    """Processes (not this one) whose command line contains ``needle`` (and ``also`` if given)."""
    me = os.getpid()
    return [p for p in all_pids() if p != me and needle in (cmd := cmdline(p)) and (also is None or also in cmd)]


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (redis-server renames its command line, so the hotline's
    processes are found by ancestry as well as by the workdir in their command line)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        children.setdefault(parent(pid), []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids: Iterable[int]) -> int:
    """utime + stime (clock ticks) of these processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used."""
    return cpu_ticks([pid]) / CLK_TCK


def status_kb(pid: int, names: Sequence[str], file: str = "status") -> dict[str, int]:
    """The ``names`` fields (``VmRSS``, ``RssAnon``, ``Pss``...) of /proc/<pid>/<file> in kB;
    0 for each once the process is gone."""
    out = dict.fromkeys(names, 0)
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0])
    return out


def rss_mb(pids: Iterable[int]) -> float:
    """Sum of the processes' RSS (shared pages, e.g. pjsua2's libraries, counted in each)."""
    return round(sum(status_kb(pid, ["VmRSS"])["VmRSS"] for pid in pids) / 1024, 1)


def pss_mb(pids: Iterable[int]) -> float:
    """Sum of the processes' PSS (shared pages split between their users): what they really take."""
    return round(sum(status_kb(pid, ["Pss"], "smaps_rollup")["Pss"] for pid in pids) / 1024, 1)


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot (idle and iowait are not busy)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(parts) - parts[3] - parts[4], sum(parts)
