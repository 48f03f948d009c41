"""usage-rollup: fold batches of usage records into the durable ledger, keep the raw records,
and announce the budget thresholds the new totals crossed.

The same function serves the SQS-triggered Lambda (plugin ``gateway_aws``: one item per
message, ``failed`` becomes ``batchItemFailures``) and ``gateway control usage-rollup`` (lines
of JSONL files). An item is all or nothing: a line that is not a usage record fails its whole
item, which is then redelivered alone, while the rest of the batch commits; no record of a
failed item is counted, so the redelivery counts it exactly once.

Steps, in the order that keeps a retry safe:

1. **archive** the raw lines of the good items, one JSON-lines object per UTC day named by a
   hash of the items' ids (a redelivered batch replaces its objects, never duplicates them;
   a redelivery that regroups messages differently makes new objects, so readers of the
   archive keep the first line of each ``request_id``, as with any usage sink's output);
2. **look up the budgets** of every tenant and key in the batch (once each per invocation);
3. **fold** every good record in one ``ledger.fold`` (idempotent by request id);
4. **announce** each budget threshold this fold crossed, to every publisher.

A failure of steps 1 to 3 raises: nothing has been counted yet, and a retry of the whole batch
counts nothing twice. A publisher's failure is logged and the others still hear: the ledger has
committed, and a retry would find every record already counted, so raising could not bring the
announcement back.

Budgets checked: a key's or a tenant's own budgets with window ``day`` or ``month`` (UTC), the
ledger's day and month totals; other windows (``week``, ``6h``) and per-model-group budgets have
no ledger total and are left to the gateway's limiter, which alerts on them itself. A threshold
``t`` of a budget of ``limit`` is crossed by a fold that moved a total from ``before =
cost_nanos - added_nanos`` to ``cost_nanos`` with ``before < t * limit <= cost_nanos``, so each
threshold is crossed exactly once per period however the records are batched. Crossings are
announced for the current period and one that ended less than :data:`ANNOUNCE_GRACE_S` ago (late
records around midnight); a backfill of older records counts them but announces nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import msgspec

from gateway.control.base import (
    BudgetCrossing,
    BudgetPublisher,
    FoldResult,
    LedgerTotal,
    RecordArchive,
    UsageLedger,
)
from gateway.control.totals import day_of, scopes_of
from gateway.governance.keystore import KeyStore
from gateway.governance.records import Budget
from gateway.governance.sinks import UsageRecord
from gateway.governance.usage_json import usage_from_dict

log = logging.getLogger("gateway.control")

ANNOUNCE_GRACE_S = 3600.0
"""How long after a period ends crossings in it are still announced."""

BUDGET_SCOPES = ("tenant:", "key:")
_WINDOW_OF_PERIOD = {len("2026-12-01"): "day", len("2026-12"): "month"}
_decode = msgspec.json.decode


@dataclass(frozen=True, slots=True)
class RollupItem:
    """One message: ``body`` holds one or more usage records as JSON lines (the
    :func:`~gateway.governance.usage_json.usage_dict` shape; the ``jsonl`` sink's ``"type":
    "audit"`` lines are not usage and are skipped)."""

    id: str
    body: str


@dataclass(frozen=True, slots=True)
class RollupOutcome:
    """What one invocation did.

    Attributes:
        failed: ids of the items that were not processed (malformed): to redeliver.
        counted: records folded in now.
        duplicates: records counted before (a redelivery): nothing added.
        crossings: the budget thresholds announced.
        archived: where the raw records went (one object per day).
    """

    failed: list[str] = field(default_factory=list)
    counted: int = 0
    duplicates: int = 0
    crossings: list[BudgetCrossing] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)


class BudgetLookup(Protocol):
    """The budgets of a scope (``tenant:<name>``, ``key:<id>``)."""

    async def budgets(self, scope: str) -> list[Budget]:
        """The scope's own budgets (``[]`` for none, or an unknown scope).

        Raises:
            Exception: they could not be read (the roll-up then counts nothing, to be retried).
        """
        ...


class KeyStoreBudgets:
    """Budgets as a key store holds them: a key's record and a tenant's record."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    async def budgets(self, scope: str) -> list[Budget]:
        kind, _, name = scope.partition(":")
        if kind == "key":
            key = await self._store.get_key(name)
            return list(key.budgets) if key is not None else []
        if kind == "tenant":
            tenant = await self._store.get_tenant(name)
            return list(tenant.budgets) if tenant is not None else []
        return []


class NoBudgets:
    """No budgets anywhere (a gateway without virtual keys)."""

    async def budgets(self, scope: str) -> list[Budget]:
        return []


@dataclass(slots=True)
class _Parsed:
    item: RollupItem
    records: list[UsageRecord]
    lines: list[bytes]


