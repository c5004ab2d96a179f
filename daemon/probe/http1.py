"""HTTP/1.1 on one fresh connection: write the request, read the answer's head, frame and
decode its body (RFC 9112).

A probe sends one request with ``Connection: close`` and reads one answer, so what it needs of
HTTP/1.1 is small: a request written in one send, a status line and header fields, the three
ways a response body ends (a length, chunks, the close) and the two content codings it asks
for (gzip, deflate). That small part is done here, directly on the socket, because http.client
and urllib3 spent more CPU on it than all the rest of a probe over plain http (their header
parsing goes through the email package, and every read through three layers of wrappers). It
is as lenient as they are where servers are sloppy (a bare LF, a folded line, a field with no
colon, a Content-Length that is no number) and stricter where sloppiness would mislead a
monitor (a status code that is not three digits, a body cut short, framing that contradicts
itself).
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping

import gevent

from daemon.probe.classify import ProbeFailure

Recv = Callable[[int], bytes]  # a socket's recv: at most n bytes, b"" at the end of the stream

MAX_LINE = 65536  # a status, header or chunk-size line (http.client's limit)
MAX_HEADERS = 100  # header lines in one head (http.client's limit)
MAX_INTERIM_RESPONSES = 10
MAX_CODINGS = 5  # content codings in one Content-Encoding (urllib3's limit)
READ_SIZE = 64 * 1024

_NO_BODY_STATUS = frozenset((204, 304))
# What may not appear in a request line's target or a Host value: controls, space, DEL.
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")
_CODINGS = frozenset(("gzip", "x-gzip", "deflate"))
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")  # up to 2**60 - 1: anything more is no size
_GZIP_MAGIC = b"\x1f\x8b"


class Reader:
    """Buffered reads from one connection: lines for the head, blocks for the body."""

    __slots__ = ("_data", "_pos", "_recv", "received")

    def __init__(self, recv: Recv) -> None:
        self._recv = recv
        self._data = b""
        self._pos = 0
        self.received = 0  # bytes read from the connection so far

    @property
    def consumed(self) -> int:
        """Bytes handed out so far (read from the connection and no longer buffered)."""
        return self.received - (len(self._data) - self._pos)

    def _more(self) -> bool:
        """Read what the connection has next onto the buffer; False at the end of the stream."""
        data = self._recv(READ_SIZE)
        if not data:
            return False
        self.received += len(data)
        if len(data) == READ_SIZE:
            # More is waiting, and gevent's recv only yields when nothing is: without a turn
            # of the event loop here, a server that sends without pause would hold the whole
            # daemon, and the probe's own deadline could not strike. A timer, not sleep(0),
            # which runs queued callbacks but neither timers (the deadline) nor sockets.
            gevent.sleep(1e-6)
        if self._pos < len(self._data):
            self._data = self._data[self._pos :] + data
        else:
            self._data = data
        self._pos = 0
        return True

    def line(self, what: str) -> bytes:
        """The next line, its end included; what is left (maybe b"") at the end of the stream."""
        while True:
            end = self._data.find(b"\n", self._pos)
            if end >= 0:
                if end - self._pos >= MAX_LINE:
                    raise ProbeFailure("protocol", f"{what} longer than {MAX_LINE} bytes")
                line = self._data[self._pos : end + 1]
                self._pos = end + 1
                return line
            if len(self._data) - self._pos > MAX_LINE:
                raise ProbeFailure("protocol", f"{what} longer than {MAX_LINE} bytes")
            if not self._more():
                line = self._data[self._pos :]
                self._pos = len(self._data)
                return line

    def some(self, limit: int) -> bytes:
        """At most ``limit`` bytes (at least one), or b"" at the end of the stream."""
        if self._pos >= len(self._data) and not self._more():
            return b""
        start = self._pos
        end = min(start + limit, len(self._data))
        self._pos = end
        if start == 0 and end == len(self._data):
            return self._data
        return self._data[start:end]


class Headers:
    """A head's fields by name, case-insensitive; a repeated field's values joined with ", "
    (as urllib3 gives them)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # lower-case name -> value

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields


