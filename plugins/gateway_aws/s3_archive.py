"""The ``s3`` record archive: the usage roll-up's raw records, as JSON-lines objects by date,
at ``s3://<bucket>/<prefix>/<day>/<name>.jsonl``."""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway_aws.aws import call, key_under, make_client, require_name


class S3RecordArchive:
    """Objects under ``s3://bucket/prefix/``.

    Args:
        bucket: the bucket.
        prefix: the key prefix (``records``; empty: the bucket's root).
        endpoint_url: the S3 endpoint (default: boto3's, ``AWS_ENDPOINT_URL`` included).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError: bad options.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "records",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = require_name("bucket", bucket)
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}")
        self.prefix = prefix
        self.client: Any = make_client("s3", endpoint_url=endpoint_url, region=region)

    async def put(self, day: str, name: str, data: bytes) -> str:
        """Put ``data`` at ``prefix/day/name.jsonl`` (replacing an object of that name) and
        return its ``s3://`` URL.

        Raises:
            ServiceUnavailableError: S3 could not be reached or refused the object.
        """
        key = key_under(
            self.prefix, require_name("day", day), f"{require_name('name', name)}.jsonl"
        )
        url = f"s3://{self.bucket}/{key}"
        await call(
            f"s3 PutObject {url}",
            partial(
                self.client.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType="application/x-ndjson",
            ),
        )
        return url

    async def aclose(self) -> None:
        self.client.close()