async def usage_rollup(
    items: Sequence[RollupItem],
    *,
    ledger: UsageLedger,
    archive: RecordArchive | None,
    budgets: BudgetLookup,
    publishers: Sequence[BudgetPublisher],
    now: float,
) -> RollupOutcome:
    """Fold ``items`` into ``ledger`` (see the module docstring for the steps and guarantees).

    Args:
        archive: where raw records are kept; None: not kept.
        now: Unix time of the invocation (which periods are still open for announcements).

    Raises:
        Exception: the archive, the budget lookup or the ledger failed; nothing was counted,
            and the whole batch may be retried.
    """
    parsed: list[_Parsed] = []
    failed: list[str] = []
    for item in items:
        try:
            parsed.append(_parse(item))
        except ValueError as exc:
            log.warning("usage-rollup: item %s is malformed, not counted: %s", item.id, exc)
            failed.append(item.id)
    records = [rec for p in parsed for rec in p.records]
    archived = await _archive(archive, parsed) if archive is not None else []
    known = await _budgets_of(budgets, records)
    result = await ledger.fold(records) if records else FoldResult()
    crossings = list(_crossings(result.totals, known, now))
    await _announce(publishers, crossings)
    outcome = RollupOutcome(
        failed, len(result.counted), len(result.duplicates), crossings, archived
    )
    log.info(
        "usage-rollup: %d items, %d records: %d counted, %d duplicates, %d failed items, "
        "%d crossings",
        len(items),
        len(records),
        outcome.counted,
        outcome.duplicates,
        len(failed),
        len(crossings),
    )
    return outcome


def _parse(item: RollupItem) -> _Parsed:
    """The usage records of ``item`` and their raw lines.

    Raises:
        ValueError: a line is not JSON, not an object, of an unknown ``type``, or not a usage
            record (naming the line and the field); or the item holds no line at all.
    """
    parsed = _Parsed(item, [], [])
    lines = [line for line in item.body.encode().splitlines() if line.strip()]
    if not lines:
        raise ValueError("no records in it")
    for n, line in enumerate(lines, 1):
        try:
            data = _decode(line)
        except msgspec.DecodeError as exc:
            raise ValueError(f"line {n}: not JSON: {exc}") from None
        kind = data.get("type", "usage") if isinstance(data, dict) else "usage"
        if kind == "audit":
            continue  # the jsonl sink interleaves audit records; they are not usage
        if kind != "usage":
            raise ValueError(f"line {n}: unknown record `type` {kind!r}")
        try:
            parsed.records.append(usage_from_dict(data))
        except ValueError as exc:
            raise ValueError(f"line {n}: {exc}") from None
        parsed.lines.append(line.strip())
    return parsed


async def _archive(archive: RecordArchive, parsed: Sequence[_Parsed]) -> list[str]:
    """One object per day of the good items' raw lines, named by a hash of their ids."""
    by_day: dict[str, list[bytes]] = {}
    for p in sorted(parsed, key=lambda p: p.item.id):  # the same bytes however redelivered
        for rec, line in zip(p.records, p.lines, strict=True):
            by_day.setdefault(day_of(rec.started_at), []).append(line + b"\n")
    if not by_day:
        return []
    ids = "\n".join(sorted(p.item.id for p in parsed)).encode()
    name = f"usage-{hashlib.sha256(ids).hexdigest()[:32]}"
    return [await archive.put(day, name, b"".join(lines)) for day, lines in sorted(by_day.items())]


async def _budgets_of(
    budgets: BudgetLookup, records: Sequence[UsageRecord]
) -> dict[str, list[Budget]]:
    """The budgets of every tenant and key of ``records``, each looked up once."""
    scopes = {s for rec in records for s in scopes_of(rec) if s.startswith(BUDGET_SCOPES)}
    return {scope: await budgets.budgets(scope) for scope in sorted(scopes)}


def _crossings(
    totals: Sequence[LedgerTotal], known: Mapping[str, list[Budget]], now: float
) -> list[BudgetCrossing]:
    """The thresholds of ``known`` budgets the changed ``totals`` crossed, in open periods."""
    out = []
    for total in totals:
        window = _WINDOW_OF_PERIOD.get(len(total.period))
        if window is None or not known.get(total.scope) or not _open(total.period, now):
            continue
        before = total.cost_nanos - total.added_nanos
        for budget in known[total.scope]:
            if budget.window != window:
                continue
            limit = budget.nanos
            for threshold in sorted(budget.alert_thresholds):
                if before < threshold * limit <= total.cost_nanos:
                    out.append(
                        BudgetCrossing(
                            total.scope, window, total.period, threshold, total.cost_nanos, limit
                        )
                    )
    return out


def _open(period: str, now: float) -> bool:
    """Whether ``period`` (a UTC day or month) ended less than the grace time before ``now``."""
    if len(period) == len("2026-12-01"):
        end = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1)
    else:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
        end = (start + timedelta(days=32)).replace(day=1)
    return now < end.timestamp() + ANNOUNCE_GRACE_S


async def _announce(publishers: Sequence[BudgetPublisher], crossings: list[BudgetCrossing]) -> None:
    """Every crossing to every publisher; a failing publisher is logged and skipped."""
    if not crossings:
        return
    for publisher in publishers:
        try:
            await publisher.publish(crossings)
        except Exception:
            log.exception(
                "usage-rollup: a budget publisher (%s) failed; %d crossings not announced there",
                type(publisher).__name__,
                len(crossings),
            )
