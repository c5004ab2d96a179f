"""One probe of one URL: resolve, connect, TLS, request, evaluate; never raises.

A probe opens a fresh connection for every hop (a monitor measures what a new visitor sees),
times each phase the way the Prometheus blackbox exporter does, and turns every failure into
data: a :class:`ProbeResult` with one ``error_kind`` from :data:`ERROR_KINDS` and a sentence a
person can act on.

The whole probe, body included, runs under one ``gevent.Timeout``: a server that trickles one
byte a second cannot hold it past its deadline. That needs cooperative sockets, so the process
must be monkey-patched by gevent before this module does any I/O (``daemon/__main__.py`` does).

Requests prepares each request (URL parsing and IDNA, headers, basic auth); the hop's I/O then
goes straight through one fresh urllib3 connection, not through requests' Session, adapter and
pool machinery, which cost more CPU than the whole exchange with a fast server. That connection
resolves names itself (timed, checked against the link-local block list before any packet is
sent; an IP literal is used as is, with no resolver call), times connect and TLS separately
with the one SSL context built at start, reads the peer certificate's expiry, and closes its
socket when the deadline strikes in the middle of connect or handshake.
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import ssl
import struct
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import gevent
import requests
from gevent import monkey
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection
from urllib3.response import BaseHTTPResponse

from daemon import __version__
from daemon.redact import redact_text, redact_url
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
_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "close",
}
_SHARED_HEADERS = dict(_HEADERS)  # a hop's headers when it has no credentials; never mutated

# Kernel timestamps (Linux): SO_TIMESTAMPNS stamps received data with the time it arrived
# (CLOCK_REALTIME, as an SCM_TIMESTAMPNS message), and TCP_INFO's tcpi_rtt (microseconds, at
# byte 68) holds the handshake's round trip right after connect.
_KERNEL_TIMES = sys.platform == "linux"
_SO_TIMESTAMPNS = 35
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if _KERNEL_TIMES else 0

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
    duration: float  # seconds: the sum of the phases if complete, else until it was cut off
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
    conn: HTTPConnection | None = None  # the hop's connection, closed when the probe ends
    stamps: _Stamps | None = None  # the hop's kernel times (plain http only)
    sock: socket.socket | None = None  # the hop's socket itself, closed when the probe ends


@dataclass(slots=True)
class _Stamps:
    """When one plain-http hop's request left and its response's bytes arrived.

    Unix times: ``sent`` when the request was handed to the kernel, ``first`` and ``last``
    the kernel's receive times of the first and the last read. Taken this way, a probe whose
    greenlet waits behind others on a busy event loop is not charged for the wait.
    """

    sent: float | None = None
    first: float | None = None
    last: float | None = None


class _StampedReader(io.RawIOBase):
    """The response side of :class:`_StampedSocket`: ``recvmsg_into`` with the timestamp."""

    def __init__(self, owner: _StampedSocket, sock: socket.socket, stamps: _Stamps) -> None:
        super().__init__()
        self._owner = owner
        self._sock = sock
        self._stamps = stamps

    def close(self) -> None:
        if not self.closed:
            self._owner.reader_closed()
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size, ancillary, _flags, _address = self._sock.recvmsg_into([buffer], _ANCILLARY)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                at = seconds + nanoseconds * 1e-9
                if self._stamps.first is None:
                    self._stamps.first = at
                self._stamps.last = at
        return int(size)


class _StampedSocket:
    """A plain TCP socket as http.client sees it, noting the kernel's times (see _Stamps).

    Like ``socket.makefile``, closing it while a response is still being read defers the real
    close until that reader is closed too (http.client closes a ``Connection: close``
    connection as soon as the headers are in, and reads the body afterwards).
    """

    def __init__(self, sock: socket.socket, stamps: _Stamps) -> None:
        self._sock = sock
        self._stamps = stamps
        self._readers = 0
        self._closed = False

    def close(self) -> None:
        self._closed = True
        if self._readers == 0:
            self._sock.close()

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers == 0:
            self._sock.close()

    def sendall(self, data: Any, *args: Any) -> None:
        # A request fits the socket's buffer: one send() usually takes it all, without
        # gevent's sendall machinery (a getsockopt for the buffer size on every call).
        sent = self._sock.send(data, *args)
        if sent < len(data):
            self._sock.sendall(memoryview(data)[sent:], *args)
        self._stamps.sent = time.time()

    def makefile(self, *args: Any, **kwargs: Any) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_StampedReader(self, self._sock, self._stamps))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _handshake_rtt(sock: socket.socket) -> float | None:
    """The TCP handshake's round trip in seconds, as the kernel measured it; None if unknown
    or if the SYN had to be sent again (then the round trip is not the time connect took)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 104 or struct.unpack_from("I", info, 100)[0]:  # tcpi_total_retrans
        return None
    rtt_us: int = struct.unpack_from("I", info, 68)[0]
    return rtt_us / 1e6


