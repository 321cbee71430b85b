"""The live dial-plan registry and the version archive, on real files in a temporary directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ivr.core.errors import DialplanError, NotFound
from ivr.dialplan.loader import content_version
from ivr.dialplan.registry import LiveRegistry, VersionArchive


def plan_yaml(number: str = "1000", queue: str = "billing", name: str = "Demo") -> str:
    return f"""name: {name}
numbers: ["{number}"]
start: welcome
nodes:
  welcome:
    type: menu
    prompt: {{text: "Press 2."}}
    options:
      - {{digit: "2", goto: q}}
    on_failure: bye
  q:
    type: queue
    queue: {queue}
  bye:
    type: hangup
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return content_version(text.encode())


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    d = tmp_path / "dialplans"
    d.mkdir()
    return d


@pytest.fixture
def archive(tmp_path: Path) -> VersionArchive:
    return VersionArchive(tmp_path / "var" / "dialplans", keep=3)


def test_edit_swaps_the_snapshot_and_a_running_call_keeps_its_version(
        plans_dir: Path, archive: VersionArchive) -> None:
    v1 = write(plans_dir / "hotline.yaml", plan_yaml(queue="billing"))
    reg = LiveRegistry(plans_dir, archive, by="w0")
    in_call = reg.for_number("1000")
    assert in_call is not None and in_call.version == v1

    assert reg.reload() is False  # nothing changed
    v2 = write(plans_dir / "hotline.yaml", plan_yaml(queue="support"))
    assert reg.reload() is True
    new = reg.for_number("1000")
    assert new is not None and new.version == v2
    assert new.plan.nodes["q"].queue == "support"  # type: ignore[union-attr]
    assert in_call.version == v1 and in_call.plan.nodes["q"].queue == "billing"  # type: ignore[union-attr]
    assert [lp.version for lp in reg.plans] == [v2] and list(reg.by_number) == ["1000"]
    history = archive.history("hotline")
    assert [(e.version, e.source, e.by, e.file) for e in history] == [
        (v1, "file", "w0", "hotline.yaml"), (v2, "file", "w0", "hotline.yaml")]
    assert archive.content("hotline", v1) == plan_yaml(queue="billing").encode()


def test_a_bad_file_keeps_the_running_version_and_reports_where(
        plans_dir: Path, archive: VersionArchive) -> None:
    v1 = write(plans_dir / "hotline.yaml", plan_yaml())
    reg = LiveRegistry(plans_dir, archive)
    before = reg.snapshot
    bad = write(plans_dir / "hotline.yaml", plan_yaml() + "  oops: [unclosed\n")
    assert reg.reload() is True  # the error is news for the status report
    assert reg.snapshot is before
    running = reg.for_number("1000")
    assert running is not None and running.version == v1
    state = reg.states[plans_dir / "hotline.yaml"]
    assert state.error is not None and state.error.code == "dialplan.yaml"
    assert f"{plans_dir / 'hotline.yaml'}:" in state.error.message
    assert state.seen == bad and state.loaded is running and state.error_at
    assert reg.reload() is False  # reported once, not on every look

    write(plans_dir / "hotline.yaml", plan_yaml().replace("type: hangup", "type: nonsense"))
    assert reg.reload() is True
    assert reg.states[plans_dir / "hotline.yaml"].error.code.startswith("dialplan.")  # type: ignore[union-attr]
    assert reg.for_number("1000").version == v1  # type: ignore[union-attr]
    assert [e.version for e in archive.history("hotline")] == [v1]  # only valid versions are archived

    v2 = write(plans_dir / "hotline.yaml", plan_yaml(queue="sales"))
    assert reg.reload() is True
    assert reg.states[plans_dir / "hotline.yaml"].error is None
    assert reg.for_number("1000").version == v2  # type: ignore[union-attr]


