#!/usr/bin/env python3
"""The Python locks: make them (``make lock``) and check them (every ``make test``/``make run``).

Two lock files, each an exact pin of every package with the hashes of its files, in the
requirements format that both uv and pip install with ``--require-hashes``:

- ``requirements.lock`` — the hotline's whole tree: runtime, the ``test`` and ``bench`` extras and the
  build backend (``[build-system] requires``), resolved for Python 3.11 on any platform;
- ``deploy/python/uv.txt`` — uv itself, which installs the other (bootstrapped by pip).

``requirements.lock`` carries a digest of the dependency fields of ``pyproject.toml`` it was made
from; ``--check`` recomputes it and fails with a clear message when the two disagree, so a range
edited in ``pyproject.toml`` cannot silently install something the lock never saw.

Standard library only: the check runs before any virtualenv exists.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
UV_LOCK = ROOT / "deploy" / "python" / "uv.txt"
PYTHON_VERSION = "3.11"
DIGEST_TAG = "# inputs-sha256: "
TOOLS = {UV_LOCK: "uv"}


def inputs_digest(pyproject: Path) -> str:
    """sha256 of the fields of pyproject.toml that decide what gets installed (nothing else)."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data.get("project", {})
    fields = {
        "requires-python": project.get("requires-python"),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {k: sorted(v) for k, v in sorted(project.get("optional-dependencies", {}).items())},
        "build-system": sorted(data.get("build-system", {}).get("requires", [])),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(DIGEST_TAG):
            return line[len(DIGEST_TAG):].strip()
        if not line.startswith("#"):
            break
    return None


def check(pyproject: Path, lock: Path) -> str | None:
    """None when the lock was made from this pyproject.toml's dependency fields, else the reason."""
    if not lock.is_file():
        return f"{lock.name} is missing: run `make lock` and commit it"
    recorded = recorded_digest(lock)
    if recorded is None:
        return f"{lock.name} has no '{DIGEST_TAG.strip('# :')}' line: it was not made by `make lock`; run it"
    if recorded != inputs_digest(pyproject):
        return (f"{pyproject.name} and {lock.name} disagree: the dependencies, extras, requires-python or "
                f"build requirements changed since the lock was made. Run `make lock`, run `make test` on "
                f"the new lock, and commit both files together")
    return None


def _compile(uv: str, sources: list[Path], out: Path, extras: list[str], header: list[str]) -> None:
    cmd = [uv, "pip", "compile", *map(str, sources), "--universal", "--python-version", PYTHON_VERSION,
           "--generate-hashes", "--no-header", "--quiet", "--upgrade", "-o", str(out)]
    for extra in extras:
        cmd += ["--extra", extra]
    subprocess.run(cmd, check=True, cwd=ROOT)
    # `# via -r <input>` notes would name the temporary input file; name what it stands for instead.
    body = out.read_text(encoding="utf-8")
    for src in sources:
        if src.parent != ROOT:
            body = body.replace(f"-r {src}", f"-r {src.stem}")
    out.write_text("\n".join(header) + "\n" + body, encoding="utf-8")


def make(uv: str) -> None:
    version = " ".join(subprocess.run([uv, "--version"], check=True, capture_output=True, text=True).stdout.split()[:2])
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = sorted(data["project"].get("optional-dependencies", {}))
    with tempfile.TemporaryDirectory() as tmp:
        build_in = Path(tmp) / "build-system.requires"
        build_in.write_text("\n".join(data["build-system"]["requires"]) + "\n", encoding="utf-8")
        _compile(uv, [ROOT / "pyproject.toml", build_in], LOCK, extras, [
            "# The hotline's Python packages: runtime, the extras "
            f"({', '.join(extras)}) and the build backend, exact versions with hashes.",
            f"# Made by `make lock` (deploy/python/lock.py, {version}); never edit by hand.",
            f"{DIGEST_TAG}{inputs_digest(ROOT / 'pyproject.toml')}",
        ])
        for lock, package in TOOLS.items():
            src = Path(tmp) / f"{package}.in"
            src.write_text(package + "\n", encoding="utf-8")
            _compile(uv, [src], lock, [], [
                f"# {package} with every package it needs, exact versions with hashes (installed by the Makefile).",
                f"# Made by `make lock` (deploy/python/lock.py, {version}); never edit by hand.",
            ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check that requirements.lock matches pyproject.toml")
    p.add_argument("--uv", default="uv", help="the uv executable used to resolve (make lock)")
    p.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    p.add_argument("--lock", type=Path, default=LOCK)
    args = p.parse_args(argv)
    if args.check:
        problem = check(args.pyproject, args.lock)
        if problem:
            print(f"lock check failed: {problem}", file=sys.stderr)
            return 1
        return 0
    make(args.uv)
    problem = check(args.pyproject, args.lock)
    if problem:  # pragma: no cover - make() writes the digest it checks
        print(f"lock check failed after make: {problem}", file=sys.stderr)
        return 1
    print(f"wrote {LOCK.relative_to(ROOT)} and {UV_LOCK.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
