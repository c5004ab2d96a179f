"""The WSGI app in-process, and the exposition it serves."""

from __future__ import annotations

import gzip
import io

import pytest
from prometheus_client import CollectorRegistry

from daemon.model import ProbeResult, Target
from daemon.outputs.document import Snapshot
from daemon.outputs.exposition import Exposition
from daemon.sources.parse import parse_targets
from daemon.store import ResultsStore
from daemon.telemetry import Telemetry
from daemon.web import accepts_gzip, create_app
from tests.fakes import result


def call(app, path: str, method: str = "GET", **environ):
    captured: dict = {}

    def start_response(status, headers):
        captured["status"] = status
        captured["headers"] = dict(headers)

    env = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO(), **environ}
    body = b"".join(app(env, start_response))
    return captured["status"], captured["headers"], body


@pytest.fixture
def state():
    return {"health": (True, "ok"), "ready": (False, "targets not loaded yet: loading")}


@pytest.fixture
def app(state):
    return create_app(
        metrics=lambda: b"probe_success 1\n",
        health=lambda: state["health"],
        ready=lambda: state["ready"],
        results=lambda: ("200 OK", [("Content-Type", "application/json")], b'{"schema": 1}'),
        status_page=lambda: "<h1>status</h1>",
    )


def test_health_and_ready_follow_their_checks(app, state):
    assert call(app, "/health")[0] == "200 OK"
    status, _, body = call(app, "/ready")
    assert status == "503 Service Unavailable" and b"not loaded" in body
    state["ready"] = (True, "ready: 3 targets")
    state["health"] = (False, "no probe finished for 200s")
    assert call(app, "/ready")[0] == "200 OK"
    status, _, body = call(app, "/health")
    assert status == "503 Service Unavailable" and b"no probe finished" in body


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, deflate", False),
        ("*;q=0", False),
        ("x-gzip", False),
        ("identity", False),
        ("", False),
    ],
)
def test_gzip_is_used_only_when_the_client_accepts_it(header, gzip_ok):
    assert accepts_gzip(header) is gzip_ok


def test_metrics_use_the_prometheus_text_format_and_gzip_when_asked(app):
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK" and body == b"probe_success 1\n"
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    _, headers, body = call(app, "/metrics", HTTP_ACCEPT_ENCODING="gzip")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == b"probe_success 1\n"


def test_results_and_status_page_are_served(app):
    assert call(app, "/results")[2] == b'{"schema": 1}'
    status, headers, body = call(app, "/")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/html") and body == b"<h1>status</h1>"


def test_unknown_paths_are_404_and_other_methods_405(app):
    assert call(app, "/nope")[0] == "404 Not Found"
    status, headers, _ = call(app, "/metrics", method="POST")
    assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"


def test_head_answers_headers_without_a_body(app):
    status, headers, body = call(app, "/", method="HEAD")
    assert status == "200 OK" and body == b"" and headers["Content-Length"] == "15"


def test_html_answers_carry_a_content_security_policy_and_nosniff(app):
    _, headers, _ = call(app, "/")
    directives = dict(
        (d.split()[0], d.split()[1:]) for d in headers["Content-Security-Policy"].split(";")
    )
    assert directives["default-src"] == ["'none'"]  # no script-src: scripts fall back to none
    assert "script-src" not in directives and directives["style-src"] == ["'unsafe-inline'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["base-uri"] == ["'none'"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/metrics", "/ready", "/health", "/results", "/nope"):
        _, headers, _ = call(app, path)
        assert "Content-Security-Policy" not in headers, path
        assert headers["X-Content-Type-Options"] == "nosniff", path


HOSTILE_CSV = (
    "url,name\n"
    '"https://x.example/?q=<script>alert(1)</script>",<b>bold</b>\n'
    'https://y.example/"><svg/onload=alert(2)>,"<script>alert(3)</script>"\n'
)


def test_names_urls_and_errors_from_the_csv_are_escaped_on_the_page(store):
    parsed = parse_targets(HOSTILE_CSV.encode())
    assert parsed.errors == () and len(parsed.targets) == 2
    for target in parsed.targets:
        store.add(target)
    failed = result(up=False, status=500)
    hostile_error = ProbeResult(**{**_fields(failed), "error": "<img src=x onerror=alert(4)>"})
    store.record(parsed.targets[1], hostile_error)
    page_app = create_app(
        metrics=lambda: b"",
        health=lambda: (True, "ok"),
        ready=lambda: (True, "ok"),
        results=lambda: ("404 Not Found", [], b""),
        status_page=lambda: Snapshot(store, "<i>app</i>", True).status_html,
    )
    status, _, body = call(page_app, "/")
    page = body.decode()
    assert status == "200 OK"
    for raw in ("<script>alert", "<b>bold", "<svg/onload", "<img", "<i>app"):  # the page has <svg>s
        assert raw not in page, raw
    for escaped in (
        "&lt;b&gt;bold&lt;/b&gt;",
        "&lt;script&gt;alert(3)&lt;/script&gt;",
        "?q=&lt;script&gt;alert(1)&lt;/script&gt;",
        "https://y.example/&quot;&gt;&lt;svg/onload=alert(2)&gt;",
        "&lt;img src=x onerror=alert(4)&gt;",
        "&lt;i&gt;app&lt;/i&gt;",
    ):
        assert escaped in page, escaped


