"""Probing APIs: methods, headers and bodies sent, body and JSON checks, latency limits,
retries, unverified TLS and the address family, each against real servers on loopback.

Rows are written as CSV and loaded by the real parser, as the daemon loads them. Names other
than 127.0.0.1 are resolved by an injected resolver: no DNS query, no packet off loopback.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import socket
import ssl

import gevent
import pytest
import trustme
from cryptography import x509

from daemon.model import ProbeResult, Target
from daemon.probe.certificate import not_after
from daemon.probe.checks import BodyScan
from daemon.probe.prober import Prober
from daemon.sources.parse import parse_targets
from tests import servers as srv
from tests.servers import ipv6_loopback_available


def resolver(mapping: dict[str, list[str]]):
    """Resolve only the names in ``mapping``, each to its addresses in the order given."""

    def resolve(host: str, port: int):
        if host in mapping:
            return [
                (socket.AF_INET6, (ip, port, 0, 0)) if ":" in ip else (socket.AF_INET, (ip, port))
                for ip in mapping[host]
            ]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


@pytest.fixture
def prober(client_ssl_context: ssl.SSLContext) -> Prober:
    names = {"shop.test": ["127.0.0.1"], "dual.test": ["127.0.0.1", "::1"], "six.test": ["::1"]}
    return Prober(client_ssl_context, resolver=resolver(names), default_timeout=5)


def row(**cells: str) -> Target:
    """One CSV row (header from the keyword names) through the real parser."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", *cells])
    writer.writerow(["t", *cells.values()])
    parsed = parse_targets(out.getvalue().encode())
    assert parsed.errors == (), parsed.errors
    (target,) = parsed.targets
    return target


class Echo:
    """A raw server that keeps every request exactly as it came off the wire, and answers
    200 with ``body`` (or what ``answer`` makes of the request)."""

    def __init__(self, body: bytes = b"ok") -> None:
        self.requests: list[bytes] = []
        self.peers: list[int] = []
        self.body = body

    def __call__(self, sock: socket.socket) -> None:
        data = srv.read_request(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += sock.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        self.peers.append(sock.getpeername()[1])
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(self.body), self.body)
        )

    def head_lines(self, index: int = -1) -> list[bytes]:
        return self.requests[index].partition(b"\r\n\r\n")[0].split(b"\r\n")

    def body_of(self, index: int = -1) -> bytes:
        return self.requests[index].partition(b"\r\n\r\n")[2]


def json_app(document: object, status: str = "200 OK"):
    return srv.text_app(status, json.dumps(document).encode(), [("X-Kind", "json")])


def assert_failed(result: ProbeResult, kind: str, fragment: str = "") -> None:
    assert not result.up
    assert result.error_kind == kind, result
    assert fragment in (result.error or ""), result.error


# -- what is sent ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_the_method_headers_and_body_of_a_row_are_sent_exactly(servers, prober, method):
    echo = Echo()
    port = servers.raw(echo)
    body = '{"query": "ping", "n": 1, "unicode": "é"}'
    target = row(
        url=f"http://127.0.0.1:{port}/api/v1?x=1",
        method=method,
        headers="Content-Type: application/json | X-Api-Key: k-123 | X-Trace: a|b",
        body=body,
    )
    result = prober.probe(target)
    assert result.up, result.error
    lines = echo.head_lines()
    assert lines[0] == f"{method} /api/v1?x=1 HTTP/1.1".encode()
    assert b"Content-Type: application/json" in lines
    assert b"X-Api-Key: k-123" in lines
    assert b"X-Trace: a|b" in lines  # a "|" not followed by "Name:" stays in the value
    assert f"Content-Length: {len(body.encode())}".encode() in lines
    assert echo.body_of() == body.encode()


def test_a_rows_header_replaces_the_probes_own_of_the_same_name(servers, prober):
    echo = Echo()
    port = servers.raw(echo)
    target = row(url=f"http://127.0.0.1:{port}/", headers="accept: application/json")
    assert prober.probe(target).up
    accepts = [line for line in echo.head_lines() if line.lower().startswith(b"accept:")]
    assert accepts == [b"accept: application/json"]


def test_a_host_header_probes_a_virtual_host_at_an_address(servers, prober):
    echo = Echo()
    port = servers.raw(echo)
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/", headers="Host: shop.example")).up
    hosts = [line for line in echo.head_lines() if line.lower().startswith(b"host:")]
    assert hosts == [b"Host: shop.example"]


