"""One request and its answer: prepare it, send it, read the body, judge the answer.

Requests prepares each request (URL parsing and IDNA, headers, basic auth), once per target:
the request's bytes are kept with the prepared hop. The I/O then goes straight through one
fresh :class:`~daemon.probe.connection.TracedConnection` and :mod:`daemon.probe.http1`, not
through requests' Session, adapter and pool machinery nor urllib3 and http.client, which cost
more CPU than the whole exchange with a fast server.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from daemon import __version__
from daemon.model import ErrorKind, Target
from daemon.probe import http1
from daemon.probe.checks import BodyScan
from daemon.probe.classify import ProbeFailure, readable
from daemon.probe.connection import Addresses, Endpoint, Trace, TracedConnection
from daemon.redact import Shown

MAX_BODY_BYTES = 10 * 1024 * 1024
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
    """One request, prepared by requests (URL, headers, auth), as the bytes to send."""

    url: str
    origin: Origin  # where credentials may be sent
    endpoint: Endpoint
    method: str
    request: bytes  # the request line, header fields and body


@dataclass(slots=True)
class Answer:
    """The final answer's head, and the reader its body comes from."""

    status: int
    headers: http1.Headers
    reader: http1.Reader
    answered_at: float  # perf_counter when its first status line (an interim one's too) was in


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
    head = http1.request_head(
        method, request.path_url, http1.host_value(host, port, https), headers, body
    )
    return Hop(
        url=prepared,
        origin=origin(url),
        endpoint=Endpoint(host, port, https, addresses.literal(host, port)),
        method=method,
        request=head if body is None else head + body,
    )


def send(
    hop: Hop,
    trace: Trace,
    outcome: Outcome,
    ssl_context: ssl.SSLContext | None,
    socket_timeout: float | None,
) -> Answer:
    """Connect, send the request and read the final answer's head; the processing phase is
    added to ``outcome``."""
    sock, recv = TracedConnection(hop.endpoint, socket_timeout, trace, ssl_context).connect()
    # One write, body included: a request fits the socket's buffer, so one send() usually
    # takes it all, and nothing waits for Nagle (no second write behind unacked data).
    sent = sock.send(hop.request)
    if sent < len(hop.request):
        sock.sendall(memoryview(hop.request)[sent:])
    if trace.stamps is not None:
        trace.stamps.sent = time.time()
    reader = http1.Reader(recv)
    status, headers, answered_at = http1.final_head(reader)
    trace.answered_at = answered_at
    bound = answered_at - trace.connected_at
    kernel = trace.stamps.processing(bound) if trace.stamps is not None else None
    outcome.processing += bound if kernel is None else kernel
    outcome.status_code = status
    return Answer(status, headers, reader, answered_at)


def read_body(target: Target, method: str, answer: Answer, outcome: Outcome) -> None:
    """Read the body (at most :data:`MAX_BODY_BYTES` once decoded), feeding it to the
    target's body checks (if it has any) as it streams past."""
    headers = answer.headers
    if method == "HEAD":
        declared = headers.get("Content-Length") or ""
        # ASCII digits only: str.isdigit() takes "²", which int() refuses.
        number = declared.isascii() and declared.isdigit()
        outcome.content_length = int(declared) if number else -1
        return
    scan = BodyScan(target, headers.get("Content-Type")) if target.reads_body else None
    coding = headers.get("Content-Encoding")
    decoder = http1.Decoder.of(coding, MAX_BODY_BYTES) if coding else None
    reader = answer.reader
    head = reader.consumed
    size = 0
    for data in http1.body(reader, answer.status, headers):
        chunk = data if decoder is None else decoder.feed(data)
        size += len(chunk)
        # Both as decoded and as it came (framing and whatever follows a compressed stream
        # included): a body that decodes to little cannot make the probe read forever.
        if size > MAX_BODY_BYTES or reader.received - head > MAX_BODY_BYTES:
            raise ProbeFailure("too_large", f"body larger than {MAX_BODY_BYTES // 2**20} MiB")
        if scan is not None:
            scan.feed(chunk)
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
