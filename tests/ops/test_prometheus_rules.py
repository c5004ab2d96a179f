"""The alert rules and the example scrape config, checked by Prometheus's own promtool."""

from __future__ import annotations

import subprocess

import yaml

from tests.ops.conftest import ALERTS, REPO, Daemon
from tests.ops.promql import exported, problems
from tests.support import need_binary

PROMETHEUS = REPO / "ops" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_binary("promtool"), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_promtool_unit_tests_of_every_rule_pass() -> None:
    tested = promtool("test", "rules", "tests/alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert fired == alerts and quiet == alerts


def test_every_alert_has_a_severity_summary_and_description() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert rule.get("for"), f"{rule['alert']}: a single bad scrape must not page"


def test_rules_name_only_metrics_and_labels_the_daemon_exports(live_daemon: Daemon) -> None:
    exports = exported(live_daemon.metrics())
    rules = yaml.safe_load(ALERTS.read_text())
    found = {
        rule["alert"]: problems(rule["expr"], exports)
        for group in rules["groups"]
        for rule in group["rules"]
        if problems(rule["expr"], exports)
    }
    assert found == {}


def test_promtool_accepts_the_example_scrape_config() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "upcheck" and job["metrics_path"] == "/metrics"
