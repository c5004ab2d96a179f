"""``GET /probe?target=URL``: the blackbox exporter's API, in-process against real local
targets, then end to end: a real Prometheus scraping a real daemon through the job config the
README documents, and a link-local target refused inside an empty network namespace."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import urllib.parse

import gevent
import pytest
import yaml
from gevent.event import Event
from prometheus_client.parser import text_string_to_metric_families

from daemon.probe.prober import Prober
from daemon.probe_endpoint import OnDemandProber, deadline
from daemon.settings import load
from daemon.web import create_app
from tests import servers as srv
from tests.daemon_process import ROOT, DaemonProcess
from tests.ops.conftest import Prometheus, clean_env, http_get, stop
from tests.support import free_port, need_binary, wait_until
from tests.test_app import call

README = ROOT / "README.md"


@pytest.fixture
def on_demand(client_ssl_context: ssl.SSLContext) -> OnDemandProber:
    return OnDemandProber(Prober(client_ssl_context, default_timeout=5).probe, 5.0)


def app_with(probe) -> object:
    return create_app(
        metrics=lambda: b"",
        health=lambda: (True, "ok"),
        ready=lambda: (True, "ok"),
        results=lambda: ("200 OK", [], b"{}"),
        status_page=lambda: "",
        probe=probe,
    )


def get_probe(app, **params: str) -> tuple[str, dict, bytes]:
    headers = {}
    timeout = params.pop("scrape_timeout", None)
    if timeout is not None:
        headers["HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"] = timeout
    return call(app, "/probe", QUERY_STRING=urllib.parse.urlencode(params), **headers)


def samples(body: bytes) -> dict[str, float]:
    """{'name{label="value"}': value} of an exposition, parsed by prometheus_client."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_probe_answers_a_local_target_in_the_exporters_format(servers, on_demand):
    port = servers.wsgi(srv.text_app(body=b"hello"))
    status, headers, body = get_probe(app_with(on_demand), target=f"http://127.0.0.1:{port}/")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    seen = samples(body)
    assert seen["probe_success"] == 1
    assert seen["probe_http_status_code"] == 200
    assert seen["probe_http_content_length"] == 5
    assert seen["probe_http_redirects"] == 0 and seen["probe_http_ssl"] == 0
    phases = {"connect", "processing", "resolve", "tls", "transfer"}
    assert {f'probe_http_duration_seconds{{phase="{p}"}}' for p in phases} <= seen.keys()
    assert seen["probe_duration_seconds"] > 0
    assert "probe_ssl_earliest_cert_expiry" not in seen  # plain http: no certificate


def test_probe_reports_a_failing_target_as_probe_success_0(servers, on_demand):
    port = servers.wsgi(srv.text_app("500 Internal Server Error"))
    status, _, body = get_probe(app_with(on_demand), target=f"http://127.0.0.1:{port}/")
    assert status == "200 OK"  # the probe failed, not the request
    seen = samples(body)
    assert seen["probe_success"] == 0 and seen["probe_http_status_code"] == 500


def test_probe_reads_the_certificate_expiry_of_an_https_target(servers, on_demand):
    port = servers.wsgi(srv.text_app(), tls=True)
    _, _, body = get_probe(app_with(on_demand), target=f"https://127.0.0.1:{port}/")
    seen = samples(body)
    assert seen["probe_success"] == 1 and seen["probe_http_ssl"] == 1
    assert seen["probe_ssl_earliest_cert_expiry"] > 1_700_000_000


def test_the_post_module_sends_a_post_and_a_bare_host_gets_http(servers, on_demand):
    methods: list[str] = []

    def app(environ, start_response):
        methods.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [])
        return [b"ok"]

    port = servers.wsgi(app)
    probe_app = app_with(on_demand)
    assert samples(get_probe(probe_app, target=f"127.0.0.1:{port}")[2])["probe_success"] == 1
    answer = get_probe(probe_app, target=f"127.0.0.1:{port}", module="http_post_2xx")
    assert samples(answer[2])["probe_success"] == 1
    assert methods == ["GET", "POST"]


