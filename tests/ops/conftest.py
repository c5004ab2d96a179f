"""Live fixtures for the ops checks: local targets, a running daemon, a real Prometheus.

Everything listens on 127.0.0.1 and talks only to 127.0.0.1. The daemon is started the way the
image starts it (the Dockerfile's ENTRYPOINT), and Prometheus with its own config and storage in
a temporary folder. Session scope: they are shared by the scrape, alert and dashboard tests,
which is what keeps the whole ops suite at a few seconds.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from tests.support import free_port, need_binary, wait_until

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "ops" / "prometheus" / "alerts.yml"
# The certificate of the https target expires this many days after the test starts, inside the
# 14-day window of the UpcheckCertificateExpiringSoon alert.
CERT_DAYS_LEFT = 10
# SPEC.md "Sharding": every member exports these beside its own URLs, and the dashboard and the
# alert rules use them. A daemon from before sharding (no --shard flag) has neither.
SHARD_METRICS = (
    "upcheck_shard_members",
    "upcheck_shard_owned_targets",
    "upcheck_shard_membership_refresh_failures_total",
)


def venv_tool(name: str) -> str:
    """A tool pinned in requirements-dev.txt (hadolint, yamllint): it lives beside this
    interpreter, which need not be on PATH when pytest is run as .venv/bin/pytest."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else need_binary(name)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a loopback URL; HTTP errors are answers, not exceptions."""
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def entrypoint() -> list[str]:
    """The Dockerfile's exec-form ENTRYPOINT, with this interpreter standing in for `python`."""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            argv = json.loads(line.removeprefix("ENTRYPOINT "))
            assert argv[0] == "python", argv
            return [sys.executable, *argv[1:]]
    raise AssertionError("Dockerfile has no ENTRYPOINT")


