"""``ivr prompts build`` as an operator runs it: a real process, real espeak-ng and ffmpeg."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLAN = """\
name: cli test
numbers: ["2000"]
language: en
start: hello
nodes:
  hello: {type: play, prompt: {text: {en: "Hello.", ko: "안녕하세요."}}, next: hold}
  hold: {type: play, prompt: {file: hold}, next: korean}
  korean: {type: language, language: ko, next: bye}
  bye: {type: hangup, prompt: {file: goodbye}}
"""


def build(config: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", "prompts", "build", "--config", str(config), *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def counts(out: str) -> tuple[int, int]:
    match = re.search(r"(\d+) rendered, (\d+) cache hits", out)
    assert match, out
    return int(match[1]), int(match[2])


def test_prompts_build_renders_once_then_hits_the_cache_and_fails_on_a_broken_file(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "cli.yaml").write_text(PLAN)
    (plans / "nested").mkdir()  # only top-level files are plans
    (plans / "nested" / "broken.yaml").write_text("not: [a plan")
    config = tmp_path / "settings.yaml"
    config.write_text(f"var_dir: {tmp_path / 'var'}\ndialplans_dir: {plans}\nprompts:\n  dir: {prompts}\n")

    first = build(config)
    assert first.returncode == 0, first.stderr
    assert counts(first.stdout) == (6, 0)
    assert "1 plans" in first.stdout and "0 errors" in first.stdout
    cache = tmp_path / "var" / "prompt-cache"
    entries = sorted(p.name for p in cache.iterdir())
    assert len([e for e in entries if not e.startswith("moh-")]) == 6

    second = build(config)
    assert second.returncode == 0, second.stderr
    assert counts(second.stdout) == (0, 6)
    assert sorted(p.name for p in cache.iterdir()) == entries

    (prompts / "ko" / "goodbye.ogg").write_bytes(b"OggS" + bytes(300))
    broken = build(config, plans / "cli.yaml")
    assert broken.returncode == 1
    assert "bye.prompt [ko]: prompt.corrupt" in broken.stderr
    assert "goodbye.ogg" in broken.stderr
    assert "1 errors" in broken.stdout

    (prompts / "ko" / "goodbye.ogg").unlink()  # now the English recording is played, with a warning
    fallback = build(config)
    assert fallback.returncode == 0, fallback.stderr
    assert "warning:" in fallback.stderr and "prompt.language_fallback" in fallback.stderr