def test_the_2xx_module_fails_a_redirect_that_ends_in_a_3xx(servers, on_demand):
    port = servers.wsgi(srv.text_app("304 Not Modified"))
    _, _, body = get_probe(app_with(on_demand), target=f"http://127.0.0.1:{port}/")
    assert samples(body)["probe_success"] == 0


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, "400 Bad Request", b"Target parameter is missing"),
        ({"target": "127.0.0.1", "module": "icmp"}, "400 Bad Request", b"Unknown module 'icmp'"),
        (
            {"target": "ftp://127.0.0.1/"},
            "400 Bad Request",
            b"bad url 'ftp://127.0.0.1/': only http and https are supported",
        ),
    ],
    ids=["no-target", "unknown-module", "not-http"],
)
def test_a_request_that_cannot_be_served_is_refused_with_the_reason(
    on_demand, params, status, message
):
    answer = get_probe(app_with(on_demand), **params)
    assert answer[0] == status and message in answer[2]


def test_without_the_flag_there_is_no_probe_endpoint():
    assert call(app_with(None), "/probe", QUERY_STRING="target=127.0.0.1")[0] == "404 Not Found"
    settings = load(["--targets", str(README)], environ={})
    assert settings.probe_endpoint is False
    on = load(["--targets", str(README)], environ={"UPCHECK_PROBE_ENDPOINT": "true"})
    assert on.probe_endpoint is True
    assert load(["--targets", str(README), "--probe-endpoint"], environ={}).probe_endpoint


def test_debug_shows_the_reason_and_never_a_credential(servers, on_demand):
    port = servers.wsgi(srv.text_app("503 Service Unavailable"))
    target = f"http://ops:hunter2@127.0.0.1:{port}/health?token=abc123"
    status, _, body = get_probe(app_with(on_demand), target=target, debug="true")
    text = body.decode()
    assert status == "200 OK"
    assert "result=http_status" in text and "status 503" in text
    assert "hunter2" not in text and "abc123" not in text
    assert "probe_success 0" in text


def test_probes_beyond_the_limit_wait_for_a_slot_then_are_refused(servers, client_ssl_context):
    release = Event()
    arrived: list[int] = []

    def held(environ, start_response):
        arrived.append(1)
        release.wait(10)
        start_response("200 OK", [])
        return [b"ok"]

    port = servers.wsgi(held)
    prober = Prober(client_ssl_context, default_timeout=5)
    app = app_with(OnDemandProber(prober.probe, 5.0, limit=1))
    url = f"http://127.0.0.1:{port}/"
    first = gevent.spawn(get_probe, app, target=url)
    wait_until(lambda: arrived, what="the first probe to hold its slot")
    # Prometheus's 1 s scrape timeout leaves 0.5 s: the wait for the one slot ends there.
    status, _, body = get_probe(app, target=url, scrape_timeout="1")
    assert status == "503 Service Unavailable" and b"in flight" in body
    assert len(arrived) == 1  # the refused request sent nothing
    release.set()
    assert samples(first.get(timeout=10)[2])["probe_success"] == 1


@pytest.mark.parametrize(
    ("announced", "expected"),
    [(None, 10.0), ("15", 10.0), ("5", 4.5), ("0.8", 0.4), ("nonsense", 10.0), ("-1", 10.0)],
)
def test_the_deadline_fits_in_the_scrape_timeout_prometheus_announces(announced, expected):
    assert deadline(10.0, announced) == expected


# -- a real Prometheus, through the README's job config ------------------------------------


def readme_job_config() -> dict:
    """The job config the README documents for /probe (the yaml block after its marker)."""
    text = README.read_text()
    marker = text.index("<!-- probe-job-config -->")
    block = re.search(r"```yaml\n(.*?)```", text[marker:], re.S)
    assert block is not None, "no yaml block after <!-- probe-job-config -->"
    return yaml.safe_load(block.group(1))


