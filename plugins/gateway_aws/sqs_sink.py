"""The ``sqs`` usage sink: usage records sent to an SQS queue, which the usage-rollup function
consumes.

A message body is JSON lines, one record per line in the ``usage_dict`` shape
(``gateway_usage.encoding``), so one message carries many records and one ``SendMessageBatch``
carries up to ``max_batch`` messages of at most ``max_bytes`` together (SQS's limits: 10 entries,
256 KiB, or 1 MiB where the queue allows it). The gateway's ledger already calls
:meth:`SqsUsageSink.write` off the request path, in batches, and retries a batch that raised.

Partial failures: when some entries of a ``SendMessageBatch`` fail, :meth:`SqsUsageSink.write`
raises (so the ledger retries the batch) and remembers the request ids that *were* sent; the
retried batch skips those, so only the failed records are sent again. A record can still arrive
twice (a reply lost after SQS stored the message; standard queues deliver at least once):
the roll-up is idempotent by request id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
from gateway_usage.encoding import usage_dict

from gateway.errors import ServiceUnavailableError
from gateway.governance.sinks import AuditRecord, UsageRecord
from gateway_aws.aws import call, make_client, require_count, require_name

_encode = msgspec.json.Encoder().encode

SQS_MAX_ENTRIES = 10


@dataclass(slots=True)
class Message:
    """One SQS message: its records and its body (their JSON lines)."""

    records: list[UsageRecord] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


def pack(records: Sequence[UsageRecord], *, max_batch: int, max_bytes: int) -> list[list[Message]]:
    """Records as messages grouped into calls: each call at most ``max_batch`` messages whose
    bodies total at most ``max_bytes`` (each message at most ``max_bytes // max_batch``, so a
    full call fits); a record longer than that travels alone."""
    per_message = max_bytes // max_batch
    messages: list[Message] = []
    for rec in records:
        line = _encode(usage_dict(rec)) + b"\n"
        if not messages or len(messages[-1].body) + len(line) > per_message:
            messages.append(Message())
        messages[-1].records.append(rec)
        messages[-1].body += line
    calls: list[list[Message]] = []
    call_bytes = 0
    for message in messages:
        size = len(message.body)
        if calls and len(calls[-1]) < max_batch and call_bytes + size <= max_bytes:
            calls[-1].append(message)
            call_bytes += size
        else:
            calls.append([message])
            call_bytes = size
    return calls


class SqsUsageSink:
    """Usage records sent to the queue ``queue_url``.

    Args:
        queue_url: the queue's URL (``https://sqs.<region>.amazonaws.com/<account>/<name>``).
        max_batch: messages per ``SendMessageBatch`` (1 to 10).
        max_bytes: the bodies' bytes per ``SendMessageBatch`` (262144: SQS's classic limit).
        endpoint_url: the SQS endpoint (default: boto3's, ``AWS_ENDPOINT_URL`` included).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        queue_url: str,
        max_batch: int = SQS_MAX_ENTRIES,
        max_bytes: int = 262_144,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.queue_url = require_name("queue_url", queue_url)
        self.max_batch = require_count("max_batch", max_batch, most=SQS_MAX_ENTRIES)
        self.max_bytes = require_count("max_bytes", max_bytes)
        self.client: Any = make_client("sqs", endpoint_url=endpoint_url, region=region)
        # Request ids sent by a write that then raised: its retry skips them.
        self._sent: set[str] = set()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Send ``records`` (those not already sent by a failed attempt of this batch).

        Raises:
            ServiceUnavailableError: SQS could not be reached, or some entries failed (their
                codes named); the records of the entries that succeeded are not sent again.
        """
        todo = [r for r in records if r.request_id not in self._sent]
        failures: list[str] = []
        for messages in pack(todo, max_batch=self.max_batch, max_bytes=self.max_bytes):
            entries = [
                {"Id": str(i), "MessageBody": m.body.decode()} for i, m in enumerate(messages)
            ]
            reply = await call(
                f"sqs SendMessageBatch to {self.queue_url}",
                partial(self.client.send_message_batch, QueueUrl=self.queue_url, Entries=entries),
            )
            for ok in reply.get("Successful", []):
                self._sent.update(r.request_id for r in messages[int(ok["Id"])].records)
            failures.extend(
                f"{f.get('Code')}: {f.get('Message', '')}" for f in reply.get("Failed", [])
            )
        if failures:
            raise ServiceUnavailableError(
                f"sqs SendMessageBatch to {self.queue_url}: {len(failures)} message(s) failed "
                f"({'; '.join(sorted(set(failures)))}); they are retried"
            )
        self._sent.clear()

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Nothing: the queue feeds the usage roll-up, which folds spend and tokens; audit
        records belong in a sink that answers ``audit_log`` (``sqlite``, ``redis``), configured
        beside this one."""

    async def aclose(self) -> None:
        """Release the client's connections (every acknowledged batch is already in SQS)."""
        self.client.close()
