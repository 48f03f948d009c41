"""JSON-lines objects under one S3 prefix: what the ``s3`` usage sink and the ``s3`` record
archive both write."""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway_aws.aws import call, key_under, make_client, require_name


class JsonLinesObjects:
    """``s3://bucket/prefix/...`` objects of JSON lines.

    Raises:
        TypeError: bad options.
    """

    def __init__(
        self, bucket: str, prefix: str, endpoint_url: str | None, region: str | None
    ) -> None:
        self.bucket = require_name("bucket", bucket)
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}")
        self.prefix = prefix
        self.client: Any = make_client("s3", endpoint_url=endpoint_url, region=region)

    def key(self, *parts: str) -> str:
        """The key of ``parts`` under the prefix."""
        return key_under(self.prefix, *parts)

    async def put(self, key: str, data: bytes) -> str:
        """Put ``data`` at ``key`` (replacing an object of that name); return its ``s3://`` URL.

        Raises:
            ServiceUnavailableError: S3 could not be reached or refused the object.
        """
        url = f"s3://{self.bucket}/{key}"
        put = partial(
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/x-ndjson",
        )
        await call(f"s3 PutObject {url}", put)
        return url

    def close(self) -> None:
        self.client.close()