def test_prometheus_scrapes_probe_through_the_exporters_job_config(tmp_path, servers):
    binary = need_binary("prometheus")
    ok = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    broken = f"http://127.0.0.1:{servers.wsgi(srv.text_app('502 Bad Gateway'))}/down"
    listed = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
    csv = tmp_path / "urls.csv"
    csv.write_text(f"url,name\n{listed},listed\n")
    with DaemonProcess(
        "--targets", str(csv), "--results", "-", "--probe-endpoint", log=tmp_path / "daemon.log"
    ) as daemon:
        config = readme_job_config()
        (job,) = config["scrape_configs"]
        # The documented job, unchanged but for its targets and where upcheck listens.
        job["static_configs"] = [{"targets": [ok, broken]}]
        (address,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
        address["replacement"] = f"127.0.0.1:{daemon.port}"
        config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.console.templates=",
                    "--web.console.libraries=",
                    "--log.level=warn",
                ],
                cwd=tmp_path,
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        prometheus = Prometheus(proc, port, log)
        try:

            def ready() -> bool:
                assert proc.poll() is None, f"prometheus exited early:\n{log.read_text()}"
                try:
                    return http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200
                except OSError:
                    return False

            wait_until(ready, timeout=30, what="prometheus to be ready")

            def stored() -> dict[str, float] | None:
                found = prometheus.query(f'probe_success{{job="{job["job_name"]}"}}')
                values = {s["metric"]["instance"]: float(s["value"][1]) for s in found}
                return values if len(values) == 2 else None

            assert wait_until(stored, timeout=30, what="probe_success for both targets") == {
                ok: 1.0,
                broken: 0.0,
            }
            codes = prometheus.query("probe_http_status_code")
            assert {s["metric"]["instance"]: s["value"][1] for s in codes} == {
                ok: "200",
                broken: "502",
            }
            up = prometheus.query(f'up{{job="{job["job_name"]}"}}')
            assert {s["value"][1] for s in up} == {"1"}  # every scrape of /probe worked
        finally:
            stop(proc)
        # /probe results are the answer's only: the list's own series are untouched.
        text = daemon.get("/metrics")[2].decode()
        assert f'url="{listed}"' in text and "/down" not in text


# -- link-local, inside an empty network namespace -------------------------------------------

_IN_NAMESPACE = """
import sys, urllib.parse
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.daemon_process import DaemonProcess
folder = Path(sys.argv[2])
with DaemonProcess("--targets", str(folder / "urls.csv"), "--results", "-", "--probe-endpoint",
                   log=folder / "daemon.log") as daemon:
    for target in sys.argv[3:]:
        query = urllib.parse.urlencode({"target": target, "debug": "true"})
        status, _, body = daemon.get("/probe?" + query)
        print(f"=== {target} {status}")
        print(body.decode())
"""


def test_a_link_local_target_is_refused_before_a_packet_is_sent(tmp_path):
    unshare = need_binary("unshare")
    prefix = [unshare, "--net", "--", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "-"]
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    (tmp_path / "urls.csv").write_text("url,name\nhttp://127.0.0.1:9/,local\n")
    metadata = ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/")
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", _IN_NAMESPACE, str(ROOT), str(tmp_path), *metadata],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = proc.stdout.split("=== ")[1:]
    assert len(answers) == 2
    for answer in answers:
        assert answer.splitlines()[0].endswith(" 200")
        assert "result=blocked" in answer
        assert "link-local or cloud metadata address; refused" in answer
        assert "probe_success 0" in answer
        assert 'probe_http_duration_seconds{phase="connect"} 0' in answer  # never connected


def test_the_readme_documents_the_probe_job_and_the_open_prober_risk():
    config = readme_job_config()
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/probe" and job["params"]["module"] == ["http_2xx"]
    text = README.read_text()
    assert "SSRF" in text and "--probe-endpoint" in text


def test_a_variable_in_a_probe_target_is_never_expanded(servers, on_demand, monkeypatch):
    monkeypatch.setenv("UPCHECK_TEST_SECRET", "never-sent-9d1")
    queries: list[str] = []

    def app(environ, start_response):
        queries.append(environ["QUERY_STRING"])
        start_response("200 OK", [])
        return [b"ok"]

    port = servers.wsgi(app)
    target = f"http://127.0.0.1:{port}/?k=${{UPCHECK_TEST_SECRET}}"
    assert samples(get_probe(app_with(on_demand), target=target)[2])["probe_success"] == 1
    assert queries and "never-sent" not in queries[0]
