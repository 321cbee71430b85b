"""Where finished recordings live: a pluggable store, a local directory by default.

A worker writes a call's raw channels to its own spool (``recording.spool_dir``), compresses them
after the call, and hands the finished file to :meth:`RecordingStore.put`; the API and the
transcriber read it back with :meth:`RecordingStore.path`; retention removes it with
:meth:`RecordingStore.delete`. Keys are ``YYYY/MM/DD/<recording id>.<ext>``: unique (the id is
random), so workers on several hosts never coordinate; with several hosts the directory is one
shared file system mounted at the same path everywhere (docs/recording.md, "Several hosts").

A key is checked on every use: relative, no ``..``, only ``[A-Za-z0-9_.-]`` in each part; a symlink
that leads out of the root is refused too. Nothing outside the root is ever read or removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Protocol

from ivr.core.config import Settings

KEY = re.compile(r"^[0-9]{4}/[0-9]{2}/[0-9]{2}/R[0-9a-f]{20}\.(opus|mp3)$")


class BadKey(ValueError):
    """A key that is not one of ours (a hostile record, a bug): nothing is touched."""


class RecordingStore(Protocol):
    name: str

    def put(self, key: str, src: Path) -> int: ...

    def path(self, key: str) -> Path: ...

    def delete(self, key: str) -> bool: ...


def recording_key(recording_id: str, started_at_ms: int, ext: str) -> str:
    """The store key of a recording: its start day (UTC) and its id."""
    day = time.strftime("%Y/%m/%d", time.gmtime(started_at_ms / 1000))
    key = f"{day}/{recording_id}.{ext}"
    check_key(key)
    return key


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY.match(key):
        raise BadKey(f"not a recording key: {key!r}"[:120])
    return key


class LocalDirStore:
    """Recordings as files under one directory (local, or a shared mount for several hosts)."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _inside(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise BadKey(f"{key!r} leads out of the store")
        return path

    def put(self, key: str, src: Path) -> int:
        """Move ``src`` in as ``key`` (a rename when on the same file system, else copy + rename), so a
        reader never sees half a file. Returns its size."""
        dest = self._inside(key)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            os.replace(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            src.unlink(missing_ok=True)
        os.chmod(tmp, 0o640)
        os.replace(tmp, dest)
        return dest.stat().st_size

    def path(self, key: str) -> Path:
        path = self._inside(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path

    def delete(self, key: str) -> bool:
        path = self._inside(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        for parent in (path.parent, path.parent.parent, path.parent.parent.parent):  # empty day/month/year dirs
            if parent == self.root:
                break
            with contextlib.suppress(OSError):
                parent.rmdir()
        return True


def open_store(settings: Settings) -> RecordingStore:
    return LocalDirStore(settings.recordings_dir)
