"""The hash-pinned lock (deploy/python/lock.py) and the vulnerability report (deploy/python/audit.py)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_python_{name}", ROOT / "deploy" / "python" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


lock = _load("lock")
audit = _load("audit")


def _pins(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, version in audit.pins(path.read_text()):
        out.setdefault(name, []).append(version)
    return out


def _canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_committed_lock_agrees_with_pyproject() -> None:
    assert lock.check(ROOT / "pyproject.toml", ROOT / "requirements.lock") is None


def test_every_requirement_of_pyproject_is_pinned_by_the_lock_within_its_range() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"]) + list(data["build-system"]["requires"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs += extra
    pinned = {_canon(k): v for k, v in _pins(ROOT / "requirements.lock").items()}
    assert len(reqs) > 20
    for text in reqs:
        req = Requirement(text)
        versions = pinned.get(_canon(req.name))
        assert versions, f"{req.name} is in pyproject.toml but not in requirements.lock"
        assert any(req.specifier.contains(v, prereleases=True) for v in versions), (text, versions)


@pytest.mark.parametrize("path", ["requirements.lock", "deploy/python/uv.txt"])
def test_every_line_of_a_lock_is_an_exact_pin_with_hashes(path: str) -> None:
    lines = (ROOT / path).read_text().splitlines()
    entries: list[list[str]] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("    "):
            entries[-1].append(line.strip())
        else:
            entries.append([line.strip()])
    assert entries
    for entry in entries:
        head = entry[0]
        assert audit.PIN.match(head), f"{path}: not an exact pin: {head}"
        hashes = [x for x in entry[1:] if x.startswith("--hash=sha256:")]
        assert hashes, f"{path}: {head} has no hash"
        assert all(len(h.split(":", 1)[1].rstrip(" \\")) == 64 for h in hashes)


def test_uv_is_pinned_alone() -> None:
    assert list(_pins(ROOT / "deploy" / "python" / "uv.txt")) == ["uv"]


def test_a_changed_range_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text()
    assert '"redis>=5.0,<9"' in text
    pyproject.write_text(text.replace('"redis>=5.0,<9"', '"redis>=5.0,<10"'))
    problem = lock.check(pyproject, ROOT / "requirements.lock")
    assert problem and "make lock" in problem and "disagree" in problem
    # Fields that do not decide what is installed do not invalidate the lock.
    pyproject.write_text(text.replace('version = "0.1.0"', 'version = "0.1.1"'))
    assert lock.check(pyproject, ROOT / "requirements.lock") is None


def test_a_lock_not_made_by_make_lock_is_refused(tmp_path: Path) -> None:
    bare = tmp_path / "requirements.lock"
    bare.write_text("redis==8.2.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    problem = lock.check(ROOT / "pyproject.toml", bare)
    assert problem and "make lock" in problem
    assert "missing" in (lock.check(ROOT / "pyproject.toml", tmp_path / "absent.lock") or "")


def test_make_test_stops_before_installing_when_pyproject_and_lock_disagree(tmp_path: Path) -> None:
    """The real Makefile, in a copy of the tree whose pyproject.toml was edited without `make lock`."""
    for rel in ("Makefile", "pyproject.toml", "requirements.lock", "deploy/python/lock.py",
                "deploy/python/uv.txt", "deploy/install-system.sh"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    py = tmp_path / "pyproject.toml"
    py.write_text(py.read_text().replace('"aiohttp>=3.9,<4"', '"aiohttp>=3.10,<4"'))
    res = subprocess.run(["make", "-C", str(tmp_path), "lockcheck"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "pyproject.toml and requirements.lock disagree" in res.stderr
    # `make test` reaches the same check before it installs anything.
    dry = subprocess.run(["make", "-C", str(tmp_path), "-n", "test"], capture_output=True, text=True, timeout=60)
    out = dry.stdout
    assert "lock.py --check" in out and out.index("lock.py --check") < out.index("pip sync")


# --- audit.py against a real HTTP server with the index's JSON shapes ---

class _Index(BaseHTTPRequestHandler):
    docs: ClassVar[dict[str, dict[str, object]]] = {}

    def do_GET(self) -> None:
        doc = self.docs.get(self.path)
        body = json.dumps(doc).encode() if doc is not None else b"{}"
        self.send_response(200 if doc is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    vuln = {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["2.0"], "summary": "bad", "withdrawn": None}
    _Index.docs = {
        "/pypi/exact/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": [vuln]},
        "/pypi/exactok/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": []},
        "/pypi/newest/json": {"info": {"version": "3.0"}, "vulnerabilities": [vuln]},
        "/pypi/old/json": {"info": {"version": "9.0"}, "vulnerabilities": []},
        "/pypi/withdrawn/json": {"info": {"version": "1.0"},
                                 "vulnerabilities": [{**vuln, "withdrawn": "2026-01-01T00:00:00Z"}]},
    }
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/pypi"
    finally:
        srv.shutdown()
        srv.server_close()


def test_audit_reads_each_answer_of_the_index(index: str) -> None:
    fetch = audit.http_fetch(5.0)
    got = {n: audit.audit_one(index, n, v, fetch) for n, v in
           [("exact", "1.0"), ("exactok", "1.0"), ("newest", "3.0"), ("old", "1.0"), ("withdrawn", "1.0"),
            ("absent", "1.0")]}
    assert got["exact"].status == "vulnerable" and got["exact"].advisories[0].fixed_in == ("2.0",)
    assert got["exactok"].status == "ok"
    assert got["newest"].status == "vulnerable"           # the pin is the newest release: its advisories apply
    assert got["old"].status == "unaudited" and "9.0" in got["old"].note  # never reported clean
    assert got["withdrawn"].status == "ok"
    assert got["absent"].status == "unaudited"
    text = audit.report(list(got.values()))
    assert text.splitlines()[0].startswith("vulnerable") and "1 with no known" not in text
    assert text.splitlines()[-1] == ("audit: 6 pinned releases: 2 with no known advisory, 2 vulnerable, "
                                     "2 unaudited")


def test_audit_exit_codes(index: str, tmp_path: Path) -> None:
    lockfile = tmp_path / "l.lock"
    lockfile.write_text("exactok==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert audit.main(["--lock", str(lockfile), "--index", index]) == 0
    lockfile.write_text("exactok==1.0\nold==1.0\n")
    assert audit.main(["--lock", str(lockfile), "--index", index]) == 0
    assert audit.main(["--lock", str(lockfile), "--index", index, "--strict"]) == 2
    lockfile.write_text("exact==1.0\n")
    assert audit.main(["--lock", str(lockfile), "--index", index]) == 1


def test_an_index_that_does_not_answer_leaves_the_package_unaudited() -> None:
    fetch = audit.http_fetch(0.5)
    f = audit.audit_one("http://127.0.0.1:9/pypi", "x", "1.0", fetch)
    assert f.status == "unaudited" and "did not answer" in f.note
