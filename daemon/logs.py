"""One log line per event, as logfmt ``key=value`` pairs, so both people and tools can read it.

Callers pass already-redacted URLs (``Target.display_url``); nothing here sees a credential.
"""

from __future__ import annotations

import logging
import sys
import time


def _quote(value: object) -> str:
    text = "" if value is None else str(value)
    if text and not any(ch in text for ch in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


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
        line += record.getMessage()
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
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