def request_head(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request line and header fields, as bytes ready to send.

    ``host`` is the Host value (left out when ``headers`` has its own); a body gets its
    Content-Length, and so does a POST, PUT or PATCH without one (0), as urllib3 sends them.
    Header fields were checked when the list was loaded (or are ours); the request target
    comes from a URL, a redirect's too, so it is checked here.
    """
    if _UNSENDABLE.search(target) or _UNSENDABLE.search(host):
        raise ProbeFailure("protocol", "the URL has characters a request cannot carry")
    lines = [f"{method} {target} HTTP/1.1"]
    own = {name.lower() for name in headers}
    if "host" not in own:
        lines.append(f"Host: {host}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    elif method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def host_value(host: str, port: int, https: bool) -> str:
    """The Host field for ``host`` (a name, or an IP without brackets) and ``port``."""
    host = host.rstrip(".")  # a fully qualified name's trailing dot is not part of the name
    if ":" in host:
        host = "[" + host.split("%", 1)[0] + "]"  # an IPv6 literal; its zone is ours only
    return host if port == (443 if https else 80) else f"{host}:{port}"


def status_line(reader: Reader) -> tuple[int, str]:
    """The code and reason of a status line; strict on the code (three ASCII digits, which
    ``int()`` alone is not: it takes ``2_00``, ``+200`` and ``0200``)."""
    raw = reader.line("status line")
    if not raw:
        raise ProbeFailure("protocol", "the server closed the connection without answering")
    line = str(raw, "iso-8859-1")
    version, code, reason = [*line.split(None, 2), "", "", ""][:3]
    if (
        not version.startswith("HTTP/")
        or len(code) != 3
        or not (code.isascii() and code.isdigit())
        or code[0] == "0"
    ):
        raise ProbeFailure("protocol", f"not an HTTP response: {line[:80].strip()!r}")
    if not version.startswith("HTTP/1."):
        raise ProbeFailure("protocol", f"not an HTTP/1.x response: {version[:20]!r}")
    return int(code), reason.strip()


def header_fields(reader: Reader) -> Headers:
    """The header fields up to the blank line (or the end of the stream). A folded line
    continues the field before it; a line with no colon is ignored, as browsers do."""
    fields: dict[str, str] = {}
    last: str | None = None
    for _ in range(MAX_HEADERS + 1):
        line = reader.line("header line")
        if line in (b"\r\n", b"\n", b""):
            return Headers(fields)
        text = str(line, "iso-8859-1")
        if text[0] in " \t":
            if last is not None:
                fields[last] = f"{fields[last]} {text.strip()}".strip()
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name[-1] in " \t":
            last = None
            continue
        last = name.lower()
        value = value.strip()
        fields[last] = f"{fields[last]}, {value}" if last in fields else value
    raise ProbeFailure("protocol", f"more than {MAX_HEADERS} header lines")


def final_head(reader: Reader) -> tuple[int, Headers, float]:
    """The final answer's status and fields, past every interim (1xx) one, and when (the
    perf_counter) the first status line was in: the answer's first byte, whichever answer it
    belongs to.

    Every 1xx but ``101 Switching Protocols`` (which is final) is skipped with its fields, at
    most :data:`MAX_INTERIM_RESPONSES` of them (a ``103 Early Hints`` from a CDN, a ``102
    Processing``).
    """
    status, _ = status_line(reader)
    first_line_at = time.perf_counter()
    skipped = 0
    while 100 <= status < 200 and status != 101:
        skipped += 1
        if skipped > MAX_INTERIM_RESPONSES:
            raise ProbeFailure(
                "protocol", f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
            )
        header_fields(reader)
        status, _ = status_line(reader)
    return status, header_fields(reader), first_line_at


def declared_length(headers: Headers) -> int | None:
    """The Content-Length, if it is one number (repeated, the same number); None if absent
    or not a number (the body then ends with the connection, as http.client reads it)."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    values = {value.strip() for value in declared.split(",")}
    if not all(value.isascii() and value.isdigit() for value in values):
        return None
    if len(values) > 1:
        raise ProbeFailure("protocol", f"Content-Length has different values: {declared[:80]!r}")
    return int(values.pop())


def body(reader: Reader, status: int, headers: Headers) -> Iterator[bytes]:
    """The body's bytes as they arrive, framing removed (the answer to anything but a HEAD):
    none for a 1xx, 204 or 304; chunks when the last transfer coding is chunked; else
    Content-Length bytes, or up to the close. A body that ends before its framing says it
    does is a protocol failure."""
    if status < 200 or status in _NO_BODY_STATUS:
        return iter(())
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
            return _chunked(reader)
        return _until_close(reader)
    length = declared_length(headers)
    return _until_close(reader) if length is None else _sized(reader, length)


