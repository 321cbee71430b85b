"""bench/procfs.py on this machine's real /proc: this test process, a child of it, and a process
that has exited."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.procfs import (
    all_pids,
    cmdline,
    cpu_seconds,
    cpu_ticks,
    descendants,
    machine_jiffies,
    parent,
    pids_matching,
    pss_mb,
    rss_mb,
    status_kb,
)

MARK = "procfs-test-marker-7f3a"


def test_a_child_is_found_by_its_command_line_and_below_its_parent() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()", MARK],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"  # exec'd: its cmdline is set
        assert child.pid in all_pids()
        assert MARK in cmdline(child.pid)
        assert parent(child.pid) == os.getpid()
        assert pids_matching(MARK) == [child.pid]
        assert pids_matching(MARK, also="no-such-word") == []
        assert child.pid in descendants(os.getpid())
    finally:
        child.communicate(b"")
    assert child.pid not in pids_matching(MARK)


def test_a_process_that_is_gone_reads_as_empty_and_zero() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    gone = int(child.stdout)
    assert cmdline(gone) == ""
    assert parent(gone) == 0
    assert cpu_ticks([gone]) == 0
    assert status_kb(gone, ["VmRSS", "RssAnon"]) == {"VmRSS": 0, "RssAnon": 0}
    assert rss_mb([gone]) == 0.0


def test_memory_and_cpu_of_this_process() -> None:
    me = os.getpid()
    kb = status_kb(me, ["VmRSS", "RssAnon", "RssShmem", "NoSuchField"])
    assert kb["VmRSS"] >= kb["RssAnon"] > 0
    assert kb["NoSuchField"] == 0
    assert abs(rss_mb([me]) - kb["VmRSS"] / 1024) < 5  # MB, read again a moment later
    assert 0 < pss_mb([me]) <= rss_mb([me]) + 1
    assert rss_mb([me, me]) >= 2 * rss_mb([me]) - 0.2  # a sum, not a maximum
    before = cpu_seconds(me)
    sum(i * i for i in range(2_000_000))  # some CPU work
    assert cpu_seconds(me) > before


def test_machine_jiffies_count_up_and_busy_is_a_part_of_total() -> None:
    busy0, total0 = machine_jiffies()
    sum(i * i for i in range(2_000_000))
    busy1, total1 = machine_jiffies()
    assert 0 < busy0 <= total0
    assert busy1 >= busy0 and total1 > total0
    assert busy1 <= total1
