"""A daemon run with three secrets (one written in a header, one from ``${NAME}``, one in the
URL's credentials), sent to a server that quotes them back: none of them may appear in
anything the daemon shows or writes: /metrics, /results, the page, the results file and its
page, the log, CloudWatch (moto, over real HTTP)."""

from __future__ import annotations

import json
import signal
from urllib.parse import quote

import boto3
import pytest

from tests.daemon_process import DaemonProcess
from tests.support import MotoServer, wait_until

HEADER_SECRET = "hdr-secret-7f3a"  # written in the CSV, in a secret-looking header
ENV_SECRET = "env-secret-91bc"  # in the environment, named by ${UPCHECK_SWEEP_TOKEN}
URL_SECRET = "url-secret-c4d2"  # the password in the URL's userinfo
SECRETS = (HEADER_SECRET, ENV_SECRET, URL_SECRET)


@pytest.fixture
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


def test_no_secret_shows_in_any_output_after_a_run(tmp_path, servers, moto):
    received: list[str] = []

    def app(environ, start_response):
        seen = " ".join(
            (
                environ.get("HTTP_X_API_KEY", ""),
                environ.get("HTTP_AUTHORIZATION", ""),
                environ.get("QUERY_STRING", ""),
                environ["wsgi.input"].read().decode(),
            )
        )
        received.append(seen)
        if environ["PATH_INFO"] == "/echo":
            # Everything it was sent, quoted back where no redaction rule looks.
            start_response("302 Found", [("Location", "ftp://files.test/?seen=" + quote(seen))])
            return [b""]
        if environ["PATH_INFO"] == "/degraded":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"status": "degraded", "echo": seen}).encode()]
        start_response("200 OK", [])
        return [b"ok"]

    port = servers.wsgi(app)
    base = f"127.0.0.1:{port}"
    rows = [
        "url,name,method,headers,body,json",
        # Fails: the redirect quotes every secret back into the error.
        f"http://ops:{URL_SECRET}@{base}/echo?q=${{UPCHECK_SWEEP_TOKEN}},echo,POST,"
        f'"X-Api-Key: {HEADER_SECRET} | Authorization: Bearer ${{UPCHECK_SWEEP_TOKEN}}",'
        f"token=${{UPCHECK_SWEEP_TOKEN}},",
        # Fails a json check whose document holds the secrets.
        f"http://{base}/degraded?q=${{UPCHECK_SWEEP_TOKEN}},degraded,,"
        f"X-Api-Key: {HEADER_SECRET},,echo && status == 'ok'",
        # Passes, secrets and all.
        f"http://ops:{URL_SECRET}@{base}/ok?q=${{UPCHECK_SWEEP_TOKEN}},ok,,"
        f"X-Api-Key: {HEADER_SECRET},,",
        # Bad rows: their reasons are logged.
        f'http://{base}/bad,bad,,"X-Api-Key {HEADER_SECRET}",,',
        f"http://{base}/unset?q=${{UPCHECK_SWEEP_UNSET}}&k={ENV_SECRET},unset,,,,",
    ]
    csv = tmp_path / "urls.csv"
    csv.write_text("\n".join(rows) + "\n")
    results = tmp_path / "results.json"
    env = {**moto.env(), "UPCHECK_SWEEP_TOKEN": ENV_SECRET}
    daemon = DaemonProcess(
        "--targets", str(csv), "--results", str(results),
        "--cloudwatch-namespace", "Upcheck/Sweep", "--cloudwatch-url-metrics",
        "ResponseTime,Up,StatusCode", "--interval", "1", "--publish-interval", "1",
        "--log-level", "debug", env=env, log=tmp_path / "daemon.log",
    )  # fmt: skip
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=moto.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    try:

        def written() -> dict | None:
            if not results.exists():
                return None
            document = json.loads(results.read_text())
            probed = [r for r in document["results"] if r["up"] is not None]
            return document if len(probed) == 3 else None

        document = wait_until(written, timeout=30, what="a results file with three results")
        metrics = wait_until(
            lambda: cloudwatch.list_metrics(Namespace="Upcheck/Sweep")["Metrics"],
            timeout=30,
            what="CloudWatch figures",
        )
        outputs = {
            "/metrics": daemon.get("/metrics")[2].decode(),
            "/results": daemon.get("/results")[2].decode(),
            "/": daemon.get("/")[2].decode(),
        }
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0
    outputs["results file"] = results.read_text()
    outputs["results page"] = (tmp_path / "results.html").read_text()
    outputs["log"] = daemon.log()
    outputs["cloudwatch"] = json.dumps(cloudwatch.list_metrics(Namespace="Upcheck/Sweep"))

    # The secrets were really sent, and really quoted back ...
    assert any(all(s in seen for s in (HEADER_SECRET, ENV_SECRET)) for seen in received)
    by_name = {r["name"]: r for r in document["results"]}
    assert by_name["echo"]["error_kind"] == "protocol"
    assert "redirect to a non-HTTP location" in by_name["echo"]["error"]
    assert by_name["echo"]["error"].count("xxxxx") >= 2  # quoted back, masked
    assert by_name["degraded"]["error_kind"] == "body_mismatch"
    assert by_name["ok"]["up"] is True
    assert "line 5: bad headers" in outputs["log"]
    assert "${UPCHECK_SWEEP_UNSET} is not set" in outputs["log"]
    assert {d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "Url"}
    # ... and none of them shows anywhere, in any form.
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {where}"
            assert secret.replace("-", "%2D") not in text, f"{secret} encoded in {where}"
    # The shown URL is the row's URL as written: ${NAME} left as is, the password masked.
    assert f"http://xxxxx@{base}/ok?q=${{UPCHECK_SWEEP_TOKEN}}" in outputs["/metrics"]
