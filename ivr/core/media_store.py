"""Where call audio lives on disk (voicemail today; recordings next) and the one check that a path
handed back by a record lies inside it. Written by the call application, served by the API."""

from __future__ import annotations

import re
from pathlib import Path

from ivr.core.config import Settings

#: a mailbox, queue or file name: what may appear in a path or a download name
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def voicemail_dir(settings: Settings) -> Path:
    return (settings.var_dir / "voicemail").resolve()


def voicemail_file(path: str | Path, settings: Settings) -> Path | None:
    """The resolved WAV file if ``path`` is a ``.wav`` inside ``<var_dir>/voicemail`` (symlinks
    resolved), else None."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if resolved.suffix.lower() != ".wav" or not resolved.is_relative_to(voicemail_dir(settings)):
        return None
    return resolved
