"""One probe of one URL within its deadline, following redirects, into a ProbeResult.

A probe opens a fresh connection for every hop (a monitor measures what a new visitor sees),
times each phase the way the Prometheus blackbox exporter does, and turns every failure into
data: a :class:`~daemon.model.ProbeResult` with one ``error_kind`` and a sentence a person can
act on. It never raises for the target's sake: the one exception it lets through is
:class:`~daemon.model.NoVerdict`, when this process itself ran out of descriptors or memory,
which says nothing about the target (the scheduler retries shortly and records nothing).

The whole probe, body included, runs under one ``gevent.Timeout``: a server that trickles one
byte a second cannot hold it past its deadline. That needs cooperative sockets, so the process
must be monkey-patched by gevent before any I/O (``daemon/__main__.py`` does).
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import ssl
import time
import weakref
from collections.abc import Sequence
from urllib.parse import urljoin, urlsplit

import gevent
from gevent import monkey

from daemon.model import NoVerdict, ProbeResult, Target
from daemon.probe import certificate
from daemon.probe.certificate import make_unverified_context
from daemon.probe.classify import ProbeFailure, classify
from daemon.probe.connection import Address, Addresses, Resolver, Trace, system_resolver
from daemon.probe.exchange import (
    Hop,
    Outcome,
    credentials,
    evaluate,
    origin,
    prepare,
    read_body,
    send,
)
from daemon.redact import mask_secrets, redact_url

MAX_REDIRECTS = 10
_REDIRECT_CODES = frozenset((301, 302, 303, 307, 308))


def _family(version: int) -> int:
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def family_only(resolver: Resolver, version: int) -> Resolver:
    """``resolver``, keeping only the addresses of IP ``version`` (a row's ``ip`` column)."""
    family = _family(version)

    def resolve(host: str, port: int) -> Sequence[Address]:
        found = [address for address in resolver(host, port) if address[0] == family]
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, f"no IPv{version} address (ip={version})")
        return found

    return resolve


