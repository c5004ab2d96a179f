"""One fresh connection for one hop: resolve, the block list, connect, TLS, all timed.

A connection that resolves names itself (timed, checked against the link-local block list
before any packet is sent; an IP literal is used as is, with no resolver call), times connect
and TLS separately with the one SSL context built at start, and reads the leaf certificate's
expiry; the probe's :class:`Trace` closes its socket whenever the probe ends, the deadline
striking in the middle of connect or handshake included. When this process itself runs out
of file descriptors, socket buffers or memory on the way, the probe has no verdict on the
target: it raises :class:`~daemon.model.NoVerdict`.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent.resolver.ares

from daemon.model import NoVerdict
from daemon.probe import certificate, kernel_clock
from daemon.probe.classify import (
    blocked_failure,
    connect_failure,
    dns_failure,
    handshake_failure,
    os_reason,
)
from daemon.probe.http1 import Recv

# (family, sockaddr) pairs, as socket.getaddrinfo gives them.
Address = tuple[int, tuple[Any, ...]]
Resolver = Callable[[str, int], Sequence[Address]]

BLOCKED_NETS = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. the EC2/ECS metadata services
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # EC2 metadata over IPv6
)
# What this process (or the machine) ran out of, not what the target did: descriptors (per
# process, system-wide), socket buffers, memory.
OWN_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def shortage(exc: BaseException, doing: str) -> NoVerdict | None:
    """:class:`NoVerdict` when ``exc`` says this process ran short of its own resources while
    ``doing`` something for a probe; None for any other error (the target's to answer for)."""
    if isinstance(exc, socket.gaierror):
        # A resolver's codes (EAI_*, c-ares's ARES_*) are no errno values: ARES_ETIMEOUT is
        # ENOMEM's 12. And c-ares that cannot open its own socket only says it could not
        # contact the name servers: whether a socket can be had now tells.
        if exc.errno == socket.EAI_MEMORY:
            return NoVerdict(f"{doing}: out of memory")
        now = socket_shortage_now()
        if now is None:
            return None
        exc = now
    if isinstance(exc, OSError) and exc.errno in OWN_RESOURCE_ERRORS:
        return NoVerdict(f"{doing}: {os_reason(exc)}")
    return None


def socket_shortage_now() -> OSError | None:
    """The error opening a socket gives right now, if any."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    except OSError as exc:
        return exc
    return None


def open_socket(family: int) -> socket.socket:
    """A new TCP socket; :class:`NoVerdict` when no descriptor (or memory) is left for it."""
    try:
        return socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        short = shortage(exc, "cannot open a socket")
        if short is None:
            raise
        raise short from None


def system_resolver(host: str, port: int) -> list[Address]:
    """Resolve with the (gevent-patched) system resolver; IPv4 first, then IPv6."""
    return ipv4_first(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))


def ipv4_first(infos: Sequence[tuple[Any, ...]]) -> list[Address]:
    """getaddrinfo's answers as (family, sockaddr) pairs, IPv4 first, then IPv6."""
    ordered = sorted(infos, key=lambda info: info[0] != socket.AF_INET)
    return [(info[0], info[4]) for info in ordered]


_LEGACY_IPV4_CHARS = frozenset("0123456789abcdefABCDEFxX.")


def legacy_ipv4(host: str) -> str | None:
    """The dotted address of an IPv4 address written the old ways getaddrinfo (inet_aton)
    and browsers take and c-ares does not: ``127.1``, ``2130706433``, ``0x7f.1``, octal
    ``0177.0.0.1`` (which c-ares reads as 177.0.0.1). None for anything else."""
    if not host or not _LEGACY_IPV4_CHARS.issuperset(host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class AresResolver:
    """Names resolved by c-ares on gevent's event loop (gevent's bundled
    ``gevent.resolver.ares``), the resolver a :class:`~daemon.probe.prober.Prober` is given.

    gevent's default resolver runs the system's getaddrinfo in one of 10 threads, and a thread
    blocked in getaddrinfo cannot be called off: when a probe's deadline strikes, its lookup
    holds the thread for as long as the system's own timeouts (10 to 20 s for a domain whose
    name servers never answer), and every lookup queued behind it times out too, whatever its
    domain. c-ares sends the queries itself from the event loop, so a lookup costs no thread:
    it ends with its probe's deadline (the late answer is dropped) and waits for no other.
    IPv4 addresses in the old forms (:func:`legacy_ipv4`) are read as getaddrinfo reads
    them, so that ``http://2852039166/`` is still 169.254.169.254, and blocked.

    Like getaddrinfo, it follows ``/etc/resolv.conf`` (name servers, ``search``, ``ndots``,
    ``timeout``, ``attempts``), ``/etc/hosts`` and the order of the two in
    ``/etc/nsswitch.conf``, and sees a change to any of them: c-ares re-reads the hosts file
    when it changes, and a resolv.conf that changed gets a new channel here (the lookups on
    the old one finish there). Unlike getaddrinfo without a local caching daemon, c-ares keeps
    each answer for its TTL (at most an hour; gevent offers no way to turn that off), so a
    name is asked of the name server about once a TTL, not at every probe: a resolver with a
    rate limit, such as an AWS VPC's, is spared at thousands of targets. The first lookup
    builds the channel, on the event loop of its thread.
    """

    def __init__(self, resolv_conf: str = "/etc/resolv.conf") -> None:
        self._resolv_conf = resolv_conf
        self._channel: _Channel | None = None

    def __call__(self, host: str, port: int) -> list[Address]:
        numeric = legacy_ipv4(host)
        if numeric is not None:
            return [(socket.AF_INET, (numeric, port))]
        try:
            infos = self._current().lookup(host, port)
        except socket.gaierror as exc:
            # c-ares's own errors read "ARES_ETIMEOUT: Timeout while contacting DNS servers".
            reason = str(exc.strerror or "")
            if reason.startswith("ARES_") and ": " in reason:
                raise socket.gaierror(exc.errno, reason.split(": ", 1)[1]) from None
            raise
        return ipv4_first(infos)

    def _current(self) -> _Channel:
        try:
            info = os.stat(self._resolv_conf)
            stamp: tuple[int, ...] = (info.st_ino, info.st_size, info.st_mtime_ns)
        except OSError:
            stamp = ()
        channel = self._channel
        if channel is None or channel.stamp != stamp:
            if channel is not None:
                channel.retire()
            channel = self._channel = _Channel(gevent.resolver.ares.Resolver(), stamp)
        return channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.retire()
            self._channel = None


class _Channel:
    """One c-ares resolver, built from what resolv.conf said then, and its lookups in flight:
    retired when resolv.conf changes, it is closed once the last of them is done."""

    __slots__ = ("ares", "lookups", "retired", "stamp")

    def __init__(self, ares: Any, stamp: tuple[int, ...]) -> None:
        self.ares = ares
        self.stamp = stamp
        self.lookups = 0
        self.retired = False

    def lookup(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.lookups += 1
        try:
            return list(self.ares.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        finally:
            self.lookups -= 1
            if self.retired and not self.lookups:
                self.ares.close()

    def retire(self) -> None:
        self.retired = True
        if not self.lookups:
            self.ares.close()


def ip_version(host: str) -> int | None:
    """4 or 6 when ``host`` is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def is_blocked(host: Any) -> bool:
    """Whether an address (text) is link-local or a cloud metadata address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in BLOCKED_NETS)


class Addresses:
    """Address checks with their answers cached per host string (bounded): parsing an address
    with ipaddress costs as much as a good part of a probe's own code, and a list usually names
    few distinct hosts. One per prober, so no cache lives at module level."""

    def __init__(self, allow_link_local: bool, size: int = 4096) -> None:
        self.allow_link_local = allow_link_local
        self._version = functools.lru_cache(maxsize=size)(ip_version)
        self._blocked = functools.lru_cache(maxsize=size)(is_blocked)

    def literal(self, host: str, port: int) -> Address | None:
        """The address itself when ``host`` is an IP literal, else None."""
        version = self._version(host)
        if version is None:
            return None
        if version == 6:
            return socket.AF_INET6, (host, port, 0, 0)
        return socket.AF_INET, (host, port)

    def allowed(self, addresses: Sequence[Address]) -> list[Address]:
        if self.allow_link_local:
            return list(addresses)
        return [a for a in addresses if not self._blocked(a[1][0])]


@dataclass(slots=True)
class Trace:
    """Per-probe state the connection writes into: phase times, certificates, and what must be
    closed when the probe ends."""

    resolver: Resolver
    addresses: Addresses
    # A DER certificate's expiry: certificate.not_after, or the prober's cache of it.
    not_after: Callable[[bytes], float | None] = certificate.not_after
    resolve: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    connected_at: float = 0.0  # perf_counter when the connection became ready for the request
    answered_at: float = 0.0  # perf_counter when the hop's first status line was read
    cert_expiries: list[float] = field(default_factory=list)
    stamps: kernel_clock.Stamps | None = None  # the hop's kernel times (plain http only)
    sock: socket.socket | None = None  # the hop's socket (TLS on it for https)

    def close(self) -> None:
        """Close the hop's socket, if it is open, and let go of it."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one hop connects: the name or bare IP (no brackets), the port, and the address
    itself when the host is an IP literal."""

    host: str
    port: int
    https: bool
    literal: Address | None


class TracedConnection:
    """One hop's connection: resolved, connected and (for https) shaken hands with here, each
    step timed into the probe's :class:`Trace`."""

    __slots__ = ("_endpoint", "_ssl_context", "_trace", "timeout")

    def __init__(
        self,
        endpoint: Endpoint,
        timeout: float | None,
        trace: Trace,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._endpoint = endpoint
        self._trace = trace
        self._ssl_context = ssl_context
        self.timeout = timeout

    def connect(self) -> tuple[socket.socket, Recv]:
        """The connected socket (TLS on it for https; the trace closes it) and how to read
        from it: for plain http with the kernel's receive times, where it gives them."""
        trace = self._trace
        sock = trace.sock = self._new_conn()
        trace.stamps = None
        if self._ssl_context is not None:
            tls = trace.sock = self._handshake(sock, self._ssl_context)
            return tls, tls.recv
        stamps = trace.stamps = kernel_clock.watch(sock)
        return sock, (sock.recv if stamps is None else kernel_clock.stamped_recv(sock, stamps))

    def _addresses(self) -> list[Address]:
        endpoint, trace = self._endpoint, self._trace
        if endpoint.literal is not None:
            return [endpoint.literal]  # an IP literal: nothing to resolve, no resolver call
        started = time.perf_counter()
        try:
            addresses = list(trace.resolver(endpoint.host, endpoint.port))
        except (OSError, UnicodeError) as exc:
            short = shortage(exc, f"cannot resolve {endpoint.host}")
            raise (dns_failure(endpoint.host, exc) if short is None else short) from None
        finally:
            trace.resolve += time.perf_counter() - started
        if not addresses:
            raise dns_failure(endpoint.host, None)
        return addresses

    def _new_conn(self) -> socket.socket:
        endpoint, trace = self._endpoint, self._trace
        addresses = self._addresses()
        allowed = trace.addresses.allowed(addresses)
        if not allowed:
            raise blocked_failure(endpoint.host, addresses[0][1][0])
        started = attempt_started = time.perf_counter()
        error: OSError | None = None
        rtt: float | None = None
        try:
            for family, sockaddr in allowed:
                attempt_started = time.perf_counter()
                sock = open_socket(family)
                try:
                    sock.settimeout(self.timeout if isinstance(self.timeout, float) else None)
                    # No TCP_NODELAY: the request goes out in one write with nothing unacked
                    # before it, which Nagle never delays; that saves a syscall a probe.
                    sock.connect(sockaddr)
                except OSError as exc:
                    sock.close()
                    short = shortage(exc, "cannot connect")
                    if short is not None:
                        raise short from None
                    error = exc
                    continue
                except BaseException:  # the deadline (gevent.Timeout) or a kill
                    sock.close()
                    raise
                if self._ssl_context is None:
                    rtt = kernel_clock.handshake_rtt(sock)
                return sock
        finally:
            # Counted whether or not it worked: a slow refusal is still connect time.
            now = trace.connected_at = time.perf_counter()
            if rtt is None:
                trace.connect += now - started
            else:  # addresses that failed first, then the kernel's view of the last handshake
                trace.connect += attempt_started - started + min(rtt, now - attempt_started)
        assert error is not None
        raise connect_failure(endpoint.host, endpoint.port, error) from None

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """TLS on ``sock``, verified by ``context`` (chain and host name), timed."""
        trace, host = self._trace, self._endpoint.host
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
            failure = handshake_failure(host, exc)
            if failure is None:
                raise
            raise failure from None
        now = time.perf_counter()
        trace.tls += now - trace.connected_at
        trace.connected_at = now
        der = tls.getpeercert(binary_form=True)  # verified or not (tls_verify=false)
        expires = trace.not_after(der) if der else None
        if expires is not None:
            trace.cert_expiries.append(expires)
        return tls


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context every probe shares: system CAs, certifi's, and the user's extra ones.

    Built once: loading CA bundles costs milliseconds, far more than a probe's TLS setup.
    ``SSL_CERT_FILE`` is honoured by OpenSSL's default paths; ``REQUESTS_CA_BUNDLE`` and
    ``--ca-file`` are added on top.
    """
    import certifi

    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    for extra in (os.environ.get("REQUESTS_CA_BUNDLE"), ca_file):
        if extra:
            context.load_verify_locations(extra)
    return context
