"""What a response's body must hold: a row's ``body_contains``, ``body_not_contains``,
``body_regex`` and ``json`` checks.

A :class:`BodyScan` is fed the body chunk by chunk as it streams in. The substrings are looked
for on the fly, in each chunk plus the tail of the one before (so a match cut in two by a chunk
boundary is still found), and nothing is kept for them. A regular expression or a JSON
document needs the whole body, so the chunks are kept only for a row that has one of those;
the body is capped at 10 MiB before it gets here. Rows without any body check get no scan.
"""

from __future__ import annotations

import codecs
import json
from email.message import Message

from jmespath.exceptions import JMESPathError

from daemon.model import Target

_SHOWN_VALUE = 80  # characters of a JSON result quoted in an error


def charset(content_type: str | None) -> str:
    """The text encoding a Content-Type names, if Python knows it; UTF-8 otherwise."""
    if content_type and "charset" in content_type.lower():
        message = Message()
        message["Content-Type"] = content_type
        name = message.get_param("charset")
        if isinstance(name, str):
            try:
                return codecs.lookup(name).name
            except LookupError:
                pass
    return "utf-8"


def truthy(value: object) -> bool:
    """JMESPath's truth: false, null, "", [] and {} are false; every number is true (``0``
    too: write ``errors == `0```)."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return bool(value)
    return True


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_VALUE else text[: _SHOWN_VALUE - 3] + "..."


class BodyScan:
    """One response body checked against one target's body checks, as it streams past."""

    __slots__ = (
        "_chunks",
        "_content_type",
        "_forbidden",
        "_keep",
        "_needle",
        "_tail",
        "_target",
        "forbidden_found",
        "found",
    )

    def __init__(self, target: Target, content_type: str | None) -> None:
        self._target = target
        self._content_type = content_type
        self._needle = target.body_contains.encode() if target.body_contains else None
        self._forbidden = target.body_not_contains.encode() if target.body_not_contains else None
        self.found = self._needle is None
        self.forbidden_found = False
        # A match that straddles two chunks starts in the last len(needle) - 1 bytes of one.
        longest = max(len(self._needle or b""), len(self._forbidden or b""))
        self._keep = max(longest - 1, 0)
        self._tail = b""
        wanted = target.body_regex is not None or target.json_query is not None
        self._chunks: list[bytes] | None = [] if wanted else None

    def feed(self, chunk: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(chunk)
        looking = not self.found or (self._forbidden is not None and not self.forbidden_found)
        if not looking:
            return
        window = self._tail + chunk if self._tail else chunk
        if not self.found:
            self.found = self._needle in window  # type: ignore[operator]
        if self._forbidden is not None and not self.forbidden_found:
            self.forbidden_found = self._forbidden in window
        self._tail = window[-self._keep :] if self._keep else b""

    def problem(self) -> str | None:
        """Why the body fails the target's checks (the first check that fails), or None."""
        target = self._target
        if not self.found:
            return f"body does not contain {target.body_contains!r}"
        if self.forbidden_found:
            return f"body contains {target.body_not_contains!r}, which it must not"
        if self._chunks is None:
            return None
        body = b"".join(self._chunks)
        self._chunks = None
        if target.body_regex is not None:
            text = body.decode(charset(self._content_type), errors="replace")
            if target.body_regex.search(text) is None:
                return f"body does not match {target.body_regex.pattern!r}"
        query = target.json_query
        if query is not None:
            try:
                document = json.loads(body)  # UTF-8, -16 or -32, as RFC 8259 allows
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                return f"body is not JSON: {exc}"
            try:
                value = query.compiled.search(document)
            except JMESPathError as exc:
                return f"json {query.text!r} failed: {str(exc)[:200]}"
            if not truthy(value):
                return f"json {query.text!r} is {_shown(value)}"
        return None
