"""The control plane end to end, as AWS would run it: the Lambda handlers against moto's server
(S3, SQS, DynamoDB, EventBridge) and a real redis-server (the shared store and the key store),
with a gateway replica served for real following the store.

- A config uploaded to S3: the publish-config handler publishes it and the replica serves the
  new model within two seconds; a broken upload changes nothing and its errors file names the
  field.
- Gateway traffic through its ``sqs`` usage sink, then the usage-rollup handler on the queue's
  messages: the DynamoDB totals equal the gateway's own usage records exactly, also after the
  batch is delivered again and with a malformed message in it; a crossed budget threshold is
  one EventBridge event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from gateway_aws import handlers
from gateway_aws.dynamodb_ledger import create_table

from tests.support.lambda_context import lambda_context
from tests.support.moto_server import Moto, running_moto
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import (
    Sim,
    eventually,
    http_json,
    running_gateway,
    running_sim,
)

pytestmark = pytest.mark.slow

MASTER = "sk-master-control-plane"
PEPPER = "pepper-of-the-control-plane-tests"
CONFIGS = "configs"


def context() -> LambdaContext:
    return lambda_context()


@dataclass
class Cloud:
    moto: Moto
    redis: RedisServer
    sim: Sim
    s3: Any
    sqs: Any
    usage_queue: str
    events_queue: str


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with running_redis() as redis, running_moto(monkeypatch) as moto, running_sim() as sim:
        for name, value in {
            "REDIS_URL": redis.url,
            "GATEWAY_KEY_PEPPER": PEPPER,
            "GATEWAY_MASTER_KEY": MASTER,
            "LEDGER_TABLE": "ledger",
            "ARCHIVE_BUCKET": "archive",
            "EVENT_BUS": "default",
            "SIM_URL": sim.url,
        }.items():
            monkeypatch.setenv(name, value)
        s3: Any = moto.client("s3")
        sqs: Any = moto.client("sqs")
        events: Any = moto.client("events")
        s3.create_bucket(Bucket=CONFIGS)
        s3.create_bucket(Bucket="archive")
        create_table(moto.client("dynamodb"), "ledger")
        usage_queue = sqs.create_queue(QueueName="usage")["QueueUrl"]
        # Budget events are read back through a rule that sends them to a queue.
        events_queue = sqs.create_queue(QueueName="budget-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=events_queue, AttributeNames=["QueueArn"])
        events.put_rule(Name="budgets", EventPattern=json.dumps({"source": ["gateway.budgets"]}))
        events.put_targets(
            Rule="budgets", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        yield Cloud(moto, redis, sim, s3, sqs, usage_queue, events_queue)


def published_config(cloud: Cloud, *models: str) -> str:
    """The fleet's config: ``models`` on the simulator, keys in Redis, usage to the queue."""
    lines = [
        "auth: {master_key: '${GATEWAY_MASTER_KEY}'}",
        "governance:",
        "  key_store: {backend: redis, options: {url: '${REDIS_URL}'}}",
        "  usage:",
        f"    sinks: [{{backend: sqs, options: {{queue_url: '{cloud.usage_queue}'}}}}]",
        "    flush_interval_s: 0.05",
        "models:",
    ]
    for name in models:
        lines += [
            f"  - name: {name}",
            f"    backends: [{{url: '${{SIM_URL}}', model: sim-model, name: {name}-0}}]",
        ]
    return "\n".join(lines) + "\n"


