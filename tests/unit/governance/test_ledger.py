"""The usage ledger: batching, the flush interval, retries in order, bounded buffers per sink,
the drain at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from gateway_usage.jsonl_sink import JsonlUsageSink
from gateway_usage.sqlite_sink import SqliteUsageSink

from gateway.governance.ledger import UsageLedger
from gateway.governance.sinks import AuditRecord, UsageRecord

pytestmark = pytest.mark.anyio


def usage(i: int) -> UsageRecord:
    return UsageRecord(
        "chat",
        "chat-0",
        10,
        5,
        request_id=f"r{i:03}",
        key_id="k1",
        tenant="acme",
        cost_nanos=i,
        status=200,
        started_at=1_700_000_000.0 + i,
        finished_at=1_700_000_001.0 + i,
    )


def audit(i: int) -> AuditRecord:
    return AuditRecord(
        audit_id=f"a{i}",
        at=1_700_000_000.0 + i,
        actor="master",
        action="key.create",
        target=f"k{i}",
        tenant="acme",
        before=None,
        after={"id": f"k{i}"},
    )


class Recorder:
    """A sink that keeps what it is given; it can fail a number of writes, or hold them at a
    gate until it opens."""

    def __init__(self, fail: int = 0, gated: bool = False) -> None:
        self.batches: list[list[UsageRecord]] = []
        self.audits: list[list[AuditRecord]] = []
        self.fail = fail
        self.attempts = 0
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.closed = False

    @property
    def written(self) -> list[str]:
        return [r.request_id for batch in self.batches for r in batch]

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.attempts += 1
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("sink down")
        self.batches.append(list(records))

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        await self.gate.wait()
        self.audits.append(list(records))

    async def aclose(self) -> None:
        self.closed = True


async def until(predicate: Callable[[], bool], tries: int = 2000) -> None:
    """Wait (bounded: about ten seconds) for ``predicate()`` to hold, yielding to the
    flushers."""
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def ledger(*sinks: tuple[str, Recorder], **options: object) -> UsageLedger:
    settings: dict[str, object] = {
        "buffer_size": 100,
        "batch_size": 3,
        "flush_interval_s": 0.02,
        "retry_initial_s": 0.001,
        "retry_max_s": 0.01,
    }
    settings.update(options)
    return UsageLedger(list(sinks), **settings)  # type: ignore[arg-type]


async def test_no_sinks_costs_nothing() -> None:
    led = UsageLedger([], buffer_size=1, batch_size=1, flush_interval_s=1.0)
    await led.start()
    led.record(usage(1))
    led.audit(audit(1))
    assert (led.pending, led.dropped, led.reader, led.active) == (0, 0, None, False)
    await led.aclose()


async def test_records_are_written_in_order_in_batches() -> None:
    sink = Recorder()
    led = ledger(("a", sink))
    await led.start()
    for i in range(7):
        led.record(usage(i))
    await until(lambda: led.pending == 0)
    assert sink.written == [f"r{i:03}" for i in range(7)]
    assert all(len(b) <= 3 for b in sink.batches)
    await led.aclose()
    assert sink.closed


async def test_a_lone_record_is_flushed_by_the_interval() -> None:
    sink = Recorder()
    led = ledger(("a", sink), batch_size=500)
    await led.start()
    led.record(usage(1))
    await until(lambda: sink.written == ["r001"])
    await led.aclose()


async def test_audit_records_go_to_write_audit() -> None:
    sink = Recorder()
    led = ledger(("a", sink))
    await led.start()
    led.audit(audit(1))
    led.record(usage(1))
    led.audit(audit(2))
    await until(lambda: led.pending == 0)
    assert [a.audit_id for batch in sink.audits for a in batch] == ["a1", "a2"]
    assert sink.written == ["r001"]
    await led.aclose()


async def test_a_failed_write_is_retried_first_and_nothing_is_reordered_or_lost() -> None:
    sink = Recorder(fail=3)
    led = ledger(("a", sink))
    await led.start()
    for i in range(5):
        led.record(usage(i))
    await until(lambda: sink.attempts >= 2)  # failing, with backoff, while more records come
    for i in range(5, 10):
        led.record(usage(i))
    await until(lambda: led.pending == 0)
    assert sink.written == [f"r{i:03}" for i in range(10)]
    assert sink.attempts >= 4
    assert led.dropped == 0
    await led.aclose()


async def test_a_full_buffer_drops_new_records_for_that_sink_only() -> None:
    drops: list[tuple[str, int]] = []
    slow, fast = Recorder(gated=True), Recorder()
    led = ledger(
        ("slow", slow), ("fast", fast), buffer_size=5, on_drop=lambda s, n: drops.append((s, n))
    )
    await led.start()
    for i in range(5):
        led.record(usage(i))
    await until(lambda: fast.written == [f"r{i:03}" for i in range(5)])
    for i in range(5, 8):
        led.record(usage(i))  # the slow sink's buffer still holds its first five
    assert drops == [("slow", 1)] * 3
    assert led.dropped == 3
    assert led.backlog() == {"slow": 5, "fast": 3}
    slow.gate.set()
    await until(lambda: led.pending == 0)
    assert slow.written == [f"r{i:03}" for i in range(5)]  # the oldest kept, the new dropped
    assert fast.written == [f"r{i:03}" for i in range(8)]
    await led.aclose()


async def test_recording_never_raises_even_when_the_drop_counter_does() -> None:
    def broken(sink: str, count: int) -> None:
        raise RuntimeError("metrics are down")

    led = ledger(("a", Recorder(gated=True)), buffer_size=1, on_drop=broken, drain_s=0.05)
    led.record(usage(1))
    led.record(usage(2))  # dropped; the callback's failure is logged, not raised
    assert led.dropped == 1
    await led.aclose()


async def test_close_flushes_what_is_buffered_even_if_never_started() -> None:
    sink = Recorder()
    led = ledger(("a", sink), batch_size=2)
    for i in range(5):
        led.record(usage(i))
    led.audit(audit(1))
    assert led.active
    await led.aclose()
    assert not led.active
    assert sink.written == [f"r{i:03}" for i in range(5)]
    assert len(sink.audits) == 1
    assert sink.closed
    led.record(usage(9))  # after shutdown: dropped, counted
    assert led.dropped == 1
    await led.aclose()  # a second call does nothing


async def test_close_retries_a_failing_sink_within_the_drain_time() -> None:
    sink = Recorder(fail=2)
    led = ledger(("a", sink), retry_initial_s=60.0, retry_max_s=60.0)
    await led.start()
    led.record(usage(1))
    await until(lambda: sink.attempts >= 1)  # failed once, now backing off for a minute
    await led.aclose()  # shutdown cuts the backoff short
    assert sink.written == ["r001"]


async def test_close_gives_up_on_a_hung_sink_after_the_drain_time() -> None:
    hung, fine = Recorder(gated=True), Recorder()
    led = ledger(("hung", hung), ("fine", fine), drain_s=0.05)
    await led.start()
    led.record(usage(1))
    await led.aclose()
    assert fine.written == ["r001"]
    assert hung.written == []
    assert hung.closed
    assert fine.closed


async def test_the_reader_is_the_first_sink_that_answers_spend_queries(tmp_path: Path) -> None:
    jsonl = JsonlUsageSink(path=str(tmp_path / "u.jsonl"))
    sqlite = SqliteUsageSink(path=str(tmp_path / "u.sqlite3"))
    led = ledger(("jsonl", jsonl), ("sqlite", sqlite))  # type: ignore[arg-type]
    assert led.reader is sqlite
    await led.aclose()
