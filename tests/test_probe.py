"""The probe against real HTTP and HTTPS servers on 127.0.0.1, friendly and hostile.

Names other than 127.0.0.1 are resolved by an injected resolver, so no test sends a DNS query
or a packet beyond loopback.
"""

from __future__ import annotations

import base64
import gc
import re
import socket
import ssl
import time

import gevent
import pytest
import trustme
from cryptography import x509

from daemon.model import ProbeResult, Target
from daemon.probe.exchange import MAX_BODY_BYTES
from daemon.probe.prober import MAX_REDIRECTS, Prober
from daemon.sources.parse import parse_expected_status
from tests import servers as srv

LOOPBACK = [(socket.AF_INET, ("127.0.0.1", 0))]


def local_resolver(mapping: dict[str, str]):
    """Resolve only the names in ``mapping``; anything else fails as NXDOMAIN would."""

    def resolve(host: str, port: int):
        if host in mapping:
            ip = mapping[host]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, (ip, port))]
        if host.replace(".", "").isdigit():
            return [(socket.AF_INET, (host, port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


@pytest.fixture
def prober(client_ssl_context: ssl.SSLContext) -> Prober:
    resolver = local_resolver({"localhost": "127.0.0.1", "shop.test": "127.0.0.1"})
    return Prober(client_ssl_context, resolver=resolver, default_timeout=5)


def probe(prober: Prober, url: str, **fields) -> ProbeResult:
    return prober.probe(Target(url=url, name="t", **fields))


def assert_failed(result: ProbeResult, kind: str, fragment: str = "") -> None:
    assert not result.up
    assert result.error_kind == kind, result
    assert fragment in (result.error or ""), result.error


def test_a_healthy_page_is_up_with_every_phase_timed(servers, prober):
    port = servers.wsgi(srv.text_app(body=b"hello world"))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert result.up and result.error_kind is None and result.error is None
    assert result.status_code == 200
    assert result.content_length == len(b"hello world")
    assert result.redirects == 0 and result.ssl is False and result.cert_expiry is None
    resolve, connect, tls, processing, transfer = result.phases
    assert tls == 0.0
    assert min(resolve, connect, processing, transfer) >= 0.0
    assert sum(result.phases) <= result.duration


def test_https_times_tls_and_reads_the_certificate_expiry(servers, prober, ca):
    port = servers.wsgi(srv.text_app(), tls=True, hostnames=("shop.test",))
    result = probe(prober, f"https://shop.test:{port}/")
    assert result.up, result.error
    assert result.ssl is True
    assert result.phases[2] > 0.0
    leaf = x509.load_pem_x509_certificate(ca.issue_cert("shop.test").cert_chain_pems[0].bytes())
    # trustme issues leaves with a fixed validity end; the probe must report that instant.
    assert result.cert_expiry == pytest.approx(leaf.not_valid_after_utc.timestamp(), abs=1)


def test_a_certificate_from_an_unknown_ca_fails_as_tls(servers, prober):
    stranger = trustme.CA()
    port = servers.wsgi(srv.text_app(), tls=True, hostnames=("shop.test",), ca=stranger)
    result = probe(prober, f"https://shop.test:{port}/")
    assert_failed(result, "tls", "certificate verify failed")
    assert result.status_code is None


def test_a_certificate_for_another_name_fails_as_tls(servers, prober):
    port = servers.wsgi(srv.text_app(), tls=True, hostnames=("other.test",))
    result = probe(prober, f"https://shop.test:{port}/")
    assert_failed(result, "tls", "shop.test")


def test_a_server_that_never_answers_is_cut_off_at_the_deadline(servers, prober):
    port = servers.raw(srv.never_answers)
    result = probe(prober, f"http://127.0.0.1:{port}/", timeout=0.5)
    assert_failed(result, "timeout", "0.5s")
    # The server would hold the probe for 60 s; the deadline ends it, not the server.
    assert 0.5 <= result.duration < 5


def test_a_trickling_body_cannot_hold_the_probe_past_its_deadline(servers, prober):
    port = servers.raw(srv.trickles)
    result = probe(prober, f"http://127.0.0.1:{port}/", timeout=1)
    assert_failed(result, "timeout")
    assert result.status_code == 200  # the headers did arrive
    assert 1 <= result.duration < 5  # the body alone would take 60 s


def test_an_endless_body_fails_as_too_large_at_10_mib(servers, prober):
    port = servers.raw(srv.endless_body)
    result = probe(prober, f"http://127.0.0.1:{port}/", timeout=30)
    assert_failed(result, "too_large", "10 MiB")
    assert MAX_BODY_BYTES == 10 * 1024 * 1024


def test_a_redirect_loop_stops_after_ten_redirects(servers, prober):
    def loop(environ, start_response):
        hop = int(environ["PATH_INFO"].strip("/") or 0)
        start_response("302 Found", [("Location", f"/{hop + 1}")])
        return [b""]

    port = servers.wsgi(loop)
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "too_many_redirects", "10")
    assert result.redirects == MAX_REDIRECTS


def test_redirects_are_followed_counted_and_a_303_turns_into_get(servers, prober):
    seen: list[tuple[str, str]] = []

    def app(environ, start_response):
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        path = environ["PATH_INFO"]
        if path == "/a":
            start_response("301 Moved Permanently", [("Location", "/b")])
        elif path == "/b":
            start_response("303 See Other", [("Location", "/c")])
        elif path == "/c":
            start_response("307 Temporary Redirect", [("Location", "/final")])
        else:
            start_response("200 OK", [])
            return [b"arrived"]
        return [b""]

    port = servers.wsgi(app)
    result = probe(prober, f"http://127.0.0.1:{port}/a")
    assert result.up, result.error
    assert result.redirects == 3
    assert result.status_code == 200
    assert seen == [("GET", "/a"), ("GET", "/b"), ("GET", "/c"), ("GET", "/final")]


def test_each_probe_opens_a_fresh_connection(servers, prober):
    peers: list[int] = []

    def app(environ, start_response):
        peers.append(int(environ["REMOTE_PORT"]))
        start_response("200 OK", [])
        return [b"ok"]

    port = servers.wsgi(app)
    for _ in range(3):
        assert probe(prober, f"http://127.0.0.1:{port}/").up
    assert len(set(peers)) == 3


def test_a_connection_reset_fails_as_protocol(servers, prober):
    port = servers.raw(srv.resets)
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "protocol", "connection reset by peer")


def test_a_server_that_closes_without_answering_is_not_called_a_reset(servers, prober):
    port = servers.raw(srv.closes_without_answering)
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "protocol", "the server closed the connection without answering")
    assert "reset" not in (result.error or "")


