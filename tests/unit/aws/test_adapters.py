"""The AWS adapters against moto's server: what each writes is read back with plain boto3."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import anyio
import pytest
from gateway_aws import (
    register_budget_publishers,
    register_fleet_scalers,
    register_metric_publishers,
    register_record_archives,
    register_usage_ledgers,
    register_usage_sinks,
)
from gateway_aws.autoscaling import AutoScalingFleetScaler
from gateway_aws.cloudwatch import CloudWatchMetricPublisher
from gateway_aws.dynamodb_ledger import DynamoDbUsageLedger, create_table
from gateway_aws.eventbridge import DETAIL_TYPE, EventBridgeBudgetPublisher
from gateway_aws.s3_archive import S3RecordArchive
from gateway_aws.s3_sink import S3UsageSink
from gateway_aws.sqs_sink import SqsUsageSink

from gateway.control.base import BudgetCrossing, FoldResult, LedgerTotal, MetricPoint
from gateway.errors import ServiceUnavailableError
from gateway.governance.sinks import UsageRecord
from tests.support.moto_server import Moto, create_autoscaling_group

pytestmark = pytest.mark.anyio

DAY1 = 1_764_547_200.0  # 2025-12-01T00:00:00Z
DAY2 = DAY1 + 86_400


def usage(
    i: int,
    *,
    tenant: str | None = "acme",
    key: str | None = "k1",
    model: str = "chat",
    at: float = DAY1,
    cost: int = 1_234_567,
) -> UsageRecord:
    return UsageRecord(
        model,
        f"{model}-0",
        100 + i,
        10 + i,
        3,
        request_id=f"r{i}",
        key_id=key,
        tenant=tenant,
        cost_nanos=cost + i,
        status=200,
        started_at=at + i,
        finished_at=at + i + 0.5,
        endpoint="chat",
    )


def parse_lines(body: str | bytes) -> list[UsageRecord]:
    text = body.decode() if isinstance(body, bytes) else body
    return [UsageRecord(**json.loads(line)) for line in text.splitlines()]


def receive_all(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message in the queue (bounded: stops at the first empty receive)."""
    messages: list[dict[str, Any]] = []
    for _ in range(100):
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = reply.get("Messages", [])
        if not batch:
            break
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return messages


def test_the_plugin_registers_every_adapter() -> None:
    found: dict[str, list[str]] = {}

    def recorder(hook_name: str) -> Any:
        return lambda name, _factory: found.setdefault(hook_name, []).append(name)

    for hook in (
        register_budget_publishers,
        register_fleet_scalers,
        register_metric_publishers,
        register_record_archives,
        register_usage_ledgers,
        register_usage_sinks,
    ):
        hook(recorder(hook.__name__))
    assert found == {
        "register_budget_publishers": ["eventbridge"],
        "register_fleet_scalers": ["aws_autoscaling"],
        "register_metric_publishers": ["cloudwatch"],
        "register_record_archives": ["s3"],
        "register_usage_ledgers": ["dynamodb"],
        "register_usage_sinks": ["sqs", "s3"],
    }


# -- sqs usage sink ----------------------------------------------------------------------------


async def test_sqs_sink_messages_parse_back_to_the_records(moto: Moto) -> None:
    sqs: Any = moto.client("sqs")
    url = sqs.create_queue(QueueName="usage-roundtrip")["QueueUrl"]
    sink = SqsUsageSink(queue_url=url, max_batch=3, max_bytes=6_000)
    records = [usage(i, tenant=None if i % 5 == 0 else "acme") for i in range(40)]
    await sink.write(records[:25])
    await sink.write(records[25:])
    await sink.aclose()
    messages = receive_all(sqs, url)
    bodies = [m["Body"] for m in messages]
    assert max(len(b) for b in bodies) <= 6_000 // 3
    assert any(len(parse_lines(b)) > 1 for b in bodies)  # several records per message
    got = sorted((r for b in bodies for r in parse_lines(b)), key=lambda r: int(r.request_id[1:]))
    assert got == records


async def test_sqs_sink_resends_only_the_failed_entries(moto: Moto) -> None:
    sqs: Any = moto.client("sqs")
    url = sqs.create_queue(QueueName="usage-partial")["QueueUrl"]
    sink = SqsUsageSink(queue_url=url, max_batch=10, max_bytes=10 * 700)
    spoiled: list[int] = []

    def spoil_one_entry(params: dict[str, Any], **_: Any) -> None:
        # A delay SQS refuses makes that one entry fail, as a real partial failure does.
        if not spoiled:
            params["Entries"][1]["DelaySeconds"] = 901
            spoiled.append(len(params["Entries"]))

    sink.client.meta.events.register("before-parameter-build.sqs.SendMessageBatch", spoil_one_entry)
    records = [usage(i) for i in range(12)]
    with pytest.raises(ServiceUnavailableError, match="1 message\\(s\\) failed"):
        await sink.write(records)
    await sink.write(records)  # the ledger's retry of the same batch
    got = [r for m in receive_all(sqs, url) for r in parse_lines(m["Body"])]
    assert spoiled
    assert spoiled[0] > 2  # the failure was one entry of several
    assert sorted(r.request_id for r in got) == sorted(r.request_id for r in records)


