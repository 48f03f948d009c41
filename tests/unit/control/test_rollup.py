"""usage-rollup's core over the real local parts: the ``sqlite`` ledger and the ``directory``
archive in ``tmp_path``, budgets from an in-test lookup (and a real SQLite key store), crossings
heard by an in-test publisher."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from gateway_control.directory_archive import DirectoryArchive
from gateway_control.sqlite_ledger import SqliteLedger
from gateway_keys.sqlite_store import SqliteKeyStore

from gateway.control.base import BudgetCrossing
from gateway.control.rollup import (
    KeyStoreBudgets,
    RollupItem,
    RollupOutcome,
    usage_rollup,
)
from gateway.governance.records import Budget, KeyRecord, TenantRecord
from gateway.governance.sinks import UsageRecord
from gateway.governance.usage_json import usage_dict

pytestmark = pytest.mark.anyio

NOV_30 = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
DEC_1 = datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()
DEC_2 = datetime(2026, 12, 2, 18, tzinfo=UTC).timestamp()
NOW = DEC_1 + 3600  # the day of DEC_1 is open
USD = 1_000_000_000


def rec(
    n: int,
    *,
    tenant: str | None = "acme",
    key: str | None = "k1",
    model: str = "chat",
    cost: int = 1000,
    at: float = DEC_1,
    prompt: int = 10,
    completion: int = 20,
) -> UsageRecord:
    return UsageRecord(
        model,
        f"{model}-0",
        prompt,
        completion,
        request_id=f"req-{n}",
        key_id=key,
        tenant=tenant,
        cost_nanos=cost,
        status=200,
        started_at=at,
        finished_at=at + 0.5,
    )


def line(r: UsageRecord) -> str:
    return msgspec.json.encode({"type": "usage", **usage_dict(r)}).decode()


def item(name: str, *records: UsageRecord) -> RollupItem:
    return RollupItem(name, "\n".join(line(r) for r in records) + "\n")


@dataclass
class Budgets:
    """Budgets by scope, counting lookups."""

    by_scope: dict[str, list[Budget]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    async def budgets(self, scope: str) -> list[Budget]:
        self.lookups.append(scope)
        return self.by_scope.get(scope, [])


@dataclass
class Heard:
    """A budget publisher that keeps what it hears."""

    crossings: list[BudgetCrossing] = field(default_factory=list)

    async def publish(self, crossings: Sequence[BudgetCrossing]) -> None:
        self.crossings.extend(crossings)

    async def aclose(self) -> None:
        pass


class Broken:
    async def publish(self, crossings: Sequence[BudgetCrossing]) -> None:
        raise ConnectionError("the bus is down")

    async def aclose(self) -> None:
        pass


@dataclass
class Parts:
    ledger: SqliteLedger
    archive: DirectoryArchive
    budgets: Budgets
    heard: Heard
    db: Path
    archive_dir: Path

    async def roll(self, *items: RollupItem, now: float = NOW, **kw: Any) -> RollupOutcome:
        return await usage_rollup(
            items,
            ledger=kw.get("ledger", self.ledger),
            archive=self.archive,
            budgets=self.budgets,
            publishers=kw.get("publishers", [self.heard]),
            now=now,
        )

    def rows(self) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        if not self.db.exists():
            return {}
        with sqlite3.connect(self.db) as db:
            return {
                (r[0], r[1]): tuple(r[2:])
                for r in db.execute(
                    "SELECT scope, period, cost_nanos, prompt_tokens, completion_tokens, "
                    "requests FROM totals"
                )
            }


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    ledger = SqliteLedger(str(tmp_path / "ledger.sqlite3"))
    archive = DirectoryArchive(str(tmp_path / "archive"))
    yield Parts(
        ledger, archive, Budgets(), Heard(), tmp_path / "ledger.sqlite3", tmp_path / "archive"
    )
    await ledger.aclose()


def expected_totals(records: Sequence[UsageRecord]) -> dict[tuple[str, str], tuple[int, ...]]:
    """The sums, computed here from scratch (not with the code under test)."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in records:
        when = datetime.fromtimestamp(r.started_at, UTC)
        scopes = [f"model:{r.model}"]
        scopes += [f"tenant:{r.tenant}"] if r.tenant else []
        scopes += [f"key:{r.key_id}"] if r.key_id else []
        for scope in scopes:
            for period in (f"{when:%Y-%m-%d}", f"{when:%Y-%m}"):
                s = sums[(scope, period)]
                s[0] += r.cost_nanos
                s[1] += r.prompt_tokens
                s[2] += r.completion_tokens
                s[3] += 1
    return {k: tuple(v) for k, v in sums.items()}


