"""The Prometheus rules file mirrors the alert rules: the committed file is the generated one, promtool
accepts it, and its unit tests (deploy/prometheus/ivr-alerts.test.yml: the hysteresis band keeps an
alert firing) pass. promtool comes from Debian's prometheus package (deploy/install-system.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from ivr.alerts.prometheus import main, rules, rules_yaml
from ivr.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "deploy" / "prometheus" / "ivr-alerts.yml"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is installed by deploy/install-system.sh (Debian package prometheus)"
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60)


def test_the_committed_rules_file_is_the_generated_one() -> None:
    assert FILE.read_text() == rules_yaml(Settings()), (
        "deploy/prometheus/ivr-alerts.yml is stale: python -m ivr.alerts.prometheus > deploy/prometheus/ivr-alerts.yml")


def test_every_default_rule_has_a_prometheus_alert() -> None:
    names = [r["alert"] for r in rules(Settings())["groups"][0]["rules"]]
    assert names == [r.name for r in Settings().alerts.rules]


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    check = promtool("check", "rules", str(FILE))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 9 rules found" in check.stdout
    tested = promtool("test", "rules", "ivr-alerts.test.yml", cwd=FILE.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_queues_own_settings_get_a_rule_of_their_own(tmp_path: Path) -> None:
    s = Settings(routing={"queues": {"vip": {"alerts": {"long_wait": {"threshold": 30, "clear_at": 20}}},
                                     "sales.vip": {"service_level_target": 0.95}, "plain": {}}},
                 alerts={"rules": [{"name": "long_wait", "metric": "longest_wait_s", "threshold": 120,
                                    "clear_at": 60, "for_s": 0},
                                   {"name": "sl_low", "metric": "service_level", "queues": ["sales*"]}]})
    by_name = {r["alert"]: r for r in rules(s)["groups"][0]["rules"]}
    assert sorted(by_name) == ["long_wait", "long_wait_vip", "sl_low", "sl_low_sales_vip"]
    assert 'queue!~"vip"' in by_name["long_wait"]["expr"] and "> 120" in by_name["long_wait"]["expr"]
    assert 'queue="vip"' in by_name["long_wait_vip"]["expr"] and "> 30" in by_name["long_wait_vip"]["expr"]
    assert 'queue=~"sales.*",queue!~"sales\\\\.vip"' in by_name["sl_low"]["expr"]
    assert "< 0.9" in by_name["sl_low"]["expr"]
    vip = by_name["sl_low_sales_vip"]["expr"]
    assert 'queue="sales.vip"' in vip and "< 0.95" in vip
    path = tmp_path / "rules.yml"
    path.write_text(rules_yaml(s))
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert yaml.safe_load(path.read_text())["groups"][0]["name"] == "ivr-alerts"


def test_the_module_prints_the_file(capsys: object) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out == FILE.read_text()
