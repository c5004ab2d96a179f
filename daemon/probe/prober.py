"""One probe of one URL within its deadline, following redirects, into a ProbeResult.

A probe opens a fresh connection for every hop (a monitor measures what a new visitor sees),
times each phase the way the Prometheus blackbox exporter does, and turns every failure into
data: a :class:`~daemon.model.ProbeResult` with one ``error_kind`` and a sentence a person can
act on. It never raises.

The whole probe, body included, runs under one ``gevent.Timeout``: a server that trickles one
byte a second cannot hold it past its deadline. That needs cooperative sockets, so the process
must be monkey-patched by gevent before any I/O (``daemon/__main__.py`` does).
"""

from __future__ import annotations

import ssl
import time
import weakref
from urllib.parse import urljoin, urlsplit

import gevent
from gevent import monkey

from daemon.model import ProbeResult, Target
from daemon.probe.classify import ProbeFailure, classify
from daemon.probe.connection import Addresses, Resolver, Trace, system_resolver
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
from daemon.redact import redact_url

MAX_REDIRECTS = 10
_REDIRECT_CODES = frozenset((301, 302, 303, 307, 308))


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
        self._addresses = Addresses(allow_link_local)
        self._default_timeout = default_timeout
        self._cooperative = monkey.is_module_patched("socket")
        # Keyed weakly: a target that left the list (and every greenlet) leaves the cache too.
        self._first_hops: weakref.WeakKeyDictionary[Target, Hop] = weakref.WeakKeyDictionary()

    def cached_first_hops(self) -> int:
        return len(self._first_hops)

    def probe(self, target: Target) -> ProbeResult:
        """Probe ``target`` once within its deadline. Never raises (but for GreenletExit)."""
        started_at = time.time()
        started = time.perf_counter()
        timeout = target.timeout or self._default_timeout
        trace = Trace(self._resolver, self._addresses)
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
        except Exception as exc:
            outcome.fail(*classify(exc))
        finally:
            deadline.close()
            trace.close()
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

    def _first_hop(self, target: Target) -> Hop:
        hop = self._first_hops.get(target)
        if hop is None:
            hop = prepare(target.method, target.url, credentials(target.url), self._addresses)
            self._first_hops[target] = hop
        return hop

    def _follow(self, target: Target, trace: Trace, outcome: Outcome, deadline: float) -> None:
        """Exchange hop by hop until an answer that is not a redirect, then judge it."""
        hop = self._first_hop(target)
        method = target.method
        while True:
            outcome.ssl = hop.endpoint.https
            # The gevent.Timeout in probe() is the deadline. On gevent's sockets a socket timeout
            # would only arm a second timer for every wait (connect, each read) that can never
            # strike first; on a blocking socket (not monkey-patched) it is the backstop.
            socket_timeout = (
                None if self._cooperative else max(deadline - time.perf_counter(), 0.001) + 1.0
            )
            context = self._ssl_context if hop.endpoint.https else None
            response, answered_at = send(hop, method, trace, outcome, context, socket_timeout)
            location = response.headers.get("Location")
            if response.status in _REDIRECT_CODES and location:
                response.close()
                trace.close()
                if outcome.redirects >= MAX_REDIRECTS:
                    raise ProbeFailure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
                outcome.redirects += 1
                next_url = urljoin(hop.url, location)
                if urlsplit(next_url).scheme.lower() not in ("http", "https"):
                    raise ProbeFailure(
                        "protocol", f"redirect to a non-HTTP location {redact_url(next_url)!r}"
                    )
                if response.status == 303 and method != "HEAD":
                    method = "GET"
                hop = self._next_hop(target, method, next_url)
                continue
            read_body(target, method, response, outcome)
            bound = time.perf_counter() - trace.connected_at
            kernel = trace.stamps.transfer(bound) if trace.stamps is not None else None
            outcome.transfer = time.perf_counter() - answered_at if kernel is None else kernel
            evaluate(target, response.status, outcome)
            outcome.complete = True
            return

    def _next_hop(self, target: Target, method: str, url: str) -> Hop:
        """The hop a redirect leads to. Credentials go only to the origin they were written
        for (the first hop's)."""
        same = origin(url) == self._first_hop(target).origin
        return prepare(method, url, credentials(target.url) if same else None, self._addresses)