def test_a_reply_that_is_not_http_fails_as_protocol(servers, prober):
    port = servers.raw(srv.garbage)
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "protocol")


def test_a_closed_port_fails_as_connect(prober):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "connect", "refused")


def test_an_unknown_name_fails_as_dns(prober):
    result = probe(prober, "http://no-such-host.test/")
    assert_failed(result, "dns", "no-such-host.test")


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.170.2", "fd00:ec2::254"])
def test_metadata_addresses_are_refused_before_any_packet(client_ssl_context, address):
    asked: list[str] = []

    def resolver(host: str, port: int):
        asked.append(host)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, (address, port))]

    prober = Prober(client_ssl_context, resolver=resolver)
    result = prober.probe(Target(url="http://metadata.test/latest/meta-data/", name="m"))
    assert_failed(result, "blocked", address)
    assert asked == ["metadata.test"]
    assert result.phases[1] == 0.0  # no connect was attempted


def test_a_status_outside_the_expected_set_fails_as_http_status(servers, prober):
    port = servers.wsgi(srv.text_app("500 Internal Server Error"))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "http_status", "status 500, expected 200-399")
    assert result.status_code == 500


def test_an_expected_error_status_counts_as_up(servers, prober):
    port = servers.wsgi(srv.text_app("418 I'm a teapot"))
    result = probe(
        prober, f"http://127.0.0.1:{port}/", expected_status=parse_expected_status("418")
    )
    assert result.up and result.status_code == 418


