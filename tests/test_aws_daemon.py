"""The daemon as a process on AWS services emulated by moto over real HTTP: S3 in, S3 and
CloudWatch out, an outage in the middle, and the ECS container-credentials path."""

from __future__ import annotations

import json
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import boto3
import pytest

from tests import servers as srv
from tests.daemon_process import DaemonProcess
from tests.support import MotoServer, wait_until

FAST = ("--interval", "1", "--reload-interval", "1", "--publish-interval", "1")


@pytest.fixture
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


def prepare(moto: MotoServer, site: str) -> None:
    s3 = boto3.client("s3", **_kwargs(moto))
    for bucket in ("upcheck-targets", "upcheck-results"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket="upcheck-targets", Key="urls.csv", Body=f"url,name\n{site},shop\n".encode()
    )


def _kwargs(moto: MotoServer) -> dict:
    env = moto.env()
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


AWS_ARGS = (
    "--targets", "s3://upcheck-targets/urls.csv",
    "--results", "s3://upcheck-results/prod/results.json",
    "--cloudwatch-namespace", "Upcheck/E2E",
    "--app-name", "shop",
)  # fmt: skip


def sink_ok(daemon: DaemonProcess, sink: str) -> float:
    return daemon.sample(f'upcheck_sink_last_success_timestamp_seconds{{sink="{sink}"}}') or 0.0


def sink_errors(daemon: DaemonProcess, sink: str) -> float:
    return daemon.sample(f'upcheck_sink_errors_total{{sink="{sink}"}}') or 0.0


def test_an_aws_outage_never_stops_probing_and_writes_resume_after_it(tmp_path, servers, moto):
    site = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    prepare(moto, site)
    with DaemonProcess(*AWS_ARGS, *FAST, env=moto.env(), log=tmp_path / "log") as daemon:
        wait_until(lambda: daemon.get("/ready")[0] == 200, what="targets from S3")
        wait_until(lambda: sink_ok(daemon, "results_file") and sink_ok(daemon, "cloudwatch"),
                   what="first writes")  # fmt: skip
        status, headers, _ = daemon.get_no_redirect("/results")
        assert status == 302 and "X-Amz-Signature=" in headers["Location"]

        moto.stop()
        probes = daemon.sample('upcheck_probes_total{result="success"}')
        wait_until(
            lambda: (
                sink_errors(daemon, "results_file") >= 1 and sink_errors(daemon, "cloudwatch") >= 1
            ),
            timeout=60,
            what="sink errors during the outage",
        )
        wait_until(
            lambda: daemon.sample('upcheck_probes_total{result="success"}') >= probes + 3,
            what="probing to continue during the outage",
        )
        assert daemon.get("/health")[0] == 200
        assert daemon.sample("upcheck_targets") == 1  # the list in force stays
        assert daemon.sample("upcheck_targets_load_errors_total") >= 1

        moto.start()  # an emulator comes back empty: the buckets are made again
        prepare(moto, site)
        since = max(sink_ok(daemon, "results_file"), sink_ok(daemon, "cloudwatch"))
        wait_until(
            lambda: (
                sink_ok(daemon, "results_file") > since and sink_ok(daemon, "cloudwatch") > since
            ),
            timeout=60,
            what="writes to resume",
        )
        # The same list is back at the source: the load gauge says the source is healthy again.
        wait_until(
            lambda: daemon.sample("upcheck_targets_last_load_success") == 1,
            what="the targets source to be reported readable again",
        )
        s3 = boto3.client("s3", **_kwargs(moto))
        document = json.loads(
            s3.get_object(Bucket="upcheck-results", Key="prod/results.json")["Body"].read()
        )
        assert document["application"] == "shop" and document["results"][0]["up"] is True
        cloudwatch = boto3.client("cloudwatch", **_kwargs(moto))
        wait_until(
            lambda: (
                {"TargetsTotal", "Up", "ResponseTime"}
                <= {
                    m["MetricName"]
                    for m in cloudwatch.list_metrics(Namespace="Upcheck/E2E")["Metrics"]
                }
            ),
            timeout=30,
            what="CloudWatch figures after the outage",
        )
    assert moto.env()["AWS_SECRET_ACCESS_KEY"] not in daemon.log()


def test_without_a_target_list_the_daemon_stays_up_but_not_ready(tmp_path, servers, moto):
    site = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    with DaemonProcess(
        "--targets", "s3://upcheck-targets/urls.csv", "--results", "-", "--reload-interval", "30",
        env=moto.env(), log=tmp_path / "log",
    ) as daemon:  # fmt: skip
        wait_until(lambda: b"NoSuchBucket" in daemon.get("/ready")[2], what="the first check")
        assert daemon.get("/ready")[0] == 503
        assert daemon.get("/health")[0] == 200
        prepare(moto, site)
        # Retries back off from 1 s, not the 30 s reload interval.
        wait_until(lambda: daemon.get("/ready")[0] == 200, timeout=20, what="ready")
        assert "event=targets_load_failed" in daemon.log()


