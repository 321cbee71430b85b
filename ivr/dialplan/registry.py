"""Dial plans that change while the hotline runs: the version archive and the live registry.

*The file is the truth.* A worker's :class:`LiveRegistry` looks at the top-level ``*.yaml``/``*.yml``
of ``dialplans_dir`` every ``dialplan.reload_poll_s`` and loads what changed. A valid file replaces
its plan in a new :class:`PlanRegistry` snapshot that is swapped in with one reference assignment;
a call keeps the :class:`LoadedPlan` it picked at its start, so it finishes on that version. A file
that does not validate (YAML, schema, or a number another plan already answers) leaves the running
version of that plan in place and is reported (log ``dialplan.reload_failed``, and in Redis through
the ``on_change`` callback, see :mod:`ivr.dialplan.reports`).

A deleted file removes its plan (calls to its numbers are refused) unless it is the last plan, which
keeps running and is reported as an error. A worker that starts while a file is broken runs the
last archived version of that plan instead of refusing to start.

Every version that ever ran is kept, content-addressed, in ``<var_dir>/dialplans/<plan>/``
(:class:`VersionArchive`): ``<version>.yaml`` plus ``history.jsonl``, one line per activation. The
archive is host-local and safe for several processes (a lock file; writes go to a temporary file
and are renamed). A rollback writes an archived version back to the plan file; the watchers then
load it like any edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from ivr.core.errors import DialplanError, IvrError, NotFound
from ivr.core.logging import get_logger
from ivr.dialplan.loader import LoadedPlan, PlanRegistry, content_version, load_plan, plan_files, read_bounded

log = get_logger(__name__)
Source = Literal["file", "rollback"]


def plan_id(path: Path) -> str:
    """A plan's id is its file name without the extension (``dialplans/hotline.yaml`` -> ``hotline``)."""
    return path.stem


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class VersionEntry(BaseModel):
    """One activation of a plan version (a line of ``history.jsonl``)."""

    version: str
    sha256: str
    file: str  # the plan file's name in dialplans_dir
    activated_at: str
    source: Source
    by: str


