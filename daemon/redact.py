"""Keep credentials out of everything a person or a machine can read back.

A URL is shown (labels, results, logs, the status page) only through :func:`redact_url`:
userinfo becomes ``xxxxx`` and so does the value of any query parameter whose name looks like
a secret.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "xxxxx"

# Query keys whose values are secrets: token, api_key, apikey, secret, password, passwd, pwd,
# signature (also X-Amz-Signature), sig, auth, access_key, client_secret, credential...
_SECRET_KEY = re.compile(
    r"(token|key|secret|passw(or)?d|pwd|signature|^sig$|auth|credential|session)",
    re.IGNORECASE,
)


_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")
_QUERY_VALUE = re.compile(r"(?<=[?&])[^&#=]+=[^&#]*")


def redact_url(url: str) -> str:
    """Return ``url`` with credentials and secret-looking query values replaced by ``xxxxx``.

    The rest of the URL is left exactly as written, so a user recognises their own line.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not a URL we can take apart (e.g. a broken IPv6 host); mask what looks like secrets.
        url = _USERINFO.sub(rf"\1{MASK}@", url)
        return _QUERY_VALUE.sub(lambda m: _redact_pair(m.group(0)), url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pair(pair: str) -> str:
    key, sep, value = pair.partition("=")
    if sep and value and _SECRET_KEY.search(key):
        return f"{key}={MASK}"
    return pair
