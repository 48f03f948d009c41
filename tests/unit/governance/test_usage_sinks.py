"""The built-in usage sinks on real parts: a SQLite file, a JSON-lines file, a redis-server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from gateway_usage import register_alert_sinks, register_usage_sinks
from gateway_usage.alert_sinks import LogAlertSink, RedisAlertSink, WebhookAlertSink
from gateway_usage.jsonl_sink import JsonlUsageSink
from gateway_usage.redis_sink import RedisUsageSink
from gateway_usage.sqlite_sink import SqliteUsageSink

from gateway.governance.ledger import UsageLedger
from gateway.governance.sinks import (
    AuditRecord,
    SpendQuery,
    SpendReader,
    UsageRecord,
    UsageSink,
)
from tests.support.redis_server import RedisServer, running_redis

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
    cost: int = 1,
    cached: int = 0,
) -> UsageRecord:
    return UsageRecord(
        model,
        f"{model}-0",
        100,
        10,
        cached,
        request_id=f"r{i}",
        key_id=key,
        tenant=tenant,
        cost_nanos=cost,
        status=200,
        started_at=at,
        finished_at=at + 0.5,
        endpoint="chat",
    )


def audit(i: int, tenant: str | None = "acme", at: float = DAY1) -> AuditRecord:
    return AuditRecord(
        audit_id=f"a{i}",
        at=at + i,
        actor="master",
        action="key.update",
        target=f"k{i}",
        tenant=tenant,
        before={"name": "old", "budgets": [{"usd": 1.5}]},
        after={"name": "new"},
    )


def test_the_plugin_registers_every_sink() -> None:
    usage_sinks: dict[str, Any] = {}
    alert_sinks: dict[str, Any] = {}
    register_usage_sinks(lambda n, f: usage_sinks.__setitem__(n, f))
    register_alert_sinks(lambda n, f: alert_sinks.__setitem__(n, f))
    assert usage_sinks == {
        "sqlite": SqliteUsageSink,
        "jsonl": JsonlUsageSink,
        "redis": RedisUsageSink,
    }
    assert alert_sinks == {
        "log": LogAlertSink,
        "webhook": WebhookAlertSink,
        "redis": RedisAlertSink,
    }


def test_bad_options_are_type_or_value_errors() -> None:
    with pytest.raises(TypeError):
        SqliteUsageSink(path="")
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        SqliteUsageSink(busy_timeout_ms=-1)
    with pytest.raises(TypeError):
        JsonlUsageSink()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="maxlen"):
        RedisUsageSink(url="redis://127.0.0.1:1/0", maxlen=0)


# -- sqlite ------------------------------------------------------------------------------------


async def test_sqlite_creates_its_file_in_wal_mode_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "data" / "usage.sqlite3"
    sink = SqliteUsageSink(path=str(path))
    assert isinstance(sink, UsageSink)
    assert isinstance(sink, SpendReader)
    await sink.write([usage(1, cost=123_456_789_012)])
    await sink.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM usage").fetchone())
        indexes = {r[1] for r in db.execute("PRAGMA index_list(usage)")}
    assert row["cost_nanos"] == 123_456_789_012  # an integer column: exact money
    assert row["request_id"] == "r1"
    assert (row["tenant"], row["key_id"], row["model"], row["status"]) == (
        "acme",
        "k1",
        "chat",
        200,
    )
    assert set(row) >= {f for f in UsageRecord.__dataclass_fields__}
    assert {"usage_tenant", "usage_key", "usage_model"} <= indexes


async def test_sqlite_survives_a_restart_and_counts_a_redelivered_batch_once(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "usage.sqlite3")
    batch = [usage(i, cost=1_000 + i) for i in range(20)]
    first = SqliteUsageSink(path=path)
    led = UsageLedger([("sqlite", first)], buffer_size=100, batch_size=7, flush_interval_s=0.01)
    await led.start()
    for rec in batch:
        led.record(rec)
    led.audit(audit(1))
    await led.aclose()

    again = SqliteUsageSink(path=path)
    await again.write(batch[:10])  # a batch delivered twice (a retry after a lost reply)
    await again.write_audit([audit(1)])
    (row,) = await again.spend(SpendQuery(group_by=()))
    assert row.requests == 20
    assert row.cost_nanos == sum(1_000 + i for i in range(20))
    assert row.prompt_tokens == 2_000
    assert [a.audit_id for a in await again.audit_log()] == ["a1"]
    await again.aclose()


async def test_sqlite_spend_groups_filters_and_sums_exactly(tmp_path: Path) -> None:
    sink = SqliteUsageSink(path=str(tmp_path / "usage.sqlite3"))
    await sink.write(
        [
            usage(1, cost=100_000_001, at=DAY1 + 10),
            usage(2, cost=200_000_002, at=DAY2 + 10, cached=40),
            usage(3, key="k2", model="embed", cost=7, at=DAY2 + 20),
            usage(4, tenant="beta", key="k9", cost=5, at=DAY1 + 30),
            usage(5, tenant=None, key=None, cost=3, at=DAY1 + 40),
        ]
    )
    rows = await sink.spend(SpendQuery(group_by=("tenant",)))
    assert [(r.keys, r.requests, r.cost_nanos) for r in rows] == [
        ({"tenant": None}, 1, 3),
        ({"tenant": "acme"}, 3, 300_000_010),
        ({"tenant": "beta"}, 1, 5),
    ]
    rows = await sink.spend(SpendQuery(group_by=("day", "model"), tenant="acme"))
    assert [(r.keys, r.requests, r.cost_nanos, r.cached_tokens) for r in rows] == [
        ({"day": "2025-12-01", "model": "chat"}, 1, 100_000_001, 0),
        ({"day": "2025-12-02", "model": "chat"}, 1, 200_000_002, 40),
        ({"day": "2025-12-02", "model": "embed"}, 1, 7, 0),
    ]
    rows = await sink.spend(SpendQuery(group_by=("key",), since=DAY2, until=DAY2 + 15))
    assert [(r.keys, r.requests) for r in rows] == [({"key": "k1"}, 1)]
    rows = await sink.spend(SpendQuery(group_by=("tenant", "key"), key_id="k2", model="embed"))
    assert [(r.keys, r.completion_tokens) for r in rows] == [({"tenant": "acme", "key": "k2"}, 10)]
    assert await sink.spend(SpendQuery(tenant="nobody")) == []
    assert await sink.spend(SpendQuery(group_by=(), tenant="nobody")) == []
    with pytest.raises(ValueError, match="dimensions"):
        await sink.spend(SpendQuery(group_by=("tenant", "tenant")))
    await sink.aclose()


async def test_sqlite_audit_log_is_newest_first_and_per_tenant(tmp_path: Path) -> None:
    sink = SqliteUsageSink(path=str(tmp_path / "usage.sqlite3"))
    await sink.write_audit([audit(1), audit(2, tenant="beta"), audit(3), audit(4, tenant=None)])
    log = await sink.audit_log()
    assert [a.audit_id for a in log] == ["a4", "a3", "a2", "a1"]
    assert log[1].before == {"name": "old", "budgets": [{"usd": 1.5}]}
    assert log[1] == audit(3)
    assert [a.audit_id for a in await sink.audit_log(tenant="acme")] == ["a3", "a1"]
    assert [a.audit_id for a in await sink.audit_log(limit=1)] == ["a4"]
    await sink.aclose()


async def test_two_sinks_on_one_file_share_it(tmp_path: Path) -> None:
    """Several gateway worker processes on one box write the same file."""
    path = str(tmp_path / "usage.sqlite3")
    a, b = SqliteUsageSink(path=path), SqliteUsageSink(path=path)
    await a.write([usage(1)])
    await b.write([usage(2)])
    (row,) = await a.spend(SpendQuery())
    assert row.requests == 2
    await a.aclose()
    await b.aclose()


# -- jsonl -------------------------------------------------------------------------------------


async def test_jsonl_appends_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "usage.jsonl"
    sink = JsonlUsageSink(path=str(path))
    await sink.write([usage(1, cost=123_456_789_012), usage(2)])
    await sink.write_audit([audit(1)])
    await sink.write([usage(1, cost=123_456_789_012)])  # a redelivery: the reader dedupes
    await sink.aclose()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["type"], x.get("request_id") or x.get("audit_id")) for x in lines] == [
        ("usage", "r1"),
        ("usage", "r2"),
        ("audit", "a1"),
        ("usage", "r1"),
    ]
    assert lines[0]["cost_nanos"] == 123_456_789_012
    assert lines[0]["started_at"] == DAY1
    assert lines[0]["cached"] is False
    assert lines[2]["after"] == {"name": "new"}
    assert set(lines[0]) == {"type", *UsageRecord.__dataclass_fields__}


# -- redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def stream(url: str, key: str) -> list[dict[str, str]]:
    """The fields of every entry of stream ``key``, oldest first."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        entries: Any = await client.xrange(key)
    finally:
        await client.aclose()
    return [dict(fields) for _, fields in entries]


