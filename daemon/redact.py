"""Keep credentials out of everything a person or a machine can read back.

A URL is shown (labels, results, logs, the status page) only through :func:`redact_url`:
userinfo becomes ``xxxxx`` and so does the value of any query parameter whose name looks like
a secret. Free text that may quote a URL (a probe's error message, say) goes through
:func:`redact_text`.

Credentials that contain an unencoded ``/``, ``?`` or ``#`` end the authority early
(``https://bob:pa/ss@host/``): the parser sees host ``bob`` and port ``pa``. Such a URL is
masked through its last ``@`` here, and :func:`daemon.targets.check_url` rejects it, asking for
percent-encoding.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "xxxxx"

# Query keys whose values are secrets: token, api_key, apikey, secret, pass, password, passwd,
# pwd, signature (also X-Amz-Signature), sig, auth, access_key, client_secret, credential...
_SECRET_KEY = re.compile(
    r"(token|key|secret|pass|pwd|signature|^sig$|auth|credential|session)",
    re.IGNORECASE,
)


_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")
_QUERY_VALUE = re.compile(r"(?<=[?&])[^&#=]+=[^&#]*")
# Through the last "@": for credentials whose unencoded / ? # ended the authority early.
_GREEDY_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://).*@")
# A URL inside free text, up to white space or a closing quote/bracket.
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]]+")
# key=value pairs in free text (e.g. urllib3's "url: /path?token=..."); only secret keys change.
_PAIR_IN_TEXT = re.compile(r"(?<=[?&;\s])[A-Za-z0-9_.-]+=[^&#\s'\",)]*")


def authority_is_ambiguous(url: str) -> bool:
    """True when an ``@`` after the parsed authority may end unencoded credentials.

    ``https://bob:pa/ss@host/`` parses as host ``bob``, port ``pa``; ``https://bob:12/x@host``
    as host ``bob``, port ``12``. Both have a ``:`` in the parsed authority and no ``@`` in it,
    but an ``@`` further on.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return False
    rest = url[scheme_end + 3 :]
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:authority_end]
    return "@" not in authority and ":" in authority and "@" in rest[authority_end:]


def redact_url(url: str) -> str:
    """Return ``url`` with credentials and secret-looking query values replaced by ``xxxxx``.

    The rest of the URL is left exactly as written, so a user recognises their own line.
    """
    if "@" not in url and "?" not in url:
        return url  # no userinfo, no query: nothing to hide, and no parse (hot at 50k targets)
    if authority_is_ambiguous(url):
        url = _GREEDY_USERINFO.sub(rf"\1{MASK}@", url)
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


def redact_text(text: str) -> str:
    """Redact every URL quoted in ``text``, and secret-looking ``key=value`` pairs elsewhere."""
    if "=" not in text and "@" not in text:
        return text
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _PAIR_IN_TEXT.sub(lambda m: _redact_pair(m.group(0)), text)
