"""The Lambda handlers' events in and replies out (gateway_aws.lambda_events).

The S3 notification is the one moto's server sends for a real upload (delivered to an SQS queue
and read back); the other events are the shapes AWS documents for HTTP APIs (payload 2.0), SQS
and EventBridge schedules.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from gateway_aws.lambda_events import (
    S3Object,
    batch_failures,
    http_request,
    http_response,
    s3_objects,
    schedule_tick,
    sqs_messages,
)

from tests.support.moto_server import running_moto

# -- S3 ----------------------------------------------------------------------------------------


def test_s3_objects_of_the_notification_moto_sends_for_an_upload() -> None:
    with running_moto() as moto:
        s3: Any = moto.client("s3")
        sqs: Any = moto.client("sqs")
        queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        s3.create_bucket(Bucket="configs")
        s3.put_bucket_notification_configuration(
            Bucket="configs",
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                    }
                ]
            },
        )
        s3.put_object(Bucket="configs", Key="gateway/prod fleet:v2.yaml", Body=b"models: []\n")
        events = []
        for _ in range(20):  # bounded: the notification is queued as the upload completes
            got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
            events += [json.loads(m["Body"]) for m in got.get("Messages", [])]
            if any("Records" in e for e in events):
                break
    (event,) = [e for e in events if "Records" in e]  # moto first sends an s3:TestEvent
    assert s3_objects(event) == [S3Object("configs", "gateway/prod fleet:v2.yaml")]
    (obj,) = s3_objects(event)
    assert obj.uri == "s3://configs/gateway/prod fleet:v2.yaml"
    assert obj.errors_key == "gateway/prod fleet:v2.yaml.errors.json"


def _s3_record(key: str) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-01T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "configs", "arn": "arn:aws:s3:::configs"},
            "object": {"key": key, "size": 12, "eTag": "0123", "sequencer": "0A1B"},
        },
    }


def test_s3_keys_are_url_decoded_and_our_errors_files_are_left_out() -> None:
    event = {
        "Records": [
            _s3_record("gateway/a+b%3Dc.yaml"),
            _s3_record("gateway/a+b%3Dc.yaml.errors.json"),
            _s3_record("gateway/second.yaml"),
        ]
    }
    assert s3_objects(event) == [
        S3Object("configs", "gateway/a b=c.yaml"),
        S3Object("configs", "gateway/second.yaml"),
    ]


# -- SQS ---------------------------------------------------------------------------------------


def _sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1796126400000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1796126400001",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gateway-usage-test",
        "awsRegion": "us-east-1",
    }


def test_sqs_messages_keep_ids_and_bodies_in_order() -> None:
    lines = '{"request_id": "r1"}\n{"request_id": "r2"}\n'
    event = {"Records": [_sqs_record("m-1", lines), _sqs_record("m-2", "not json")]}
    messages = sqs_messages(event)
    assert [(m.id, m.body) for m in messages] == [("m-1", lines), ("m-2", "not json")]


def test_batch_failures_is_the_partial_batch_reply() -> None:
    assert batch_failures(["m-2", "m-5"]) == {
        "batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-5"}]
    }
    assert batch_failures([]) == {"batchItemFailures": []}


# -- HTTP API ----------------------------------------------------------------------------------


def _http_event(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    query: str = "",
    headers: dict[str, str] | None = None,
    stage: str = "$default",
    encoded: bool = True,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "ANY /admin/keys/{proxy+}",
        "rawPath": path if stage == "$default" else f"/{stage}{path}",
        "rawQueryString": query,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api1",
            "domainName": "api1.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "api1",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "curl/8",
            },
            "requestId": "req-abc",
            "routeKey": "ANY /admin/keys/{proxy+}",
            "stage": stage,
            "time": "01/Dec/2026:12:00:00 +0000",
            "timeEpoch": 1796126400000,
        },
        "isBase64Encoded": encoded,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if body:
        event["body"] = base64.b64encode(body).decode() if encoded else body.decode()
    return event


def test_http_request_decodes_a_base64_body_and_lowers_header_names() -> None:
    event = _http_event(
        "post", "/admin/keys", body=b'{"tenant": "acme"}', headers={"Authorization": "Bearer k"}
    )
    request = http_request(event)
    assert request.method == "POST"
    assert request.path == "/admin/keys"
    assert request.body == b'{"tenant": "acme"}'
    assert request.headers["authorization"] == "Bearer k"
    assert request.request_id == "req-abc"


def test_http_request_of_a_named_stage_and_a_query() -> None:
    event = _http_event(
        "GET", "/admin/keys", query="tenant=acme", stage="prod", body=b"{}", encoded=False
    )
    request = http_request(event)
    assert request.path == "/admin/keys"
    assert request.query == {"tenant": "acme"}
    assert request.body == b"{}"


def test_http_response_is_the_v2_reply() -> None:
    assert http_response(201, b'{"id": "k"}', "req-abc") == {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-request-id": "req-abc"},
        "body": '{"id": "k"}',
        "isBase64Encoded": False,
    }
    refused = http_response(405, b"{}", "req-abc", {"allow": "GET, POST"})
    assert refused["headers"] == {
        "content-type": "application/json",
        "allow": "GET, POST",
        "x-request-id": "req-abc",
    }


# -- EventBridge schedule ----------------------------------------------------------------------


def test_schedule_tick_of_a_scheduled_event() -> None:
    event = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/health-sweep"],
        "detail": {},
    }
    tick = schedule_tick(event)
    assert tick.id == "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"
    assert tick.due == datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
