"""The values that flow between the stages: what to probe (:class:`Target`) and what a probe
saw (:class:`ProbeResult`).

Plain frozen values and nothing else: this module imports no I/O library, so every stage can
use them without pulling in the probe's transport (urllib3, requests) or AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, get_args

from daemon.redact import Shown, redact_url

PHASES = ("resolve", "connect", "tls", "processing", "transfer")

ErrorKind = Literal[
    "dns",
    "connect",
    "tls",
    "timeout",
    "http_status",
    "body_mismatch",
    "slow",
    "too_many_redirects",
    "too_large",
    "protocol",
    "blocked",
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

DEFAULT_EXPECTED = ((200, 399),)


class _Search(Protocol):
    def search(self, value: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class JsonQuery:
    """A ``json`` check: the JMESPath expression as written, and its compiled form.

    Compared by its text: a list loaded again compiles it again, and an unchanged row must
    still be the same target (or it would restart and lose its schedule).
    """

    text: str
    compiled: _Search = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True, weakref_slot=True, repr=False)
class Target:
    """One URL to watch, with its own settings (``None`` means: use the daemon's default).

    ``url``, ``headers`` and ``body`` are what is sent, with every ``${NAME}`` expanded: they
    may hold secrets, and are never shown. What is shown is ``display_url``, made from the URL
    as written (``written_url``, before expansion), and ``secrets`` lists what any text that
    leaves a probe must not contain (the expanded values, secret-looking header values).
    """

    url: str
    name: str
    interval: float | None = None
    timeout: float | None = None
    method: str = "GET"
    expected_status: tuple[tuple[int, int], ...] = DEFAULT_EXPECTED
    body_contains: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (name, value), in the row's order
    body: bytes | None = None  # the request body
    body_not_contains: str | None = None
    body_regex: re.Pattern[str] | None = None
    json_query: JsonQuery | None = None
    max_response_ms: float | None = None
    retries: int = 0  # probes repeated at once after a failure, before it counts
    tls_verify: bool = True
    ip: Literal[4, 6] | None = None  # the address family to connect over; None: any
    written_url: str | None = None  # the URL before ${NAME} expansion, when it had any
    secrets: tuple[str, ...] = field(default=(), compare=False)
    # Whether a check reads the response's body: decided once here, read by every probe.
    reads_body: bool = field(init=False, compare=False)
    # The URL as written, with credentials masked: the only form ever shown. Made once here,
    # not at every use: metrics labels, CloudWatch and every log line read it.
    display_url: Shown = field(init=False, compare=False)
    # The hash of the compared fields, taken once: the prober looks its prepared first hop up
    # by target at every probe, and hashing ~17 fields each time cost a microsecond.
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        written = self.url if self.written_url is None else self.written_url
        object.__setattr__(self, "display_url", redact_url(written))
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, n) for n in _COMPARED)))
        object.__setattr__(
            self,
            "reads_body",
            self.body_contains is not None
            or self.body_not_contains is not None
            or self.body_regex is not None
            or self.json_query is not None,
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        """As a dataclass's, but with the URL as shown, header names without their values and
        the body's size: a Target in a log or a traceback must not print a secret."""
        extra = ""
        if self.headers:
            extra += f", headers={tuple(name for name, _ in self.headers)!r}"
        if self.body is not None:
            extra += f", body=<{len(self.body)} bytes>"
        for name in ("body_not_contains", "body_regex", "json_query", "max_response_ms", "ip"):
            value = getattr(self, name)
            if value is not None:
                shown = value.text if isinstance(value, JsonQuery) else value
                shown = shown.pattern if isinstance(shown, re.Pattern) else shown
                extra += f", {name}={shown!r}"
        if self.retries:
            extra += f", retries={self.retries!r}"
        if not self.tls_verify:
            extra += ", tls_verify=False"
        return (
            f"Target(url={self.display_url!r}, name={self.name!r}, interval={self.interval!r},"
            f" timeout={self.timeout!r}, method={self.method!r},"
            f" expected_status={self.expected_status!r}, body_contains={self.body_contains!r}"
            f"{extra})"
        )

    def status_ok(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expected_status)


# The fields a Target is compared (and hashed) by.
_COMPARED = tuple(f.name for f in fields(Target) if f.compare)


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
    cert_expiry: float | None  # unix time of the leaf certificate's expiry, if one was seen
    error_kind: ErrorKind | None
    error: Shown | None  # one line, credentials masked (daemon.probe.classify.readable)
    started_at: float  # unix time
    attempts: int = 1  # probes made for this result: 1 + the retries used


class NoVerdict(Exception):
    """A probe that could not be made for want of this process's own resources (file
    descriptors, socket buffers, memory), raised instead of a :class:`ProbeResult`: it says
    nothing about the target, so nothing is recorded and the scheduler tries again shortly."""