async def test_redis_adds_one_stream_entry_per_record(redis_server: RedisServer) -> None:
    sink = RedisUsageSink(url=redis_server.url, stream="t1:usage")
    await sink.write([usage(1, cost=123_456_789_012), usage(2, tenant=None, key=None)])
    await sink.write_audit([audit(1)])
    fields = await stream(redis_server.url, "t1:usage")
    audits = await stream(redis_server.url, "t1:usage:audit")
    await sink.aclose()
    assert [f["request_id"] for f in fields] == ["r1", "r2"]
    assert fields[0]["cost_nanos"] == "123456789012"
    assert fields[0]["cached"] == "0"
    assert fields[0]["started_at"] == str(DAY1)
    assert fields[1]["tenant"] == ""
    assert set(fields[0]) == set(UsageRecord.__dataclass_fields__)
    (entry,) = audits
    assert entry["audit_id"] == "a1"
    assert json.loads(entry["before"]) == {"name": "old", "budgets": [{"usd": 1.5}]}


async def test_redis_trims_its_stream_approximately(redis_server: RedisServer) -> None:
    sink = RedisUsageSink(url=redis_server.url, stream="t2:usage", maxlen=10)
    for start in range(0, 2000, 100):
        await sink.write([usage(i) for i in range(start, start + 100)])
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        length = await client.xlen("t2:usage")
    finally:
        await client.aclose()
    await sink.aclose()
    assert length < 2000  # trimmed (approximately: whole macro-nodes at a time)


async def test_redis_errors_raise_and_the_ledger_retries_until_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer().start()
    try:
        sink = RedisUsageSink(url=server.url, stream="t3:usage", timeout_s=1.0)
        server.stop()
        with pytest.raises(Exception, match=r"(?i)connect"):
            await sink.write([usage(1)])
        led = UsageLedger(
            [("redis", sink)],
            buffer_size=100,
            batch_size=10,
            flush_interval_s=0.01,
            retry_initial_s=0.01,
            retry_max_s=0.05,
        )
        await led.start()
        for i in range(3):
            led.record(usage(i))
        for _ in range(1000):  # bounded: until the ledger has seen the sink fail
            if "usage sink `redis` failed" in caplog.text:
                break
            await asyncio.sleep(0.01)
        server.start()  # the same port
        await led.aclose()  # the drain retries until it lands
        entries = await stream(server.url, "t3:usage")
        assert [e["request_id"] for e in entries] == ["r0", "r1", "r2"]
    finally:
        server.stop()