def s3_event(key: str) -> dict[str, Any]:
    """The notification S3 sends for an upload (the fields the handler reads)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": CONFIGS}, "object": {"key": key, "size": 1}},
            }
        ]
    }


def upload(cloud: Cloud, key: str, text: str) -> dict[str, Any]:
    cloud.s3.put_object(Bucket=CONFIGS, Key=key, Body=text.encode())
    return handlers.publish_config(s3_event(key), context())


def replica(cloud: Cloud) -> dict[str, Any]:
    """A replica's own file: the fleet's key store and usage queue (what needs a restart to
    change), and the shared store it follows for the rest."""
    return {
        "auth": {"master_key": MASTER},
        "governance": {
            "key_store": {"backend": "redis", "options": {"url": cloud.redis.url}},
            "usage": {
                "sinks": [{"backend": "sqs", "options": {"queue_url": cloud.usage_queue}}],
                "flush_interval_s": 0.05,
            },
        },
        "models": [
            {
                "name": "chat",
                "backends": [
                    {
                        "url": cloud.sim.url,
                        "model": "sim-model",
                        "name": "chat-0",
                        "price": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0},
                    }
                ],
            }
        ],
        "control": {
            "store": {"backend": "redis", "options": {"url": cloud.redis.url}},
            "poll_interval_s": 0.2,
        },
    }


def models_of(url: str) -> list[str]:
    _, _, body = http_json("GET", f"{url}/v1/models", headers={"authorization": f"Bearer {MASTER}"})
    return [m["id"] for m in body["data"]]


def test_an_uploaded_config_is_served_within_two_seconds_and_a_broken_one_changes_nothing(
    cloud: Cloud,
) -> None:
    with running_gateway(replica(cloud)) as gw:
        assert models_of(gw.url) == ["chat"]
        started = time.monotonic()
        result = upload(cloud, "gateway/fleet.yaml", published_config(cloud, "chat", "chat-b"))
        assert result["published"][0]["version"] == 1
        assert eventually(lambda: "chat-b" in models_of(gw.url), timeout_s=2.0)
        assert time.monotonic() - started < 2.5  # the upload, the handler, the replica's poll

        broken = published_config(cloud, "chat", "chat-b", "chat-c").replace(
            "  - name: chat-c\n", "  - name: chat-c\n    bogus: 1\n"
        )
        refused = upload(cloud, "gateway/broken.yaml", broken)
        assert refused["refused"]
        errors = json.loads(
            cloud.s3.get_object(Bucket=CONFIGS, Key="gateway/broken.yaml.errors.json")[
                "Body"
            ].read()
        )
        assert "models[2].bogus" in json.dumps(errors)
        time.sleep(0.5)  # the replica polls every 0.2 s: it has seen that nothing changed
        assert models_of(gw.url) == ["chat", "chat-b"]


def admin(cloud: Cloud, method: str, path: str, body: Any) -> dict[str, Any]:
    """The keys handler, called as API Gateway's HTTP API calls it."""
    event = {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {MASTER}"},
        "requestContext": {
            "http": {"method": method, "path": path},
            "requestId": "api-1",
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    return handlers.keys(event, context())


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:usage",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def drain(cloud: Cloud, queue: str, want: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    for _ in range(30):  # bounded
        batch = cloud.sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        got += batch
        for m in batch:
            cloud.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        if len(got) >= want and not batch:
            break
        if not batch:
            time.sleep(0.1)
    return got


def test_usage_rolls_up_exactly_once_and_a_crossed_budget_is_one_event(cloud: Cloud) -> None:
    text = published_config(cloud, "chat").replace(
        "name: chat-0}]",
        "name: chat-0, price: {input_per_mtok: 1000.0, output_per_mtok: 1000.0}}]",
    )
    published = upload(cloud, "gateway/fleet.yaml", text)
    assert published["published"], published
    keys = admin(cloud, "POST", "/admin/keys", {"name": "team"})
    assert keys["statusCode"] == 201, keys
    key = json.loads(keys["body"])
    with running_gateway(replica(cloud)) as gw:
        assert eventually(lambda: models_of(gw.url) == ["chat"])
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0)
        usage = []
        for i in range(6):
            answer = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": f"question {i}"}]
            )
            assert answer.usage is not None
            usage.append(answer.usage)
        client.close()
    # The replica flushed its usage at shutdown: every record is on the queue.
    messages = drain(cloud, cloud.usage_queue, 1)
    records = [json.loads(line) for m in messages for line in m["Body"].splitlines() if line]
    records = [r for r in records if r["key_id"] == key["id"]]
    assert len(records) == 6
    # A day budget the traffic spent 95% of: the 80% and 90% thresholds are crossed, not 100%.
    spent = sum(r["cost_nanos"] for r in records)
    assert spent > 0
    budget = {"usd": spent / 0.95 / 1e9, "window": "day"}
    patched = admin(cloud, "PATCH", f"/admin/keys/{key['id']}", {"budgets": [budget]})
    assert patched["statusCode"] == 200, patched
    garbage = {**messages[0], "MessageId": "garbage", "Body": "not a usage record"}
    first = handlers.usage_rollup(sqs_event([*messages, garbage]), context())
    assert first == {"batchItemFailures": [{"itemIdentifier": "garbage"}]}
    again = handlers.usage_rollup(sqs_event(messages), context())  # a redelivery
    assert again == {"batchItemFailures": []}

    table: Any = cloud.moto.client("dynamodb")
    day = time.strftime("%Y-%m-%d", time.gmtime(records[0]["started_at"]))
    item = table.get_item(
        TableName="ledger", Key={"pk": {"S": f"key:{key['id']}"}, "sk": {"S": day}}
    )["Item"]
    assert int(item["cost_nanos"]["N"]) == sum(r["cost_nanos"] for r in records)
    assert int(item["prompt_tokens"]["N"]) == sum(u.prompt_tokens for u in usage)
    assert int(item["completion_tokens"]["N"]) == sum(u.completion_tokens for u in usage)
    assert int(item["requests"]["N"]) == 6

    events = drain(cloud, cloud.events_queue, 2)
    details = [json.loads(e["Body"])["detail"] for e in events]
    assert sorted(d["threshold"] for d in details) == [0.8, 0.9]  # each exactly once
    assert {d["scope"] for d in details} == {f"key:{key['id']}"}
