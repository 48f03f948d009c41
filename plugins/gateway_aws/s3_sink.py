"""The ``s3`` usage sink: each batch of usage records one JSON-lines object in S3.

The key is ``<prefix>/<YYYY-MM-DD>/<first-request-id>-<count>.jsonl`` (the day, UTC, of the
batch's first record), lines in the ``usage_dict`` shape (``gateway_usage.encoding``). A batch
retried after a failure has the same first record and count, so it replaces its own object
instead of adding a copy (the ledger retries the batch unchanged at the head of its buffer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import msgspec
from gateway_usage.encoding import usage_dict

from gateway.governance.sinks import AuditRecord, UsageRecord
from gateway_aws.aws import call, key_under, make_client, require_name

_encode = msgspec.json.Encoder().encode


def day_of(at: float) -> str:
    """``YYYY-MM-DD`` (UTC) of Unix time ``at``."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))


class S3UsageSink:
    """Usage records written as JSON-lines objects to ``s3://bucket/prefix/``.

    Args:
        bucket: the bucket.
        prefix: the key prefix (``usage``; empty: the bucket's root).
        endpoint_url: the S3 endpoint (default: boto3's, ``AWS_ENDPOINT_URL`` included).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError: bad options.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "usage",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = require_name("bucket", bucket)
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}")
        self.prefix = prefix
        self.client: Any = make_client("s3", endpoint_url=endpoint_url, region=region)

    def key_of(self, records: Sequence[UsageRecord]) -> str:
        """The object key of a (non-empty) batch."""
        first = records[0]
        return key_under(
            self.prefix, day_of(first.started_at), f"{first.request_id}-{len(records)}.jsonl"
        )

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Put the batch as one object.

        Raises:
            ServiceUnavailableError: S3 could not be reached or refused the object.
        """
        if not records:
            return
        key = self.key_of(records)
        body = b"".join(_encode(usage_dict(r)) + b"\n" for r in records)
        await call(
            f"s3 PutObject s3://{self.bucket}/{key}",
            partial(
                self.client.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/x-ndjson",
            ),
        )

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Nothing: these objects are usage for the roll-up and for analytics over spend; audit
        records belong in a sink that answers ``audit_log`` (``sqlite``, ``redis``), configured
        beside this one."""

    async def aclose(self) -> None:
        """Release the client's connections (every acknowledged batch is already in S3)."""
        self.client.close()