def random_records(count: int, seed: int, start: int = 0) -> list[UsageRecord]:
    rng = random.Random(seed)
    out = []
    for n in range(start, start + count):
        tenant = rng.choice(["acme", "globex", None])
        out.append(
            rec(
                n,
                tenant=tenant,
                key=rng.choice(["k1", "k2", "k3"]) if tenant else rng.choice(["k9", None]),
                model=rng.choice(["chat", "big", "small"]),
                cost=rng.randrange(0, 5 * 10**12),  # up to $5000: sums far beyond a float's 2**53
                at=rng.choice([NOV_30, DEC_1, DEC_2]) + rng.random() * 3600,
                prompt=rng.randrange(0, 100_000),
                completion=rng.randrange(0, 10_000),
            )
        )
    return out


def batches(records: Sequence[UsageRecord], size: int, prefix: str) -> list[RollupItem]:
    return [item(f"{prefix}-{i}", *records[i : i + size]) for i in range(0, len(records), size)]


async def test_totals_equal_the_sums_of_the_records_exactly(parts: Parts) -> None:
    records = random_records(300, seed=1)
    outcome = await parts.roll(*batches(records, 7, "m"))
    assert (outcome.counted, outcome.duplicates, outcome.failed) == (300, 0, [])
    want = expected_totals(records)
    assert parts.rows() == want
    for (scope, period), (cost, prompt, completion, requests) in want.items():
        total = await parts.ledger.totals(scope, period)
        assert total is not None
        assert (total.cost_nanos, total.prompt_tokens, total.completion_tokens) == (
            cost,
            prompt,
            completion,
        )
        assert total.requests == requests
    assert {p for _, p in want} == {"2026-11-30", "2026-11", "2026-12-01", "2026-12-02", "2026-12"}
    assert await parts.ledger.totals("tenant:nobody", "2026-12") is None


async def test_a_redelivered_batch_counts_nothing_and_replaces_its_archive(parts: Parts) -> None:
    records = random_records(50, seed=2)
    items = batches(records, 5, "m")
    first = await parts.roll(*items)
    before = parts.rows()
    files = sorted(parts.archive_dir.rglob("*.jsonl"))
    contents = [f.read_bytes() for f in files]
    assert first.archived == [str(f) for f in files]
    assert {f.parent.name for f in files} == {"2026-11-30", "2026-12-01", "2026-12-02"}
    archived = [msgspec.json.decode(ln) for f in files for ln in f.read_bytes().splitlines()]
    assert sorted(a["request_id"] for a in archived) == sorted(r.request_id for r in records)

    again = await parts.roll(*reversed(items))  # the same messages, in another order
    assert (again.counted, again.duplicates, again.failed) == (0, 50, [])
    assert parts.rows() == before
    assert sorted(parts.archive_dir.rglob("*.jsonl")) == files
    assert [f.read_bytes() for f in files] == contents
    assert not list(parts.archive_dir.rglob(".*"))  # no temporary file left behind