def test_body_contains_finds_text_across_read_boundaries(servers, prober):
    needle = "needle-in-the-haystack"
    body = b"x" * (64 * 1024 - 5) + needle.encode() + b"y" * 100_000
    port = servers.wsgi(srv.text_app(body=body))
    assert probe(prober, f"http://127.0.0.1:{port}/", body_contains=needle).up
    missing = probe(prober, f"http://127.0.0.1:{port}/", body_contains="absent")
    assert_failed(missing, "body_mismatch", "absent")
    assert missing.status_code == 200


def test_body_contains_reads_compressed_bodies(servers, prober):
    import gzip

    port = servers.wsgi(
        srv.text_app(
            body=gzip.compress(b"the shop is open"), headers=[("Content-Encoding", "gzip")]
        )
    )
    assert probe(prober, f"http://127.0.0.1:{port}/", body_contains="shop is open").up


def test_head_sends_head_and_reports_the_declared_length(servers, prober):
    methods: list[str] = []

    def app(environ, start_response):
        methods.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [("Content-Length", "1234")])
        return [b""]

    port = servers.wsgi(app)
    result = probe(prober, f"http://127.0.0.1:{port}/", method="HEAD")
    assert result.up and methods == ["HEAD"]
    assert result.content_length == 1234


def answers_head(head: bytes):
    """A raw server: reads the request and sends this status line and headers, no body."""

    def handler(sock: socket.socket) -> None:
        srv.read_request(sock)
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n")
        sock.close()

    return handler


@pytest.mark.parametrize(
    "declared",
    [b"\xb2", b"12\xb3", b"+12", b"1_2"],  # header bytes are read as Latin-1: \xb2 is "²"
    ids=["superscript-two", "superscript-three", "plus", "underscore"],
)
def test_a_head_answer_with_a_content_length_that_is_not_a_number_has_no_length(
    servers, prober, declared
):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + declared
    port = servers.raw(answers_head(head))
    result = probe(prober, f"http://127.0.0.1:{port}/", method="HEAD")
    assert result.up, result.error
    assert result.content_length == -1


# -- HTTP/1.1 on the wire: the request sent, the body framed and decoded ---------------------


def answers(raw: bytes, seen: list[bytes] | None = None):
    """A raw server: reads the request (noted in ``seen``), sends ``raw`` and closes."""

    def handler(sock: socket.socket) -> None:
        request = srv.read_request(sock)
        head, _, rest = request.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            more = sock.recv(4096)
            if not more:
                break
            rest += more
        if seen is not None:
            seen.append(head + b"\r\n\r\n" + rest)
        sock.sendall(raw)
        sock.close()

    return handler


