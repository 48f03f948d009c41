"""The publish-config and keys Lambda handlers, invoked as Lambda would: the S3 notification
moto's server sends for a real upload, an HTTP API (payload 2.0) request; against moto (S3)
through ``AWS_ENDPOINT_URL`` and a real redis-server (the shared store and the key store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from gateway_aws import handlers
from gateway_control.redis_store import RedisControlStore

from gateway.control.base import ConfigVersion
from tests.support.lambda_context import lambda_context
from tests.support.moto_server import Moto, running_moto
from tests.support.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.slow

MASTER = "sk-master-lambda-handlers"
BUCKET = "configs"

GOOD = """
auth:
  master_key: ${GATEWAY_MASTER_KEY}
governance:
  key_store:
    backend: redis
    options: {url: "${REDIS_URL}"}
models:
  - name: chat
    backends:
      - name: b1
        provider: vllm
        url: http://127.0.0.1:9/v1
        model: m
"""

BROKEN = GOOD.replace("provider: vllm", "provider: nope")


def context() -> LambdaContext:
    return lambda_context()


@dataclass
class Cloud:
    moto: Moto
    redis: RedisServer
    s3: Any
    sqs: Any
    queue: str


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with running_redis() as redis, running_moto(monkeypatch) as moto:
        monkeypatch.setenv("REDIS_URL", redis.url)
        monkeypatch.setenv("GATEWAY_KEY_PEPPER", "pepper-of-the-lambda-handler-tests")
        monkeypatch.setenv("GATEWAY_MASTER_KEY", MASTER)
        s3: Any = moto.client("s3")
        sqs: Any = moto.client("sqs")
        # The bucket notifies a queue, so the tests hand the handler moto's own events.
        queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                        # serverless.yml's rules: the handler's errors files trigger nothing
                        "Filter": {
                            "Key": {
                                "FilterRules": [
                                    {"Name": "prefix", "Value": "gateway/"},
                                    {"Name": "suffix", "Value": ".yaml"},
                                ]
                            }
                        },
                    }
                ]
            },
        )
        yield Cloud(moto, redis, s3, sqs, queue)


def upload(cloud: Cloud, key: str, text: str) -> dict[str, Any]:
    """Put ``text`` at ``key`` and return the S3 notification moto sent for it."""
    cloud.s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    for _ in range(20):  # bounded: moto queues the notification as the upload completes
        got = cloud.sqs.receive_message(QueueUrl=cloud.queue, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            cloud.sqs.delete_message(QueueUrl=cloud.queue, ReceiptHandle=message["ReceiptHandle"])
            event: dict[str, Any] = json.loads(message["Body"])
            if "Records" in event:  # not moto's s3:TestEvent
                return event
    raise AssertionError("no S3 notification")


def current(cloud: Cloud) -> ConfigVersion | None:
    async def read() -> ConfigVersion | None:
        store = RedisControlStore(url=cloud.redis.url)
        try:
            return await store.current_config()
        finally:
            await store.aclose()

    return asyncio.run(read())


def errors_file(cloud: Cloud, key: str) -> dict[str, Any] | None:
    listed = cloud.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{key}.errors.json")
    if not listed.get("Contents"):
        return None
    body = cloud.s3.get_object(Bucket=BUCKET, Key=f"{key}.errors.json")["Body"].read()
    found: dict[str, Any] = json.loads(body)
    return found


def test_publish_config_refuses_a_broken_config_then_publishes_the_fixed_one(
    cloud: Cloud,
) -> None:
    key = "gateway/fleet.yaml"
    out = handlers.publish_config(upload(cloud, key, BROKEN), context())
    assert out["published"] == []
    (refused,) = out["refused"]
    assert refused["source"] == f"s3://{BUCKET}/{key}"
    report = errors_file(cloud, key)
    assert report is not None
    (error,) = report["errors"]
    assert f"s3://{BUCKET}/{key}" in error
    assert "models[0].backends[0].provider" in error
    assert current(cloud) is None

    out = handlers.publish_config(upload(cloud, key, GOOD), context())
    assert out == {"published": [{"source": f"s3://{BUCKET}/{key}", "version": 1}], "refused": []}
    version = current(cloud)
    assert version is not None
    assert (version.version, version.text) == (1, GOOD)
    assert errors_file(cloud, key) is None  # the stale errors went with the fix

    # A broken upload later changes nothing: the last good version keeps serving.
    handlers.publish_config(upload(cloud, key, BROKEN), context())
    after = current(cloud)
    assert after is not None
    assert after.version == 1
    assert errors_file(cloud, key) is not None


def keys_event(method: str, path: str, body: Any = None, key: str = MASTER) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "ANY /admin/keys/{proxy+}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {key}", "content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1"},
            "requestId": "api-request-1",
            "stage": "$default",
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def test_keys_answers_503_before_a_config_is_published(cloud: Cloud) -> None:
    reply = handlers.keys(keys_event("GET", "/admin/keys"), context())
    assert reply["statusCode"] == 503
    assert "no config published" in json.loads(reply["body"])["error"]["message"]


def test_keys_manages_tenants_and_keys_in_the_published_key_store(cloud: Cloud) -> None:
    handlers.publish_config(upload(cloud, "gateway/fleet.yaml", GOOD), context())
    tenant = handlers.keys(keys_event("POST", "/admin/tenants", {"name": "acme"}), context())
    assert tenant["statusCode"] == 201
    created = handlers.keys(
        keys_event("POST", "/admin/keys", {"tenant": "acme", "models": ["chat"]}), context()
    )
    assert created["statusCode"] == 201
    assert created["headers"]["x-request-id"] == "api-request-1"
    new = json.loads(created["body"])
    shown = handlers.keys(keys_event("GET", f"/admin/keys/{new['id']}"), context())
    assert (shown["statusCode"], json.loads(shown["body"])["status"]) == (200, "active")

    refused = handlers.keys(keys_event("GET", "/admin/keys", key="sk-wrong"), context())
    assert refused["statusCode"] == 401
    unknown = handlers.keys(keys_event("POST", "/admin/keys", {"models": ["nope"]}), context())
    assert unknown["statusCode"] == 400
    assert json.loads(unknown["body"])["error"]["param"] == "models"
    wrong = handlers.keys(keys_event("PUT", "/admin/keys"), context())
    assert wrong["statusCode"] == 405
    assert wrong["headers"]["allow"] == "POST, GET"
