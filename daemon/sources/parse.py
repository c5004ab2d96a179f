"""The targets CSV into :class:`~daemon.model.Target` values, with line-numbered errors.

Parsing never raises on a bad row: the row is skipped and reported as ``line N: reason``. A file
that cannot be decoded, that holds no row at all (empty, only comments, only a header: an
emptied or half-written file), or that has rows but none valid, is rejected whole by raising
:class:`TargetsError`, so the caller keeps the last good list.
"""

from __future__ import annotations

import csv
import ipaddress
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import idna
import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.functions import Functions

from daemon.model import DEFAULT_EXPECTED, JsonQuery, Target
from daemon.redact import (
    Shown,
    authority_is_ambiguous,
    mask_secrets,
    redact_text,
    redact_url,
    secret_header,
)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
COLUMNS = (
    "url",
    "name",
    "interval",
    "timeout",
    "method",
    "expected_status",
    "body_contains",
    "body_not_contains",
    "body_regex",
    "json",
    "headers",
    "body",
    "max_response_ms",
    "retries",
    "tls_verify",
    "ip",
)
MAX_RETRIES = 5


class TargetsError(ValueError):
    """The whole targets file is unusable; the last good list stays in force."""


@dataclass(frozen=True, slots=True)
class ParsedTargets:
    targets: tuple[Target, ...]
    errors: tuple[Shown, ...]  # "line N: reason", in file order


def parse_expected_status(raw: str) -> tuple[tuple[int, int], ...]:
    """``200``, ``200-299`` or ``200,301,302`` (ranges and lists may be mixed)."""
    ranges: list[tuple[int, int]] = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        low_s, dash, high_s = part.partition("-")
        try:
            low = int(low_s)
            high = int(high_s) if dash else low
        except ValueError:
            raise ValueError(f"bad expected_status {raw!r}") from None
        if not (100 <= low <= high <= 599):
            raise ValueError(f"bad expected_status {raw!r}: codes are 100-599, low to high")
        ranges.append((low, high))
    if not ranges:
        raise ValueError(f"bad expected_status {raw!r}")
    return tuple(ranges)


# Seconds a probe's interval and timeout may take, for a row and for the flags alike. Under a
# second between two probes of one URL is a load test, not monitoring (a typo such as
# 0.000000001 probed one URL a thousand times a second); over a day, a mistake. A timeout
# under 0.1 s fails every probe beyond the local network; over 5 minutes it holds a slot for
# nothing any user waits that long for.
INTERVAL_LIMITS = (1.0, 86_400.0)
TIMEOUT_LIMITS = (0.1, 300.0)


def limits_problem(value: float, limits: tuple[float, float]) -> str | None:
    """Why ``value`` (seconds, known > 0) is out of ``limits``, or None."""
    low, high = limits
    if value < low:
        return f"must be at least {low:g} s"
    if value > high:
        return f"must be at most {high:g} s"
    return None


def _seconds(column: str, raw: str) -> float | None:
    value = _number(column, raw)
    if value is None:
        return None
    raw = raw.strip()
    problem = limits_problem(value, INTERVAL_LIMITS if column == "interval" else TIMEOUT_LIMITS)
    if problem is not None:
        raise ValueError(f"bad {column} {raw!r}: {problem}")
    return value


def _timing_problem(target: Target) -> str | None:
    """A row that gives both a timeout and an interval may not wait longer than its interval."""
    timeout, interval = target.timeout, target.interval
    if timeout is not None and interval is not None and timeout > interval:
        return (
            f"timeout {timeout:g} s is longer than the interval {interval:g} s: a probe would"
            " still run when the next is due"
        )
    return None


_NO_HEADER = ("url", "name")

# "scheme://" then text without "/?#@", a ",", more such text (","s allowed) and an "@": a
# "user:password@" cut in two by an unquoted comma. The url cell ends early
# ("https://alice:hunter") and the rest of the credentials land in the next cells.
_CUT_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s\",]*,[^/?#@\s\"]*@")
_CUT_USERINFO_REASON = (
    "an unquoted ',' looks like it cuts the url's credentials: quote the url cell, or write"
    " ',' as %2C (the row is not shown)"
)
# What follows the host's ":" may be the start of a password with an unencoded "/", "?" or "#"
# ("https://bob:pa/ss@host/" is host "bob", port "pa"): such a URL is never shown.
_BAD_PORT = (
    "bad url (not shown): what follows ':' after the host is not a port from 1 to 65535; if it"
    " is a password, percent-encode '/', '?', '#' and '@' in it (%2F, %3F, %23, %40)"
)