def test_a_request_is_sent_as_one_message_with_host_length_and_body(servers, prober):
    seen: list[bytes] = []
    port = servers.raw(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", seen))
    result = probe(
        prober,
        f"http://shop.test:{port}/orders?id=7",
        method="POST",
        headers=(("X-Trace", "abc"),),
        body=b'{"n": 1}',
    )
    assert result.up, result.error
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /orders?id=7 HTTP/1.1"
    assert lines[1] == f"Host: shop.test:{port}".encode()
    assert b"Content-Length: 8" in lines and b"X-Trace: abc" in lines
    assert b"Connection: close" in lines
    assert body == b'{"n": 1}'


def test_a_rows_own_host_header_replaces_the_urls(servers, prober):
    seen: list[bytes] = []
    port = servers.raw(answers(b"HTTP/1.1 204 No Content\r\n\r\n", seen))
    result = probe(prober, f"http://127.0.0.1:{port}/", headers=(("Host", "vhost.test"),))
    assert result.up, result.error
    hosts = [line for line in seen[0].split(b"\r\n") if line.lower().startswith(b"host:")]
    assert hosts == [b"Host: vhost.test"]


def test_a_post_without_a_body_says_its_length_is_zero(servers, prober):
    seen: list[bytes] = []
    port = servers.raw(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", seen))
    assert probe(prober, f"http://127.0.0.1:{port}/", method="POST").up
    assert b"\r\nContent-Length: 0\r\n" in seen[0]


def test_a_body_cut_short_of_its_content_length_fails_as_protocol(servers, prober):
    port = servers.raw(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "protocol", "the body ended after 3 of 10 bytes")
    assert result.status_code == 200


def test_bytes_past_the_content_length_are_not_part_of_the_body(servers, prober):
    port = servers.raw(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"))
    result = probe(prober, f"http://127.0.0.1:{port}/", body_not_contains="d")
    assert result.up, result.error
    assert result.content_length == 3


def test_a_chunked_body_is_unchunked_with_extensions_and_trailers(servers, prober):
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n7\r\n, shop!\r\n0\r\nX-Checksum: 1\r\n\r\n"
    )
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/", body_regex=re.compile("^hello, shop!$"))
    assert result.up, result.error
    assert result.content_length == 12


@pytest.mark.parametrize(
    ("chunks", "fragment"),
    [
        (b"zz\r\nhello\r\n0\r\n\r\n", "bad chunk size line"),
        (b"5\r\nhel", "the body ended in the middle of a chunk"),
        (b"5\r\nhello\r\n", "the body ended before its last chunk"),
        (b"3\r\nhello\r\n0\r\n\r\n", "a chunk is longer than its size line says"),
        (b"0x5\r\nhello\r\n0\r\n\r\n", "bad chunk size line"),
        (b"+5\r\nhello\r\n0\r\n\r\n", "bad chunk size line"),
        (b"5\r\nhello", "the body ended before its last chunk"),
    ],
    ids=[
        "not-hex",
        "cut-in-a-chunk",
        "no-last-chunk",
        "chunk-too-long",
        "hex-prefix",
        "plus-sign",
        "cut-after-a-chunk",
    ],
)
def test_broken_chunked_framing_fails_as_protocol(servers, prober, chunks, fragment):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    port = servers.raw(answers(raw))
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "protocol", fragment)


def test_content_lengths_that_disagree_fail_as_protocol(servers, prober):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    port = servers.raw(answers(raw))
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "protocol", "Content-Length")


def test_a_body_without_a_length_ends_with_the_connection(servers, prober):
    port = servers.raw(answers(b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 200_000))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert result.up and result.content_length == 200_000


def test_folded_and_colonless_header_lines_are_read_as_browsers_read_them(servers, prober):
    seen: list[bytes] = []
    moved = b"HTTP/1.1 301 Moved\r\nLocation: /a\r\n  b\r\nnot a field\r\nContent-Length: 0\r\n\r\n"
    replies = iter([moved, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    port = servers.raw(lambda sock: answers(next(replies), seen)(sock))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert result.up and result.redirects == 1, result.error
    assert seen[1].startswith(b"GET /a%20b HTTP/1.1\r\n")  # the folded Location, unfolded


def test_a_head_of_more_than_a_hundred_fields_fails_as_protocol(servers, prober):
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: 1\r\n" * 101 + b"\r\n"
    port = servers.raw(answers(raw))
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "protocol", "100 header lines")


def test_an_http2_status_line_fails_as_protocol(servers, prober):
    port = servers.raw(answers(b"HTTP/2 200\r\n\r\n"))
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "protocol", "not an HTTP/1.x")


@pytest.mark.parametrize("coding", ["gzip", "deflate-zlib", "deflate-raw", "gzip, gzip"])
def test_gzip_and_deflate_bodies_are_decoded_for_checks_and_length(servers, prober, coding):
    import gzip
    import zlib

    text = b"the shop is open " * 100
    if coding == "gzip":
        data, header = gzip.compress(text), "gzip"
    elif coding == "gzip, gzip":
        data, header = gzip.compress(gzip.compress(text)), coding
    elif coding == "deflate-zlib":
        data, header = zlib.compress(text), "deflate"
    else:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data, header = packer.compress(text) + packer.flush(), "deflate"
    raw = (
        f"HTTP/1.1 200 OK\r\nContent-Encoding: {header}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/", body_contains="shop is open")
    assert result.up, result.error
    assert result.content_length == len(text)


