"""``GET /probe?target=URL[&module=M]``: the blackbox exporter's API, so Prometheus jobs written
for the exporter work unchanged (``--probe-endpoint``, off by default).

Each request probes its URL once, now, through the daemon's own prober: the same deadline,
link-local blocking and redaction as a probe of the list; its result goes to the answer only,
never to the store, the results file or CloudWatch. A module picks the method and the statuses
that count as success, as the exporter's example modules do. At most :data:`LIMIT` such
probes run at once: a request beyond that waits for a slot up to its own deadline, then is
refused, so a burst of requests cannot have the daemon open thousands of connections.

An open prober is a risk in itself: whoever reaches the port can have the daemon send GET and
POST requests to any address it can reach (the README says how to fence it in).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import MappingProxyType

from gevent.lock import BoundedSemaphore

from daemon.logs import event
from daemon.model import NoVerdict, ProbeResult, Target
from daemon.redact import redact_text
from daemon.sources.parse import check_url

log = logging.getLogger(__name__)

LIMIT = 100  # /probe probes in flight at once
DEFAULT_MODULE = "http_2xx"
# The exporter's example modules (its blackbox.yml): module -> (method, statuses that pass).
MODULES = MappingProxyType(
    {
        "http_2xx": ("GET", ((200, 299),)),
        "http_post_2xx": ("POST", ((200, 299),)),
    }
)
SCRAPE_TIMEOUT_OFFSET = 0.5  # seconds kept back from Prometheus's scrape timeout, as the exporter


class ProbeRequestError(Exception):
    """A /probe request that cannot be served: ``status`` is the HTTP status line."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def deadline(default: float, scrape_timeout: str | None) -> float:
    """The probe's deadline: the daemon's ``--timeout``, shortened to fit in the scrape
    timeout Prometheus announces (``X-Prometheus-Scrape-Timeout-Seconds``) less half a second,
    as the exporter does, so the answer reaches Prometheus before it gives up."""
    if not scrape_timeout:
        return default
    try:
        announced = float(scrape_timeout)
    except ValueError:
        return default
    if not announced > 0 or announced != announced:
        return default
    budget = announced - SCRAPE_TIMEOUT_OFFSET
    return min(default, budget if budget >= SCRAPE_TIMEOUT_OFFSET else announced / 2)


class OnDemandProber:
    """Probes one URL a /probe request names. Built by the composition root, handed to the
    web app as a callable."""

    def __init__(
        self, probe: Callable[[Target], ProbeResult], default_timeout: float, limit: int = LIMIT
    ) -> None:
        self._probe = probe
        self._default_timeout = default_timeout
        # Why a semaphore: the web server starts a greenlet per request, without bound.
        self._slots = BoundedSemaphore(limit)

    def __call__(
        self, target: str | None, module: str | None, scrape_timeout: str | None
    ) -> ProbeResult:
        """Probe ``target`` now; ProbeRequestError when the request cannot be served."""
        if not target:
            raise ProbeRequestError("400 Bad Request", "Target parameter is missing")
        name = module or DEFAULT_MODULE
        if name not in MODULES:
            known = ", ".join(MODULES)
            raise ProbeRequestError(
                "400 Bad Request", f"Unknown module {redact_text(name)!r} (known: {known})"
            )
        method, expected = MODULES[name]
        if "://" not in target:
            target = f"http://{target}"  # as the exporter does for a bare host[:port]
        try:
            url = check_url(target)
        except ValueError as exc:
            raise ProbeRequestError("400 Bad Request", redact_text(str(exc))) from None
        timeout = deadline(self._default_timeout, scrape_timeout)
        subject = Target(
            url=url, name="probe", timeout=timeout, method=method, expected_status=expected
        )
        if not self._slots.acquire(timeout=timeout):
            raise ProbeRequestError(
                "503 Service Unavailable",
                f"{LIMIT} /probe requests are in flight already; try again later",
            )
        try:
            result = self._probe(subject)
        except NoVerdict as exc:  # the daemon's own shortage says nothing about the target
            log.warning(event("probe_resource_error", target=subject.display_url, error=str(exc)))
            raise ProbeRequestError("503 Service Unavailable", f"not probed: {exc}") from None
        finally:
            self._slots.release()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                event(
                    "probe_endpoint",
                    target=subject.display_url,
                    module=name,
                    result=result.error_kind or "success",
                    error=result.error,
                )
            )
        return result
