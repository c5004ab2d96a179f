"""The whole daemon as a process: endpoints over a real socket, reload, SIGTERM, --once."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys

import pytest

from tests import servers as srv
from tests.daemon_process import ROOT, DaemonProcess
from tests.support import wait_until

FAST = ("--interval", "1", "--reload-interval", "1", "--publish-interval", "1")


@pytest.fixture
def sites(servers):
    """Two real sites: one healthy, one answering 500."""
    return {
        "ok": f"http://127.0.0.1:{servers.wsgi(srv.text_app(body=b'all good'))}/",
        "broken": f"http://127.0.0.1:{servers.wsgi(srv.text_app('500 Internal Server Error'))}/",
    }


def write_csv(path, rows: list[tuple[str, str]]) -> None:
    lines = ["url,name", *(f"{url},{name}" for url, name in rows)]
    path.write_text("\n".join(lines) + "\n")


def success(daemon: DaemonProcess, name: str, url: str) -> float | None:
    return daemon.sample(f'probe_success{{name="{name}",url="{url}"}}')


def test_a_running_daemon_serves_every_endpoint(tmp_path, sites):
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok"), (sites["broken"], "broken")])
    results = tmp_path / "out" / "results.json"
    with DaemonProcess(
        "--targets", str(csv), "--results", str(results), *FAST, log=tmp_path / "log"
    ) as daemon:
        wait_until(lambda: daemon.get("/ready")[0] == 200, what="/ready")
        wait_until(
            lambda: (
                success(daemon, "broken", sites["broken"]) == 0
                and success(daemon, "ok", sites["ok"]) == 1
            ),
            what="both targets probed",
        )
        assert daemon.get("/health")[0] == 200
        assert daemon.sample("upcheck_targets") == 2
        assert daemon.sample("upcheck_targets_last_load_success") == 1

        wait_until(results.exists, what="the results file")
        document = daemon.results()
        assert set(document) == {
            "schema", "generated_at", "application", "targets_total",
            "targets_up", "targets_down", "results",
        }  # fmt: skip
        assert document["schema"] == 1 and document["application"] == "upcheck"
        by_name = {r["name"]: r for r in document["results"]}
        broken = by_name["broken"]
        assert broken["up"] is False and broken["status_code"] == 500
        assert broken["error_kind"] == "http_status" and broken["consecutive_failures"] >= 1
        assert set(broken["phases_ms"]) == {"resolve", "connect", "tls", "processing", "transfer"}
        assert by_name["ok"]["up"] is True and by_name["ok"]["error_kind"] is None
        assert (results.parent / "results.html").exists()  # named after the results file

        status, headers, page = daemon.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"broken" in page and b"status 500" in page

        assert daemon.get("/nope")[0] == 404
        connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        connection.request("POST", "/metrics", body=b"x")
        assert connection.getresponse().status == 405
        connection.close()


def test_a_reload_applies_changes_and_keeps_unchanged_history(tmp_path, sites, servers):
    third = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/third"
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok"), (sites["broken"], "broken")])
    with DaemonProcess("--targets", str(csv), "--results", "-", *FAST, log=tmp_path / "log") as d:
        wait_until(lambda: success(d, "broken", sites["broken"]) == 0, what="first probes")
        wait_until(
            lambda: (
                d.sample(f'upcheck_consecutive_failures{{name="broken",url="{sites["broken"]}"}}')
                >= 3
            ),
            what="a failure streak",
        )
        streak_before = d.sample(
            f'upcheck_consecutive_failures{{name="broken",url="{sites["broken"]}"}}'
        )

        write_csv(csv, [(sites["broken"], "broken"), (third, "third")])
        wait_until(lambda: success(d, "third", third) == 1, what="the added target")
        samples = d.metrics()
        assert not any(sites["ok"] in key and 'name="ok"' in key for key in samples), (
            "a removed target must vanish from /metrics"
        )
        streak_after = samples[
            f'upcheck_consecutive_failures{{name="broken",url="{sites["broken"]}"}}'
        ]
        assert streak_after >= streak_before  # unchanged target kept its history
        assert samples["upcheck_targets"] == 2
        assert "event=targets_reloaded" in d.log() and "added=1 removed=1" in d.log()


def test_sighup_checks_the_targets_source_at_once_and_keeps_the_daemon_running(tmp_path, sites):
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok")])
    slow_reload = ("--interval", "1", "--reload-interval", "3600", "--publish-interval", "1")
    with DaemonProcess("--targets", str(csv), "--results", "-", *slow_reload,
                       log=tmp_path / "log") as daemon:  # fmt: skip
        wait_until(lambda: success(daemon, "ok", sites["ok"]) == 1, what="first probe")
        write_csv(csv, [(sites["ok"], "ok"), (sites["broken"], "broken")])
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: success(daemon, "broken", sites["broken"]) == 0,
            what="the changed list applied without waiting an hour",
        )
        assert daemon.proc.poll() is None  # SIGHUP is not a stop
        assert "event=targets_check_requested" in daemon.log()
        code, _ = daemon.stop()
        assert code == 0


def test_a_bad_file_keeps_the_last_good_list(tmp_path, sites):
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok")])
    with DaemonProcess("--targets", str(csv), "--results", "-", *FAST, log=tmp_path / "log") as d:
        wait_until(lambda: success(d, "ok", sites["ok"]) == 1, what="first probe")
        csv.write_text("url\nftp://nope.example/\n")
        wait_until(
            lambda: d.sample("upcheck_targets_last_load_success") == 0, what="the failed load"
        )
        assert d.sample("upcheck_targets_load_errors_total") == 1
        probes = d.sample('upcheck_probes_total{result="success"}')
        wait_until(
            lambda: d.sample('upcheck_probes_total{result="success"}') > probes,
            what="probing to go on",
        )
        assert success(d, "ok", sites["ok"]) == 1
        assert d.get("/health")[0] == 200
        assert "event=targets_load_failed" in d.log()
        assert "line 2: bad url 'ftp://nope.example/'" in d.log()
        # The same bad file is not counted again at every check (one a second).
        later = d.sample('upcheck_probes_total{result="success"}') + 3
        wait_until(
            lambda: d.sample('upcheck_probes_total{result="success"}') >= later,
            what="several reload checks to pass",
        )
        assert d.sample("upcheck_targets_load_errors_total") == 1


def test_sigterm_writes_the_results_file_one_last_time_and_exits_0(tmp_path, sites):
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok")])
    results = tmp_path / "results.json"
    daemon = DaemonProcess(
        "--targets", str(csv), "--results", str(results), "--interval", "1",
        "--publish-interval", "3600", log=tmp_path / "log",
    )  # fmt: skip
    try:
        wait_until(lambda: success(daemon, "ok", sites["ok"]) == 1, what="a probe")
        assert not results.exists()  # the hourly write has not happened yet
        # ... but /results already answers, with the document as it is now.
        status, headers, body = daemon.get("/results")
        assert status == 200 and headers["X-Upcheck-Results"] == "live"
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["results"][0]["name"] == "ok"
    finally:
        code, took = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert took < 10
    document = json.loads(results.read_text())
    assert document["results"][0]["name"] == "ok" and document["results"][0]["up"] is True


def test_once_probes_everything_once_and_exits_by_outcome(tmp_path, sites):
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok")])
    run = [sys.executable, "-m", "daemon", "--once", "--results", "-", "--targets", str(csv)]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "1/1 up, 0 down"

    write_csv(csv, [(sites["ok"], "ok"), (sites["broken"], "broken")])
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[-1] == "1/2 up, 1 down"
    assert any(
        line.startswith("DOWN 500") and "broken" in line and "http_status" in line for line in lines
    )


def test_once_exits_2_when_the_results_file_cannot_be_written(tmp_path, sites):
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(sites["ok"], "ok")])
    (tmp_path / "not-a-dir").write_text("")
    results = tmp_path / "not-a-dir" / "results.json"
    run = [
        sys.executable,
        "-m",
        "daemon",
        "--once",
        "--results",
        str(results),
        "--targets",
        str(csv),
    ]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[-1] == "1/1 up, 0 down"  # the probes' verdict still shows
    assert "could not write: results_file" in proc.stderr
    assert "event=sink_failed sink=results_file" in proc.stderr


def test_credentials_never_reach_logs_metrics_results_or_the_page(tmp_path, servers):
    port = servers.wsgi(srv.text_app("401 Unauthorized"))
    secret_url = f"http://alice:pa55word@127.0.0.1:{port}/?api_key=k3y-s3cret&page=1"
    csv = tmp_path / "urls.csv"
    write_csv(csv, [(secret_url, "private")])
    results = tmp_path / "results.json"
    with DaemonProcess(
        "--targets", str(csv), "--results", str(results), *FAST, log=tmp_path / "log"
    ) as d:
        wait_until(lambda: results.exists() and "private" in results.read_text(), what="results")
        wait_until(lambda: "event=target_down" in d.log(), what="the down event")
        seen = [d.get("/metrics")[2], d.get("/results")[2], d.get("/")[2], results.read_bytes()]
        seen.append(d.log().encode())
    for text in seen:
        assert b"pa55word" not in text and b"k3y-s3cret" not in text
    assert b"http://xxxxx@127.0.0.1" in seen[0] and b"api_key=xxxxx&page=1" in seen[0]