def test_a_get_row_without_new_columns_sends_no_body_and_the_probes_headers(servers, prober):
    echo = Echo()
    port = servers.raw(echo)
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/")).up
    lines = echo.head_lines()
    assert lines[0] == b"GET / HTTP/1.1"
    assert not any(line.lower().startswith(b"content-length") for line in lines)
    assert echo.body_of() == b""


def test_expanded_variables_are_sent_in_the_url_headers_and_body(servers, prober, monkeypatch):
    monkeypatch.setenv("UPCHECK_TEST_TOKEN", "tok-9f8e")
    monkeypatch.setenv("UPCHECK_TEST_PATH", "v2")
    echo = Echo()
    port = servers.raw(echo)
    target = row(
        url=f"http://127.0.0.1:{port}/${{UPCHECK_TEST_PATH}}/ping",
        method="POST",
        headers="Authorization: Bearer ${UPCHECK_TEST_TOKEN}",
        body='{"token": "${UPCHECK_TEST_TOKEN}"}',
    )
    assert prober.probe(target).up
    assert echo.head_lines()[0] == b"POST /v2/ping HTTP/1.1"
    assert b"Authorization: Bearer tok-9f8e" in echo.head_lines()
    assert echo.body_of() == b'{"token": "tok-9f8e"}'


def test_a_post_without_a_body_sends_an_empty_one(servers, prober):
    echo = Echo()
    port = servers.raw(echo)
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/", method="POST")).up
    assert b"Content-Length: 0" in echo.head_lines()


def test_headers_and_body_follow_a_307_on_the_same_origin_and_a_303_turns_into_a_bare_get(
    servers, prober
):
    seen: list[tuple[str, str, str | None, bytes]] = []

    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        seen.append(
            (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("HTTP_X_API_KEY"), body)
        )
        if environ["PATH_INFO"] == "/a":
            start_response("307 Temporary Redirect", [("Location", "/b")])
        elif environ["PATH_INFO"] == "/b":
            start_response("303 See Other", [("Location", "/c")])
        else:
            start_response("200 OK", [])
            return [b"done"]
        return [b""]

    port = servers.wsgi(app)
    target = row(
        url=f"http://127.0.0.1:{port}/a", method="PUT", headers="X-Api-Key: k1", body="payload"
    )
    result = prober.probe(target)
    assert result.up and result.redirects == 2, result.error
    assert seen == [
        ("PUT", "/a", "k1", b"payload"),
        ("PUT", "/b", "k1", b"payload"),
        ("GET", "/c", "k1", b""),
    ]


def test_a_redirect_to_another_origin_carries_neither_the_rows_headers_nor_its_body(
    servers, prober
):
    elsewhere = Echo()
    other = servers.raw(elsewhere)

    def app(environ, start_response):
        start_response("307 Temporary Redirect", [("Location", f"http://shop.test:{other}/x")])
        return [b""]

    port = servers.wsgi(app)
    target = row(
        url=f"http://127.0.0.1:{port}/",
        method="POST",
        headers="Authorization: Bearer secret-1 | X-Api-Key: secret-2",
        body="secret-3",
    )
    assert prober.probe(target).up
    request = elsewhere.requests[0]
    assert request.startswith(b"POST /x ")
    for secret in (b"secret-1", b"secret-2", b"secret-3"):
        assert secret not in request


def test_a_302_after_a_post_is_followed_with_a_get(servers, prober):
    methods: list[str] = []

    def app(environ, start_response):
        methods.append(environ["REQUEST_METHOD"])
        if environ["PATH_INFO"] == "/form":
            start_response("302 Found", [("Location", "/thanks")])
            return [b""]
        start_response("200 OK", [])
        return [b"thanks"]

    port = servers.wsgi(app)
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/form", method="POST", body="a=1")).up
    assert methods == ["POST", "GET"]


# -- body and JSON checks -------------------------------------------------------------------


def test_json_passes_when_the_expression_is_true(servers, prober):
    port = servers.wsgi(json_app({"status": "ok", "checks": [{"name": "db", "ok": True}]}))
    target = row(url=f"http://127.0.0.1:{port}/health", json="status == 'ok' && checks[0].ok")
    assert prober.probe(target).up


