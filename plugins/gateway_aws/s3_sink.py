"""The ``s3`` usage sink: each batch of usage records one JSON-lines object in S3.

The key is ``<prefix>/<YYYY-MM-DD>/<first-request-id>-<count>.jsonl`` (the day, UTC, of the
batch's first record), lines in the ``usage_dict`` shape (``gateway_usage.encoding``). A batch
retried after a failure has the same first record and count, so it replaces its own object
instead of adding a copy (the ledger retries the batch unchanged at the head of its buffer).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from gateway_usage.encoding import usage_dict

from gateway.control.totals import day_of
from gateway.governance.sinks import AuditRecord, UsageRecord
from gateway_aws.s3_objects import JsonLinesObjects

_encode = msgspec.json.Encoder().encode


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
        self.objects = JsonLinesObjects(bucket, prefix, endpoint_url, region)

    def key_of(self, records: Sequence[UsageRecord]) -> str:
        """The object key of a (non-empty) batch."""
        first = records[0]
        return self.objects.key(
            day_of(first.started_at), f"{first.request_id}-{len(records)}.jsonl"
        )

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Put the batch as one object.

        Raises:
            ServiceUnavailableError: S3 could not be reached or refused the object.
        """
        if records:
            body = b"".join(_encode(usage_dict(r)) + b"\n" for r in records)
            await self.objects.put(self.key_of(records), body)

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Nothing: these objects are usage for the roll-up and for analytics over spend; audit
        records belong in a sink that answers ``audit_log`` (``sqlite``, ``redis``), configured
        beside this one."""

    async def aclose(self) -> None:
        """Release the client's connections (every acknowledged batch is already in S3)."""
        self.objects.close()
