"""The targets CSV on local disk; the checksum is the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
import os

from daemon.sources.base import Fetched, SourceError


class LocalFileSource:
    """A CSV on local disk; the checksum is the SHA-256 of its bytes.

    The file's size and modification time are remembered so that an unchanged file is not even
    re-hashed; a same-size rewrite within the same mtime tick is still caught because the hash
    is taken whenever either differs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = path
        self._stat_key: tuple[int, int, int] | None = None
        self._checksum: str | None = None

    def fetch(self, known_checksum: str | None) -> Fetched | None:
        try:
            st = os.stat(self.path)
            stat_key = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stat_key == self._stat_key and self._checksum == known_checksum:
                return None
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        checksum = hashlib.sha256(data).hexdigest()
        self._stat_key = stat_key
        self._checksum = checksum
        if checksum == known_checksum:
            return None
        return Fetched(data, checksum)