def test_json_fails_a_degraded_health_answer_that_still_says_200(servers, prober):
    port = servers.wsgi(json_app({"status": "degraded"}))
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", json="status == 'ok'"))
    assert_failed(result, "body_mismatch", "json \"status == 'ok'\" is false")
    assert result.status_code == 200


def test_json_says_what_a_falsy_result_was(servers, prober):
    port = servers.wsgi(json_app({"items": []}))
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", json="items"))
    assert_failed(result, "body_mismatch", "json 'items' is []")


def test_json_fails_a_body_that_is_not_json(servers, prober):
    port = servers.wsgi(srv.text_app(body=b"<html>maintenance</html>"))
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", json="status"))
    assert_failed(result, "body_mismatch", "body is not JSON")


def test_json_counts_zero_as_true_as_jmespath_does(servers, prober):
    port = servers.wsgi(json_app({"errors": 0}))
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/", json="errors")).up
    failing = prober.probe(row(url=f"http://127.0.0.1:{port}/", json="errors > `0`"))
    assert_failed(failing, "body_mismatch", "is false")


def test_body_regex_passes_and_fails(servers, prober):
    port = servers.wsgi(srv.text_app(body=b"build 2024.11.3 ready\nqueue depth: 17\n"))
    url = f"http://127.0.0.1:{port}/"
    assert prober.probe(row(url=url, body_regex=r"(?m)^queue depth: \d{1,2}$")).up
    result = prober.probe(row(url=url, body_regex=r"(?m)^queue depth: [0-9]$"))
    assert_failed(result, "body_mismatch", "body does not match '(?m)^queue depth: [0-9]$'")


def test_body_regex_reads_the_body_in_the_charset_the_server_names(servers, prober):
    latin1 = "café ouvert".encode("latin-1")
    app = srv.text_app(body=latin1, headers=[("Content-Type", "text/plain; charset=ISO-8859-1")])
    port = servers.wsgi(app)
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/", body_regex="café ouv")).up


def test_body_not_contains_passes_and_fails(servers, prober):
    port = servers.wsgi(srv.text_app(body=b"all systems go"))
    url = f"http://127.0.0.1:{port}/"
    assert prober.probe(row(url=url, body_not_contains="maintenance")).up
    result = prober.probe(row(url=url, body_not_contains="systems"))
    assert_failed(result, "body_mismatch", "body contains 'systems', which it must not")


def test_body_checks_find_text_cut_by_the_probes_chunk_boundary(servers, prober):
    # read_body reads 64 KiB at a time: put each needle across the first boundary.
    body = b"a" * (65536 - 3) + b"NEEDLE" + b"b" * 1000
    port = servers.wsgi(srv.text_app(body=body))
    url = f"http://127.0.0.1:{port}/"
    assert prober.probe(row(url=url, body_contains="NEEDLE")).up
    assert_failed(prober.probe(row(url=url, body_not_contains="NEEDLE")), "body_mismatch")
    assert prober.probe(row(url=url, body_regex="a{3}NEEDLEb")).up


@pytest.mark.parametrize("cut", range(1, 6))
def test_a_body_scan_fed_in_pieces_finds_a_needle_split_anywhere(cut):
    target = row(url="http://127.0.0.1/", body_contains="NEEDLE", body_not_contains="EDL")
    scan = BodyScan(target, None)
    text = b"xxNEEDLEyy"
    at = 2 + cut
    for piece in (text[:at], text[at:]):
        scan.feed(piece)
    assert scan.found and scan.forbidden_found


# -- max_response_ms ------------------------------------------------------------------------


def test_an_answer_slower_than_max_response_ms_fails_as_slow(servers, prober):
    def slow(environ, start_response):
        gevent.sleep(0.3)
        start_response("200 OK", [])
        return [b"late"]

    port = servers.wsgi(slow)
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", max_response_ms="50"))
    assert_failed(result, "slow", "over 50 ms")
    assert result.status_code == 200 and result.duration >= 0.3


def test_an_answer_within_max_response_ms_passes(servers, prober):
    port = servers.wsgi(srv.text_app())
    assert prober.probe(row(url=f"http://127.0.0.1:{port}/", max_response_ms="60000")).up


def test_a_wrong_status_is_reported_as_such_even_when_also_slow(servers, prober):
    def slow_error(environ, start_response):
        gevent.sleep(0.1)
        start_response("500 Internal Server Error", [])
        return [b""]

    port = servers.wsgi(slow_error)
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", max_response_ms="1"))
    assert_failed(result, "http_status")