class VersionArchive:
    """Every version of every plan, under ``root/<plan>/``; ``keep`` activations per plan."""

    def __init__(self, root: Path, keep: int = 20) -> None:
        self.root = root
        self.keep = keep

    def _dir(self, plan: str) -> Path:
        if not plan or plan.startswith(".") or "/" in plan or "\\" in plan:
            raise NotFound(f"no dial plan {plan!r}", code="dialplan.not_found")
        return self.root / plan

    @contextlib.contextmanager
    def _locked(self, plan: str) -> Iterator[Path]:
        d = self._dir(plan)
        d.mkdir(parents=True, exist_ok=True)
        with (d / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def plans(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if (d / "history.jsonl").is_file())

    def history(self, plan: str) -> list[VersionEntry]:
        """Oldest first; the last entry is the version running now (as far as this host knows)."""
        path = self._dir(plan) / "history.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [VersionEntry.model_validate_json(line) for line in lines if line.strip()]

    def current(self, plan: str) -> VersionEntry | None:
        entries = self.history(plan)
        return entries[-1] if entries else None

    def path_of(self, plan: str, version: str) -> Path:
        if not version.isalnum():
            raise NotFound(f"no version {version!r} of dial plan {plan}", code="dialplan.version_not_found")
        path = self._dir(plan) / f"{version}.yaml"
        if not path.is_file():
            raise NotFound(f"no version {version} of dial plan {plan}", code="dialplan.version_not_found")
        return path

    def content(self, plan: str, version: str) -> bytes:
        return self.path_of(plan, version).read_bytes()

    def record(self, plan_file: Path, raw: bytes, *, by: str) -> VersionEntry | None:
        """Archive the content a watcher just activated from ``plan_file``. Several workers record
        the same change: only the first adds a history line, and only while the file still holds
        this content (a later edit is recorded when it is loaded). Returns the new entry, if any."""
        plan, version = plan_id(plan_file), content_version(raw)
        with self._locked(plan) as d:
            last = self._last(d)
            if last is not None and last.version == version:
                return None
            with contextlib.suppress(OSError):
                if content_version(plan_file.read_bytes()) != version:
                    return None
            return self._append(d, plan, plan_file.name, raw, "file", by)

    def rollback(self, plan: str, dialplans_dir: Path, version: str | None = None, *,
                 by: str) -> VersionEntry:
        """Write an archived version (default: the one before the current) back to the plan file.
        The watchers load it as usual; the history gets a ``rollback`` line at once."""
        with self._locked(plan) as d:
            entries = self.history(plan)
            if not entries:
                raise NotFound(f"no archived versions of dial plan {plan}", code="dialplan.not_found")
            current = entries[-1]
            if version is None:
                older = [e for e in entries if e.version != current.version]
                if not older:
                    raise NotFound(f"dial plan {plan} has no previous version",
                                   code="dialplan.version_not_found")
                version = older[-1].version
            source = self.path_of(plan, version)
            load_plan(source)  # still valid for this release of the dial-plan language
            raw = source.read_bytes()
            entry = self._append(d, plan, current.file, raw, "rollback", by)
            write_atomic(dialplans_dir / current.file, raw)
        log.info("dialplans.rollback", plan=plan, version=version, previous=current.version, by=by)
        return entry

    def _last(self, d: Path) -> VersionEntry | None:
        entries = self.history(d.name)
        return entries[-1] if entries else None

    def _append(self, d: Path, plan: str, file: str, raw: bytes, source: Source, by: str) -> VersionEntry:
        version = content_version(raw)
        stored = d / f"{version}.yaml"
        if not stored.is_file():
            write_atomic(stored, raw)
        entry = VersionEntry(version=version, sha256=hashlib.sha256(raw).hexdigest(), file=file,
                             activated_at=_now(), source=source, by=by)
        entries = [*self.history(plan), entry][-self.keep:]
        write_atomic(d / "history.jsonl", "".join(e.model_dump_json() + "\n" for e in entries).encode())
        kept = {e.version for e in entries}
        for old in d.glob("*.yaml"):
            if old.stem not in kept:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        return entry


@dataclass
class PlanState:
    """What a worker knows about one plan file."""

    plan: str
    path: Path
    loaded: LoadedPlan | None = None  # the version that runs (None: the plan does not run)
    seen: str | None = None  # the content version last looked at, valid or not
    error: DialplanError | None = None  # why ``seen`` does not run
    error_at: str | None = None


class LiveRegistry(PlanRegistry):
    """The plans a worker runs, replaced as their files change; a :class:`PlanRegistry` to its users.

    ``for_number`` reads the current snapshot; a reload builds a new snapshot and swaps it in.
    Raises :class:`DialplanError` when no plan at all can run."""

    def __init__(self, directory: Path, archive: VersionArchive | None = None, *, by: str = "worker") -> None:
        self.directory = directory
        self.archive = archive
        self.by = by
        self.states: dict[Path, PlanState] = {}
        self._snapshot = PlanRegistry([])
        self.reload(initial=True)
        if not self._snapshot.plans:
            first = next((s.error for s in self.states.values() if s.error), None)
            raise first or DialplanError(f"no dial plans in {directory}", code="dialplan.none")

    # --- PlanRegistry -----------------------------------------------------------------------------
    @property
    def by_number(self) -> dict[str, LoadedPlan]:  # type: ignore[override]
        return self._snapshot.by_number

    @property
    def plans(self) -> list[LoadedPlan]:  # type: ignore[override]
        return self._snapshot.plans

    @property
    def snapshot(self) -> PlanRegistry:
        return self._snapshot

    def for_number(self, dnis: str) -> LoadedPlan | None:
        return self._snapshot.for_number(dnis)

    def for_id(self, plan_id: str) -> LoadedPlan | None:
        return self._snapshot.for_id(plan_id)

    # --- reloading --------------------------------------------------------------------------------
    def reload(self, *, initial: bool = False) -> bool:
        """Look at every plan file once; swap in a new snapshot if a plan changed. Returns whether
        anything a status report shows (versions, errors) changed. Blocking file I/O: run it in a
        thread (``watch`` does)."""
        running = {p: s.loaded for p, s in self.states.items() if s.loaded is not None}
        files = plan_files(self.directory)
        changed = swap = False
        for path in files:
            try:
                raw = read_bounded(path)
            except OSError:
                continue  # renamed or deleted between the listing and the read: next round
            version = content_version(raw)
            state = self.states.setdefault(path, PlanState(plan_id(path), path))
            if state.seen == version:
                continue
            old = state.loaded.version if state.loaded else None
            try:
                loaded = self._load(path, raw)
                candidate = {**running, path: loaded}
                PlanRegistry([candidate[p] for p in sorted(candidate)])  # a number used twice?
            except DialplanError as exc:
                changed = True
                state.seen, state.error, state.error_at = version, exc, _now()
                if initial and self.archive is not None:
                    state.loaded = self._fallback(state, running)
                    if state.loaded is not None:
                        running[path], swap = state.loaded, True
                log.warning("dialplans.reload_failed", plan=state.plan, file=str(path), code=exc.code,
                            error=exc.message, version=version,
                            running=state.loaded.version if state.loaded else None)
                continue
            changed = swap = True
            running[path] = loaded
            state.loaded, state.seen, state.error, state.error_at = loaded, version, None, None
            if self.archive is not None:
                try:
                    self.archive.record(path, raw, by=self.by)
                except (OSError, IvrError) as exc:
                    log.warning("dialplans.archive_failed", plan=state.plan, error=str(exc))
            if old != version:
                log.info("dialplans.loaded" if initial else "dialplans.reloaded", plan=state.plan,
                         name=loaded.plan.name, file=str(path), old_version=old, version=version)
        before = len(running)
        changed |= self._forget_deleted(set(files), running)
        if swap or len(running) != before:
            ordered = [running[p] for p in sorted(running)]
            self._snapshot = PlanRegistry(ordered)  # the swap: one reference assignment
        return changed

    @staticmethod
    def _load(path: Path, raw: bytes) -> LoadedPlan:
        """The plan of exactly these bytes (read once: a file being written is looked at again next
        round). Whatever goes wrong is a :class:`DialplanError`, so the files after it still load."""
        try:
            return load_plan(path, raw)
        except DialplanError:
            raise
        except Exception as exc:  # load_plan converts its own; this guards the ones of the future
            raise DialplanError(f"{path}: cannot load ({type(exc).__name__})", code="dialplan.internal") from None

    def _forget_deleted(self, present: set[Path], running: dict[Path, LoadedPlan]) -> bool:
        changed = False
        for path in sorted(set(self.states) - present):
            state = self.states[path]
            if state.loaded is not None and len(running) == 1:
                if state.error is None or state.error.code != "dialplan.none":
                    state.error = DialplanError(f"{path}: deleted, but it is the last dial plan: "
                                                "it keeps running", code="dialplan.none")
                    state.error_at, state.seen = _now(), None
                    log.warning("dialplans.reload_failed", plan=state.plan, file=str(path), code=state.error.code,
                                error=state.error.message, running=state.loaded.version)
                    changed = True
                continue
            running.pop(path, None)
            del self.states[path]
            log.warning("dialplans.removed", plan=state.plan, file=str(path),
                        version=state.loaded.version if state.loaded else None)
            changed = True
        return changed

    def _fallback(self, state: PlanState, running: dict[Path, LoadedPlan]) -> LoadedPlan | None:
        """At start, a broken file runs its last archived version (if it still validates)."""
        assert self.archive is not None
        entry = self.archive.current(state.plan)
        if entry is None:
            return None
        try:
            archived = load_plan(self.archive.path_of(state.plan, entry.version))
            PlanRegistry([*running.values(), archived])
        except (DialplanError, NotFound) as exc:
            log.warning("dialplans.fallback_failed", plan=state.plan, version=entry.version, error=exc.message)
            return None
        log.warning("dialplans.fallback", plan=state.plan, version=entry.version)
        return LoadedPlan(archived.plan, state.path, archived.version)

    def fingerprint(self) -> tuple[tuple[str, int, int, int], ...]:
        """What a reload would look at, cheaply: each plan file's name, size, change time and inode
        (a stat each, nothing read)."""
        out = []
        for path in plan_files(self.directory):
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((path.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(out)

    async def watch(self, interval_s: float,
                    on_change: Callable[[LiveRegistry], Awaitable[None]] | None = None,
                    *, refresh_s: float = 15.0, full_every: int = 10) -> None:
        """Look every ``interval_s`` until cancelled; reload (in a thread: every file read and
        hashed) when a file's stat changed, and every ``full_every`` looks whatever the stats say (an
        edit that kept a file's size within one tick of the clock). An idle worker's every second
        was a thread hand-off and five files read and hashed: a few stats now. ``on_change`` (the
        Redis status report) runs at start, after every change and every ``refresh_s``; its failures
        are logged and retried."""
        pending, reported_at = True, 0.0
        seen: tuple[tuple[str, int, int, int], ...] | None = None
        looks = 0
        while True:
            try:
                looks += 1
                now = self.fingerprint()  # a few stats of local files: not worth a thread
                if now != seen or looks % full_every == 0:
                    if await asyncio.to_thread(self.reload):
                        pending = True
                    seen = now
            except Exception:  # a bug or an I/O error must not stop reloading
                log.exception("dialplans.watch_failed")
            if on_change is not None and (pending or time.monotonic() - reported_at >= refresh_s):
                try:
                    await on_change(self)
                    pending, reported_at = False, time.monotonic()
                except Exception as exc:
                    log.warning("dialplans.report_failed", error=str(exc))
            await asyncio.sleep(interval_s)
