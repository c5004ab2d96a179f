"""The results document written whole, with the status page beside it: on local disk
(temp file, fsync, rename) or as S3 objects (one PUT each).

The page is named after the results file (``results.json`` -> ``results.html``), so two
applications sharing a folder or prefix never overwrite each other's page.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from daemon.aws import LazyClient, describe_error, parse_s3_url
from daemon.outputs.document import Snapshot

PRESIGN_SECONDS = 300  # GET /results links live 5 minutes: long enough to click, no longer


def page_name(results_name: str) -> str:
    """The status page's name beside a results file: its stem with ``.html``."""
    stem, ext = posixpath.splitext(results_name)
    return f"{stem if ext else results_name}.html"


class LocalResultsFile:
    """The results document on local disk; a web server pointed at the folder serves the same
    page as ``GET /``."""

    name = "results_file"

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.page_path = page_name(self.path)

    def publish(self, snapshot: Snapshot) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        atomic_write(self.path, snapshot.document_json)
        atomic_write(self.page_path, snapshot.status_html.encode())

    def read(self) -> bytes:
        """The file as it is on disk now; OSError when it cannot be read."""
        with open(self.path, "rb") as handle:
            return handle.read()


class S3ResultsFile(LazyClient):
    """The results document as one S3 object, and its page beside it.

    The bucket stays private: ``GET /results`` answers with a presigned GET that expires in
    :data:`PRESIGN_SECONDS`.
    """

    name = "results_file"

    def __init__(self, url: str, client: Any | None = None) -> None:
        super().__init__("s3", client)
        self.bucket, self.key = parse_s3_url(url)
        self.page_key = page_name(self.key)

    def publish(self, snapshot: Snapshot) -> None:
        self._put(self.key, snapshot.document_json, "application/json")
        self._put(self.page_key, snapshot.status_html.encode(), "text/html; charset=utf-8")

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                CacheControl="no-cache",
            )
        except (ClientError, BotoCoreError) as exc:
            raise RuntimeError(f"s3://{self.bucket}/{key}: {describe_error(exc)}") from None

    def presigned_url(self) -> str:
        """A link to the results object that expires in :data:`PRESIGN_SECONDS`; RuntimeError
        (with a credential-free reason) when it cannot be made."""
        try:
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key},
                ExpiresIn=PRESIGN_SECONDS,
            )
        except (ClientError, BotoCoreError) as exc:
            raise RuntimeError(describe_error(exc)) from None
        return url


def atomic_write(path: str, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all: temp file beside it, fsync, rename."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".upcheck-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
