"""The ``s3`` record archive: the usage roll-up's raw records, as JSON-lines objects by date,
at ``s3://<bucket>/<prefix>/<day>/<name>.jsonl``."""

from __future__ import annotations

from gateway_aws.aws import require_name
from gateway_aws.s3_objects import JsonLinesObjects


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
        self.objects = JsonLinesObjects(bucket, prefix, endpoint_url, region)

    async def put(self, day: str, name: str, data: bytes) -> str:
        """Put ``data`` at ``prefix/day/name.jsonl`` (replacing an object of that name) and
        return its ``s3://`` URL.

        Raises:
            ServiceUnavailableError: S3 could not be reached or refused the object.
        """
        key = self.objects.key(require_name("day", day), f"{require_name('name', name)}.jsonl")
        return await self.objects.put(key, data)

    async def aclose(self) -> None:
        self.objects.close()
