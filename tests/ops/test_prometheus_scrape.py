"""A real Prometheus scrapes a real daemon probing local targets; what it stores must be true."""

from __future__ import annotations

import subprocess

from tests.ops.conftest import CERT_DAYS_LEFT, Daemon, Prometheus, Targets
from tests.support import need_binary, wait_until


def _by_name(samples: list[dict]) -> dict[str, float]:
    return {s["metric"]["name"]: float(s["value"][1]) for s in samples}


def test_prometheus_scrapes_the_daemon_without_errors(live_prometheus: Prometheus) -> None:
    def scraped() -> list[dict]:
        active = live_prometheus.api("targets")["activeTargets"]
        return [t for t in active if t["health"] == "up"]

    (target,) = wait_until(scraped, timeout=20, what="a successful scrape")
    assert target["labels"]["job"] == "upcheck"
    assert target["lastError"] == ""


def test_probe_success_per_target_matches_what_each_target_does(
    live_prometheus: Prometheus, targets: Targets
) -> None:
    expected = {name: 1.0 if up else 0.0 for name, (_, up, _) in targets.expected.items()}

    def stored() -> dict[str, float] | None:
        seen = _by_name(live_prometheus.query("probe_success"))
        return seen if seen.keys() == expected.keys() else None

    assert wait_until(stored, timeout=20, what="probe_success for every target") == expected

    urls = {s["metric"]["name"]: s["metric"]["url"] for s in live_prometheus.query("probe_success")}
    assert urls == {name: url for name, (url, _, _) in targets.expected.items()}

    codes = _by_name(live_prometheus.query("probe_http_status_code"))
    assert codes == {name: float(code) for name, (_, _, code) in targets.expected.items()}

    failures = _by_name(live_prometheus.query("upcheck_consecutive_failures"))
    assert failures["healthy"] == 0 and failures["secure"] == 0
    assert failures["broken"] >= 1


def test_every_probe_has_all_five_phases_and_tls_only_for_https(
    live_prometheus: Prometheus,
) -> None:
    def phases() -> list[dict]:
        return live_prometheus.query("probe_http_duration_seconds")

    samples = wait_until(lambda: len(phases()) == 15 and phases(), timeout=20, what="15 phases")
    seen = {(s["metric"]["name"], s["metric"]["phase"]): float(s["value"][1]) for s in samples}
    for name in ("healthy", "broken", "secure"):
        assert {p for n, p in seen if n == name} == {
            "resolve",
            "connect",
            "tls",
            "processing",
            "transfer",
        }
    assert seen["healthy", "tls"] == 0 and seen["broken", "tls"] == 0
    assert seen["secure", "tls"] > 0


def test_certificate_expiry_reaches_prometheus_for_the_https_target_only(
    live_prometheus: Prometheus, targets: Targets
) -> None:
    expiry = wait_until(
        lambda: _by_name(live_prometheus.query("probe_ssl_earliest_cert_expiry")),
        timeout=20,
        what="a certificate expiry",
    )
    assert expiry == {"secure": targets.cert_not_after.timestamp()}
    (days,) = live_prometheus.query("(probe_ssl_earliest_cert_expiry - time()) / 86400")
    assert CERT_DAYS_LEFT - 1 < float(days["value"][1]) <= CERT_DAYS_LEFT


def test_alert_rules_load_and_pick_out_the_broken_and_the_expiring_target(
    live_prometheus: Prometheus,
) -> None:
    groups = live_prometheus.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {
        "UpcheckDaemonDown",
        "UpcheckURLDown",
        "UpcheckCertificateExpiringSoon",
        "UpcheckTargetsLoadFailing",
        "UpcheckProbesLate",
        "UpcheckSinkFailing",
        "UpcheckShardMembersDisagree",
        "UpcheckShardRefreshFailing",
        "UpcheckURLFlapping",
        "UpcheckEgressBroken",
        "UpcheckTargetsRowsSkipped",
        "UpcheckSinkDropping",
    }

    expected = {
        ("UpcheckURLDown", "broken"),
        ("UpcheckCertificateExpiringSoon", "secure"),
    }

    def active() -> set[tuple[str, str]]:
        alerts = live_prometheus.api("alerts")["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("name", "")) for a in alerts}

    # The rules have `for:` clauses of minutes, so the alerts are pending, not firing, here.
    # Before the first scrape, UpcheckDaemonDown may be pending for a moment (absent `up`); once
    # the daemon is scraped it must be gone, and only these two remain.
    wait_until(lambda: active() == expected, timeout=20, what=f"exactly {expected} pending")
    rules = {r["name"]: r for g in live_prometheus.api("rules")["groups"] for r in g["rules"]}
    assert all(rule["health"] == "ok" for rule in rules.values()), rules


def test_two_tasks_exporting_the_same_urls_raise_each_alert_once(
    twin_prometheus: Prometheus,
) -> None:
    """The twin Prometheus sees every URL from two tasks (as during a hand-over, SPEC.md
    "Sharding"): still one pending alert per URL, with no task label on it."""
    expected = [
        ("UpcheckCertificateExpiringSoon", "secure"),
        ("UpcheckURLDown", "broken"),
    ]

    def active() -> list[tuple[str, str]]:
        alerts = twin_prometheus.api("alerts")["alerts"]
        for alert in alerts:
            assert not {"instance", "aws_ecs_task_arn"} & set(alert["labels"]), alert
        return sorted((a["labels"]["alertname"], a["labels"].get("name", "")) for a in alerts)

    wait_until(lambda: active() == expected, timeout=20, what=f"exactly {expected} pending")


def test_promtool_finds_no_problem_in_the_daemons_exposition(live_daemon: Daemon) -> None:
    promtool = need_binary("promtool")
    text = live_daemon.metrics()
    assert "probe_success{" in text and "upcheck_probe_lateness_seconds_bucket{" in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""
