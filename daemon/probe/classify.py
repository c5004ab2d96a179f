"""Every way a probe can fail, as one error kind and one line a person can act on.

The transport layers raise :class:`ProbeFailure` where they know what went wrong; anything else
that escapes a probe goes through :func:`classify`. Either way the message leaves the probe
through :func:`readable`: one line, credentials masked.
"""

from __future__ import annotations

import ssl

from daemon.model import ErrorKind
from daemon.redact import Shown, redact_text


class ProbeFailure(Exception):
    """A classified failure, carried out of the transport layers to the prober."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message


def readable(message: str) -> Shown:
    """One line, credentials masked: how every error leaves the probe."""
    lines = message.strip().splitlines()
    return redact_text(lines[0].strip() if lines else "")


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc)


def dns_failure(host: str, exc: BaseException | None) -> ProbeFailure:
    reason = "no address" if exc is None else os_reason(exc)
    return ProbeFailure("dns", f"cannot resolve {host}: {reason}")


def blocked_failure(host: str, ip: str) -> ProbeFailure:
    where = ip if ip == host else f"{host} resolves to {ip}, which"
    return ProbeFailure(
        "blocked",
        f"{where} is a link-local or cloud metadata address; refused (see --allow-link-local)",
    )


def connect_failure(host: str, port: int, error: OSError) -> ProbeFailure:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(error, TimeoutError):
        return ProbeFailure("timeout", f"connect to {where} timed out")
    return ProbeFailure("connect", f"cannot connect to {where}: {os_reason(error)}")


def handshake_failure(host: str, exc: BaseException) -> ProbeFailure | None:
    """The failure a TLS handshake error means; None for what is not the handshake's (the
    deadline, a kill), which must go on up."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ProbeFailure("tls", f"TLS handshake with {host} failed: {tls_reason(exc)}")
    if isinstance(exc, TimeoutError):
        return ProbeFailure("timeout", f"TLS handshake with {host} timed out")
    if isinstance(exc, OSError):
        return ProbeFailure("tls", f"TLS handshake with {host} failed: {os_reason(exc)}")
    return None


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """The kind and message of an exception no transport layer classified (a reset, a TLS
    error in the middle of the answer): its innermost useful message, as ``protocol``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ProbeFailure):
            return current.kind, current.message
        if isinstance(current, ConnectionResetError):
            return "protocol", "connection reset by peer"
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        if nested is None:
            break
        current = nested
    text = str(current or exc)
    return "protocol", (text[:300] if text else type(exc).__name__)
