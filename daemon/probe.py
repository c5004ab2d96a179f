"""One probe of one URL: resolve, connect, TLS, request, evaluate; never raises.

A probe opens a fresh connection for every hop (a monitor measures what a new visitor sees),
times each phase the way the Prometheus blackbox exporter does, and turns every failure into
data: a :class:`ProbeResult` with one ``error_kind`` from :data:`ERROR_KINDS` and a sentence a
person can act on.

The whole probe, body included, runs under one ``gevent.Timeout``: a server that trickles one
byte a second cannot hold it past its deadline. That needs cooperative sockets, so the process
must be monkey-patched by gevent before this module does any I/O (``daemon/__main__.py`` does).

Requests carries the HTTP exchange. Two of its layers are replaced, on purpose:

* the urllib3 connection classes, to resolve names ourselves (timed, and checked against the
  link-local block list before any packet is sent), time connect and TLS separately, and read
  the peer certificate's expiry;
* the adapter's pool lookup, so that each hop gets a brand-new single-connection pool instead
  of a shared keep-alive pool.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import gevent
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from daemon import __version__
from daemon.redact import redact_url
from daemon.targets import Target

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
ERROR_KINDS = (
    "dns",
    "connect",
    "tls",
    "timeout",
    "http_status",
    "body_mismatch",
    "too_many_redirects",
    "too_large",
    "protocol",
    "blocked",
)
MAX_REDIRECTS = 10
MAX_BODY_BYTES = 10 * 1024 * 1024
_CHUNK = 64 * 1024
_REDIRECT_CODES = frozenset((301, 302, 303, 307, 308))
_BLOCKED_NETS = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. the EC2/ECS metadata services
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # EC2 metadata over IPv6
)
USER_AGENT = f"upcheck/{__version__}"

# (family, sockaddr) pairs, as socket.getaddrinfo gives them.
Address = tuple[int, tuple[Any, ...]]
Resolver = Callable[[str, int], Sequence[Address]]


def system_resolver(host: str, port: int) -> list[Address]:
    """Resolve with the (gevent-patched) system resolver; IPv4 first, then IPv6."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return [(info[0], info[4]) for info in infos]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe of one URL saw. ``error_kind`` is None exactly when ``up`` is true."""

    up: bool
    status_code: int | None
    duration: float  # seconds, the whole probe
    phases: tuple[float, float, float, float, float]  # seconds, in PHASES order
    content_length: int  # body bytes received (Content-Length for HEAD); -1 if unknown
    redirects: int
    ssl: bool  # the final URL was https
    cert_expiry: float | None  # unix time of the earliest peer certificate expiry seen
    error_kind: str | None
    error: str | None
    started_at: float  # unix time


class _Failure(Exception):
    """Carries a classified failure out of the transport layers to :meth:`Prober.probe`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class _Trace:
    """Per-probe state the connection classes write into: phase times and certificates."""

    resolver: Resolver
    allow_link_local: bool
    resolve: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    connected_at: float = 0.0  # perf_counter when the connection became ready for the request
    cert_expiries: list[float] = field(default_factory=list)


def _blocked(address: Address) -> bool:
    try:
        ip = ipaddress.ip_address(address[1][0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _BLOCKED_NETS)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _TracedHTTPConnection(HTTPConnection):
    """An urllib3 connection that resolves and connects itself, timing both."""

    def __init__(self, *args: Any, trace: _Trace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trace = trace

    def _new_conn(self) -> socket.socket:
        trace = self._trace
        host = self._dns_host
        started = time.perf_counter()
        try:
            addresses = list(trace.resolver(host, self.port))
        except (OSError, UnicodeError) as exc:
            raise _Failure("dns", f"cannot resolve {host}: {_os_reason(exc)}") from None
        resolved = time.perf_counter()
        trace.resolve += resolved - started
        if not addresses:
            raise _Failure("dns", f"cannot resolve {host}: no address")
        allowed = addresses if trace.allow_link_local else [a for a in addresses if not _blocked(a)]
        if not allowed:
            ip = addresses[0][1][0]
            where = ip if ip == host else f"{host} resolves to {ip}, which"
            raise _Failure(
                "blocked",
                f"{where} is a link-local or cloud metadata address; refused "
                "(see --allow-link-local)",
            )
        error: OSError | None = None
        try:
            for family, sockaddr in allowed:
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout if isinstance(self.timeout, float) else None)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.connect(sockaddr)
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                return sock
        finally:
            # Counted whether or not it worked: a slow refusal is still connect time.
            trace.connected_at = time.perf_counter()
            trace.connect += trace.connected_at - resolved
        assert error is not None
        if isinstance(error, TimeoutError):
            raise _Failure("timeout", f"connect to {host}:{self.port} timed out") from None
        raise _Failure(
            "connect", f"cannot connect to {host}:{self.port}: {_os_reason(error)}"
        ) from None


class _TracedHTTPSConnection(HTTPSConnection):
    """As :class:`_TracedHTTPConnection`, plus TLS timing and the peer certificate's expiry."""

    def __init__(self, *args: Any, trace: _Trace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trace = trace

    _new_conn = _TracedHTTPConnection._new_conn

    def connect(self) -> None:
        trace = self._trace
        try:
            super().connect()
        except _Failure:
            raise
        except (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError) as exc:
            raise _Failure(
                "tls", f"TLS handshake with {self.host} failed: {_tls_reason(exc)}"
            ) from None
        except TimeoutError:
            raise _Failure("timeout", f"TLS handshake with {self.host} timed out") from None
        except OSError as exc:
            raise _Failure(
                "tls", f"TLS handshake with {self.host} failed: {_os_reason(exc)}"
            ) from None
        now = time.perf_counter()
        trace.tls += now - trace.connected_at
        trace.connected_at = now
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket):
            cert = sock.getpeercert()
            not_after = cert.get("notAfter") if cert else None
            if isinstance(not_after, str):
                trace.cert_expiries.append(float(ssl.cert_time_to_seconds(not_after)))