def test_the_page_carries_its_policy_itself_for_copies_served_without_our_headers(store):
    page = Snapshot(store, "shop", True).status_html
    head = page.split("</head>")[0]
    meta = head.index('<meta http-equiv="Content-Security-Policy"')
    assert meta < head.index("<style>")  # a policy applies only to what follows it
    assert "content=\"default-src 'none'; style-src 'unsafe-inline';" in head


# -- exposition -----------------------------------------------------------------------------


def metric_lines(exposition: Exposition, name: str) -> list[str]:
    text = bytes(exposition.render()).decode()
    return [line for line in text.splitlines() if line.startswith(name + "{")]


@pytest.fixture
def store():
    return ResultsStore()


@pytest.fixture
def exposition(store):
    return Exposition(store, Telemetry(CollectorRegistry()))


def test_every_probed_target_has_the_blackbox_series_and_all_five_phases(store, exposition):
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    assert metric_lines(exposition, "probe_success") == []  # not probed yet
    store.record(target, result(up=True, duration=0.25))
    labels = 'name="shop",url="https://shop.example/"'
    assert metric_lines(exposition, "probe_success") == [f"probe_success{{{labels}}} 1"]
    assert metric_lines(exposition, "probe_duration_seconds") == [
        f"probe_duration_seconds{{{labels}}} 0.25"
    ]
    phases = metric_lines(exposition, "probe_http_duration_seconds")
    assert [line.split('phase="')[1].split('"')[0] for line in phases] == [
        "resolve",
        "connect",
        "tls",
        "processing",
        "transfer",
    ]
    for name in (
        "probe_http_status_code",
        "probe_http_content_length",
        "probe_http_redirects",
        "probe_http_ssl",
        "upcheck_consecutive_failures",
    ):
        assert len(metric_lines(exposition, name)) == 1, name
    assert metric_lines(exposition, "probe_ssl_earliest_cert_expiry") == []  # no certificate


def test_series_follow_new_results_and_vanish_with_their_target(store, exposition):
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    store.record(target, result(up=True))
    assert metric_lines(exposition, "probe_success")[0].endswith(" 1")
    store.record(target, result(up=False, status=503))
    store.record(target, result(up=False, status=503))
    assert metric_lines(exposition, "probe_success")[0].endswith(" 0")
    assert metric_lines(exposition, "upcheck_consecutive_failures")[0].endswith(" 2")
    assert metric_lines(exposition, "probe_http_status_code")[0].endswith(" 503")
    store.remove(target.url)
    assert "shop.example" not in bytes(exposition.render()).decode()


def test_a_replaced_target_never_shows_its_predecessors_figures(store, exposition):
    old = Target(url="https://shop.example/", name="old")
    store.add(old)
    store.record(old, result(up=False))
    exposition.render()
    new = Target(url="https://shop.example/", name="new")
    store.remove(old.url)
    store.add(new)
    store.record(new, result(up=True))
    assert metric_lines(exposition, "probe_success") == [
        'probe_success{name="new",url="https://shop.example/"} 1'
    ]


def test_labels_are_escaped_and_credentials_redacted(store, exposition):
    target = Target(url="https://u:pw@shop.example/?token=t", name='a "quoted"\\name')
    store.add(target)
    store.record(target, result())
    (line,) = metric_lines(exposition, "probe_success")
    name = 'name="a \\"quoted\\"\\\\name"'
    assert line == f'probe_success{{{name},url="https://xxxxx@shop.example/?token=xxxxx"}} 1'


def test_certificate_expiry_is_exported_for_https(store, exposition):
    target = Target(url="https://shop.example/", name="shop")
    store.add(target)
    tls_result = ProbeResult(**{**_fields(result()), "ssl": True, "cert_expiry": 2_000_000_000.0})
    store.record(target, tls_result)
    assert metric_lines(exposition, "probe_ssl_earliest_cert_expiry")[0].endswith(" 2000000000")
    assert metric_lines(exposition, "probe_http_ssl")[0].endswith(" 1")


def _fields(r: ProbeResult) -> dict:
    return {name: getattr(r, name) for name in ProbeResult.__slots__}


def test_probe_counts_read_as_prometheus_histogram_counter_and_gauge():
    telemetry = Telemetry()
    for lateness in (-0.5, 0.005, 0.0051, 1.0, 99.0):  # early, on a bound, past one, past all
        telemetry.probe_started(lateness)
    telemetry.probe_finished("success")
    telemetry.probe_finished("dns")
    telemetry.probe_finished("success")
    telemetry.probe_abandoned()

    def value(name: str, **labels: str) -> float | None:
        return telemetry.registry.get_sample_value(name, labels)

    bucket = "upcheck_probe_lateness_seconds_bucket"
    assert value(bucket, le="0.005") == 2  # the early one counts as 0, "le" includes the bound
    assert value(bucket, le="0.01") == 3
    assert value(bucket, le="1.0") == 4
    assert value(bucket, le="60.0") == 4
    assert value(bucket, le="+Inf") == value("upcheck_probe_lateness_seconds_count") == 5
    assert value("upcheck_probe_lateness_seconds_sum") == pytest.approx(0.005 + 0.0051 + 1 + 99)
    assert value("upcheck_probes_total", result="success") == 2
    assert value("upcheck_probes_total", result="dns") == 1
    assert value("upcheck_probes_in_flight") == 1  # five started, three finished, one abandoned
