"""Lambda events in, results out: what the handlers read from each event and the replies Lambda
expects, with aws-lambda-powertools' event data classes (no AWS call here, no job).

- S3 ``ObjectCreated`` -> :class:`S3Object` (bucket and URL-decoded key) per record;
- SQS -> :class:`Message` (id and body) per record; failed ids -> ``batchItemFailures``;
- API Gateway HTTP API (payload v2) -> :class:`HttpRequest`; status and JSON -> the v2 reply;
- EventBridge scheduled event -> its id and time.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEventV2,
    EventBridgeEvent,
    S3Event,
    SQSEvent,
)

ERRORS_SUFFIX = ".errors.json"
"""What the publish-config handler appends to a refused config's key for its errors file."""


@dataclass(frozen=True, slots=True)
class S3Object:
    """One uploaded object: ``bucket`` and ``key`` (URL-decoded, as S3 names it)."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """``s3://bucket/key``: the source named in config errors."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def errors_key(self) -> str:
        """Where the errors of this object go: ``<key>.errors.json`` beside it."""
        return self.key + ERRORS_SUFFIX


def s3_objects(event: Mapping[str, Any]) -> list[S3Object]:
    """The objects an S3 notification names, in order; an ``.errors.json`` object (ours) is
    left out, so writing one never triggers a publication."""
    objects = [
        # S3 URL-encodes keys in notifications (`+` for a space); the data class leaves them so.
        S3Object(record.s3.bucket.name, unquote_plus(record.s3.get_object.key))
        for record in S3Event(dict(event)).records
    ]
    return [o for o in objects if not o.key.endswith(ERRORS_SUFFIX)]


@dataclass(frozen=True, slots=True)
class Message:
    """One SQS message: its ``id`` (what ``batchItemFailures`` names) and ``body``."""

    id: str
    body: str


def sqs_messages(event: Mapping[str, Any]) -> list[Message]:
    """The messages of an SQS batch, in order."""
    return [Message(r.message_id, r.body) for r in SQSEvent(dict(event)).records]


def batch_failures(failed: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """The reply of an SQS handler with ``ReportBatchItemFailures``: only ``failed`` messages
    are redelivered (an empty list: the whole batch is done)."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP API request.

    Attributes:
        method: upper-case (``POST``).
        path: the raw path (``/admin/keys/gk_123``), without the stage.
        query: the query string's parameters (the last of a repeated one).
        headers: lower-case names (as API Gateway v2 delivers them).
        body: the raw body (base64-decoded when API Gateway encoded it).
        request_id: API Gateway's request id.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    request_id: str


def http_request(event: Mapping[str, Any]) -> HttpRequest:
    """The request of an API Gateway HTTP API (payload format 2.0) event."""
    parsed = APIGatewayProxyEventV2(dict(event))
    raw = parsed.body or ""
    body = base64.b64decode(raw) if parsed.is_base64_encoded else raw.encode()
    context = parsed.request_context
    path = parsed.raw_path
    stage = context.stage
    # A named stage prefixes rawPath (`/prod/admin/keys`); the default stage `$default` does not.
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]
    return HttpRequest(
        method=context.http.method.upper(),
        path=path,
        query={k: v.split(",")[-1] for k, v in (parsed.query_string_parameters or {}).items()},
        headers={k.lower(): v for k, v in (parsed.headers or {}).items()},
        body=body,
        request_id=context.request_id,
    )


def http_response(
    status: int, body: bytes, request_id: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) reply holding a JSON ``body`` (and ``headers``: ``allow``)."""
    return {
        "statusCode": status,
        "headers": {
            "content-type": "application/json",
            **(headers or {}),
            "x-request-id": request_id,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


@dataclass(frozen=True, slots=True)
class Tick:
    """A scheduled event: its ``id`` and when it was due (Unix time)."""

    id: str
    due: float


def schedule_tick(event: Mapping[str, Any]) -> Tick:
    """The id and due time of an EventBridge scheduled event (``Scheduled Event``)."""
    parsed = EventBridgeEvent(dict(event))
    due = datetime.fromisoformat(parsed.time.replace("Z", "+00:00")).timestamp()
    return Tick(parsed.get_id, due)
