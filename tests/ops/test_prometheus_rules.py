"""The alert rules and the example scrape config, checked by Prometheus's own promtool."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.ops.conftest import ALERTS, REPO, SHARD_METRICS, Daemon, daemon_shards
from tests.ops.promql import exported, names, problems, with_pending
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
    assert "SUCCESS: 12 rules found" in checked.stdout


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


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


# Labels that name one task: Prometheus's `instance`, and what the ADOT collector adds.
TASK_LABELS = {"instance", "aws_ecs_task_arn"}


def test_every_rule_aggregates_the_tasks_away() -> None:
    """Several tasks share the list (SPEC.md "Sharding") and every deployment replaces them:
    an alert keyed by task would fire once per task and again for each replacement."""
    for rule in _rules():
        expr = " ".join(rule["expr"].split())
        assert re.match(r"^(1 - \( )?(max|min|count|sum) by \(", expr), rule["alert"]
        assert not names(expr).grouping & TASK_LABELS, rule["alert"]
        if rule["alert"] == "UpcheckEgressBroken":
            # Counts URLs (each once, whichever tasks export it) per job.
            assert names(expr).grouping == {"job", "name", "url"}, rule["alert"]
            assert expr.startswith("count by (job) (max by (job, name, url) ("), expr
        elif any(m.startswith(("probe_", "upcheck_consecutive")) for m in names(expr).selectors):
            # One alert per URL, whichever task owns it, bridging the moment it changes hands.
            assert re.match(r"^(1 - \( )?(max|min|sum) by \(job, name, url\) \(", expr), rule
            assert names(expr).grouping == {"job", "name", "url"}, rule["alert"]


def test_every_alert_is_unit_tested_with_several_tasks() -> None:
    tests = yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())
    several: set[str] = set()
    for test in tests["tests"]:
        tasks = {
            match
            for series in test["input_series"]
            for match in re.findall(r'(?:instance|aws_ecs_task_arn)="([^"]+)"', series["series"])
        }
        if len(tasks) > 1:
            several |= {c["alertname"] for c in test["alert_rule_test"] if c["exp_alerts"]}
    assert several == {r["alert"] for r in _rules()}


def test_rules_name_only_metrics_and_labels_the_daemon_exports(live_daemon: Daemon) -> None:
    exports = exported(live_daemon.metrics())
    if not daemon_shards():
        # The daemon side of issue 13 has not landed: the names are SPEC.md's.
        exports = with_pending(exports, SHARD_METRICS)
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


def _rule(alert: str) -> dict:
    (rule,) = [r for r in _rules() if r["alert"] == alert]
    return rule


def test_a_url_is_down_after_failed_probes_in_a_row_not_after_a_time_with_one_failure() -> None:
    """At a 10 minute probe interval one failure leaves probe_success at 0 for 10 minutes: a
    rule on probe_success alone with `for: 5m` paged after one failed probe. The count of
    failed probes in a row is the same at any interval (the promtool cases run 60 s and 10 min)."""
    expr = " ".join(_rule("UpcheckURLDown")["expr"].split())
    assert "upcheck_consecutive_failures" in names(expr).selectors
    assert re.search(r"\(last_over_time\(upcheck_consecutive_failures\[2m\]\)\) >= 3", expr)
    tests = (PROMETHEUS / "tests" / "alerts_test.yml").read_text()
    assert "slow is probed every 10 minutes and fails once" in tests


def test_flapping_egress_rows_and_drops_have_rules() -> None:
    assert "avg_over_time" in _rule("UpcheckURLFlapping")["expr"] or (
        "sum_over_time(probe_success[1h])" in _rule("UpcheckURLFlapping")["expr"]
    )
    assert "upcheck_targets_row_errors_total" in _rule("UpcheckTargetsRowsSkipped")["expr"]
    assert "upcheck_sink_dropped_total" in _rule("UpcheckSinkDropping")["expr"]
    assert _rule("UpcheckEgressBroken")["labels"]["severity"] == "critical"