async def test_sqs_sink_reports_a_missing_queue_as_unavailable(moto: Moto) -> None:
    sink = SqsUsageSink(queue_url=f"{moto.url}/123456789012/no-such-queue")
    with pytest.raises(ServiceUnavailableError, match="SendMessageBatch"):
        await sink.write([usage(1)])


def test_sqs_sink_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        SqsUsageSink(queue_url="https://q", max_batch=11)
    with pytest.raises(TypeError, match="queue_url"):
        SqsUsageSink(queue_url="")


# -- s3 usage sink and record archive ----------------------------------------------------------


async def test_s3_sink_writes_one_object_per_batch_by_day(moto: Moto) -> None:
    s3: Any = moto.client("s3")
    s3.create_bucket(Bucket="usage-sink")
    sink = S3UsageSink(bucket="usage-sink", prefix="gw/usage")
    first = [usage(i) for i in range(3)]
    second = [usage(i, at=DAY2) for i in range(10, 12)]
    await sink.write(first)
    await sink.write(second)
    await sink.write(first)  # a retried batch replaces its own object
    await sink.aclose()
    listed = s3.list_objects_v2(Bucket="usage-sink", Prefix="gw/usage/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "gw/usage/2025-12-01/r0-3.jsonl",
        "gw/usage/2025-12-02/r10-2.jsonl",
    ]
    body = s3.get_object(Bucket="usage-sink", Key="gw/usage/2025-12-02/r10-2.jsonl")["Body"]
    assert parse_lines(body.read()) == second


async def test_s3_archive_puts_objects_by_date(moto: Moto) -> None:
    s3: Any = moto.client("s3")
    s3.create_bucket(Bucket="archive")
    archive = S3RecordArchive(bucket="archive", prefix="raw")
    url = await archive.put("2025-12-01", "msg-1", b'{"a":1}\n')
    await archive.put("2025-12-02", "msg-2", b'{"a":2}\n')
    await archive.put("2025-12-01", "msg-1", b'{"a":3}\n')  # a redelivery replaces it
    await archive.aclose()
    assert url == "s3://archive/raw/2025-12-01/msg-1.jsonl"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="archive")["Contents"]]
    assert sorted(keys) == ["raw/2025-12-01/msg-1.jsonl", "raw/2025-12-02/msg-2.jsonl"]
    body = s3.get_object(Bucket="archive", Key="raw/2025-12-01/msg-1.jsonl")["Body"].read()
    assert body == b'{"a":3}\n'


async def test_s3_archive_reports_a_missing_bucket_as_unavailable(moto: Moto) -> None:
    archive = S3RecordArchive(bucket="no-such-bucket")
    with pytest.raises(ServiceUnavailableError, match="NoSuchBucket"):
        await archive.put("2025-12-01", "x", b"")


# -- dynamodb usage ledger ---------------------------------------------------------------------


def expected(records: list[UsageRecord], scope: str, period: str) -> tuple[int, int, int, int]:
    """What the ledger must hold for ``scope`` in ``period``, summed here independently."""

    def matches(r: UsageRecord) -> bool:
        day = "2025-12-01" if r.started_at < DAY2 else "2025-12-02"
        in_period = period in (day, "2025-12")
        return in_period and scope in (f"tenant:{r.tenant}", f"key:{r.key_id}", f"model:{r.model}")

    chosen = [r for r in records if matches(r)]
    return (
        sum(r.cost_nanos for r in chosen),
        sum(r.prompt_tokens for r in chosen),
        sum(r.completion_tokens for r in chosen),
        len(chosen),
    )


def figures(total: LedgerTotal | None) -> tuple[int, int, int, int] | None:
    if total is None:
        return None
    return (total.cost_nanos, total.prompt_tokens, total.completion_tokens, total.requests)


@pytest.fixture
def ledger(moto: Moto, request: pytest.FixtureRequest) -> DynamoDbUsageLedger:
    name = f"ledger-{request.node.name}"[:255]
    create_table(moto.client("dynamodb"), name)
    return DynamoDbUsageLedger(table=name)