def redirected_method(status: int, method: str) -> str:
    """The method a redirect is followed with, as browsers do (the Fetch standard): a 303
    turns anything but GET and HEAD into GET, a 301 or 302 turns POST into GET; 307 and 308
    keep the method (and its body)."""
    if (status == 303 and method not in ("GET", "HEAD")) or (
        status in (301, 302) and method == "POST"
    ):
        return "GET"
    return method


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
        # For rows with tls_verify=false: any certificate, whose expiry is still read.
        self._unverified_context = make_unverified_context()
        self._resolver = resolver
        self._resolvers: dict[int | None, Resolver] = {
            None: resolver,
            4: family_only(resolver, 4),
            6: family_only(resolver, 6),
        }
        self._addresses = Addresses(allow_link_local)
        # A server sends the same certificate to every visitor until it renews it: its
        # expiry is read from the DER bytes once (bounded), not at every handshake.
        self._not_after = functools.lru_cache(maxsize=1024)(certificate.not_after)
        self._default_timeout = default_timeout
        self._cooperative = monkey.is_module_patched("socket")
        # Keyed weakly: a target that left the list (and every greenlet) leaves the cache too.
        self._first_hops: weakref.WeakKeyDictionary[Target, Hop] = weakref.WeakKeyDictionary()

    def cached_first_hops(self) -> int:
        return len(self._first_hops)

    def probe(self, target: Target) -> ProbeResult:
        """Probe ``target``, each attempt within its deadline: once, and again at once on a
        fresh connection after a failure, up to the row's ``retries``. The result is the last
        attempt's, with the number of attempts. Never raises, but for GreenletExit and
        :class:`NoVerdict` (this process ran out of descriptors or memory: no result at all)."""
        result = self._attempt(target)
        attempts = 1
        while not result.up and attempts <= target.retries:
            attempts += 1
            result = self._attempt(target)
        if attempts > 1:
            result = dataclasses.replace(result, attempts=attempts)
        if target.secrets and result.error is not None:
            # An expanded ${NAME} or a header's secret, quoted back by a server (a redirect's
            # Location, an echo) or naming the host: never shown.
            result = dataclasses.replace(result, error=mask_secrets(result.error, target.secrets))
        return result

    def _attempt(self, target: Target) -> ProbeResult:
        """Probe ``target`` once within its deadline."""
        started_at = time.time()
        started = time.perf_counter()
        timeout = target.timeout or self._default_timeout
        trace = Trace(self._resolvers[target.ip], self._addresses, self._not_after)
        outcome = Outcome()
        deadline = gevent.Timeout(timeout)
        deadline.start()
        try:
            self._follow(target, trace, outcome, started + timeout)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            outcome.fail("timeout", f"no complete answer within {timeout:g}s")
        except ProbeFailure as exc:
            outcome.fail(exc.kind, exc.message)
        except NoVerdict:
            raise  # not the target's failure: the scheduler records nothing and tries again
        except Exception as exc:
            outcome.fail(*classify(exc))
        finally:
            deadline.close()
            trace.close()
        phases = (trace.resolve, trace.connect, trace.tls, outcome.processing, outcome.transfer)
        # A complete exchange lasts as long as its phases (without the time this process took
        # to get round to it); one cut short, until it was cut.
        duration = sum(phases) if outcome.complete else time.perf_counter() - started
        limit = target.max_response_ms
        if limit is not None and outcome.error_kind is None and duration * 1000 > limit:
            outcome.fail("slow", f"answered in {duration * 1000:.0f} ms, over {limit:g} ms")
        return ProbeResult(
            up=outcome.error_kind is None,
            status_code=outcome.status_code,
            duration=duration,
            phases=phases,
            content_length=outcome.content_length,
            redirects=outcome.redirects,
            ssl=outcome.ssl,
            cert_expiry=min(trace.cert_expiries) if trace.cert_expiries else None,
            error_kind=outcome.error_kind,
            error=outcome.error,
            started_at=started_at,
        )

    def _first_hop(self, target: Target) -> Hop:
        hop = self._first_hops.get(target)
        if hop is None:
            hop = prepare(
                target.method,
                target.url,
                credentials(target.url),
                self._addresses,
                target.headers,
                target.body,
            )
            self._first_hops[target] = hop
        return hop

    def _follow(self, target: Target, trace: Trace, outcome: Outcome, deadline: float) -> None:
        """Exchange hop by hop until an answer that is not a redirect, then judge it."""
        hop = self._first_hop(target)
        method = target.method
        while True:
            outcome.ssl = hop.endpoint.https
            if target.ip is not None and hop.endpoint.literal is not None:
                self._check_family(target.ip, hop.endpoint.host, hop.endpoint.literal)
            # The gevent.Timeout in probe() is the deadline. On gevent's sockets a socket timeout
            # would only arm a second timer for every wait (connect, each read) that can never
            # strike first; on a blocking socket (not monkey-patched) it is the backstop.
            socket_timeout = (
                None if self._cooperative else max(deadline - time.perf_counter(), 0.001) + 1.0
            )
            context = (
                (self._ssl_context if target.tls_verify else self._unverified_context)
                if hop.endpoint.https
                else None
            )
            answer = send(hop, trace, outcome, context, socket_timeout)
            location = answer.headers.get("Location")
            if answer.status in _REDIRECT_CODES and location:
                trace.close()
                if outcome.redirects >= MAX_REDIRECTS:
                    raise ProbeFailure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
                outcome.redirects += 1
                next_url = urljoin(hop.url, location)
                if urlsplit(next_url).scheme.lower() not in ("http", "https"):
                    raise ProbeFailure(
                        "protocol", f"redirect to a non-HTTP location {redact_url(next_url)!r}"
                    )
                method = redirected_method(answer.status, method)
                hop = self._next_hop(target, method, next_url)
                continue
            read_body(target, method, answer, outcome)
            bound = time.perf_counter() - trace.connected_at
            kernel = trace.stamps.transfer(bound) if trace.stamps is not None else None
            outcome.transfer = (
                time.perf_counter() - answer.answered_at if kernel is None else kernel
            )
            evaluate(target, answer.status, outcome)
            outcome.complete = True
            return

    def _next_hop(self, target: Target, method: str, url: str) -> Hop:
        """The hop a redirect leads to. Credentials, the row's headers and its body go only
        to the origin they were written for (the first hop's), the body only while the
        method is the row's own."""
        if origin(url) != self._first_hop(target).origin:
            return prepare(method, url, None, self._addresses)
        body = target.body if method == target.method else None
        return prepare(method, url, credentials(target.url), self._addresses, target.headers, body)

    @staticmethod
    def _check_family(version: int, host: str, literal: Address) -> None:
        """A row's ``ip`` against a hop whose host is an IP literal (the resolver filters
        names; a literal is never resolved)."""
        if literal[0] != _family(version):
            raise ProbeFailure("dns", f"{host} is not an IPv{version} address (ip={version})")
