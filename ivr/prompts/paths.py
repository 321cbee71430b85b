"""Where a dial plan's prompt file may come from: a name under ``prompts/<language>/``, nothing else.

A plan's ``file:`` is a relative POSIX path whose parts are words (``welcome``, ``billing/intro.wav``,
``안내.mp3``): no ``..``, no absolute path, no backslash, no hidden part. The library also resolves
the file it found (symbolic links included) and refuses it unless it is inside the language's
directory, so a link cannot lead elsewhere either: a plan can never play another caller's
voicemail or any other file of the host.
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_NAME = 200
MAX_PARTS = 4
_PART = re.compile(r"^\w[\w.-]*$")


def prompt_name_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable prompt file name, or None."""
    if not name or len(name) > MAX_NAME:
        return f"a prompt file name has 1 to {MAX_NAME} characters"
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ":" in name:
        return "a prompt file is a name under prompts/<language>/, not a path of the host"
    if len(parts) > MAX_PARTS or not all(_PART.match(p) and p not in (".", "..") for p in parts):
        return ("a prompt file is a name under prompts/<language>/ (letters, digits, _ . -, at most "
                f"{MAX_PARTS} parts separated by /; no .., no hidden names)")
    return None


def inside(base: Path, candidate: Path) -> bool:
    """``candidate`` (symbolic links resolved) is ``base`` or under it."""
    try:
        return candidate.resolve().is_relative_to(base.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False