@dataclass(frozen=True, slots=True)
class _Hop:
    """One request, prepared by requests (URL, headers, auth) and taken apart for urllib3."""

    url: str
    origin: tuple[str, str, int | None]  # where credentials may be sent
    https: bool
    host: str  # IDNA-encoded name or bare IP address (no brackets)
    port: int
    literal: Address | None  # the address itself when ``host`` is an IP literal
    path: str  # the request target: path and query
    headers: dict[str, str]


def _prepare(method: str, url: str, auth: tuple[str, str] | None) -> _Hop:
    """Let requests do what it does well (URL parsing, IDNA, basic auth), and no more.

    Only the steps a probe needs: no cookie jar, no hooks, no environment proxies.
    """
    request = requests.PreparedRequest()
    request.prepare_method(method)
    request.prepare_url(url, None)
    headers: dict[str, str]
    if auth is None and "@" not in url:
        # Nothing for prepare_auth to do (it would only look for credentials in the URL):
        # every such hop shares one copy of our constant headers, which nothing mutates.
        headers = _SHARED_HEADERS
    else:
        # Our own constant headers need none of prepare_headers' validation.
        request.headers = CaseInsensitiveDict(_HEADERS)
        request.prepare_auth(auth, url)
        headers = dict(request.headers)
    prepared = request.url or url
    parts = urlsplit(prepared)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    return _Hop(
        url=prepared,
        origin=_origin(url),
        https=https,
        host=host,
        port=port,
        literal=_literal(host, port),
        path=request.path_url,
        headers=headers,
    )


def _auth(url: str) -> tuple[str, str] | None:
    """Basic-auth credentials written in ``url``, if any."""
    if "@" not in url:
        return None
    auth = requests.utils.get_auth_from_url(url)
    return auth if any(auth) else None


def _literal(host: str, port: int) -> Address | None:
    version = _ip_version(host)
    if version is None:
        return None
    if version == 6:
        return socket.AF_INET6, (host, port, 0, 0)
    return socket.AF_INET, (host, port)


