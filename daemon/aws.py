"""What every AWS caller shares: one boto3 client factory, error descriptions, s3:// URLs.

Credentials come from boto3's default chain (ECS task role, environment, profile), and
``AWS_ENDPOINT_URL`` points boto3 at an emulator in tests. Errors are described by their AWS
error code and message only, never with a request's headers or a credential.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` into ``(bucket, key)``; ValueError for anything else."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URL: {url!r}")
    return bucket, key


def make_client(
    service: str, connect_timeout: float = 5, read_timeout: float = 20, attempts: int = 3
) -> Any:
    """A boto3 client of its own session (boto3's default session is not greenlet-safe).

    boto3 is imported here, on first use: it costs ~25 MB and 0.1 s, which a daemon with a
    local list and no CloudWatch never needs to pay.
    """
    import boto3
    from botocore.config import Config

    # Bounded timeouts and botocore's standard retry mode (with its own jittered backoff for
    # throttling and 5xx); our callers retry again at their own pace.
    # SigV4 everywhere, so presigned links carry X-Amz-Expires and work in every region.
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        signature_version="v4",
        s3={"signature_version": "s3v4"},
    )
    return boto3.session.Session().client(service, config=config)


def describe_error(exc: BaseException) -> str:
    """A short, credential-free reason: the AWS error code and message, or the transport error."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or ""
        return f"{code}: {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class LazyClient:
    """A client made on first use, so that start-up never waits on AWS."""

    def __init__(self, service: str, client: Any | None = None) -> None:
        self._service = service
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self._service)
        return self._client
