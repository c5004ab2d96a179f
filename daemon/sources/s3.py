"""The targets CSV as an S3 object; the checksum is its ETag.

Each check is one conditional GET (``If-None-Match``): S3 answers 304 with no body when the
object is unchanged, so an unchanged list is never downloaded again.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from daemon.aws import LazyClient, describe_error, parse_s3_url
from daemon.sources.base import Fetched, SourceError


class S3TargetSource(LazyClient):
    def __init__(self, url: str, client: Any | None = None) -> None:
        super().__init__("s3", client)
        self.bucket, self.key = parse_s3_url(url)
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