def _tls_reason(exc: BaseException) -> str:
    while isinstance(exc, urllib3.exceptions.SSLError) and exc.args and exc.__context__:
        exc = exc.__context__
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc)


class _FreshConnectionAdapter(HTTPAdapter):
    """Gives every request a new single-connection pool wired to the probe's trace."""

    def __init__(self, trace: _Trace, ssl_context: ssl.SSLContext) -> None:
        super().__init__(max_retries=0)
        self._trace = trace
        self._ssl_context = ssl_context
        self._pools: list[HTTPConnectionPool] = []

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Any = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        parts = urlsplit(request.url or "")
        pool: HTTPConnectionPool
        if parts.scheme == "https":
            pool = HTTPSConnectionPool(
                parts.hostname or "",
                parts.port,
                maxsize=1,
                ssl_context=self._ssl_context,
                cert_reqs="CERT_REQUIRED",
                trace=self._trace,
            )
            pool.ConnectionCls = _TracedHTTPSConnection
        else:
            pool = HTTPConnectionPool(
                parts.hostname or "", parts.port, maxsize=1, trace=self._trace
            )
            pool.ConnectionCls = _TracedHTTPConnection
        self._pools.append(pool)
        return pool

    def close(self) -> None:
        for pool in self._pools:
            pool.close()
        self._pools.clear()
        super().close()


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context every probe shares: system CAs, certifi's, and the user's extra ones.

    Built once: loading CA bundles costs milliseconds, far more than a probe's TLS setup.
    ``SSL_CERT_FILE`` is honoured by OpenSSL's default paths; ``REQUESTS_CA_BUNDLE`` and
    ``--ca-file`` are added on top.
    """
    import os

    import certifi

    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    for extra in (os.environ.get("REQUESTS_CA_BUNDLE"), ca_file):
        if extra:
            context.load_verify_locations(extra)
    return context


class Prober:
    """Probes targets. Shared by all greenlets; holds no per-probe state."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        resolver: Resolver = system_resolver,
        allow_link_local: bool = False,
        default_timeout: float = 10.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._resolver = resolver
        self._allow_link_local = allow_link_local
        self._default_timeout = default_timeout

    def probe(self, target: Target) -> ProbeResult:
        """Probe ``target`` once within its deadline. Never raises (but for GreenletExit)."""
        started_at = time.time()
        started = time.perf_counter()
        timeout = target.timeout or self._default_timeout
        trace = _Trace(self._resolver, self._allow_link_local)
        adapter = _FreshConnectionAdapter(trace, self._ssl_context)
        outcome = _Outcome()
        deadline = gevent.Timeout(timeout)
        deadline.start()
        try:
            self._exchange(target, adapter, trace, outcome, started + timeout)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            outcome.fail("timeout", f"no complete answer within {timeout:g}s")
        except _Failure as exc:
            outcome.fail(exc.kind, exc.message)
        except Exception as exc:
            outcome.fail("protocol", _protocol_reason(exc))
        finally:
            deadline.close()
            adapter.close()
        return ProbeResult(
            up=outcome.error_kind is None,
            status_code=outcome.status_code,
            duration=time.perf_counter() - started,
            phases=(trace.resolve, trace.connect, trace.tls, outcome.processing, outcome.transfer),
            content_length=outcome.content_length,
            redirects=outcome.redirects,
            ssl=outcome.ssl,
            cert_expiry=min(trace.cert_expiries) if trace.cert_expiries else None,
            error_kind=outcome.error_kind,
            error=outcome.error,
            started_at=started_at,
        )

    def _exchange(
        self,
        target: Target,
        adapter: _FreshConnectionAdapter,
        trace: _Trace,
        outcome: _Outcome,
        deadline: float,
    ) -> None:
        url = target.url
        method = target.method
        origin = _origin(url)
        auth = requests.utils.get_auth_from_url(url)
        while True:
            outcome.ssl = url.lower().startswith("https:")
            request = requests.Request(
                method,
                url,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "*/*",
                    "Accept-Encoding": "gzip, deflate",
                    "Connection": "close",
                },
                auth=auth if any(auth) and _origin(url) == origin else None,
            ).prepare()
            # The socket timeout is only a backstop: the gevent.Timeout in probe() is the deadline.
            socket_timeout = max(deadline - time.perf_counter(), 0.001) + 1.0
            response = adapter.send(request, stream=True, timeout=socket_timeout, verify=True)
            headers_at = time.perf_counter()
            outcome.processing += headers_at - trace.connected_at
            outcome.status_code = response.status_code
            location = response.headers.get("Location")
            if response.status_code in _REDIRECT_CODES and location:
                response.close()
                if outcome.redirects >= MAX_REDIRECTS:
                    raise _Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
                outcome.redirects += 1
                next_url = urljoin(url, location)
                if urlsplit(next_url).scheme.lower() not in ("http", "https"):
                    raise _Failure(
                        "protocol", f"redirect to a non-HTTP location {redact_url(next_url)!r}"
                    )
                if response.status_code == 303 and method != "HEAD":
                    method = "GET"
                url = next_url
                continue
            self._read_body(target, method, response, outcome)
            outcome.transfer = time.perf_counter() - headers_at
            self._evaluate(target, response.status_code, outcome)
            return

    @staticmethod
    def _read_body(
        target: Target, method: str, response: requests.Response, outcome: _Outcome
    ) -> None:
        if method == "HEAD":
            declared = response.headers.get("Content-Length", "")
            outcome.content_length = int(declared) if declared.isdigit() else -1
            response.close()
            return
        needle = target.body_contains.encode() if target.body_contains else None
        found = needle is None
        keep = len(needle) - 1 if needle else 0
        tail = b""
        size = 0
        raw = response.raw
        try:
            while True:
                chunk = raw.read(_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _Failure("too_large", f"body larger than {MAX_BODY_BYTES // 2**20} MiB")
                if not found:
                    window = tail + chunk
                    found = needle in window  # type: ignore[operator]
                    tail = window[-keep:] if keep else b""
        finally:
            response.close()
        outcome.content_length = size
        outcome.body_found = found

    @staticmethod
    def _evaluate(target: Target, status: int, outcome: _Outcome) -> None:
        if not target.status_ok(status):
            expected = ",".join(
                str(low) if low == high else f"{low}-{high}" for low, high in target.expected_status
            )
            outcome.fail("http_status", f"status {status}, expected {expected}")
        elif not outcome.body_found:
            outcome.fail("body_mismatch", f"body does not contain {target.body_contains!r}")


@dataclass(slots=True)
class _Outcome:
    status_code: int | None = None
    processing: float = 0.0
    transfer: float = 0.0
    content_length: int = -1
    redirects: int = 0
    ssl: bool = False
    body_found: bool = True
    error_kind: str | None = None
    error: str | None = None

    def fail(self, kind: str, message: str) -> None:
        self.error_kind = kind
        self.error = message


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _protocol_reason(exc: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _Failure):
            return current.message
        if isinstance(current, ConnectionResetError):
            return "connection reset by peer"
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        if nested is None:
            break
        current = nested
    text = str(current or exc)
    return text[:300] if text else type(exc).__name__
