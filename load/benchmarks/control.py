"""The control plane: usage roll-up throughput, and the time from a config upload to a replica
serving it.

- **Roll-up**: the usage-rollup Lambda handler on SQS events of 10 messages of 100 records each
  (1,000 records per invocation, fresh request ids, 4 tenants, 20 keys), in this process,
  against moto's server (DynamoDB ledger on a fresh table, S3 archive, EventBridge) in its own
  process: wall time, and the function's own CPU time (what it costs beside moto); the
  transactions and items the fold writes; the same records through the job with the local
  ``sqlite`` ledger and ``directory`` archive, in the same run, as the reference.
- **Config to serving**: a gateway replica (one worker, a subprocess) follows a Redis control
  store at its default poll interval (0.5 s); each trial uploads a config adding a model to S3
  (moto), invokes the publish-config handler on the S3 event, and polls the replica's
  ``/v1/models`` every 10 ms until the model is listed.

Usage: bash load/benchmarks/control.sh [--invocations 5] [--trials 10] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import msgspec
from aws_lambda_powertools.utilities.typing import LambdaContext
from common import format_table, free_port, gateway_process, start_redis, stop, wait_until_up

from gateway.governance.sinks import UsageRecord
from gateway.governance.usage_json import usage_dict

RECORDS_PER_MESSAGE = 100
MESSAGES = 10
MASTER = "sk-bench-control"


def records(count: int) -> list[UsageRecord]:
    now = time.time()
    return [
        UsageRecord(
            "chat",
            "chat-0",
            40 + i % 7,
            20 + i % 5,
            request_id=f"bench-{uuid.uuid4().hex}",
            key_id=f"k{i % 20:02d}",
            tenant=f"team-{i % 4}",
            cost_nanos=12_345 + i,
            status=200,
            started_at=now,
            finished_at=now,
        )
        for i in range(count)
    ]


def sqs_event(batch: list[UsageRecord]) -> dict[str, Any]:
    messages = []
    for m in range(MESSAGES):
        chunk = batch[m * RECORDS_PER_MESSAGE : (m + 1) * RECORDS_PER_MESSAGE]
        body = "\n".join(msgspec.json.encode(usage_dict(r)).decode() for r in chunk)
        messages.append(
            {
                "messageId": f"m{m}-{uuid.uuid4().hex[:8]}",
                "receiptHandle": "h",
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:usage",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": messages}


def lambda_context() -> LambdaContext:
    """What Lambda passes as the context (the fields powertools' Logger reads)."""
    made = LambdaContext()
    made._aws_request_id = "bench"
    made._function_name = "bench"
    made._function_version = "$LATEST"
    made._memory_limit_in_mb = 1024
    made._invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    return made


def bench_rollup(invocations: int, moto_url: str) -> dict[str, Any]:
    from gateway_aws import handlers
    from gateway_aws.dynamodb_ledger import chunks, create_table
    from gateway_control.directory_archive import DirectoryArchive
    from gateway_control.sqlite_ledger import SqliteLedger

    from gateway.control.rollup import NoBudgets, RollupItem, usage_rollup

    dynamodb = boto3.client("dynamodb", endpoint_url=moto_url)
    boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket="archive")
    per = MESSAGES * RECORDS_PER_MESSAGE
    create_table(dynamodb, "ledger")
    warm = {"Records": sqs_event(records(per))["Records"][:1]}
    handlers.usage_rollup(warm, lambda_context())  # warm: imports, clients
    aws: list[float] = []
    aws_cpu: list[float] = []  # the function's own CPU (moto runs in its own process)
    for _ in range(invocations):
        # A fresh table for each invocation: moto's TransactWriteItems deep-copies the whole
        # table for each item it writes (its rollback copy), so against moto a fold's cost
        # grows with every marker already stored; DynamoDB's does not.
        dynamodb.delete_table(TableName="ledger")
        create_table(dynamodb, "ledger")
        event = sqs_event(records(per))
        started, cpu = time.perf_counter(), time.process_time()
        out = handlers.usage_rollup(event, lambda_context())
        aws.append(time.perf_counter() - started)
        aws_cpu.append(time.process_time() - cpu)
        assert out == {"batchItemFailures": []}, out
    plan = chunks(records(per))

    work = Path(tempfile.mkdtemp(prefix="gateway-rollup-"))
    ledger = SqliteLedger(str(work / "ledger.sqlite3"))
    archive = DirectoryArchive(str(work / "archive"))

    async def local_once(batch: list[UsageRecord]) -> float:
        event = sqs_event(batch)
        items = [RollupItem(m["messageId"], m["body"]) for m in event["Records"]]
        started = time.perf_counter()
        await usage_rollup(
            items,
            ledger=ledger,
            archive=archive,
            budgets=NoBudgets(),
            publishers=[],
            now=time.time(),
        )
        return time.perf_counter() - started

    async def local_all() -> list[float]:
        await local_once(records(per))
        return [await local_once(records(per)) for _ in range(invocations)]

    local = asyncio.run(local_all())
    return {
        "records_per_invocation": per,
        "transactions": len(plan),
        "items_per_record": sum(len(c.records) + len(c.keys) for c in plan) / per,
        "aws_p50_s": statistics.median(aws),
        "aws_records_per_s": per / statistics.median(aws),
        "function_cpu_s": statistics.median(aws_cpu),
        "records_per_cpu_s": per / statistics.median(aws_cpu),
        "local_p50_s": statistics.median(local),
        "local_records_per_s": per / statistics.median(local),
    }


