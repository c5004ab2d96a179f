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
from daemon.outputs.shared_results import Part

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
        self.write_document(snapshot.document_json, snapshot.status_html.encode())

    def write_document(self, document: bytes, page: bytes) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        atomic_write(self.path, document)
        atomic_write(self.page_path, page)

    def read(self) -> bytes:
        """The file as it is on disk now; OSError when it cannot be read."""
        with open(self.path, "rb") as handle:
            return handle.read()

    def read_document(self) -> bytes | None:
        """The results file as last written (by any process), or None if there is none."""
        try:
            return self.read()
        except FileNotFoundError:
            return None

    # -- the parts of a shared list (see shared_results.py) --------------------------------

    @property
    def parts_dir(self) -> str:
        return f"{self.path}.parts"

    def write_part(self, member: str, data: bytes) -> None:
        os.makedirs(self.parts_dir, exist_ok=True)
        atomic_write(os.path.join(self.parts_dir, f"{member}.json"), data)

    def read_parts(self, newer_than: float) -> list[Part]:
        parts = []
        try:
            names = sorted(os.listdir(self.parts_dir))
        except FileNotFoundError:
            return []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue  # a temp file of a write in progress
            path = os.path.join(self.parts_dir, name)
            try:
                modified = os.stat(path).st_mtime
                if modified <= newer_than:
                    continue
                with open(path, "rb") as handle:
                    parts.append(Part(name.removesuffix(".json"), handle.read(), modified))
            except FileNotFoundError:
                continue  # replaced or removed between the listing and the read
        return parts


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
        self.write_document(snapshot.document_json, snapshot.status_html.encode())

    def write_document(self, document: bytes, page: bytes) -> None:
        self._put(self.key, document, "application/json")
        self._put(self.page_key, page, "text/html; charset=utf-8")

    def read_document(self) -> bytes | None:
        """The results object as last written (by any process), or None if there is none;
        RuntimeError when S3 cannot be read."""
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise RuntimeError(f"s3://{self.bucket}/{self.key}: {describe_error(exc)}") from None
        except BotoCoreError as exc:
            raise RuntimeError(f"s3://{self.bucket}/{self.key}: {describe_error(exc)}") from None

    # -- the parts of a shared list (see shared_results.py) --------------------------------

    @property
    def parts_prefix(self) -> str:
        return f"{self.key}.parts/"

    def write_part(self, member: str, data: bytes) -> None:
        self._put(f"{self.parts_prefix}{member}.json", data, "application/json")

    def read_parts(self, newer_than: float) -> list[Part]:
        """Listed by prefix; only parts modified after ``newer_than`` are downloaded, so the
        parts that departed members left behind cost one listing entry each, no GET."""
        parts = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.parts_prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key, modified = item["Key"], item["LastModified"].timestamp()
                    if modified <= newer_than or not key.endswith(".json"):
                        continue
                    try:
                        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                            continue  # removed between the listing and the read
                        raise
                    member = key[len(self.parts_prefix) :].removesuffix(".json")
                    parts.append(Part(member, bytes(body), modified))
        except (ClientError, BotoCoreError) as exc:
            raise RuntimeError(
                f"s3://{self.bucket}/{self.parts_prefix}: {describe_error(exc)}"
            ) from None
        return parts

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
