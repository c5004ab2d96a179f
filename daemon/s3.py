"""S3 for both ends of the pipeline: the targets CSV in, the results document out.

Credentials come from boto3's default chain (ECS task role, environment, profile), and
``AWS_ENDPOINT_URL`` points boto3 at an emulator in tests. Nothing here logs a credential:
errors are reported by their S3 error code and message only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from daemon.sinks import Snapshot, not_written_answer
from daemon.sources import Fetched, SourceError

PRESIGN_SECONDS = 300  # GET /results links live 5 minutes: long enough to click, no longer

# Bounded timeouts and botocore's standard retry mode (with its own jittered backoff for
# throttling and 5xx); our callers retry again at their own pace.
# SigV4 everywhere, so presigned links carry X-Amz-Expires and work in every region.
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=20,
    retries={"max_attempts": 3, "mode": "standard"},
    signature_version="v4",
    s3={"signature_version": "s3v4"},
)


def parse_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URL: {url!r}")
    return bucket, key


def make_client(service: str) -> Any:
    return boto3.session.Session().client(service, config=CLIENT_CONFIG)


def describe_error(exc: Exception) -> str:
    """A short, credential-free reason: the S3 error code and message, or the transport error."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or ""
        return f"{code}: {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class _S3Object:
    """One S3 object, with a client made on first use (so start-up never waits on AWS)."""

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.bucket, self.key = parse_s3_url(url)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("s3")
        return self._client


class S3TargetSource(_S3Object):
    """The targets CSV in S3. The checksum is the object's ETag.

    Each check is one conditional GET (``If-None-Match``): S3 answers 304 with no body when the
    object is unchanged, so an unchanged list is never downloaded again.
    """

    def __init__(self, url: str, client: Any | None = None) -> None:
        super().__init__(url, client)
        self.description = url

    def fetch(self, known_checksum: str | None) -> Fetched | None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if known_checksum:
            kwargs["IfNoneMatch"] = known_checksum
        try:
            response = self.client.get_object(**kwargs)
            data = response["Body"].read()
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 304 or code in ("304", "NotModified"):
                return None
            raise SourceError(f"cannot read {self.description}: {describe_error(exc)}") from exc
        except (BotoCoreError, OSError) as exc:
            raise SourceError(f"cannot read {self.description}: {describe_error(exc)}") from exc
        return Fetched(data, response.get("ETag") or "")


class S3ResultsFile(_S3Object):
    """The results document as one S3 object, and ``status.html`` beside it.

    The bucket stays private: ``GET /results`` answers with a presigned GET that expires in
    :data:`PRESIGN_SECONDS`.
    """

    name = "results_file"

    def __init__(
        self, url: str, client: Any | None = None, live: Callable[[], bytes] | None = None
    ) -> None:
        super().__init__(url, client)
        self.status_key = posixpath.join(posixpath.dirname(self.key), "status.html")
        self._live = live
        self._written = False  # by this process: an older object may hold a past run's results

    def publish(self, snapshot: Snapshot) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=snapshot.document_json,
                ContentType="application/json",
                CacheControl="no-cache",
            )
            self._written = True
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.status_key,
                Body=snapshot.status_html.encode(),
                ContentType="text/html; charset=utf-8",
                CacheControl="no-cache",
            )
        except (ClientError, BotoCoreError) as exc:
            raise RuntimeError(f"s3://{self.bucket}/{self.key}: {describe_error(exc)}") from None

    def results_answer(self) -> tuple[str, list[tuple[str, str]], bytes]:
        if not self._written:
            return not_written_answer(self._live)
        try:
            url = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key},
                ExpiresIn=PRESIGN_SECONDS,
            )
        except (ClientError, BotoCoreError) as exc:
            reason = describe_error(exc)
            return "503 Service Unavailable", [("Content-Type", "text/plain")], reason.encode()
        return (
            "302 Found",
            [("Location", url), ("Cache-Control", "no-store"), ("Content-Type", "text/plain")],
            b"see the presigned URL in Location\n",
        )