def clean_env(**extra: str) -> dict[str, str]:
    """An environment with no proxy and no AWS settings, so nothing can leave the machine."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().endswith("_PROXY") and not key.startswith(("AWS_", "UPCHECK_"))
    }
    env.update(AWS_EC2_METADATA_DISABLED="true", NO_PROXY="*", **extra)
    return env


class _Answer(BaseHTTPRequestHandler):
    """Answers every GET with the server's fixed status and a small body."""

    def do_GET(self) -> None:
        body = b"upcheck test target\n"
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(status: int, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.status = status  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class Targets:
    csv: Path
    ca_file: Path
    cert_not_after: datetime.datetime
    # name -> (url, whether a probe of it should succeed, the status it answers)
    expected: dict[str, tuple[str, bool, int]]


@pytest.fixture(scope="session")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    """Three local targets: 200 over http, 500 over http, 200 over https (private CA)."""
    folder = tmp_path_factory.mktemp("targets")
    ca = trustme.CA()
    not_after = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(
        days=CERT_DAYS_LEFT
    )
    leaf = ca.issue_cert("127.0.0.1", not_after=not_after)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(tls)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    ok, broken, secure = serve(200), serve(500), serve(200, tls)
    expected = {
        "healthy": (f"http://127.0.0.1:{ok.server_port}/", True, 200),
        "broken": (f"http://127.0.0.1:{broken.server_port}/fail", False, 500),
        "secure": (f"https://127.0.0.1:{secure.server_port}/", True, 200),
    }
    csv = folder / "targets.csv"
    csv.write_text("url,name\n" + "".join(f"{u},{n}\n" for n, (u, _, _) in expected.items()))
    yield Targets(csv, ca_file, not_after, expected)
    for server in (ok, broken, secure):
        server.shutdown()
        server.server_close()


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int
    results: Path
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        status, body = http_get(f"{self.base}/metrics")
        assert status == 200
        return body.decode()


@functools.cache
def daemon_shards() -> bool:
    """Whether the daemon knows `--shard` (SPEC.md "Configuration"), as its --help says.

    Until it does, the ops checks accept that the SHARD_METRICS are missing from a live
    /metrics and say so; from then on they are checked like every other name."""
    proc = subprocess.run(
        [*entrypoint(), "--help"],
        cwd=REPO,
        env=clean_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return "--shard" in proc.stdout


def start_daemon(folder: Path, targets: Targets, *extra: str) -> Daemon:
    """The daemon as the image runs it: ENTRYPOINT, listen address from UPCHECK_LISTEN."""
    port = free_port()
    results = folder / "results.json"
    log = folder / "daemon.log"
    argv = [
        *entrypoint(),
        "--targets",
        str(targets.csv),
        "--interval",
        "1",
        "--timeout",
        "1",
        "--results",
        str(results),
        "--ca-file",
        str(targets.ca_file),
        *extra,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=folder,
            env=clean_env(UPCHECK_LISTEN=f"127.0.0.1:{port}", PYTHONPATH=str(REPO)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    daemon = Daemon(proc, port, results, log)

    def probed_all() -> bool:
        assert proc.poll() is None, f"daemon exited early:\n{log.read_text()}"
        try:
            text = daemon.metrics()
        except OSError:
            return False
        return all(f'url="{url}"' in text for url, _, _ in targets.expected.values())

    wait_until(probed_all, timeout=30, what="the daemon to probe every target")
    return daemon


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then wait a bounded time (SIGKILL only if that runs out)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="session")
def live_daemon(tmp_path_factory: pytest.TempPathFactory, targets: Targets) -> Iterator[Daemon]:
    # A 1 s publish interval so the results_file sink's series exist and move. A daemon that
    # shards runs as the only member of a static shard (0/1): it probes every URL as before and
    # exports the shard metrics the dashboard and the rules read.
    sharding = ("--shard", "0/1") if daemon_shards() else ()
    daemon = start_daemon(
        tmp_path_factory.mktemp("daemon"), targets, "--publish-interval", "1", *sharding
    )
    # The success timestamp of a sink exists from its first successful write on.
    wait_until(
        lambda: (
            'upcheck_sink_last_success_timestamp_seconds{sink="results_file"}' in daemon.metrics()
        ),
        timeout=30,
        what="the first results-file write",
    )
    yield daemon
    stop(daemon.proc)


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def api(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}{query}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]


def start_prometheus(folder: Path, static_configs: list[dict]) -> Prometheus:
    """The Debian `prometheus` server scraping `static_configs` as job `upcheck` every second,
    with the project's alert rules loaded and evaluated every second. No Alertmanager, no
    remote write, no service discovery: it talks to 127.0.0.1 and nothing else."""
    binary = need_binary("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "upcheck", "static_configs": static_configs}],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.console.templates=",
                "--web.console.libraries=",
                "--log.level=warn",
            ],
            cwd=folder,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(proc, port, log)

    def ready() -> bool:
        assert proc.poll() is None, f"prometheus exited early:\n{log.read_text()}"
        try:
            return http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200
        except OSError:
            return False

    wait_until(ready, timeout=30, what="prometheus to be ready")
    return prometheus


@pytest.fixture(scope="session")
def live_prometheus(
    tmp_path_factory: pytest.TempPathFactory, live_daemon: Daemon
) -> Iterator[Prometheus]:
    """A real Prometheus scraping only the live daemon (see start_prometheus)."""
    prometheus = start_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        [{"targets": [f"127.0.0.1:{live_daemon.port}"]}],
    )
    yield prometheus
    stop(prometheus.proc)


# The two "tasks" of twin_prometheus.
TWIN_TASKS = ("task-a", "task-b")


@pytest.fixture(scope="session")
def twin_prometheus(
    tmp_path_factory: pytest.TempPathFactory, live_daemon: Daemon
) -> Iterator[Prometheus]:
    """A Prometheus that scrapes the live daemon twice, as two tasks (`instance` task-a and
    task-b) that both export every URL: what it sees for one refresh while URLs change hands
    between tasks (SPEC.md "Sharding"), here all the time. Whatever the dashboard and the
    alert rules say about URLs must come out once, as from the single-task live_prometheus."""
    address = f"127.0.0.1:{live_daemon.port}"
    prometheus = start_prometheus(
        tmp_path_factory.mktemp("twin-prometheus"),
        [{"targets": [address], "labels": {"instance": task}} for task in TWIN_TASKS],
    )

    def both_tasks_scraped() -> bool:
        # The two scrapes start apart: until both have landed, it looks like one task.
        answer = prometheus.query("count by (instance) (probe_success)")
        return {s["metric"].get("instance") for s in answer} == set(TWIN_TASKS)

    wait_until(both_tasks_scraped, timeout=30, what="both tasks to be scraped")
    yield prometheus
    stop(prometheus.proc)
