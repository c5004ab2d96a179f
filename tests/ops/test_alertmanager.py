"""ops/prometheus/alertmanager.yml in a real Alertmanager (Debian's prometheus-alertmanager) on
127.0.0.1: the egress alert mutes the per-URL alerts of its job, and nothing else."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import yaml

from tests.ops.conftest import REPO, clean_env, http_get, stop
from tests.support import free_port, need_binary, wait_until

CONFIG = REPO / "ops" / "prometheus" / "alertmanager.yml"
ALERTS = REPO / "ops" / "prometheus" / "alerts.yml"


def test_amtool_accepts_the_example_config() -> None:
    checked = subprocess.run(
        [need_binary("amtool"), "check-config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 inhibit rules" in checked.stdout


def test_inhibited_alerts_are_ones_the_rules_define() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    (rule,) = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ["alertname = UpcheckEgressBroken"]
    (target,) = rule["target_matchers"]
    muted = set(target.split("=~", 1)[1].strip().split("|"))
    assert muted == {"UpcheckURLDown", "UpcheckURLFlapping"} and muted <= alerts
    assert "UpcheckEgressBroken" in alerts
    assert rule["equal"] == ["job"]


def _post(port: int, alerts: list[dict]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _alert(alertname: str, **labels: str) -> dict:
    return {"labels": {"alertname": alertname, **labels}, "annotations": {}}


def test_egress_broken_mutes_the_url_alerts_of_its_job_only(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                need_binary("prometheus-alertmanager"),
                f"--config.file={CONFIG}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                # No cluster: nothing listens beyond loopback, no gossip with peers.
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"alertmanager exited:\n{log.read_text()}"
            try:
                return http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=30, what="alertmanager to be ready")
        _post(
            port,
            [
                _alert("UpcheckEgressBroken", job="upcheck", severity="critical"),
                _alert("UpcheckURLDown", job="upcheck", name="shop", severity="critical"),
                _alert("UpcheckURLFlapping", job="upcheck", name="blog", severity="warning"),
                _alert("UpcheckCertificateExpiringSoon", job="upcheck", name="shop"),
                # Another daemon (job) whose egress works: its URL alert still pages.
                _alert("UpcheckURLDown", job="upcheck-eu", name="shop", severity="critical"),
            ],
        )

        def states() -> dict[tuple[str, str], list[str]] | None:
            status, body = http_get(f"http://127.0.0.1:{port}/api/v2/alerts")
            assert status == 200
            found = {
                (a["labels"]["alertname"], a["labels"]["job"]): a["status"]["inhibitedBy"]
                for a in json.loads(body)
            }
            # Inhibition is computed when the alerts are listed; wait until all five are in.
            return found if len(found) == 5 else None

        found = wait_until(states, timeout=10, what="the five alerts")
        muted = {key for key, by in found.items() if by}
        assert muted == {("UpcheckURLDown", "upcheck"), ("UpcheckURLFlapping", "upcheck")}
    finally:
        stop(proc)
