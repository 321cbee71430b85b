#!/usr/bin/env python3
"""Known vulnerabilities of the locked Python packages (``make audit``; not part of ``make test``).

Reads every ``name==version`` pin of ``requirements.lock`` and asks the package index's JSON API for
the advisories it publishes (the PyPA advisory database, as the index serves it):

1. ``<index>/<name>/<version>/json`` — the advisories of exactly the pinned release;
2. where an index serves only ``<index>/<name>/json`` (the newest release; some mirrors and this
   workplace's registry do), its advisories are exact when the pin *is* the newest release; an older
   pin is reported ``unaudited`` with the newest version, so an outdated lock is visible.

Why not pip-audit: it asks only the per-version URL (1.) or the OSV service; where neither answers it
reports every package "not found" and exits 0, which reads like a clean bill of health.

Exit status: 1 when a pinned release has a known, not withdrawn advisory; 2 when ``--strict`` and a
package could not be audited; else 0. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    summary: str


@dataclass
class Finding:
    name: str
    version: str
    status: str  # ok | vulnerable | unaudited
    advisories: list[Advisory] = field(default_factory=list)
    note: str = ""


def pins(lock_text: str) -> list[tuple[str, str]]:
    """(name, version) of every pin; a name pinned twice under different markers gives both."""
    seen: dict[tuple[str, str], None] = {}
    for line in lock_text.splitlines():
        m = PIN.match(line)
        if m:
            seen[(m.group(1).lower(), m.group(2))] = None
    return list(seen)


def _advisories(doc: dict[str, object]) -> list[Advisory]:
    out = []
    for v in doc.get("vulnerabilities") or []:  # type: ignore[attr-defined]
        if not isinstance(v, dict) or v.get("withdrawn"):
            continue
        out.append(Advisory(id=str(v.get("id", "?")), aliases=tuple(v.get("aliases") or ()),
                            fixed_in=tuple(v.get("fixed_in") or ()),
                            summary=str(v.get("summary") or v.get("details") or "")[:200]))
    return out


Fetch = Callable[[str], "dict[str, object] | None"]


def http_fetch(timeout: float) -> Fetch:
    def fetch(url: str) -> dict[str, object] | None:
        for _attempt in range(3):
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    return json.loads(resp.read())  # type: ignore[no-any-return]
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return None
                err: Exception = e
            except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as e:
                err = e
        raise RuntimeError(f"{url}: {err}")
    return fetch


def audit_one(index: str, name: str, version: str, fetch: Fetch) -> Finding:
    try:
        exact = fetch(f"{index}/{name}/{version}/json")
        if exact is not None:
            adv = _advisories(exact)
            return Finding(name, version, "vulnerable" if adv else "ok", adv)
        latest = fetch(f"{index}/{name}/json")
    except RuntimeError as e:
        return Finding(name, version, "unaudited", note=f"index did not answer: {e}")
    if latest is None:
        return Finding(name, version, "unaudited", note="not on the index")
    info = latest.get("info")
    newest = str(info.get("version")) if isinstance(info, dict) else "?"
    if newest != version:
        return Finding(name, version, "unaudited",
                       note=f"the index serves advisories of its newest release ({newest}) only")
    adv = _advisories(latest)
    return Finding(name, version, "vulnerable" if adv else "ok", adv)


def default_index() -> str:
    """The JSON API of the index pip is configured with (pip's own default when none is set)."""
    from pip._internal.models.index import PyPI  # the tools virtualenv's pip: never a hard-coded host

    return str(PyPI.pypi_url).rstrip("/")


def report(findings: list[Finding]) -> str:
    lines = []
    for f in sorted(findings, key=lambda f: ({"vulnerable": 0, "unaudited": 1, "ok": 2}[f.status], f.name)):
        lines.append(f"{f.status:<10} {f.name}=={f.version}" + (f"  ({f.note})" if f.note else ""))
        for a in f.advisories:
            fixed = ", ".join(a.fixed_in) or "no fix yet"
            alias = f" [{', '.join(a.aliases)}]" if a.aliases else ""
            lines.append(f"           {a.id}{alias}: fixed in {fixed}. {a.summary}")
    counts = {s: sum(f.status == s for f in findings) for s in ("ok", "vulnerable", "unaudited")}
    lines.append(f"audit: {len(findings)} pinned releases: {counts['ok']} with no known advisory, "
                 f"{counts['vulnerable']} vulnerable, {counts['unaudited']} unaudited")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    p.add_argument("--index", help="the index's JSON API base (default: pip's configured index)")
    p.add_argument("--strict", action="store_true", help="exit 2 when any package could not be audited")
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = p.parse_args(argv)
    index = (args.index or default_index()).rstrip("/")
    fetch = http_fetch(args.timeout)
    with ThreadPoolExecutor(max_workers=8) as pool:
        findings = list(pool.map(lambda nv: audit_one(index, nv[0], nv[1], fetch), pins(args.lock.read_text())))
    if args.json:
        print(json.dumps([{"name": f.name, "version": f.version, "status": f.status, "note": f.note,
                           "advisories": [a.__dict__ for a in f.advisories]} for f in findings], indent=2))
    else:
        print(report(findings))
    if any(f.status == "vulnerable" for f in findings):
        return 1
    if args.strict and any(f.status == "unaudited" for f in findings):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