def _cuts_userinfo(line: str, cells: Sequence[str]) -> bool:
    """True when an unquoted comma splits the userinfo of a URL in ``line`` across cells."""
    if "@" not in line:
        return False
    return any(
        not any(found.group() in cell for cell in cells) for found in _CUT_USERINFO.finditer(line)
    )


# A %XX in a host that stands for an unreserved character (letter, digit, "-", ".", "_", "~").
_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


def host_as_sent(host: str) -> str:
    """``host`` as the sender resolves it: urllib3 decodes a percent-encoded unreserved
    character in a host (RFC 3986 normalisation), so ``a%2e%2eb`` is looked up as ``a..b``."""
    return _UNRESERVED_ESCAPE.sub(lambda found: chr(int(found.group(1), 16)), host)


# The longest name DNS can look up, written as text: 255 octets on the wire (RFC 1035) are
# 253 characters, not counting the trailing dot of a fully qualified name.
MAX_HOST_LENGTH = 253


def host_problem(host: str, detail: bool = True) -> str | None:
    """Why ``host`` (as urlsplit gives it: lower case, no brackets) can never be sent, or None.
    Without ``detail``, the idna package's words (which quote the host) are left out.

    The same rules as the probe's send path: requests IDNA-encodes a non-ASCII name with the
    ``idna`` package (UTS 46) and refuses an ASCII one that starts with ``*`` or ``.``; the
    resolver then encodes the name with Python's ``idna`` codec, which refuses an empty label
    or one longer than 63 characters (one trailing dot is a fully qualified name). A name
    longer than DNS allows passes both and fails at every lookup, so it is refused here,
    measured as sent (IDNA-encoded).
    """
    if ":" in host:  # an IPv6 literal: urlsplit has checked it
        return None
    too_long = f"the host is longer than {MAX_HOST_LENGTH} characters"
    encoded = not host.isascii()
    if encoded:
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except UnicodeError as exc:  # idna.IDNAError and its kin
            if getattr(exc, "code", None) == "domain_too_long" or str(exc) == "Domain too long":
                return f"{too_long} once IDNA-encoded"
            reason = f" ({exc})" if detail else ""
            return f"the host is not a valid international name{reason}"
    elif host.startswith(("*", ".")):
        return "the host starts with '*' or '.'"
    labels = host.split(".")
    if len(labels) > 1 and not labels[-1]:
        labels.pop()  # "shop.example.": fully qualified
    if any(not label for label in labels):
        return "the host has an empty label"
    if any(len(label) > 63 for label in labels):
        return "the host has a label longer than 63 characters"
    if len(".".join(labels)) > MAX_HOST_LENGTH:
        return f"{too_long} once IDNA-encoded" if encoded else too_long
    return None