# -- retries --------------------------------------------------------------------------------


def failing_first(count: int, peers: list[int]):
    def app(environ, start_response):
        peers.append(int(environ["REMOTE_PORT"]))
        if len(peers) <= count:
            start_response("503 Service Unavailable", [])
            return [b"warming up"]
        start_response("200 OK", [])
        return [b"ok"]

    return app


def test_retries_repeat_a_failed_probe_on_fresh_connections_until_it_passes(servers, prober):
    peers: list[int] = []
    port = servers.wsgi(failing_first(2, peers))
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", retries="3"))
    assert result.up and result.attempts == 3
    assert len(set(peers)) == 3  # a fresh connection for each attempt


def test_a_url_that_never_recovers_fails_after_retries_plus_one_attempts(servers, prober):
    peers: list[int] = []
    port = servers.wsgi(failing_first(1000, peers))
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/", retries="2"))
    assert_failed(result, "http_status", "status 503")
    assert result.attempts == 3 and len(peers) == 3


def test_without_retries_a_failure_is_final_after_one_attempt(servers, prober):
    peers: list[int] = []
    port = servers.wsgi(failing_first(1, peers))
    result = prober.probe(row(url=f"http://127.0.0.1:{port}/"))
    assert not result.up and result.attempts == 1 and len(peers) == 1


# -- tls_verify -----------------------------------------------------------------------------


def test_tls_verify_false_accepts_a_self_signed_certificate_and_reports_its_expiry(servers, prober):
    stranger = trustme.CA()  # not trusted by the prober
    port = servers.wsgi(srv.text_app(), tls=True, hostnames=("other.test",), ca=stranger)
    url = f"https://shop.test:{port}/"
    assert_failed(prober.probe(row(url=url)), "tls", "certificate verify failed")
    result = prober.probe(row(url=url, tls_verify="false"))
    assert result.up and result.ssl, result.error
    leaf = x509.load_pem_x509_certificate(
        stranger.issue_cert("other.test").cert_chain_pems[0].bytes()
    )
    assert result.cert_expiry == leaf.not_valid_after_utc.timestamp()


@pytest.mark.parametrize(
    "expires",
    [
        datetime.datetime(2049, 12, 31, 23, 59, 58, tzinfo=datetime.UTC),  # UTCTime
        datetime.datetime(2051, 3, 4, 5, 6, 7, tzinfo=datetime.UTC),  # GeneralizedTime
    ],
    ids=["utctime", "generalizedtime"],
)
def test_the_certificate_expiry_is_read_in_both_asn1_time_forms(servers, prober, expires):
    port = servers.wsgi(srv.text_app(), tls=True, hostnames=("shop.test",), not_after=expires)
    for verify in ("true", "false"):
        result = prober.probe(row(url=f"https://shop.test:{port}/", tls_verify=verify))
        assert result.up, result.error
        assert result.cert_expiry == expires.timestamp()