def test_a_gzip_body_of_several_members_is_decoded_whole(servers, prober):
    import gzip

    data = gzip.compress(b"first half, ") + gzip.compress(b"second half")
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + data
    port = servers.raw(answers(raw))
    wanted = re.compile("^first half, second half$")
    result = probe(prober, f"http://127.0.0.1:{port}/", body_regex=wanted)
    assert result.up, result.error


def test_bytes_after_the_end_of_a_gzip_body_are_ignored_as_browsers_do(servers, prober):
    import gzip

    data = gzip.compress(b"the shop is open") + b"\r\n\x00junk"
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + data
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/", body_contains="shop is open")
    assert result.up, result.error
    assert result.content_length == len(b"the shop is open")


def test_a_deflate_body_whose_first_chunk_is_one_byte_is_decoded(servers, prober):
    import zlib

    data = zlib.compress(b"the shop is open")
    chunks = b"1\r\n" + data[:1] + b"\r\n" + b"%x\r\n" % (len(data) - 1) + data[1:] + b"\r\n"
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n"
    )
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/", body_contains="shop is open")
    assert result.up, result.error


def test_an_endless_tail_after_a_gzip_body_is_not_buffered_and_stops_at_10_mib(servers, prober):
    """What follows the end of a compressed stream is ignored, but it still arrives: it counts
    toward the 10 MiB as it came, rather than piling up in zlib's leftovers for ever."""
    import gzip

    def handler(sock: socket.socket) -> None:
        srv.read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(b"ok"))
        junk = b"J" * 65536
        for _ in range(320):  # 20 MiB at most: the test cannot run away
            sock.sendall(junk)

    port = servers.raw(handler)
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "too_large", "10 MiB")


def test_more_than_five_content_codings_fail_as_protocol(servers, prober):
    import gzip

    data = b"the shop is open"
    for _ in range(6):
        data = gzip.compress(data)
    coding = ", ".join(["gzip"] * 6).encode()
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: " + coding + b"\r\n\r\n" + data
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "protocol", "more than 5 content codings")


def test_a_server_that_never_pauses_does_not_hold_the_event_loop(servers, prober):
    """gevent's recv only yields when nothing is waiting: a body of tiny chunks sent without
    pause kept the probe (and every other greenlet) busy past its deadline."""
    ticks: list[int] = []

    def ticker() -> None:
        for _ in range(1000):
            gevent.sleep(0.01)
            ticks.append(1)

    def handler(sock: socket.socket) -> None:
        srv.read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        burst = b"1\r\nx\r\n" * 10_000
        for _ in range(1000):  # 60 MB at most
            sock.sendall(burst)

    port = servers.raw(handler)
    watcher = gevent.spawn(ticker)
    try:
        result = probe(prober, f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        watcher.kill()
    assert result.error_kind in ("timeout", "too_large"), result
    assert len(ticks) >= 5, len(ticks)  # the loop turned while the probe read


def test_a_body_that_is_not_the_gzip_it_claims_fails_as_protocol(servers, prober):
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nplain text, not gzip"
    port = servers.raw(answers(raw))
    assert_failed(probe(prober, f"http://127.0.0.1:{port}/"), "protocol", "not valid gzip")


def test_an_unknown_content_coding_is_taken_as_it_came(servers, prober):
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nnot decoded"
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/", body_contains="not decoded")
    assert result.up, result.error


def test_a_small_gzip_bomb_stops_at_10_mib_without_inflating_it_whole(servers, prober):
    import gzip

    bomb = gzip.compress(b"\0" * (200 * 2**20), compresslevel=9)  # 200 MiB in ~200 KiB
    assert len(bomb) < 2**20
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + bomb
    port = servers.raw(answers(raw))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "too_large", "10 MiB")


@pytest.mark.parametrize("code", [b"2_00", b"+200", b"0200", b"\xb2\xb2\xb2"])
def test_a_status_code_that_is_not_three_ascii_digits_fails_as_protocol(servers, prober, code):
    port = servers.raw(answers_head(b"HTTP/1.1 " + code + b" OK\r\nContent-Length: 0"))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "protocol", "not an HTTP response")