# Parsing an address with ipaddress costs as much as a good part of a probe's own code, and a
# list usually names few distinct hosts: both answers are cached per host string (bounded).
@functools.lru_cache(maxsize=4096)
def _ip_version(host: str) -> int | None:
    """4 or 6 when ``host`` is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _blocked(address: Address) -> bool:
    return _blocked_ip(address[1][0])


@functools.lru_cache(maxsize=4096)
def _blocked_ip(host: Any) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _BLOCKED_NETS)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _TracedConnection(HTTPConnection):
    """An urllib3 connection that resolves, connects and (for https) shakes hands itself.

    Timing each step into the probe's :class:`_Trace`, refusing blocked addresses before any
    packet is sent, and closing its socket if the deadline strikes half-way through.
    """

    def __init__(
        self,
        hop: _Hop,
        timeout: float | None,
        trace: _Trace,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(hop.host, hop.port, timeout=timeout)
        # urllib3 leaves the port out of the Host header when it is this one.
        self.default_port = 443 if hop.https else 80  # type: ignore[misc]
        self._hop = hop
        self._trace = trace
        self._ssl_context = ssl_context

    def connect(self) -> None:
        sock = self._trace.sock = self._new_conn()
        self._trace.stamps = None
        if self._ssl_context is not None:
            sock = self._trace.sock = self._handshake(sock, self._ssl_context)
        elif _KERNEL_TIMES:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            except OSError:
                pass  # no kernel times: the phases fall back to user-space clocks
            else:
                stamps = self._trace.stamps = _Stamps()
                sock = _StampedSocket(sock, stamps)  # type: ignore[assignment]
        self.sock = sock

    def _addresses(self) -> list[Address]:
        hop, trace = self._hop, self._trace
        if hop.literal is not None:
            return [hop.literal]  # an IP literal: nothing to resolve, no resolver call
        started = time.perf_counter()
        try:
            addresses = list(trace.resolver(hop.host, hop.port))
        except (OSError, UnicodeError) as exc:
            raise _Failure("dns", f"cannot resolve {hop.host}: {_os_reason(exc)}") from None
        finally:
            trace.resolve += time.perf_counter() - started
        if not addresses:
            raise _Failure("dns", f"cannot resolve {hop.host}: no address")
        return addresses

    def _new_conn(self) -> socket.socket:
        hop, trace = self._hop, self._trace
        addresses = self._addresses()
        allowed = addresses if trace.allow_link_local else [a for a in addresses if not _blocked(a)]
        if not allowed:
            ip = addresses[0][1][0]
            where = ip if ip == hop.host else f"{hop.host} resolves to {ip}, which"
            raise _Failure(
                "blocked",
                f"{where} is a link-local or cloud metadata address; refused "
                "(see --allow-link-local)",
            )
        started = attempt_started = time.perf_counter()
        error: OSError | None = None
        rtt: float | None = None
        try:
            for family, sockaddr in allowed:
                attempt_started = time.perf_counter()
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout if isinstance(self.timeout, float) else None)
                    # No TCP_NODELAY: the request goes out in one write with nothing unacked
                    # before it, which Nagle never delays; that saves a syscall a probe.
                    sock.connect(sockaddr)
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                except BaseException:  # the deadline (gevent.Timeout) or a kill
                    sock.close()
                    raise
                if _KERNEL_TIMES and self._ssl_context is None:
                    rtt = _handshake_rtt(sock)
                return sock
        finally:
            # Counted whether or not it worked: a slow refusal is still connect time.
            now = trace.connected_at = time.perf_counter()
            if rtt is None:
                trace.connect += now - started
            else:  # addresses that failed first, then the kernel's view of the last handshake
                trace.connect += attempt_started - started + min(rtt, now - attempt_started)
        assert error is not None
        where = f"[{hop.host}]:{hop.port}" if ":" in hop.host else f"{hop.host}:{hop.port}"
        if isinstance(error, TimeoutError):
            raise _Failure("timeout", f"connect to {where} timed out") from None
        raise _Failure("connect", f"cannot connect to {where}: {_os_reason(error)}") from None

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """TLS on ``sock``, verified by ``context`` (chain and host name), timed."""
        trace, host = self._trace, self._hop.host
        tls: ssl.SSLSocket | None = None
        try:
            # For an IP literal, ssl sends no SNI but still checks the address against the
            # certificate's IP SANs.
            # A fully qualified name's trailing dot is not part of the certificate's names.
            tls = context.wrap_socket(
                sock, server_hostname=host.rstrip("."), do_handshake_on_connect=False
            )
            tls.do_handshake()
        except BaseException as exc:
            (tls or sock).close()
            if isinstance(exc, ssl.SSLError | ssl.CertificateError):
                raise _Failure(
                    "tls", f"TLS handshake with {host} failed: {_tls_reason(exc)}"
                ) from None
            if isinstance(exc, TimeoutError):
                raise _Failure("timeout", f"TLS handshake with {host} timed out") from None
            if isinstance(exc, OSError):
                raise _Failure(
                    "tls", f"TLS handshake with {host} failed: {_os_reason(exc)}"
                ) from None
            raise
        now = time.perf_counter()
        trace.tls += now - trace.connected_at
        trace.connected_at = now
        cert = tls.getpeercert()
        not_after = cert.get("notAfter") if cert else None
        if isinstance(not_after, str):
            trace.cert_expiries.append(float(ssl.cert_time_to_seconds(not_after)))
        return tls


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc)


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
    """Probes targets. Shared by all greenlets; holds no per-probe state.

    What it does keep is a cache of each target's first hop, prepared (URL parsed and IDNA-
    encoded, headers and basic auth built, the IP literal recognised): a target is probed the
    same way every interval, and preparing is a good part of a probe's CPU on a fast server.
    """

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
        self._cooperative = monkey.is_module_patched("socket")
        # Keyed weakly: a target that left the list (and every greenlet) leaves the cache too.
        self._first_hops: weakref.WeakKeyDictionary[Target, _Hop] = weakref.WeakKeyDictionary()

    def cached_first_hops(self) -> int:
        return len(self._first_hops)

    def probe(self, target: Target) -> ProbeResult:
        """Probe ``target`` once within its deadline. Never raises (but for GreenletExit)."""
        started_at = time.time()
        started = time.perf_counter()
        timeout = target.timeout or self._default_timeout
        trace = _Trace(self._resolver, self._allow_link_local)
        outcome = _Outcome()
        deadline = gevent.Timeout(timeout)
        deadline.start()
        try:
            self._exchange(target, trace, outcome, started + timeout)
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
            if trace.conn is not None:
                trace.conn.close()
            if trace.sock is not None:
                trace.sock.close()
        phases = (trace.resolve, trace.connect, trace.tls, outcome.processing, outcome.transfer)
        return ProbeResult(
            up=outcome.error_kind is None,
            status_code=outcome.status_code,
            # A complete exchange lasts as long as its phases (without the time this process
            # took to get round to it); one cut short, until it was cut.
            duration=sum(phases) if outcome.complete else time.perf_counter() - started,
            phases=phases,
            content_length=outcome.content_length,
            redirects=outcome.redirects,
            ssl=outcome.ssl,
            cert_expiry=min(trace.cert_expiries) if trace.cert_expiries else None,
            error_kind=outcome.error_kind,
            error=outcome.error,
            started_at=started_at,
        )

    def _first_hop(self, target: Target) -> _Hop:
        hop = self._first_hops.get(target)
        if hop is None:
            hop = _prepare(target.method, target.url, _auth(target.url))
            self._first_hops[target] = hop
        return hop

    def _exchange(self, target: Target, trace: _Trace, outcome: _Outcome, deadline: float) -> None:
        hop = self._first_hop(target)
        method = target.method
        origin = hop.origin
        while True:
            outcome.ssl = hop.https
            # The gevent.Timeout in probe() is the deadline. On gevent's sockets a socket timeout
            # would only arm a second timer for every wait (connect, each read) that can never
            # strike first; on a blocking socket (not monkey-patched) it is the backstop.
            socket_timeout = (
                None if self._cooperative else max(deadline - time.perf_counter(), 0.001) + 1.0
            )
            conn = trace.conn = _TracedConnection(
                hop, socket_timeout, trace, self._ssl_context if hop.https else None
            )
            conn.connect()
            conn.request(method, hop.path, headers=hop.headers, preload_content=False)
            response = conn.getresponse()
            headers_at = time.perf_counter()
            stamps = trace.stamps
            if stamps is not None and stamps.sent is not None and stamps.first is not None:
                # Kernel stamps are wall-clock times: bounded by the monotonic interval that
                # contains them, so a clock step (NTP) cannot make a phase of any size.
                outcome.processing += min(
                    max(stamps.first - stamps.sent, 0.0), headers_at - trace.connected_at
                )
            else:
                outcome.processing += headers_at - trace.connected_at
            outcome.status_code = response.status
            location = response.headers.get("Location")
            if response.status in _REDIRECT_CODES and location:
                response.close()
                conn.close()
                if trace.sock is not None:
                    trace.sock.close()
                if outcome.redirects >= MAX_REDIRECTS:
                    raise _Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
                outcome.redirects += 1
                next_url = urljoin(hop.url, location)
                if urlsplit(next_url).scheme.lower() not in ("http", "https"):
                    raise _Failure(
                        "protocol", f"redirect to a non-HTTP location {redact_url(next_url)!r}"
                    )
                if response.status == 303 and method != "HEAD":
                    method = "GET"
                # Credentials go only to the origin they were written for.
                same = _origin(next_url) == origin
                hop = _prepare(method, next_url, _auth(target.url) if same else None)
                continue
            self._read_body(target, method, response, outcome)
            if stamps is not None and stamps.first is not None and stamps.last is not None:
                outcome.transfer = min(
                    max(stamps.last - stamps.first, 0.0), time.perf_counter() - trace.connected_at
                )
            else:
                outcome.transfer = time.perf_counter() - headers_at
            self._evaluate(target, response.status, outcome)
            outcome.complete = True
            return

    @staticmethod
    def _read_body(
        target: Target, method: str, response: BaseHTTPResponse, outcome: _Outcome
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
                    raise _Failure("too_large", f"body larger than {MAX_BODY_BYTES // 2**20} MiB")
                if not found:
                    window = tail + chunk
                    found = needle in window  # type: ignore[operator]
                    tail = window[-keep:] if keep else b""
                if not decode and getattr(response, "length_remaining", None) == 0:
                    break
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
    complete: bool = False  # a response was read and evaluated
    error_kind: str | None = None
    error: str | None = None

    def fail(self, kind: str, message: str) -> None:
        self.error_kind = kind
        self.error = _readable(message)


def _readable(message: str) -> str:
    """One line, credentials masked: how every error leaves the probe."""
    lines = message.strip().splitlines()
    return redact_text(lines[0].strip() if lines else "")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a bad port: requests will refuse the URL and say why
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


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
        if isinstance(current, http.client.BadStatusLine):
            return f"not an HTTP response: {str(current)[:80]!r}"
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        if nested is None:
            break
        current = nested
    text = str(current or exc)
    return text[:300] if text else type(exc).__name__
