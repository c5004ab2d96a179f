"""Keep credentials out of everything a person or a machine can read back.

A URL or an error message that is shown (labels, results, logs, the status page) has the type
:data:`Shown`, and only this module makes one: a URL through :func:`redact_url`, free text that
may quote a URL (a probe's error message, say) through :func:`redact_text`. Both replace
userinfo by ``xxxxx``, and the value of any ``key=value`` pair whose key looks like a secret,
wherever it sits: query (``&`` or ``;`` separated), fragment (``#access_token=``), path
parameters (``;jsessionid=``), percent-encoded keys (``%74oken``) included.

Userinfo is what RFC 3986 says it is: an ``@`` between ``scheme://`` and the first ``/``, ``?``
or ``#``. An ``@`` further on (``/users/a@b.example``, ``?email=ops@corp.example``) is part of
the path or query and is shown as written. Credentials with an unencoded ``/``, ``?`` or ``#``
(``https://bob:pa/ss@host/``) end the authority early, leaving a port that is not a number: such
a URL is masked through its last ``@``, and :func:`daemon.sources.parse.check_url` refuses it
without showing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NewType
from urllib.parse import quote, quote_plus, unquote

# Text fit to be shown: made only here, by redaction.
Shown = NewType("Shown", str)

MASK = "xxxxx"

# Keys whose values are secrets: token, api_key, apikey, secret, pass, password, passwd, pwd,
# signature (also X-Amz-Signature), sig, auth, access_key, client_secret, credential, session...
_SECRET_KEY = re.compile(
    r"(token|key|secret|pass|pwd|signature|^sig$|auth|credential|session)",
    re.IGNORECASE,
)

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_AUTHORITY_END = re.compile(r"[/?#]")
_PATH_END = re.compile(r"[?#]")
# key=value pairs after "?", "&", ";" or "#": in a query or a fragment a value runs to the next
# separator ("/" included: tokens are often base64); in the path, a parameter ends at "/" too.
_PAIR = re.compile(r"(?<=[?&;#])([^?&;#=]*)=([^&;#]*)")
_PATH_PARAM = re.compile(r"(?<=;)([^/;=]*)=([^/;]*)")
# Request headers whose values are secrets: Authorization, Proxy-Authorization, Cookie, and any
# name with token, key, secret, pass or auth in it (X-Api-Key, X-Auth-Token, ...).
_SECRET_HEADER = re.compile(r"cookie|token|key|secret|pass|auth", re.IGNORECASE)
# What requests leaves unquoted when it sends a URL (requests.utils.requote_uri).
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"
# A URL inside free text, up to white space or a closing quote/bracket.
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]]+")
# key=value pairs in free text (e.g. urllib3's "url: /path?token=..."), at the start too.
_PAIR_IN_TEXT = re.compile(r"(?:^|(?<=[?&;#\s'\"(\[{,]))([A-Za-z0-9_.%-]+)=([^&;#\s'\",)\]}]*)")


def _authority_end(url: str, start: int) -> int:
    found = _AUTHORITY_END.search(url, start)
    return len(url) if found is None else found.start()


def _bad_port(authority: str) -> bool:
    """True when ``host:port`` has a port that is not a number: in a URL that also has an
    ``@`` further on, the "port" is the start of a password with an unencoded ``/?#``."""
    if authority.startswith("["):
        authority = authority.partition("]")[2]
    _, colon, port = authority.partition(":")
    return bool(colon) and not (port.isascii() and port.isdigit())


def authority_is_ambiguous(url: str) -> bool:
    """True when the URL's authority has no ``@`` but a port that is not a number, and an
    ``@`` follows: ``https://bob:pa/ss@host/`` (host ``bob``, port ``pa``) is credentials with
    an unencoded ``/``, ``?`` or ``#``, not a URL. ``https://api.example:8443/u/a@b`` is not
    ambiguous: its port is a number, and the ``@`` is in its path."""
    match = _SCHEME.match(url)
    if match is None:
        return False
    end = _authority_end(url, match.end())
    authority = url[match.end() : end]
    return "@" not in authority and "@" in url[end:] and _bad_port(authority)


def _secret(key: str) -> bool:
    return _SECRET_KEY.search(unquote(key) if "%" in key else key) is not None


def _mask_pair(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    if value and _secret(key):
        return f"{key}={MASK}"
    return match.group(0)


def _mask_pairs(rest: str) -> str:
    """Mask secret pairs in the part of a URL after its authority."""
    end_of_path = _PATH_END.search(rest)
    cut = len(rest) if end_of_path is None else end_of_path.start()
    path, tail = rest[:cut], rest[cut:]
    if ";" in path:
        path = _PATH_PARAM.sub(_mask_pair, path)
    if tail:
        tail = _PAIR.sub(_mask_pair, tail)
    return path + tail


def redact_url(url: str) -> Shown:
    """Return ``url`` with credentials and secret-looking pair values replaced by ``xxxxx``.

    The rest of the URL is left exactly as written, so a user recognises their own line.
    """
    if "@" not in url and "?" not in url and "#" not in url and ";" not in url:
        return Shown(url)  # nothing to hide, and no parse (hot at 50k targets)
    match = _SCHEME.match(url)
    if match is None:
        return Shown(_mask_pairs(url))
    start = match.end()
    end = _authority_end(url, start)
    authority = url[start:end]
    if "@" in authority:
        authority = f"{MASK}@{authority.rpartition('@')[2]}"
    elif "@" in url[end:] and _bad_port(authority):
        # Credentials with an unencoded "/", "?" or "#": mask through the last "@".
        at = url.rindex("@")
        end = _authority_end(url, at)
        authority = f"{MASK}@{url[at + 1 : end]}"
    return Shown(url[:start] + authority + _mask_pairs(url[end:]))


def redact_text(text: str) -> Shown:
    """Redact every URL quoted in ``text``, and secret-looking ``key=value`` pairs elsewhere."""
    if "=" not in text and "@" not in text:
        return Shown(text)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return Shown(_PAIR_IN_TEXT.sub(_mask_pair, text))


def secret_header(name: str) -> bool:
    """Whether a request header's value is a secret, by the header's name."""
    return _SECRET_HEADER.search(name) is not None


def mask_secrets(text: str, secrets: Iterable[str]) -> Shown:
    """``text`` redacted, with every occurrence of each of ``secrets`` replaced by ``xxxxx``,
    as written or percent-encoded (as it appears once it has been through a URL)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if not secret:
            continue
        for form in dict.fromkeys(
            (secret, quote(secret, safe=""), quote(secret, safe=_URI_SAFE), quote_plus(secret))
        ):
            text = text.replace(form, MASK)
    return redact_text(text)
