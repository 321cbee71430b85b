"""First-start secrets of ``ivr run``: the users' tokens and the private Redis's password.

A hotline must not ship a known token. When the configuration has no ``users:``, the first start
generates a random token for each demo identity (agent1, agent2, super1, admin) and keeps them in
``<var>/secrets/users.json``; the banner shows them that once, later starts only say where the
file is. The private Redis gets a generated password in ``<var>/secrets/redis.password``. The
directory is 0700 and every file 0600, created with those modes (never readable by anyone else, not
even for a moment); a file found readable by others is tightened again before use.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ivr.core.config import DEMO_USERS, AgentSeed, Settings
from ivr.core.errors import ConfigError
from ivr.core.logging import get_logger

log = get_logger(__name__)

USERS_FILE = "users.json"


def new_secret() -> str:
    """256 random bits, URL-safe: a token or a password."""
    return secrets.token_urlsafe(32)


def secrets_dir(var_dir: Path) -> Path:
    path = var_dir / "secrets"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a 0600 file, atomically (a crash leaves the old file or none)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_private(path: Path) -> str | None:
    """The file's text, or None when it does not exist; a file others may read is made 0600 first."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secrets.mode_tightened", file=str(path), mode=oct(stat.S_IMODE(mode)))
        path.chmod(0o600)
    return path.read_text()


@dataclass(frozen=True)
class GeneratedUsers:
    users: list[AgentSeed]
    path: Path
    created: bool  # True on the start that generated them: the only one that shows the tokens


def generated_users(var_dir: Path) -> GeneratedUsers:
    """The users of a hotline configured without ``users:``: read from the secrets file, or made now."""
    path = secrets_dir(var_dir) / USERS_FILE
    text = read_private(path)
    if text is not None:
        try:
            return GeneratedUsers([AgentSeed(**u) for u in json.loads(text)], path, created=False)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a list of users: fix or delete it ({type(exc).__name__})",
                              path=str(path)) from exc
    users = [{**u, "token": new_secret()} for u in DEMO_USERS]
    write_private(path, json.dumps(users, indent=2) + "\n")
    return GeneratedUsers([AgentSeed(**u) for u in users], path, created=True)


def ensure_redis_password(settings: Settings) -> Path:
    """Make sure the private Redis's password file exists (generated on first start); returns it."""
    path = settings.redis.password_file
    if path is None:
        raise ConfigError("redis.password_file is unset: only the private Redis gets a generated password")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if read_private(path) is None:
        write_private(path, new_secret() + "\n")
    return path


def apply_first_start(settings: Settings) -> GeneratedUsers | None:
    """Fill in what ``ivr run`` generates on first start; returns the generated users, if any."""
    generated = None
    if not settings.users:
        generated = generated_users(settings.var_dir)
        settings.users = generated.users
    if not settings.redis.external and settings.redis.password is None:
        ensure_redis_password(settings)
    return generated
