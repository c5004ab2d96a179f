"""URLs from the CSV, end to end: what counts as credentials, what the probe sends, what the
daemon lets anyone read back, and which URLs the load refuses because they could never be sent.
"""

from __future__ import annotations

import ast
import base64
import socket
import ssl
import typing
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from daemon.model import ProbeResult, Target
from daemon.probe.prober import Prober
from daemon.sources.parse import check_url, parse_targets
from tests import servers as srv
from tests.daemon_process import DaemonProcess
from tests.support import wait_until

PACKAGE = Path(__file__).resolve().parent.parent / "daemon"
FAST = ("--interval", "1", "--reload-interval", "1", "--publish-interval", "1")


def recording_server(servers, heads: list[str]) -> int:
    """A raw HTTP server that keeps the head of every request it gets and answers 200."""

    def handle(sock: socket.socket) -> None:
        heads.append(srv.read_request(sock).decode("latin-1"))
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    return servers.raw(handle)


def header(head: str, name: str) -> str | None:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def test_an_at_sign_in_the_path_or_query_is_sent_as_written_and_never_as_basic_auth(
    servers, client_ssl_context: ssl.SSLContext
):
    heads: list[str] = []
    port = recording_server(servers, heads)
    parsed = parse_targets(
        (
            "url,name\n"
            f"http://127.0.0.1:{port}/users/a@b.example?email=ops@corp.example,plain\n"
            f"http://alice:s3cret@127.0.0.1:{port}/u/c@d.example,with credentials\n"
        ).encode()
    )
    assert parsed.errors == ()
    prober = Prober(client_ssl_context, default_timeout=5)
    for target in parsed.targets:
        result = prober.probe(target)
        assert result.up, result.error
    plain, credentialed = heads
    assert plain.startswith("GET /users/a@b.example?email=ops@corp.example HTTP/1.1\r\n")
    assert header(plain, "Host") == f"127.0.0.1:{port}"
    assert header(plain, "Authorization") is None
    assert credentialed.startswith("GET /u/c@d.example HTTP/1.1\r\n")
    assert header(credentialed, "Authorization") == (
        "Basic " + base64.b64encode(b"alice:s3cret").decode()
    )


def test_a_comma_cut_password_reaches_neither_ready_nor_the_log(tmp_path, servers):
    csv = tmp_path / "urls.csv"
    csv.write_text("https://alice:hunter,2secret@shop.example/\n")
    with DaemonProcess("--targets", str(csv), "--results", "-", *FAST, log=tmp_path / "log") as d:
        wait_until(lambda: b"no valid target" in d.get("/ready")[2], what="the rejected load")
        status, _, ready = d.get("/ready")
        for part in (b"alice", b"hunter", b"2secret"):
            assert part not in ready
        assert status == 503 and b"line 1: an unquoted ','" in ready
        # The same row beside a good one: skipped and logged, the good one loaded.
        ok = f"http://127.0.0.1:{servers.wsgi(srv.text_app())}/"
        csv.write_text(f"https://alice:hunter,2secret@shop.example/\n{ok},ok\n")
        wait_until(lambda: d.get("/ready")[0] == 200, what="the good list")
        wait_until(lambda: "event=targets_row_skipped" in d.log(), what="the skipped row")
        log = d.log()
    for part in ("alice", "hunter", "2secret"):
        assert part not in log


@pytest.mark.parametrize(
    "url",
    [
        "http://\u2603.example/",
        "http://*.example/",
        "http://.example/",
        "http://a..b/",
        "http://a.b../",
        "http://" + "a" * 64 + ".example/",
        "http://" + "a" * 63 + ".example/",
        "http://b\u00fccher.example/",
        "http://xn--bcher-kva.example/",
        "http://shop.test./",
        "http://127.0.0.1:0/",
        "http://127.0.0.1:1/",
        "http://[::1]:8080/",
    ],
)
def test_load_and_send_agree_on_which_urls_can_be_sent(url):
    """The load refuses exactly what requests' preparation or the resolver's name encoding
    (Python's idna codec, as getaddrinfo applies it) would refuse at every probe, and what
    requests would send elsewhere (port 0 is dropped: the probe went to port 80)."""
    try:
        check_url(url)
        loads = True
    except ValueError:
        loads = False
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        parts = urlsplit(prepared.url or "")
        host = parts.hostname or ""
        if ":" not in host:
            host.encode("idna")
        sends = parts.port == urlsplit(url).port
    except (requests.exceptions.InvalidURL, UnicodeError):
        sends = False
    assert loads == sends


def test_text_is_shown_only_through_redaction():
    """``Shown`` is made only in daemon/redact.py, and the fields people read are Shown."""
    from daemon.redact import Shown

    makers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "redact.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called = node.func.id
                cast_to = node.args[0] if called == "cast" and node.args else None
                if called == "Shown" or (isinstance(cast_to, ast.Name) and cast_to.id == "Shown"):
                    makers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert makers == []
    assert typing.get_type_hints(Target)["display_url"] is Shown
    assert typing.get_type_hints(ProbeResult)["error"] == Shown | None
