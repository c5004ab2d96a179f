"""What every targets source is (``file.py``, ``s3.py``).

A source answers one question cheaply: "has the file changed since the checksum I gave you?"
It downloads (or reads) the content only when it has, so a reload check every minute costs one
``stat`` + hash locally and one conditional GET on S3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SourceError(Exception):
    """The source could not be read right now; the last good list stays in force."""


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    checksum: str


class TargetSource(Protocol):
    """Anything that can hand out the targets CSV when it changed."""

    description: str

    def fetch(self, known_checksum: str | None) -> Fetched | None:
        """Return the content when its checksum differs from ``known_checksum``, else None.

        Raises :class:`SourceError` when the source cannot be read.
        """
        ...