def check_url(url: str, written: str | None = None) -> str:
    """Return the URL stripped of surrounding blanks, or raise ValueError saying what is wrong.

    What passes can be sent: the checks are those of the probe's send path, so a URL that
    would fail at every probe for its form alone is refused here, once, with its line.
    ``written`` is the URL before ``${NAME}`` expansion: the only form a message shows.
    """
    url = url.strip()
    if not url:
        raise ValueError("empty url")
    if authority_is_ambiguous(url):
        raise ValueError(_BAD_PORT)
    shown = redact_url(url if written is None else written.strip())
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        # urlsplit's own words may quote the authority, credentials and all: not shown.
        reason = "Invalid IPv6 URL" if str(exc) == "Invalid IPv6 URL" else "cannot be parsed"
        raise ValueError(f"bad url {shown!r}: {reason}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"bad url {shown!r}: only http and https are supported")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"bad url {shown!r}: contains white space")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(_BAD_PORT) from None
    if port == 0:
        raise ValueError(f"bad url {shown!r}: port 0")
    if "\\" in parts.netloc:
        # urllib3 (which sends) ends the host at a "\", urlsplit (which this file and the
        # redaction follow) does not: the two would disagree on where to connect.
        raise ValueError(f"bad url {shown!r}: a '\\' before the path")
    if not parts.hostname:
        raise ValueError(f"bad url {shown!r}: no host")
    # A host from ${NAME} is not shown, not even quoted in part by idna.
    problem = host_problem(host_as_sent(parts.hostname), detail=written is None)
    if problem is not None:
        raise ValueError(f"bad url {shown!r}: {problem}")
    return url


def _default_name(url: str) -> str:
    """The host and path, from the URL as shown (a path may hold ``;jsessionid=...``)."""
    parts = urlsplit(redact_url(url))
    host = parts.hostname or ""
    path = parts.path.rstrip("/")
    return f"{host}{path}" if path else host


# ${NAME}: an environment variable, expanded when the list is loaded.
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A header name is an RFC 9110 token. In the headers cell, a "|" starts the next header only
# where a "Name:" follows it, so a value may itself hold a "|".
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NEXT_HEADER = re.compile(r"\s*\|\s*(?=[!#$%&'*+.^_`~0-9A-Za-z-]+\s*:)")
# The probe frames the request itself.
_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding"))
_TRUE = frozenset(("true", "yes", "1"))
_FALSE = frozenset(("false", "no", "0"))


class _Expander:
    """Expands ``${NAME}`` from the environment, remembering every value it put in: those
    are secrets, never shown."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.values: list[str] = []

    def __call__(self, text: str) -> str:
        if "${" not in text:
            return text
        return _VARIABLE.sub(self._value, text)

    def _value(self, match: re.Match[str]) -> str:
        name = match.group(1)
        value = self._environ.get(name)
        if value is None:
            raise ValueError(f"${{{name}}} is not set")
        self.values.append(value)
        return value


def _number(column: str, raw: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"bad {column} {raw!r}: not a number") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"bad {column} {raw!r}: must be greater than 0")
    return value


def _retries(raw: str) -> int:
    raw = raw.strip()
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_RETRIES:
        raise ValueError(f"bad retries {raw!r}: a whole number from 0 to {MAX_RETRIES}")
    return int(raw)


def _tls_verify(raw: str) -> bool:
    raw = raw.strip().lower()
    if not raw or raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"bad tls_verify {raw!r}: use true or false")


def _ip(raw: str, url: str) -> Literal[4, 6] | None:
    raw = raw.strip().lower()
    if raw in ("", "any"):
        return None
    if raw not in ("4", "6"):
        raise ValueError(f"bad ip {raw!r}: use 4, 6 or any")
    version: Literal[4, 6] = 4 if raw == "4" else 6
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host).version
    except ValueError:
        return version  # a name: the probe keeps its addresses of this version
    if literal != version:
        raise ValueError(f"ip={version}, but the url's host is an IPv{literal} address")
    return version


def parse_headers(raw: str, expand: _Expander) -> tuple[tuple[str, str], ...]:
    """``Name: value | Name2: value2``, values expanded. A message names a header by its
    name or its place in the cell, never by its value."""
    raw = raw.strip()
    if not raw:
        return ()
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for place, item in enumerate(_NEXT_HEADER.split(raw), start=1):
        name, colon, value = item.partition(":")
        name = name.strip()
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"bad headers: header {place} is not 'Name: value' (write 'Name: value | "
                "Name2: value2'; the cell is not shown)"
            )
        if name.lower() in _FRAMING_HEADERS:
            raise ValueError(f"bad headers: {name} is set by the probe itself")
        if name.lower() in seen:
            raise ValueError(f"bad headers: {name} is given twice")
        seen.add(name.lower())
        value = expand(value.strip())
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError(f"bad headers: the value of {name} has a line break (not shown)")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"bad headers: the value of {name} has characters HTTP cannot carry "
                "(outside Latin-1; not shown)"
            ) from None
        headers.append((name, value))
    return tuple(headers)


def compile_regex(raw: str) -> re.Pattern[str] | None:
    if not raw.strip():
        return None
    try:
        return re.compile(raw)
    except re.error as exc:
        raise ValueError(f"bad body_regex {raw!r}: {exc}") from None


def _jmespath_reason(exc: JMESPathError) -> str:
    """jmespath's complaint on one line: "Unknown token '=' at column 7"."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for prefix in ("Invalid jmespath expression: ", "Bad jmespath expression: "):
        text = text.removeprefix(prefix)
    text = text.removesuffix(", for expression:").rstrip(":")
    position = getattr(exc, "lex_position", None)
    if isinstance(position, int) and "column" not in text:
        text += f" at column {position}"
    return text


def _function_names(node: object) -> list[str]:
    """Every function a compiled JMESPath expression calls (its AST is plain dicts)."""
    if isinstance(node, dict):
        names = [node["value"]] if node.get("type") == "function_expression" else []
        for child in node.get("children", ()):
            names += _function_names(child)
        return names
    return []


def compile_json(raw: str) -> JsonQuery | None:
    """A ``json`` cell compiled, or ValueError naming jmespath's complaint. An unknown
    function is refused here too (jmespath itself finds it only when the probe runs)."""
    text = raw.strip()
    if not text:
        return None
    try:
        compiled = jmespath.compile(text)
    except JMESPathError as exc:
        raise ValueError(f"bad json {text!r}: {_jmespath_reason(exc)}") from None
    known = Functions.FUNCTION_TABLE
    unknown = [name for name in _function_names(compiled.parsed) if name not in known]
    if unknown:
        raise ValueError(f"bad json {text!r}: unknown function {unknown[0]}()")
    return JsonQuery(text, compiled)


def _row_to_target(row: dict[str, str], environ: Mapping[str, str] | None = None) -> Target:
    """One row into a Target, ``${NAME}`` expanded from ``environ`` (the process's
    environment). A row that cannot be used raises ValueError with a reason that holds no
    expanded value."""
    expand = _Expander(os.environ if environ is None else environ)
    try:
        return _build_target(row, expand)
    except ValueError as exc:
        if not expand.values:
            raise
        raise ValueError(mask_secrets(str(exc), expand.values)) from None


def _build_target(row: dict[str, str], expand: _Expander) -> Target:
    written = row.get("url", "").strip()
    expanded = expand(written)
    url = check_url(expanded, written if expanded != written else None)
    method = (row.get("method") or "GET").strip().upper() or "GET"
    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}: use {', '.join(METHODS[:-1])} or {METHODS[-1]}"
        )
    expected_raw = (row.get("expected_status") or "").strip()
    contains = row.get("body_contains") or ""
    not_contains = row.get("body_not_contains") or ""
    headers = parse_headers(row.get("headers") or "", expand)
    body_raw = row.get("body") or ""
    body = expand(body_raw).encode() if body_raw else None
    body_regex = compile_regex(row.get("body_regex") or "")
    json_query = compile_json(row.get("json") or "")
    if method == "HEAD":
        checks = [
            column
            for column in ("body_contains", "body_not_contains", "body_regex", "json")
            if (row.get(column) or "").strip()
        ]
        if checks:
            raise ValueError(f"{checks[0]} needs a body, and a HEAD answer has none")
    secrets = [*expand.values, *(value for name, value in headers if secret_header(name))]
    return Target(
        url=url,
        name=(row.get("name") or "").strip() or _default_name(written),
        interval=_seconds("interval", row.get("interval") or ""),
        timeout=_seconds("timeout", row.get("timeout") or ""),
        method=method,
        expected_status=parse_expected_status(expected_raw) if expected_raw else DEFAULT_EXPECTED,
        body_contains=contains if contains.strip() else None,
        headers=headers,
        body=body,
        body_not_contains=not_contains if not_contains.strip() else None,
        body_regex=body_regex,
        json_query=json_query,
        max_response_ms=_number("max_response_ms", row.get("max_response_ms") or ""),
        retries=_retries(row.get("retries") or ""),
        tls_verify=_tls_verify(row.get("tls_verify") or ""),
        ip=_ip(row.get("ip") or "", url),
        written_url=written if url != written else None,
        secrets=tuple(dict.fromkeys(value for value in secrets if value)),
    )