def test_sigterm_while_the_first_load_hangs_on_s3_stops_cleanly(tmp_path, moto):
    # An "S3" that accepts connections and never answers: the first load is stuck in a read.
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True)
    accepting.start()
    env = {**moto.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
    try:
        daemon = DaemonProcess(
            "--targets", "s3://upcheck-targets/urls.csv", "--results", "-",
            env=env, log=tmp_path / "log",
        )  # fmt: skip
        wait_until(lambda: held, what="the first load to reach the silent endpoint")
        assert daemon.get("/ready")[0] == 503
        code, _ = daemon.stop()
        assert code == 0, daemon.log()
        assert "event=stopped" in daemon.log()
    finally:
        for connection in held:
            connection.close()
        silent.close()


def test_a_changed_s3_list_is_applied_at_the_next_reload(tmp_path, servers, moto):
    site = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    prepare(moto, site)
    with DaemonProcess(*AWS_ARGS, *FAST, env=moto.env(), log=tmp_path / "log") as daemon:
        wait_until(lambda: daemon.sample("upcheck_targets") == 1, what="the first list")
        s3 = boto3.client("s3", **_kwargs(moto))
        body = f"url,name\n{site},shop\n{site}?page=2,shop page 2\n".encode()
        s3.put_object(Bucket="upcheck-targets", Key="urls.csv", Body=body)
        wait_until(lambda: daemon.sample("upcheck_targets") == 2, what="the changed list")
        key = f'probe_success{{name="shop page 2",url="{site}?page=2"}}'
        wait_until(lambda: daemon.sample(key) == 1, what="the added URL to be probed")
        assert "event=targets_reloaded" in daemon.log()


def test_sigterm_makes_the_last_writes_to_s3_and_cloudwatch(tmp_path, servers, moto):
    site = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    prepare(moto, site)
    daemon = DaemonProcess(
        *AWS_ARGS, "--interval", "1", "--reload-interval", "1", "--publish-interval", "3600",
        env=moto.env(), log=tmp_path / "log",
    )  # fmt: skip
    try:
        wait_until(lambda: daemon.sample('upcheck_probes_total{result="success"}'), what="a probe")
        assert sink_ok(daemon, "results_file") == 0  # the hourly writes have not happened
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()
    s3 = boto3.client("s3", **_kwargs(moto))
    document = json.loads(
        s3.get_object(Bucket="upcheck-results", Key="prod/results.json")["Body"].read()
    )
    assert document["results"][0]["name"] == "shop"
    cloudwatch = boto3.client("cloudwatch", **_kwargs(moto))
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="Upcheck/E2E")["Metrics"]}
    assert {"TargetsTotal", "Up"} <= names


@pytest.mark.parametrize(
    ("publish_interval", "in_flight"),
    [("3600", 0), ("1", 2)],
    ids=["last-writes-hang", "pushes-in-flight-hang"],
)
def test_sigterm_exits_in_time_when_aws_never_answers(
    tmp_path, servers, publish_interval, in_flight
):
    """Both sinks' last writes hang on an endpoint that accepts and never answers: the
    daemon still exits 0 within the SPEC's 10 s, and says which writes timed out. So it does
    when both sinks' regular pushes are already hanging at SIGTERM, which shutdown lets
    finish rather than kill (a killed CloudWatch push may have been counted already)."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept_all() -> None:
        while True:
            try:
                held.append(silent.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_all, daemon=True).start()
    csv = tmp_path / "urls.csv"
    csv.write_text(f"url,name\nhttp://127.0.0.1:{servers.wsgi(srv.text_app())}/,shop\n")
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        daemon = DaemonProcess(
            "--targets", str(csv), "--results", "s3://upcheck-results/results.json",
            "--cloudwatch-namespace", "Upcheck/E2E", "--interval", "1",
            "--publish-interval", publish_interval, env=env, log=tmp_path / "log",
        )  # fmt: skip
        wait_until(lambda: daemon.sample('upcheck_probes_total{result="success"}'), what="a probe")
        wait_until(lambda: len(held) >= in_flight, what="both sinks' pushes to hang")
        code, took = daemon.stop(signal.SIGTERM)
        assert code == 0, daemon.log()
        assert took < 10
        log = daemon.log()
        assert "event=sink_flush_timed_out sink=results_file" in log
        assert "event=sink_flush_timed_out sink=cloudwatch" in log
        assert "event=stopped" in log
    finally:
        silent.close()
        for connection in held:
            connection.close()


class _CredentialsEndpoint(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).hits.append(self.headers.get("Authorization", ""))
        body = json.dumps(
            {
                "AccessKeyId": "AKIDFROMTASKROLE",
                "SecretAccessKey": "task-role-secret-never-logged",
                "Token": "task-role-session-token",
                "Expiration": "2099-01-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_ecs_task_role_credentials_path_is_used(tmp_path, servers, moto):
    site = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    prepare(moto, site)
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), _CredentialsEndpoint)
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    env = moto.env()
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = f"http://127.0.0.1:{endpoint.server_port}/creds"
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "local-test-token"
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    try:
        with DaemonProcess(
            "--targets", "s3://upcheck-targets/urls.csv",
            "--results", "s3://upcheck-results/prod/results.json",
            *FAST, env=env, log=tmp_path / "log",
        ) as daemon:  # fmt: skip
            wait_until(lambda: daemon.get("/ready")[0] == 200, what="targets via the task role")
            wait_until(lambda: sink_ok(daemon, "results_file"), what="a results write")
            log = daemon.log()
    finally:
        endpoint.shutdown()
    assert _CredentialsEndpoint.hits and set(_CredentialsEndpoint.hits) == {"local-test-token"}
    for secret in ("task-role-secret-never-logged", "task-role-session-token", "local-test-token"):
        assert secret not in log
