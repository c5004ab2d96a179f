"""One log line per event, as logfmt ``key=value`` pairs, so both people and tools can read it.

Callers pass already-redacted URLs (``Target.display_url``); a traceback, or a library's own
message, is redacted here as a net. Every line is one event: a value's line breaks (CR, LF and
the others ``str.splitlines`` knows, such as NEL or U+2028 from a CSV cell) are escaped, and
a message that is not an :func:`event` (a library's, a warning) becomes ``event=log msg=...``.
"""

from __future__ import annotations

import logging
import re
import sys
import time

from daemon.redact import redact_text

# Whatever some reader of the log could take for the end of a line.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _escape_break(found: re.Match[str]) -> str:
    char = found.group()
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    return f"\\u{ord(char):04x}"


def _quote(value: object) -> str:
    text = "" if value is None else str(value)
    if text and not any(ch in text for ch in ' "=\\\t') and not _LINE_BREAK.search(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{_LINE_BREAK.sub(_escape_break, escaped)}"'


def event(name: str, /, **fields: object) -> str:
    """``event=name k=v ...``, the message part of a log line."""
    parts = [f"event={name}"]
    parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
    return " ".join(parts)


class _LogfmtFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        line = f"ts={stamp} level={record.levelname.lower()} logger={record.name} "
        message = record.getMessage()
        if message.startswith("event="):
            line += _LINE_BREAK.sub(_escape_break, message)  # event() quoted every value
        else:
            line += "event=log msg=" + _quote(redact_text(message))
        if record.exc_info:
            line += " exc=" + _quote(redact_text(self.formatException(record.exc_info)))
        return line


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log connection chatter at INFO/WARNING that would name hosts per request.
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