# Only CR, LF and CRLF end a row. str.splitlines() also splits at form feed, NEL (U+0085),
# U+2028 and more, which may stand inside a cell.
_LINE_END = re.compile(r"\r\n|\r|\n")
_CUT_SHORT_REASON = (
    "the last row has no line end, so it may be cut short (a file caught while being"
    " written); end the file with a line break"
)


def _nothing_in(text: str) -> str:
    """Why a file without a single row is refused: it would remove every target."""
    if not text.strip():
        return "no targets: the file is empty"
    return "no targets: the file holds only comments and blank lines"


def parse_targets(data: bytes) -> ParsedTargets:
    """Parse CSV bytes. Raises :class:`TargetsError` when the file as a whole is unusable."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TargetsError(f"not UTF-8 (byte {exc.start}): {exc.reason}") from None
    if "\x00" in text:
        raise TargetsError("not a text file (contains NUL bytes)")

    # Keep the physical line numbers: drop comments and blanks but remember where rows were.
    physical = _LINE_END.split(text)
    numbered = [
        (number, line)
        for number, line in enumerate(physical, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not numbered:
        raise TargetsError(_nothing_in(text))
    lines = dict(numbered)
    # A last line with no line end may be a row cut short (a file caught while being written):
    # "https://shop.exa" would be probed as another host. Its number, if it is a row.
    cut_short = numbered[-1][0] if numbered[-1][0] == len(physical) else None

    errors: list[tuple[int, str]] = []
    rows: list[tuple[int, list[str]]] = []
    for number, line in numbered:
        try:
            rows.append((number, next(csv.reader([line], skipinitialspace=True, strict=True))))
        except csv.Error as exc:
            errors.append((number, f"not valid CSV: {exc}"))

    header: Sequence[str] = _NO_HEADER
    body = rows
    if rows and "url" in (first := [cell.strip().lower() for cell in rows[0][1]]):
        header, body = first, rows[1:]
        errors += [
            (rows[0][0], f"unknown column {c!r} ignored") for c in header if c and c not in COLUMNS
        ]

    targets: list[Target] = []
    seen: dict[str, int] = {}
    seen_labels: dict[tuple[str, str], int] = {}
    for number, cells in body:
        if number == cut_short:
            errors.append((number, _CUT_SHORT_REASON))
            continue
        if _cuts_userinfo(lines[number], cells):
            errors.append((number, _CUT_USERINFO_REASON))
            continue
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            if header is not _NO_HEADER:
                # More cells than the header names: likely an unquoted comma; guessing which
                # cell is which could probe with the wrong settings.
                errors.append((number, f"{len(cells)} columns, expected {len(header)}"))
                continue
            errors.append(
                (
                    number,
                    f"{len(cells)} columns without a header row: only url and name are read;"
                    " add a header row to use the others",
                )
            )
        try:
            target = _row_to_target(dict(zip(header, cells, strict=False)))
        except ValueError as exc:
            errors.append((number, str(exc)))
            continue
        timing = _timing_problem(target)
        if timing is not None:
            errors.append((number, timing))
            continue
        if target.url in seen:
            first_line = seen[target.url]
            shown = target.display_url
            errors.append(
                (number, f"duplicate url {shown!r} (first on line {first_line}), skipped")
            )
            continue
        # The series' labels are (name, shown URL): two rows that differ only in a hidden
        # credential would export identical series, which makes Prometheus reject the scrape.
        labels = (target.name, target.display_url)
        if labels in seen_labels:
            errors.append(
                (
                    number,
                    f"same name {target.name!r} and shown url {target.display_url!r} as line "
                    f"{seen_labels[labels]} (they differ only in a hidden credential); "
                    "give one a different name, skipped",
                )
            )
            continue
        seen[target.url] = number
        seen_labels[labels] = number
        targets.append(target)

    # Each reason shows only redacted URLs; redacting the whole line again is the net for a
    # cell quoted verbatim (an unknown column, a bad interval) that holds a URL or a secret.
    messages = tuple(redact_text(f"line {number}: {reason}") for number, reason in sorted(errors))
    rows_given = len(body) + len(numbered) - len(rows)
    if not rows_given:
        raise TargetsError("no targets: the file has a header row and nothing under it")
    if not targets:
        raise TargetsError(f"no valid target in {rows_given} row(s); first problem: {messages[0]}")
    return ParsedTargets(tuple(targets), messages)