def test_one_prober_reports_each_servers_own_expiry_when_their_certificates_alternate(
    servers, prober
):
    # The prober reads an expiry once per certificate: the answer must stay that server's.
    first, second = (
        datetime.datetime(2049, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.datetime(2050, 6, 7, 8, 9, 10, tzinfo=datetime.UTC),
    )
    ports = {
        expires: servers.wsgi(srv.text_app(), tls=True, hostnames=("shop.test",), not_after=expires)
        for expires in (first, second)
    }
    for expires in (first, second, first, second):
        result = prober.probe(row(url=f"https://shop.test:{ports[expires]}/"))
        assert result.up, result.error
        assert result.cert_expiry == expires.timestamp()


def test_a_der_walk_agrees_with_cryptography_and_refuses_garbage(ca):
    pem = ca.issue_cert("a.test").cert_chain_pems[0].bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert not_after(der) == cert.not_valid_after_utc.timestamp()
    assert not_after(der[:40]) is None
    assert not_after(b"") is None
    assert not_after(b"\x04\x02hi") is None


# -- ip -------------------------------------------------------------------------------------


def named_app(name: bytes):
    return srv.text_app(body=name)


@pytest.fixture
def dual_stack(servers) -> int:
    """A port served by "six" on [::1] and by "four" on 127.0.0.1."""
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback here")
    for _ in range(20):
        port = servers.wsgi(named_app(b"six"), host="::1")
        try:
            servers.wsgi(named_app(b"four"), port=port)
        except OSError:
            continue  # the IPv4 side of that port is taken: try another
        return port
    pytest.fail("no port free on both loopbacks")


def test_ip_6_connects_over_ipv6_to_a_name_with_both_families(dual_stack, prober):
    url = f"http://dual.test:{dual_stack}/"
    assert prober.probe(row(url=url, ip="6", body_contains="six")).up
    assert prober.probe(row(url=url, ip="4", body_contains="four")).up
    # Without a preference, IPv4 comes first, as the system resolver orders them.
    assert prober.probe(row(url=url, body_contains="four")).up


def test_ip_6_reaches_a_server_on_the_ipv6_loopback_literal(dual_stack, prober):
    assert prober.probe(row(url=f"http://[::1]:{dual_stack}/", ip="6", body_contains="six")).up


def test_ip_4_against_a_name_with_only_ipv6_fails_as_dns(servers, prober):
    result = prober.probe(row(url="http://six.test/", ip="4"))
    assert_failed(result, "dns", "no IPv4 address (ip=4)")


def test_ip_6_refuses_a_redirect_to_an_ipv4_literal(servers, prober, dual_stack):
    def app(environ, start_response):
        start_response("302 Found", [("Location", f"http://127.0.0.1:{dual_stack}/")])
        return [b""]

    port = servers.wsgi(app, host="::1")
    result = prober.probe(row(url=f"http://[::1]:{port}/", ip="6"))
    assert_failed(result, "dns", "127.0.0.1 is not an IPv6 address (ip=6)")


# -- what is never shown --------------------------------------------------------------------


def test_an_expanded_host_never_shows_in_the_error(prober, monkeypatch):
    monkeypatch.setenv("UPCHECK_TEST_HOST", "internal-billing.test")
    target = row(url="http://${UPCHECK_TEST_HOST}/health")
    assert target.display_url == "http://${UPCHECK_TEST_HOST}/health"
    result = prober.probe(target)
    assert_failed(result, "dns", "cannot resolve xxxxx")  # the name was expanded, then masked
    assert "internal-billing" not in (result.error or "")


def test_a_secret_a_server_quotes_back_in_a_redirect_never_shows(servers, prober, monkeypatch):
    monkeypatch.setenv("UPCHECK_TEST_TOKEN", "tok-5/6")
    queries: list[str] = []

    def app(environ, start_response):
        queries.append(environ["QUERY_STRING"])
        # An echo of the query, in a place no redaction rule knows: a plain "q" parameter.
        start_response(
            "302 Found", [("Location", "ftp://files.test/?q=" + environ["QUERY_STRING"])]
        )
        return [b""]

    port = servers.wsgi(app)
    target = row(url=f"http://127.0.0.1:{port}/?q=${{UPCHECK_TEST_TOKEN}}")
    result = prober.probe(target)
    assert queries == ["q=tok-5/6"]  # sent expanded
    assert_failed(
        result, "protocol", "redirect to a non-HTTP location 'ftp://files.test/?q=q=xxxxx'"
    )
    assert "tok" not in (result.error or "") and "5/6" not in (result.error or "")
    assert "5%2F6" not in (result.error or "")


def test_a_targets_repr_shows_no_header_value_body_or_expanded_url(monkeypatch):
    monkeypatch.setenv("UPCHECK_TEST_TOKEN", "tok-repr")
    target = row(
        url="https://api.test/?k=${UPCHECK_TEST_TOKEN}",
        headers="X-Custom: plain-value | Authorization: Bearer header-secret",
        body="body-secret",
        method="POST",
    )
    text = repr(target)
    for hidden in ("tok-repr", "plain-value", "header-secret", "body-secret"):
        assert hidden not in text
    assert "X-Custom" in text and "<11 bytes>" in text
    assert set(target.secrets) == {"tok-repr", "Bearer header-secret"}


def test_an_unchanged_row_loaded_again_is_the_same_target():
    data = b"url,json,body_regex,headers\nhttp://127.0.0.1/,status == 'ok',^ok$,X-A: 1\n"
    first, second = parse_targets(data).targets, parse_targets(data).targets
    assert first[0].json_query is not None and first[0].body_regex is not None
    assert first == second and hash(first[0]) == hash(second[0])