async def test_ledger_totals_are_exact_per_scope_and_period(ledger: DynamoDbUsageLedger) -> None:
    records = [
        *(usage(i) for i in range(5)),
        *(usage(i, tenant="beta", key="k2", model="embed", at=DAY2) for i in range(5, 9)),
        usage(9, tenant=None, key=None, at=DAY2),
    ]
    result = await ledger.fold(records)
    assert sorted(result.counted) == sorted(r.request_id for r in records)
    assert result.duplicates == []
    for scope in ("tenant:acme", "tenant:beta", "key:k1", "key:k2", "model:chat", "model:embed"):
        for period in ("2025-12-01", "2025-12-02", "2025-12"):
            want = expected(records, scope, period)
            got = figures(await ledger.totals(scope, period))
            assert got == (want if want[3] else None), (scope, period)
    month = {(t.scope, t.period): t for t in result.totals}[("model:chat", "2025-12")]
    assert month.added_nanos == month.cost_nanos == expected(records, "model:chat", "2025-12")[0]
    assert await ledger.totals("tenant:None", "2025-12") is None  # no tenant: no tenant scope
    await ledger.aclose()


async def test_ledger_counts_a_redelivered_batch_once(ledger: DynamoDbUsageLedger) -> None:
    batch = [usage(i) for i in range(6)]
    await ledger.fold(batch[:3])
    again = await ledger.fold([*batch, batch[4]])  # half redelivered, one twice in the batch
    assert sorted(again.counted) == ["r3", "r4", "r5"]
    assert sorted(again.duplicates) == ["r0", "r1", "r2", "r4"]
    day = {(t.scope, t.period): t for t in again.totals}[("tenant:acme", "2025-12-01")]
    assert day.added_nanos == sum(r.cost_nanos for r in batch[3:])
    assert (day.cost_nanos, day.requests) == (sum(r.cost_nanos for r in batch), 6)
    replay = await ledger.fold(batch)
    assert replay.counted == []
    assert replay.totals == []
    assert figures(await ledger.totals("key:k1", "2025-12")) == expected(batch, "key:k1", "2025-12")


async def test_ledger_folds_a_batch_larger_than_one_transaction(
    ledger: DynamoDbUsageLedger,
) -> None:
    records = [usage(i, key=f"k{i % 7}") for i in range(120)]
    result = await ledger.fold(records)
    assert len(result.counted) == 120
    keys = [(t.scope, t.period) for t in result.totals]
    assert len(keys) == len(set(keys)) == 2 * (7 + 1 + 1)  # contiguous chunks merged
    assert all(t.added_nanos == t.cost_nanos for t in result.totals)  # a fresh table
    for scope in ("tenant:acme", "model:chat", "key:k3"):
        assert figures(await ledger.totals(scope, "2025-12")) == expected(records, scope, "2025-12")


async def test_two_concurrent_folds_lose_nothing(ledger: DynamoDbUsageLedger) -> None:
    """Two folds of several transactions each, interleaved, on the same totals.

    moto serves one request at a time here (DynamoDB's own atomicity); what this checks is
    the ledger's side: atomic ``ADD``s in each transaction, never a read-modify-write of its
    own, across awaits where the other fold's transactions land.
    """
    seed = [usage(1000)]
    await ledger.fold(seed)
    left = [usage(i, key=f"k{i % 9}") for i in range(0, 240, 2)]
    right = [usage(i, key=f"k{i % 9}") for i in range(1, 240, 2)]
    results: list[FoldResult] = []

    async def fold(records: list[UsageRecord]) -> None:
        results.append(await ledger.fold(records))

    async with anyio.create_task_group() as tg:
        tg.start_soon(fold, left)
        tg.start_soon(fold, right)
    everything = seed + left + right
    for scope in ("tenant:acme", "model:chat", "key:k4"):
        assert figures(await ledger.totals(scope, "2025-12")) == expected(
            everything, scope, "2025-12"
        )
    # Each total a fold reports is its own addition's exact before and after: together they
    # tile the month's spend from the seed to the end, so a threshold is crossed exactly once.
    spans = sorted(
        (t.cost_nanos - t.added_nanos, t.cost_nanos)
        for r in results
        for t in r.totals
        if (t.scope, t.period) == ("tenant:acme", "2025-12")
    )
    assert spans[0][0] == seed[0].cost_nanos
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][1] == expected(everything, "tenant:acme", "2025-12")[0]


async def test_ledger_reports_a_missing_table_as_unavailable(moto: Moto) -> None:
    ledger = DynamoDbUsageLedger(table="no-such-table")
    with pytest.raises(ServiceUnavailableError, match="no-such-table"):
        await ledger.fold([usage(1)])


# -- eventbridge budget publisher ---------------------------------------------------------------