def test_a_number_used_twice_is_an_error_of_the_changed_file(plans_dir: Path) -> None:
    write(plans_dir / "a.yaml", plan_yaml("1000", name="A"))
    write(plans_dir / "b.yaml", plan_yaml("2000", name="B"))
    reg = LiveRegistry(plans_dir)
    write(plans_dir / "b.yaml", plan_yaml("1000", name="B"))
    assert reg.reload() is True
    err = reg.states[plans_dir / "b.yaml"].error
    assert err is not None and err.code == "dialplan.duplicate_number"
    assert reg.for_number("1000").plan.name == "A"  # type: ignore[union-attr]
    assert reg.for_number("2000").plan.name == "B"  # type: ignore[union-attr]
    write(plans_dir / "c.yml", plan_yaml("2000", name="C"))  # a new file clashing with a running one
    reg.reload()
    assert reg.states[plans_dir / "c.yml"].loaded is None
    assert reg.for_number("2000").plan.name == "B"  # type: ignore[union-attr]


def test_a_deleted_file_removes_its_plan_but_the_last_plan_keeps_running(plans_dir: Path) -> None:
    write(plans_dir / "a.yaml", plan_yaml("1000", name="A"))
    write(plans_dir / "b.yaml", plan_yaml("2000", name="B"))
    reg = LiveRegistry(plans_dir)
    (plans_dir / "b.yaml").unlink()
    assert reg.reload() is True
    assert reg.for_number("2000") is None and plans_dir / "b.yaml" not in reg.states
    (plans_dir / "a.yaml").unlink()
    assert reg.reload() is True
    assert reg.for_number("1000").plan.name == "A"  # type: ignore[union-attr]
    assert reg.states[plans_dir / "a.yaml"].error.code == "dialplan.none"  # type: ignore[union-attr]
    assert reg.reload() is False
    write(plans_dir / "a.yaml", plan_yaml("1000", name="A again"))
    assert reg.reload() is True
    assert reg.for_number("1000").plan.name == "A again"  # type: ignore[union-attr]
    assert reg.states[plans_dir / "a.yaml"].error is None


def test_start_needs_one_valid_plan_and_falls_back_to_the_archive(
        plans_dir: Path, archive: VersionArchive) -> None:
    write(plans_dir / "hotline.yaml", "name: [broken\n")
    with pytest.raises(DialplanError) as exc:
        LiveRegistry(plans_dir, archive)
    assert exc.value.code == "dialplan.yaml"
    # a worker restarted while the file is broken runs the last version that ran
    v1 = write(plans_dir / "hotline.yaml", plan_yaml())
    LiveRegistry(plans_dir, archive)
    write(plans_dir / "hotline.yaml", "name: [broken\n")
    reg = LiveRegistry(plans_dir, archive)
    running = reg.for_number("1000")
    assert running is not None and running.version == v1 and running.path == plans_dir / "hotline.yaml"
    assert reg.states[plans_dir / "hotline.yaml"].error is not None


def test_history_keeps_the_last_activations_and_their_files(plans_dir: Path, archive: VersionArchive) -> None:
    versions = [write(plans_dir / "hotline.yaml", plan_yaml(queue="q0"))]
    reg = LiveRegistry(plans_dir, archive)
    for i in range(1, 5):
        versions.append(write(plans_dir / "hotline.yaml", plan_yaml(queue=f"q{i}")))
        reg.reload()
    assert [e.version for e in archive.history("hotline")] == versions[-3:]
    stored = sorted(p.stem for p in (archive.root / "hotline").glob("*.yaml"))
    assert stored == sorted(versions[-3:])
    with pytest.raises(NotFound):
        archive.content("hotline", versions[0])


def test_workers_recording_the_same_change_add_one_line(plans_dir: Path, archive: VersionArchive) -> None:
    write(plans_dir / "hotline.yaml", plan_yaml())
    w0 = LiveRegistry(plans_dir, archive, by="w0")
    w1 = LiveRegistry(plans_dir, VersionArchive(archive.root, keep=3), by="w1")
    write(plans_dir / "hotline.yaml", plan_yaml(queue="sales"))
    w1.reload()
    w0.reload()
    assert [e.by for e in archive.history("hotline")] == ["w0", "w1"]
    # a worker late to see an edit that was already edited again does not record the stale one
    raw = plan_yaml(queue="late").encode()
    assert archive.record(plans_dir / "hotline.yaml", raw, by="w2") is None


