"""The server certificate's expiry, read from its DER bytes, and the TLS context of rows that
accept any certificate (``tls_verify=false``).

``SSLSocket.getpeercert()`` decodes the certificate only once it has been verified; with
``CERT_NONE`` it returns an empty dict, yet an unverified certificate still expires, and a row
that does not verify still wants to know when. ``getpeercert(binary_form=True)`` gives the DER
bytes either way, and the expiry sits at a fixed place in them (RFC 5280, section 4.1)::

    Certificate ::= SEQUENCE {
        tbsCertificate SEQUENCE {
            version [0] EXPLICIT INTEGER OPTIONAL,
            serialNumber INTEGER,
            signature AlgorithmIdentifier (a SEQUENCE),
            issuer Name (a SEQUENCE),
            validity SEQUENCE { notBefore Time, notAfter Time },
            ... },
        ... }
    Time ::= UTCTime "YYMMDDHHMMSSZ" | GeneralizedTime "YYYYMMDDHHMMSSZ"

so a walk over five TLVs finds it, with no ASN.1 library: the daemon depends on none, and the
walk is also cheaper than the dict ``getpeercert()`` builds for every verified handshake.
"""

from __future__ import annotations

import calendar
import ssl

_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT, constructed
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``at``."""
    tag = der[at]
    length = der[at + 1]
    at += 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[at : at + count], "big")
        at += count
    end = at + length
    if end > len(der):
        raise ValueError("DER element runs past the end")
    return tag, at, end


def _time(tag: int, text: str) -> float:
    """Unix time of an RFC 5280 Time (always UTC, to the second, ending in Z)."""
    if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280: YY >= 50 is 19YY
        rest = text[2:12]
    elif tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith("Z"):
        year = int(text[:4])
        rest = text[4:14]
    else:
        raise ValueError("not an RFC 5280 time")
    if not rest.isdigit():
        raise ValueError("not an RFC 5280 time")
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def not_after(der: bytes) -> float | None:
    """Unix time a DER-encoded X.509 certificate expires; None if it cannot be read."""
    try:
        tag, at, _ = _element(der, 0)  # Certificate
        if tag != _SEQUENCE:
            return None
        tag, at, _ = _element(der, at)  # tbsCertificate
        if tag != _SEQUENCE:
            return None
        tag, _, end = _element(der, at)
        if tag == _VERSION:
            at = end
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, at = _element(der, at)
        tag, at, _ = _element(der, at)  # validity
        if tag != _SEQUENCE:
            return None
        _, _, at = _element(der, at)  # notBefore
        tag, start, end = _element(der, at)  # notAfter
        return _time(tag, der[start:end].decode("ascii"))
    except (IndexError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def make_unverified_context() -> ssl.SSLContext:
    """The TLS context of rows with ``tls_verify=false``: any certificate, any name (the
    handshake still happens, and the certificate's expiry is still read). Built once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