async def test_eventbridge_events_reach_a_rule_target(moto: Moto) -> None:
    sqs: Any = moto.client("sqs")
    events: Any = moto.client("events")
    url = sqs.create_queue(QueueName="budget-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.create_event_bus(Name="budgets")
    events.put_rule(
        Name="to-queue",
        EventBusName="budgets",
        EventPattern=json.dumps({"source": ["gw.test"], "detail-type": [DETAIL_TYPE]}),
    )
    events.put_targets(Rule="to-queue", EventBusName="budgets", Targets=[{"Id": "q", "Arn": arn}])
    crossings = [
        BudgetCrossing(
            scope=f"tenant:t{i}",
            window="day",
            period="2025-12-01",
            threshold=0.8,
            spent_nanos=8_000_000_000 + i,
            limit_nanos=10_000_000_000,
        )
        for i in range(12)  # more than one PutEvents call
    ]
    publisher = EventBridgeBudgetPublisher(bus_name="budgets", source="gw.test")
    await publisher.publish(crossings)
    await publisher.aclose()
    received = [json.loads(m["Body"]) for m in receive_all(sqs, url)]
    assert {e["detail-type"] for e in received} == {DETAIL_TYPE}
    assert sorted((e["detail"] for e in received), key=lambda d: d["scope"]) == sorted(
        (dataclasses.asdict(c) for c in crossings), key=lambda d: d["scope"]
    )


async def test_eventbridge_reports_a_missing_bus_as_unavailable(moto: Moto) -> None:
    publisher = EventBridgeBudgetPublisher(bus_name="no-such-bus")
    crossing = BudgetCrossing("tenant:t", "day", "2025-12-01", 1.0, 10, 10)
    with pytest.raises(ServiceUnavailableError, match="no-such-bus"):
        await publisher.publish([crossing])


# -- cloudwatch metric publisher ---------------------------------------------------------------


async def test_cloudwatch_sees_the_points(moto: Moto) -> None:
    publisher = CloudWatchMetricPublisher(max_per_call=20)
    points = [
        MetricPoint("ProbeLatency", float(i), "Milliseconds", {"group": "chat", "backend": "b0"})
        for i in range(45)  # three calls
    ]
    points.append(MetricPoint("BackendHealthy", 1.0, "Count", {"group": "chat", "backend": "b0"}))
    await publisher.put("Gateway/Test", points)
    await publisher.aclose()
    cloudwatch: Any = moto.client("cloudwatch")
    dims = [{"Name": "backend", "Value": "b0"}, {"Name": "group", "Value": "chat"}]
    stats = cloudwatch.get_metric_statistics(
        Namespace="Gateway/Test",
        MetricName="ProbeLatency",
        Dimensions=dims,
        StartTime=0,
        EndTime=4_102_444_800,  # 2100
        Period=60 * 60 * 24,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert sum(d["SampleCount"] for d in stats) == 45
    assert sum(d["Sum"] for d in stats) == sum(range(45))
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="Gateway/Test")["Metrics"]}
    assert names == {"ProbeLatency", "BackendHealthy"}


async def test_cloudwatch_namespace_override(moto: Moto) -> None:
    publisher = CloudWatchMetricPublisher(namespace="Gateway/Override")
    await publisher.put("Gateway/Ignored", [MetricPoint("Swept", 1.0, "Count")])
    cloudwatch: Any = moto.client("cloudwatch")
    assert [
        m["MetricName"] for m in cloudwatch.list_metrics(Namespace="Gateway/Override")["Metrics"]
    ] == ["Swept"]
    assert cloudwatch.list_metrics(Namespace="Gateway/Ignored")["Metrics"] == []


# -- aws_autoscaling fleet scaler --------------------------------------------------------------


async def test_scaler_reads_and_sets_desired_capacity(moto: Moto) -> None:
    create_autoscaling_group(moto, "chat-fleet", min_size=1, max_size=5, desired=2)
    scaler = AutoScalingFleetScaler(group_name="chat-fleet")
    assert await scaler.current() == 2
    await scaler.set_desired(4)
    assert await scaler.current() == 4
    autoscaling: Any = moto.client("autoscaling")
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["chat-fleet"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 4
    for outside in (0, 6):
        with pytest.raises(ValueError, match="takes 1 to 5 instances, not"):
            await scaler.set_desired(outside)
    assert await scaler.current() == 4
    await scaler.aclose()


async def test_scaler_reports_a_missing_group_as_unavailable(moto: Moto) -> None:
    scaler = AutoScalingFleetScaler(group_name="no-such-group")
    with pytest.raises(ServiceUnavailableError, match="no-such-group"):
        await scaler.current()