async def test_a_malformed_item_is_reported_and_the_rest_of_the_batch_commits(
    parts: Parts,
) -> None:
    good = [rec(1), rec(2), rec(3)]
    broken = usage_dict(rec(5))
    broken["cost_nanos"] = "5"
    items = [
        item("a", good[0], good[1]),
        RollupItem("b", line(rec(4)) + "\n" + msgspec.json.encode(broken).decode()),
        RollupItem("c", "{not json"),
        RollupItem("d", "\n\n"),
        RollupItem("e", '{"type": "audit", "audit_id": "x"}\n' + line(good[2])),
    ]
    outcome = await parts.roll(*items)
    assert outcome.failed == ["b", "c", "d"]
    assert outcome.counted == 3
    assert parts.rows() == expected_totals(good)  # nothing of item b counted, not even rec 4
    archived = [ln for f in parts.archive_dir.rglob("*.jsonl") for ln in f.read_bytes().split()]
    assert len(archived) == 3

    fixed = await parts.roll(item("b", rec(4), rec(5)))  # its redelivery, corrected
    assert (fixed.counted, fixed.failed) == (2, [])
    assert parts.rows() == expected_totals([*good, rec(4), rec(5)])


async def test_each_threshold_crossed_is_announced_exactly_once(parts: Parts) -> None:
    parts.budgets.by_scope = {
        "key:k1": [Budget(usd=1.0, window="day")],
        "tenant:acme": [Budget(usd=10.0, window="month", alert_thresholds=(0.5,))],
    }
    steps = [
        (0.75, []),  # below 80 %
        (0.04, []),  # 79 %: just short
        (0.02, [0.8]),  # 81 %: this fold crossed 80 %
        (0.25, [0.9, 1.0]),  # 106 %: two at once
        (0.5, []),  # past everything
    ]
    for n, (usd, thresholds) in enumerate(steps, 1):
        outcome = await parts.roll(item(f"m{n}", rec(n, cost=round(usd * USD))))
        assert [c.threshold for c in outcome.crossings] == thresholds
        redelivered = await parts.roll(item(f"m{n}", rec(n, cost=round(usd * USD))))
        assert redelivered.crossings == []
    assert [(c.scope, c.window, c.period, c.threshold) for c in parts.heard.crossings] == [
        ("key:k1", "day", "2026-12-01", 0.8),
        ("key:k1", "day", "2026-12-01", 0.9),
        ("key:k1", "day", "2026-12-01", 1.0),
    ]
    crossing = parts.heard.crossings[0]
    assert (crossing.spent_nanos, crossing.limit_nanos) == (810_000_000, USD)
    # The tenant's month budget: $1.56 of $10 is short of 50 %; the next fold crosses it.
    outcome = await parts.roll(item("big", rec(99, cost=4 * USD, key="k2")))
    assert [(c.scope, c.window, c.period, c.threshold) for c in outcome.crossings] == [
        ("tenant:acme", "month", "2026-12", 0.5)
    ]
    assert parts.budgets.lookups.count("tenant:acme") == len(steps) * 2 + 1  # once per invocation


async def test_only_day_and_month_budgets_of_open_periods_are_checked(parts: Parts) -> None:
    parts.budgets.by_scope = {
        "key:k1": [Budget(usd=1.0, window="6h"), Budget(usd=1.0, window="week")],
        "key:k2": [Budget(usd=1.0, window="day")],
    }
    outcome = await parts.roll(item("m", rec(1, cost=2 * USD), rec(2, key="k2", cost=2 * USD)))
    assert [(c.scope, c.threshold) for c in outcome.crossings] == [
        ("key:k2", 0.8),
        ("key:k2", 0.9),
        ("key:k2", 1.0),
    ]
    # A backfill after the day ended (and its hour of grace) counts but announces nothing.
    late = await parts.roll(item("old", rec(3, key="k2", cost=2 * USD, at=NOV_30)), now=NOW)
    assert (late.counted, late.crossings) == (1, [])
    # Just after midnight, yesterday's crossings are still announced.
    parts.budgets.by_scope["key:k3"] = [Budget(usd=1.0, window="day")]
    midnight = datetime(2026, 12, 2, 0, 5, tzinfo=UTC).timestamp()
    edge = await parts.roll(item("edge", rec(4, key="k3", cost=USD)), now=midnight)
    assert [(c.period, c.threshold) for c in edge.crossings] == [
        ("2026-12-01", 0.8),
        ("2026-12-01", 0.9),
        ("2026-12-01", 1.0),
    ]