def config_text(sim_url: str, redis_url: str, models: list[str]) -> str:
    data = {
        "auth": {"master_key": MASTER},
        "models": [
            {"name": m, "backends": [{"url": sim_url, "model": "sim-model"}]} for m in models
        ],
        "control": {"store": {"backend": "redis", "options": {"url": redis_url}}},
    }
    return json.dumps(data)


def listed(url: str) -> list[str]:
    request = urllib.request.Request(
        f"{url}/v1/models", headers={"authorization": f"Bearer {MASTER}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return [m["id"] for m in json.loads(resp.read())["data"]]


def bench_publish(trials: int, moto_url: str, redis_url: str) -> dict[str, Any]:
    from gateway_aws import handlers

    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="configs")
    sim_url = "http://127.0.0.1:9"  # never called: the replica only lists its models
    os.environ["REDIS_URL"] = redis_url
    models = ["chat"]
    timings = []
    with gateway_process(json.loads(config_text(sim_url, redis_url, models)), core=0) as (gw, _):
        for trial in range(trials):
            models.append(f"model-{trial}")
            key = f"gateway/fleet-{trial}.yaml"
            started = time.perf_counter()
            s3.put_object(Bucket="configs", Key=key, Body=config_text(sim_url, redis_url, models))
            event = {
                "Records": [
                    {
                        "eventSource": "aws:s3",
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "configs"}, "object": {"key": key, "size": 1}},
                    }
                ]
            }
            out = handlers.publish_config(event, lambda_context())
            assert out["published"], out
            handled = time.perf_counter() - started
            deadline = time.monotonic() + 10
            while models[-1] not in listed(gw) and time.monotonic() < deadline:
                time.sleep(0.01)
            timings.append((handled, time.perf_counter() - started))
    return {
        "trials": trials,
        "handler_p50_s": statistics.median(t[0] for t in timings),
        "upload_to_serving_p50_s": statistics.median(t[1] for t in timings),
        "upload_to_serving_max_s": max(t[1] for t in timings),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=5)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", default="load/results/control.json")
    args = parser.parse_args()
    # moto's server as its own process (this directory's `responses.py` would shadow the
    # `responses` package moto imports, and the load is the handlers', not moto's).
    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    moto_url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{moto_url}/moto-api/")
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LEDGER_TABLE": "ledger",
        "ARCHIVE_BUCKET": "archive",
        "GATEWAY_KEY_PEPPER": "pepper-of-the-control-benchmark",
        "GATEWAY_MASTER_KEY": MASTER,
    }.items():
        os.environ[name] = value
    redis, redis_port = start_redis(1)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    os.environ["REDIS_URL"] = redis_url
    try:
        rollup = bench_rollup(args.invocations, moto_url)
        publish = bench_publish(args.trials, moto_url, redis_url)
    finally:
        stop(redis, moto)
    print(format_table([rollup]))
    print(format_table([publish]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rollup": rollup, "publish": publish}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