@pytest.mark.parametrize("line", [b"   ", b"HTTP/1.1", b"HTTP/1.1 200"])
def test_a_short_status_line_is_read_as_http_client_reads_it(servers, prober, line):
    port = servers.raw(answers_head(line + b"\r\nContent-Length: 0"))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    if line == b"HTTP/1.1 200":  # no reason phrase: still a 200
        assert result.up and result.status_code == 200, result.error
    else:
        assert_failed(result, "protocol", "not an HTTP response")


def answers_after(*interim: bytes, pause: float = 0.0, tls: ssl.SSLContext | None = None):
    """A raw server: reads the request, sends these interim (1xx) answers, waits ``pause``
    seconds, then a 200 with a five-byte body."""

    def handler(sock: socket.socket) -> None:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_side=True)
        srv.read_request(sock)
        for line in interim:
            sock.sendall(line + b"\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
        resume = time.perf_counter() + pause
        while time.perf_counter() < resume:  # the loop's cached clock may run a little behind
            gevent.sleep(resume - time.perf_counter())
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        sock.close()

    return handler


@pytest.mark.parametrize(
    "interim",
    [
        [b"HTTP/1.1 103 Early Hints"],
        [b"HTTP/1.1 102 Processing"],
        [b"HTTP/1.1 102 Processing", b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Early Hints"],
    ],
    ids=["103", "102", "102-100-103"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_interim_answers_before_the_page_are_read_past_to_the_final_one(
    servers, prober, interim, method
):
    port = servers.raw(answers_after(*interim))
    result = probe(prober, f"http://127.0.0.1:{port}/", method=method)
    assert result.up, result.error
    assert result.status_code == 200 and result.content_length == 5


def test_processing_ends_at_the_first_interim_answer_over_https(servers, prober, ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("shop.test").configure_cert(context)
    port = servers.raw(answers_after(b"HTTP/1.1 103 Early Hints", pause=0.3, tls=context))
    result = probe(prober, f"https://shop.test:{port}/")
    assert result.up, result.error
    processing, transfer = result.phases[3:]
    # The 103 is the answer's first byte: the 0.3 s until the page is transfer, as it is when
    # the kernel times plain http.
    assert processing + transfer >= 0.3
    assert transfer > processing


def test_endless_interim_answers_fail_as_protocol_after_ten(servers, prober):
    port = servers.raw(answers_after(*[b"HTTP/1.1 103 Early Hints"] * 50))
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert_failed(result, "protocol", "more than 10 interim (1xx) responses")


def test_userinfo_is_sent_as_basic_auth_and_only_to_the_same_origin(servers, prober):
    seen: dict[str, str | None] = {}

    def other(environ, start_response):
        seen["other"] = environ.get("HTTP_AUTHORIZATION")
        start_response("200 OK", [])
        return [b"ok"]

    other_port = servers.wsgi(other)

    def guarded(environ, start_response):
        seen["guarded"] = environ.get("HTTP_AUTHORIZATION")
        start_response("302 Found", [("Location", f"http://127.0.0.1:{other_port}/")])
        return [b""]

    port = servers.wsgi(guarded)
    result = probe(prober, f"http://alice:s3cret@127.0.0.1:{port}/")
    assert result.up, result.error
    assert seen["guarded"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert seen["other"] is None


def test_a_slow_response_is_measured_close_to_its_real_delay(servers, prober):
    delay = 0.4

    def slow(environ, start_response):
        gevent.sleep(delay)
        start_response("200 OK", [])
        return [b"late"]

    port = servers.wsgi(slow)
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert result.up
    processing = result.phases[3]
    assert delay <= processing <= result.duration
    # Generous: this checks the measurement, not the machine's speed.
    assert result.duration < delay + 1.0


def test_a_failing_probe_never_raises_and_records_when_it_started(prober):
    before = time.time()
    result = probe(prober, "http://no-such-host.test/")
    assert before <= result.started_at <= time.time()
    assert isinstance(result, ProbeResult)


# -- addresses written as IP literals --------------------------------------------------------


def recording_resolver(asked: list[str]):
    def resolve(host: str, port: int):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://[fd00:ec2::254]/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "http://169.254.169.254/",
    ],
)
def test_a_metadata_ip_literal_without_port_is_refused_without_asking_the_resolver(
    client_ssl_context, url
):
    asked: list[str] = []
    prober = Prober(client_ssl_context, resolver=recording_resolver(asked))
    result = prober.probe(Target(url=url, name="m"))
    assert_failed(result, "blocked", "link-local or cloud metadata")
    assert asked == []  # an IP literal is never handed to the resolver
    assert result.phases[1] == 0.0  # and no connect was attempted


def test_an_ipv4_literal_is_probed_without_asking_the_resolver(servers, client_ssl_context):
    asked: list[str] = []
    prober = Prober(client_ssl_context, resolver=recording_resolver(asked), default_timeout=5)
    port = servers.wsgi(srv.text_app())
    result = prober.probe(Target(url=f"http://127.0.0.1:{port}/", name="v4"))
    assert result.up, result.error
    assert asked == []


@pytest.mark.skipif(not srv.ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_an_ipv6_literal_with_a_port_reaches_a_server_on_ipv6_loopback(servers, client_ssl_context):
    asked: list[str] = []
    prober = Prober(client_ssl_context, resolver=recording_resolver(asked), default_timeout=5)
    port = servers.wsgi(srv.text_app(body=b"over v6"), host="::1")
    result = prober.probe(Target(url=f"http://[::1]:{port}/", name="v6"))
    assert result.up, result.error
    assert result.content_length == len(b"over v6")
    assert asked == []
    refused = prober.probe(Target(url="http://[::1]:1/", name="v6 closed"))
    assert_failed(refused, "connect", "cannot connect to [::1]:1: ")


# -- what an error message may contain -------------------------------------------------------


def test_a_secret_in_a_broken_redirect_location_never_reaches_the_error(servers, prober):
    location = "http://127.0.0.1:99999/x?token=SECRET"

    def app(environ, start_response):
        start_response("302 Found", [("Location", location)])
        return [b""]

    port = servers.wsgi(app)
    result = probe(prober, f"http://127.0.0.1:{port}/")
    assert not result.up and result.error_kind == "protocol", result
    assert "SECRET" not in (result.error or "")
    assert "token=xxxxx" in (result.error or "")


def test_an_error_message_is_one_line(client_ssl_context):
    def resolver(host: str, port: int):
        raise OSError(1, "first line\nsecond line token=SECRET\n")

    prober = Prober(client_ssl_context, resolver=resolver)
    result = prober.probe(Target(url="http://multi.test/", name="m"))
    assert result.error_kind == "dns"
    assert result.error == "cannot resolve multi.test: first line"


def test_the_host_header_names_the_port_only_when_it_is_not_the_default(
    servers, client_ssl_context
):
    hosts: list[str] = []

    def app(environ, start_response):
        hosts.append(environ.get("HTTP_HOST", ""))
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    http_port = servers.wsgi(app)
    https_port = servers.wsgi(app, tls=True, hostnames=("shop.test",))
    ports = {80: http_port, 443: https_port, 8443: https_port}

    def resolve(host: str, port: int):  # every name lands on the test servers, by port
        return [(socket.AF_INET, ("127.0.0.1", ports[port]))]

    prober = Prober(client_ssl_context, resolver=resolve, default_timeout=5)
    for url in ("http://shop.test/", "https://shop.test/", "https://shop.test:8443/"):
        result = probe(prober, url)
        assert result.up, result.error
    assert hosts == ["shop.test", "shop.test", "shop.test:8443"]
    # A fully qualified name (trailing dot) is still checked against the certificate's name.
    result = probe(prober, "https://shop.test./")
    assert result.up, result.error


def test_prepared_first_hops_are_not_kept_for_targets_that_are_gone(client_ssl_context):
    prober = Prober(client_ssl_context, resolver=recording_resolver([]), default_timeout=5)
    kept = Target(url="http://kept.test/", name="kept")
    prober.probe(kept)
    for i in range(50):  # reloads that replace targets: the old ones die with their lists
        prober.probe(Target(url=f"http://gone.test/{i}", name="gone"))
    gc.collect()
    assert prober.cached_first_hops() == 1
