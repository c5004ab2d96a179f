"""The values that flow between the stages: what to probe (:class:`Target`) and what a probe
saw (:class:`ProbeResult`).

Plain frozen values and nothing else: this module imports no I/O library, so every stage can
use them without pulling in the probe's transport (urllib3, requests) or AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from daemon.redact import Shown, redact_url

PHASES = ("resolve", "connect", "tls", "processing", "transfer")

ErrorKind = Literal[
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
]
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

DEFAULT_EXPECTED = ((200, 399),)


@dataclass(frozen=True, slots=True, weakref_slot=True, repr=False)
class Target:
    """One URL to watch, with its own settings (``None`` means: use the daemon's default)."""

    url: str
    name: str
    interval: float | None = None
    timeout: float | None = None
    method: str = "GET"
    expected_status: tuple[tuple[int, int], ...] = DEFAULT_EXPECTED
    body_contains: str | None = None
    # The URL as written, with credentials masked: the only form ever shown. Made once here,
    # not at every use: metrics labels, CloudWatch and every log line read it.
    display_url: Shown = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "display_url", redact_url(self.url))

    def __repr__(self) -> str:
        """As a dataclass's, but with the URL as shown: a Target in a log or a traceback must
        not print its credentials."""
        return (
            f"Target(url={self.display_url!r}, name={self.name!r}, interval={self.interval!r},"
            f" timeout={self.timeout!r}, method={self.method!r},"
            f" expected_status={self.expected_status!r}, body_contains={self.body_contains!r})"
        )

    def status_ok(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expected_status)


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