async def test_a_failing_publisher_does_not_silence_the_others(parts: Parts) -> None:
    parts.budgets.by_scope = {"key:k1": [Budget(usd=1.0, window="day", alert_thresholds=(1.0,))]}
    outcome = await parts.roll(item("m", rec(1, cost=USD)), publishers=[Broken(), parts.heard])
    assert len(outcome.crossings) == 1
    assert parts.heard.crossings == outcome.crossings
    assert outcome.counted == 1


async def test_a_failing_budget_lookup_counts_nothing(parts: Parts) -> None:
    class Unreachable:
        async def budgets(self, scope: str) -> list[Budget]:
            raise ConnectionError("key store down")

    with pytest.raises(ConnectionError):
        await usage_rollup(
            [item("m", rec(1))],
            ledger=parts.ledger,
            archive=None,
            budgets=Unreachable(),
            publishers=[],
            now=NOW,
        )
    assert parts.rows() == {}
    assert (await parts.roll(item("m", rec(1)))).counted == 1  # the retry counts it


async def test_concurrent_folds_lose_nothing(parts: Parts) -> None:
    parts.budgets.by_scope = {"tenant:acme": [Budget(usd=1000.0, window="month")]}
    other = SqliteLedger(str(parts.db))  # a second connection, as a second process has
    records = random_records(400, seed=3)
    items = batches(records, 10, "m")
    outcomes: list[RollupOutcome] = []

    async def roll(batch: list[RollupItem], ledger: SqliteLedger) -> None:
        outcomes.append(await parts.roll(*batch, ledger=ledger))

    async with anyio.create_task_group() as tg:
        for i in range(0, len(items), 2):
            # Each pair of items goes to both ledgers at once: every record folded twice.
            tg.start_soon(roll, items[i : i + 2], parts.ledger)
            tg.start_soon(roll, items[i : i + 2], other)
    await other.aclose()
    assert sum(o.counted for o in outcomes) == 400
    assert sum(o.duplicates for o in outcomes) == 400
    assert parts.rows() == expected_totals(records)
    crossed = [c.threshold for o in outcomes for c in o.crossings if c.scope == "tenant:acme"]
    assert sorted(crossed) == sorted(set(crossed))  # none twice, whoever folded first


async def test_budgets_come_from_the_key_store(tmp_path: Path) -> None:
    store = SqliteKeyStore(str(tmp_path / "keys.sqlite3"))
    day = Budget(usd=2.5, window="day")
    month = Budget(usd=50.0, window="month")
    await store.put_tenant(TenantRecord(name="acme", budgets=[month]), create=True)
    key = KeyRecord(id="abcdefabcdef", secret_hash="00", tenant="acme", budgets=[day])
    await store.put_key(key, create=True)
    budgets = KeyStoreBudgets(store)
    assert await budgets.budgets("key:abcdefabcdef") == [day]
    assert await budgets.budgets("tenant:acme") == [month]
    assert await budgets.budgets("key:unknown12345") == []
    assert await budgets.budgets("tenant:nobody") == []
    assert await budgets.budgets("model:chat") == []
    await store.aclose()


async def test_records_without_key_or_tenant_count_towards_their_model_only(parts: Parts) -> None:
    anonymous = replace(rec(1), key_id=None, tenant=None)
    refused = replace(rec(2, model="", key=None, tenant=None), status=401, cost_nanos=0)
    await parts.roll(item("m", anonymous, refused))
    assert set(parts.rows()) == {("model:chat", "2026-12-01"), ("model:chat", "2026-12")}