def test_rollback_writes_the_archived_content_back(plans_dir: Path, archive: VersionArchive) -> None:
    v1 = write(plans_dir / "hotline.yaml", plan_yaml(queue="billing"))
    reg = LiveRegistry(plans_dir, archive, by="w0")
    v2 = write(plans_dir / "hotline.yaml", plan_yaml(queue="support"))
    reg.reload()
    entry = archive.rollback("hotline", plans_dir, by="admin")  # default: the previous version
    assert (entry.version, entry.source, entry.by) == (v1, "rollback", "admin")
    assert (plans_dir / "hotline.yaml").read_text() == plan_yaml(queue="billing")
    assert reg.reload() is True
    assert reg.for_number("1000").version == v1  # type: ignore[union-attr]
    assert [(e.version, e.source) for e in archive.history("hotline")] == [
        (v1, "file"), (v2, "file"), (v1, "rollback")]  # the watcher does not add a line of its own
    assert archive.rollback("hotline", plans_dir, v2, by="admin").version == v2
    assert not [p for p in plans_dir.iterdir() if p.name != "hotline.yaml"], "no temporary file left"
    with pytest.raises(NotFound) as exc:
        archive.rollback("hotline", plans_dir, "0123456789ab", by="admin")
    assert exc.value.code == "dialplan.version_not_found"
    with pytest.raises(NotFound) as exc:
        archive.rollback("nosuch", plans_dir, by="admin")
    assert exc.value.code == "dialplan.not_found"
    with pytest.raises(NotFound):
        archive.history("../etc")


async def test_watch_reloads_reports_and_stops_when_cancelled(plans_dir: Path) -> None:
    write(plans_dir / "hotline.yaml", plan_yaml())
    reg = LiveRegistry(plans_dir)
    reports: asyncio.Queue[str] = asyncio.Queue()

    async def on_change(r: LiveRegistry) -> None:
        lp = r.for_number("1000")
        assert lp is not None
        await reports.put(lp.version)

    task = asyncio.create_task(reg.watch(0.01, on_change, refresh_s=3600))
    try:
        first = await asyncio.wait_for(reports.get(), 10)
        v2 = write(plans_dir / "hotline.yaml", plan_yaml(queue="sales"))
        os.utime(plans_dir / "hotline.yaml")
        assert await asyncio.wait_for(reports.get(), 10) == v2 != first
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watch_reads_files_only_when_their_stat_changed_and_every_tenth_look(
        plans_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle watch is a few stats; an edit that kept the size and the change time (within one tick
    of the clock) is still found by the look that reads everything, every ``full_every`` looks."""
    path = plans_dir / "hotline.yaml"
    write(path, plan_yaml())
    reg = LiveRegistry(plans_dir)
    reads: list[int] = []
    real = reg.reload
    monkeypatch.setattr(reg, "reload", lambda **kw: (reads.append(1), real(**kw))[1])
    looks = 0
    looked_25 = asyncio.Event()
    real_fp = reg.fingerprint

    def counted() -> tuple[tuple[str, int, int, int], ...]:
        nonlocal looks
        looks += 1
        if looks >= 25:
            looked_25.set()
        return real_fp()
    monkeypatch.setattr(reg, "fingerprint", counted)
    task = asyncio.create_task(reg.watch(0.001, None, full_every=10))
    try:
        await asyncio.wait_for(looked_25.wait(), 10)
        assert 2 <= len(reads) <= 4  # the first look, then every tenth: nothing read in between
        # the same size, the change time put back: only a full look sees it
        st = path.stat()
        v2 = write(path, plan_yaml(queue="sellers"))  # as long as "billing"
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size
        for _ in range(2000):
            lp = reg.for_number("1000")
            if lp is not None and lp.version == v2:
                break
            await asyncio.sleep(0.001)
        assert reg.for_number("1000").version == v2  # type: ignore[union-attr]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
