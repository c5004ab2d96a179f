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

from daemon.model import ProbeResult, Target
from daemon.probe.prober import Prober
from daemon.sources.parse import parse_targets
from tests import servers as srv

PACKAGE = Path(__file__).resolve().parent.parent / "daemon"


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
