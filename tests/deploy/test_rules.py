"""deploy/prometheus: the alerting rules pass `promtool check rules`, and their unit tests `promtool test rules`.

promtool comes with Debian's ``prometheus`` package; `.ci/run` installs it when it is missing, so in CI
these run. Elsewhere they are skipped with that reason. What needs no promtool (every rule has a unit
test showing it firing and one showing it quiet) runs everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: apt-get install --no-install-recommends prometheus (.ci/run does it in CI)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False)


def load(name: str) -> Any:
    return yaml.safe_load((PROMETHEUS / name).read_text())


def alert_names() -> list[str]:
    return [rule["alert"] for group in load("rules.yml")["groups"] for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@needs_promtool
def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_prometheus_config_is_valid_and_loads_the_rules() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_a_broken_rule_unit_test_fails(tmp_path: Path) -> None:
    """The unit tests can fail: expecting a quiet SniperCoreDown where it fires is reported."""
    shutil.copy(PROMETHEUS / "rules.yml", tmp_path / "rules.yml")
    broken = load("rules_test.yml")
    first = broken["tests"][0]["alert_rule_test"]
    firing = next(case for case in first if case["exp_alerts"])
    firing["exp_alerts"] = []
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(broken))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "SniperCoreDown" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, list[bool]] = {}
    for test in load("rules_test.yml")["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    names = alert_names()
    assert len(names) == len(set(names)) >= 7
    for name in names:
        assert True in cases.get(name, []), f"{name}: no unit test where it fires"
        assert False in cases.get(name, []), f"{name}: no unit test where it stays quiet"


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in load("rules.yml")["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
