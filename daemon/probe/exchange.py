"""One request and its answer: prepare it, send it, read the body, judge the answer.

Requests prepares each request (URL parsing and IDNA, headers, basic auth); the I/O then goes
straight through one fresh :class:`~daemon.probe.connection.TracedConnection`, not through
requests' Session, adapter and pool machinery, which cost more CPU than the whole exchange with
a fast server.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.response import BaseHTTPResponse

from daemon import __version__
from daemon.model import ErrorKind, Target
from daemon.probe.checks import BodyScan
from daemon.probe.classify import ProbeFailure, readable
from daemon.probe.connection import Addresses, Endpoint, Trace, TracedConnection
from daemon.redact import Shown

MAX_BODY_BYTES = 10 * 1024 * 1024
_CHUNK = 64 * 1024
USER_AGENT = f"upcheck/{__version__}"
_HEADERS = MappingProxyType(
    {
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "Connection": "close",
    }
)
_SHARED_HEADERS = dict(_HEADERS)  # a hop's headers when it has no credentials; never mutated

Origin = tuple[str, str, int | None]


@dataclass(frozen=True, slots=True)
class Hop:
    """One request, prepared by requests (URL, headers, auth) and taken apart for urllib3."""

    url: str
    origin: Origin  # where credentials may be sent
    endpoint: Endpoint
    path: str  # the request target: path and query
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(slots=True)
class Outcome:
    """What the exchanges of one probe found, filled in as they go."""

    status_code: int | None = None
    processing: float = 0.0
    transfer: float = 0.0
    content_length: int = -1
    redirects: int = 0
    ssl: bool = False
    scan: BodyScan | None = None  # the body checks, for a target that has any
    complete: bool = False  # a response was read and evaluated
    error_kind: ErrorKind | None = None
    error: Shown | None = None

    def fail(self, kind: ErrorKind, message: str) -> None:
        self.error_kind = kind
        self.error = readable(message)


def origin(url: str) -> Origin:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a bad port: requests will refuse the URL and say why
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def credentials(url: str) -> tuple[str, str] | None:
    """Basic-auth credentials written in ``url``, if any."""
    if "@" not in url:
        return None
    auth = requests.utils.get_auth_from_url(url)
    return auth if any(auth) else None


def prepare(
    method: str,
    url: str,
    auth: tuple[str, str] | None,
    addresses: Addresses,
    extra_headers: tuple[tuple[str, str], ...] = (),
    body: bytes | None = None,
) -> Hop:
    """Let requests do what it does well (URL parsing, IDNA, basic auth), and no more.

    Only the steps a probe needs: no cookie jar, no hooks, no environment proxies. The row's
    own headers (checked when the list was loaded) replace ours of the same name, and win over
    credentials in the URL.
    """
    request = requests.PreparedRequest()
    request.prepare_method(method)
    request.prepare_url(url, None)
    headers: dict[str, str]
    if auth is None and "@" not in url and not extra_headers:
        # Nothing for prepare_auth to do (it would only look for credentials in the URL):
        # every such hop shares one copy of our constant headers, which nothing mutates.
        headers = _SHARED_HEADERS
    else:
        # Our own constant headers need none of prepare_headers' validation.
        request.headers = CaseInsensitiveDict(_HEADERS)
        request.prepare_auth(auth, url)
        for name, value in extra_headers:
            request.headers[name] = value
        headers = dict(request.headers)
    prepared = request.url or url
    parts = urlsplit(prepared)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    return Hop(
        url=prepared,
        origin=origin(url),
        endpoint=Endpoint(host, port, https, addresses.literal(host, port)),
        path=request.path_url,
        headers=headers,
        body=body,
    )


def send(
    hop: Hop,
    method: str,
    trace: Trace,
    outcome: Outcome,
    ssl_context: ssl.SSLContext | None,
    socket_timeout: float | None,
) -> tuple[BaseHTTPResponse, float]:
    """Connect, send the request and read the final response's head; when the answer's
    first line was read (perf_counter, an interim 1xx's if any) comes back with it, and the
    processing phase is added to ``outcome``."""
    conn = trace.conn = TracedConnection(hop.endpoint, socket_timeout, trace, ssl_context)
    conn.connect()
    if hop.body is not None:
        # The body follows the headers in a second write; Nagle would hold it until the
        # headers are acknowledged, which a server's delayed ACK can put off for 40 ms.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.request(method, hop.path, body=hop.body, headers=hop.headers, preload_content=False)
    response = conn.getresponse()
    bound = trace.answered_at - trace.connected_at
    kernel = trace.stamps.processing(bound) if trace.stamps is not None else None
    outcome.processing += bound if kernel is None else kernel
    outcome.status_code = response.status
    return response, trace.answered_at


def read_body(target: Target, method: str, response: BaseHTTPResponse, outcome: Outcome) -> None:
    """Read the body (at most :data:`MAX_BODY_BYTES`), feeding it to the target's body checks
    (if it has any) as it streams past, then close the response."""
    if method == "HEAD":
        declared = response.headers.get("Content-Length", "")
        # ASCII digits only: str.isdigit() takes "²", which int() refuses.
        number = declared.isascii() and declared.isdigit()
        outcome.content_length = int(declared) if number else -1
        response.close()
        return
    scan = BodyScan(target, response.headers.get("Content-Type")) if target.reads_body else None
    size = 0
    # Without a Content-Encoding there is nothing to decode: urllib3 then hands each read
    # straight through instead of via its decoded-data buffer, and once a declared length
    # has all arrived there is no need for one more read to learn that the body ended.
    decode = "Content-Encoding" in response.headers
    try:
        while True:
            chunk = response.read(_CHUNK, decode_content=decode)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProbeFailure("too_large", f"body larger than {MAX_BODY_BYTES // 2**20} MiB")
            if scan is not None:
                scan.feed(chunk)
            if not decode and getattr(response, "length_remaining", None) == 0:
                break
    finally:
        response.close()
    outcome.content_length = size
    outcome.scan = scan


def evaluate(target: Target, status: int, outcome: Outcome) -> None:
    """Judge a complete answer against the target's expectations."""
    if not target.status_ok(status):
        expected = ",".join(
            str(low) if low == high else f"{low}-{high}" for low, high in target.expected_status
        )
        outcome.fail("http_status", f"status {status}, expected {expected}")
    elif outcome.scan is not None:
        problem = outcome.scan.problem()
        if problem is not None:
            outcome.fail("body_mismatch", problem)