def _sized(reader: Reader, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        data = reader.some(left)
        if not data:
            raise ProbeFailure(
                "protocol", f"the body ended after {length - left} of {length} bytes"
            )
        left -= len(data)
        yield data


def _until_close(reader: Reader) -> Iterator[bytes]:
    while data := reader.some(READ_SIZE):
        yield data


def _chunked(reader: Reader) -> Iterator[bytes]:
    while True:
        line = reader.line("chunk size line")
        if not line:
            raise ProbeFailure("protocol", "the body ended before its last chunk")
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise ProbeFailure("protocol", f"bad chunk size line: {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(MAX_HEADERS + 1):  # the trailer fields, then the blank line
                if reader.line("trailer line") in (b"\r\n", b"\n", b""):
                    return
            raise ProbeFailure("protocol", f"more than {MAX_HEADERS} trailer lines")
        left = size
        while left > 0:
            data = reader.some(left)
            if not data:
                raise ProbeFailure("protocol", "the body ended in the middle of a chunk")
            left -= len(data)
            yield data
        end = reader.line("chunk end")
        if not end:
            raise ProbeFailure("protocol", "the body ended before its last chunk")
        if end not in (b"\r\n", b"\n"):
            raise ProbeFailure("protocol", "a chunk is longer than its size line says")


class Decoder:
    """The content codings of a body undone (gzip, deflate; several in a row too), giving at
    most ``limit`` bytes in all: a small compressed body that would expand past the limit is
    stopped there, not inflated in memory first."""

    __slots__ = ("_codings", "_early", "_finished", "_limit", "_steps")

    def __init__(self, content_encoding: str, limit: int) -> None:
        listed = [c.strip().lower() for c in content_encoding.split(",")]
        # Applied in the order listed, so undone from the last.
        self._codings = [c for c in reversed(listed) if c and c != "identity"]
        self._steps: list[zlib._Decompress | None] = [None] * len(self._codings)
        self._early = [b""] * len(self._codings)  # a first byte, before the decoder is chosen
        self._finished = [False] * len(self._codings)  # the stream ended: the rest is ignored
        self._limit = limit

    @classmethod
    def of(cls, content_encoding: str, limit: int) -> Decoder | None:
        """The decoder for a Content-Encoding; None when there is nothing to undo, or a
        coding this decoder does not know (the body is then taken as it came, as urllib3
        takes it)."""
        listed = content_encoding.split(",")
        if len(listed) > MAX_CODINGS:
            raise ProbeFailure("protocol", f"more than {MAX_CODINGS} content codings")
        codings = {c.strip().lower() for c in listed} - {"identity", ""}
        if not codings or not codings <= _CODINGS:
            return None
        return cls(content_encoding, limit)

    def feed(self, data: bytes) -> bytes:
        for index, coding in enumerate(self._codings):
            data = self._undo(index, coding, data)
        return data

    def _undo(self, index: int, coding: str, data: bytes) -> bytes:
        if not data or self._finished[index]:
            return b""  # nothing yet, or past the end of the stream: ignored, not buffered
        step = self._steps[index]
        if step is None:
            if coding == "deflate":
                data = self._early[index] + data
                if len(data) < 2:  # one byte so far: not enough to tell
                    self._early[index] = data
                    return b""
                # "deflate" is zlib-wrapped by the standard, raw by some servers: a zlib
                # header (method 8, a check over its two bytes) tells them apart.
                wrapped = data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
                step = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            else:
                step = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._steps[index] = step
        out = []
        room = self._limit + 1
        try:
            while data and room > 0:
                piece = step.decompress(data, room)
                out.append(piece)
                room -= len(piece)
                data = step.unconsumed_tail
                if step.eof:
                    # Another gzip member may follow, decoded as part of the same body;
                    # anything else after the end of the stream is ignored, as browsers do.
                    rest = step.unused_data
                    if coding == "deflate" or not rest.startswith(_GZIP_MAGIC):
                        self._finished[index] = True
                        break
                    data = rest
                    step = self._steps[index] = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise ProbeFailure("protocol", f"the body is not valid {coding}: {exc}") from None
        return b"".join(out)
