"""The ``dynamodb`` usage ledger: spend and tokens per tenant, key and model group, per day and
month, in one DynamoDB table, folded exactly once per request id.

The table has string keys ``pk`` and ``sk`` (:func:`create_table`):

- ``pk="req#<request_id>", sk="req"``: a counted request (``counted_at``, and ``expires_at`` for
  the table's TTL: ``marker_ttl_days`` after counting, far beyond SQS's 14-day retention, so a
  redelivery always finds its marker).
- ``pk="<scope>", sk="<period>"``: the totals ``cost_nanos``, ``prompt_tokens``,
  ``completion_tokens``, ``requests`` (numbers, increased with ``ADD``) and ``version`` (the
  transactions that changed it). A record's scopes are ``tenant:<t>`` (if any), ``key:<id>``
  (if any) and ``model:<group>``; its periods its day (``2026-12-01``) and month (``2026-12``),
  UTC, of ``started_at``.

No crash window: the markers of a chunk of records (up to 100 items: about 90 records of one
tenant, key and model) and the ``ADD`` of their summed deltas are one ``TransactWriteItems``,
each marker conditional on ``attribute_not_exists(pk)``. Either a record's marker and its
deltas are written, or neither: a crash or a failed call anywhere leaves nothing half counted,
and the retry counts each record once. A cancelled transaction names the markers that already
existed (a redelivery): those records are duplicates, and it is retried without them.

Exact totals for budget checks: transactions return no new values, so each chunk first reads
its totals (strongly consistent) and makes every ``ADD`` conditional on the ``version`` it
read. When it commits, the totals before and after it are known exactly, even with other folds
adding to the same scope at once (a concurrent change cancels the transaction, which is read
and tried again, with backoff, a bounded number of times). Each :class:`LedgerTotal` a fold
returns is therefore the exact span of its own addition (``cost_nanos - added_nanos`` to
``cost_nanos``): a budget threshold falls in exactly one fold's span. A fold whose chunks were
interleaved with another fold's reports a scope once per non-contiguous span.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import anyio
from botocore.exceptions import ClientError

from gateway.control.base import FoldResult, LedgerTotal
from gateway.errors import ServiceUnavailableError
from gateway.governance.sinks import UsageRecord
from gateway_aws.aws import call, error_code, make_client, require_count, require_name

TRANSACT_MAX = 100  # items per TransactWriteItems (the API's limit)
BATCH_GET_MAX = 100  # keys per BatchGetItem
ATTEMPTS = 16  # transactions tried per chunk (conflicts with concurrent folds, duplicates found)
# Cancellation reasons a retry resolves: a marker that exists (a duplicate), a total changed
# since it was read, a concurrent transaction on the same item.
_RETRIED = {"None", "ConditionalCheckFailed", "TransactionConflict"}
COUNTERS = ("cost_nanos", "prompt_tokens", "completion_tokens", "requests")

Key = tuple[str, str]  # (scope, period)


def scopes_of(rec: UsageRecord) -> list[Key]:
    """The totals a record adds to: each scope by its day and its month."""
    scopes = [f"tenant:{rec.tenant}"] if rec.tenant else []
    if rec.key_id:
        scopes.append(f"key:{rec.key_id}")
    scopes.append(f"model:{rec.model}")
    day = time.strftime("%Y-%m-%d", time.gmtime(rec.started_at))
    return [(scope, period) for scope in scopes for period in (day, day[:7])]


@dataclass(slots=True)
class _Delta:
    cost_nanos: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def add(self, rec: UsageRecord) -> None:
        self.cost_nanos += rec.cost_nanos
        self.prompt_tokens += rec.prompt_tokens
        self.completion_tokens += rec.completion_tokens
        self.requests += 1


@dataclass(slots=True)
class _Chunk:
    records: list[UsageRecord] = field(default_factory=list)
    keys: set[Key] = field(default_factory=set)


def _scope_order(rec: UsageRecord) -> tuple[str, str, str, str]:
    return (rec.tenant or "", rec.key_id or "", rec.model, scopes_of(rec)[0][1])


def chunks(records: Iterable[UsageRecord]) -> list[_Chunk]:
    """Records grouped so that each group's markers and totals fit one transaction.

    Records are taken in the order of their totals (tenant, key, model group, day), so a chunk
    holds as many records and as few totals as it can: a batch of many keys costs about one
    item (two write units) per record, not two (a chunk in arrival order holds nearly every
    total of the batch)."""
    out: list[_Chunk] = [_Chunk()]
    for rec in sorted(records, key=_scope_order):
        keys = set(scopes_of(rec))
        last = out[-1]
        if last.records and len(last.records) + 1 + len(last.keys | keys) > TRANSACT_MAX:
            last = _Chunk()
            out.append(last)
        last.records.append(rec)
        last.keys |= keys
    return [c for c in out if c.records]


def deltas(records: Iterable[UsageRecord]) -> dict[Key, _Delta]:
    """The summed deltas of ``records`` per total."""
    out: dict[Key, _Delta] = {}
    for rec in records:
        for key in scopes_of(rec):
            out.setdefault(key, _Delta()).add(rec)
    return out


def create_table(client: Any, name: str) -> None:
    """Create the ledger's table ``name`` (on-demand billing, TTL on ``expires_at``) with the
    boto3 DynamoDB ``client``, and wait until it is active (for tests and first deployments;
    ``serverless.yml`` declares the same table)."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )


class DynamoDbUsageLedger:
    """The ledger in the DynamoDB table ``table``.

    Args:
        table: the table's name (keys ``pk``, ``sk``: :func:`create_table`).
        marker_ttl_days: how long a counted request id is remembered (the table's TTL).
        endpoint_url: the DynamoDB endpoint (default: boto3's, ``AWS_ENDPOINT_URL`` included).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        table: str,
        marker_ttl_days: int = 35,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.table = require_name("table", table)
        self.marker_ttl_s = require_count("marker_ttl_days", marker_ttl_days) * 86_400
        self.client: Any = make_client("dynamodb", endpoint_url=endpoint_url, region=region)

    async def fold(self, records: Sequence[UsageRecord]) -> FoldResult:
        """Count each record whose request id was not counted before (the first of an id
        within the batch), and return the totals they changed.

        Raises:
            ServiceUnavailableError: DynamoDB could not be reached; every transaction that
                succeeded before is complete, and a retry reports its records as duplicates
                (their totals are not in the retry's result).
        """
        first: dict[str, UsageRecord] = {}
        result = FoldResult()
        for rec in records:
            if rec.request_id in first:
                result.duplicates.append(rec.request_id)  # twice in the batch: once counted
            else:
                first[rec.request_id] = rec
        unique = list(first.values())
        last: dict[Key, int] = {}  # where each total is in result.totals
        for chunk in chunks(unique):
            folded, duplicates, totals = await self._fold_chunk(chunk.records)
            result.counted.extend(r.request_id for r in folded)
            result.duplicates.extend(duplicates)
            for total in totals:
                _merge(result.totals, last, total)
        return result

    async def _fold_chunk(
        self, records: list[UsageRecord]
    ) -> tuple[list[UsageRecord], list[str], list[LedgerTotal]]:
        """One chunk's transaction, retried without the records found counted already, and
        after a concurrent fold changed one of its totals; returns the records counted, those
        found counted before, and the totals after the transaction."""
        duplicates: list[str] = []
        for attempt in range(ATTEMPTS):
            if not records:
                break
            add = deltas(records)
            seen = await self._read(sorted(add))
            try:
                await call(
                    f"dynamodb TransactWriteItems on {self.table}",
                    partial(self._transact, self._items(records, add, seen)),
                )
            except _CancelledError as cancelled:
                other = set(cancelled.codes) - _RETRIED
                if other:  # not a redelivery nor a race: retrying would not help
                    raise ServiceUnavailableError(
                        f"dynamodb TransactWriteItems on {self.table} cancelled: "
                        f"{', '.join(sorted(other))}"
                    ) from cancelled
                found = {
                    records[i].request_id
                    for i, code in enumerate(cancelled.codes[: len(records)])
                    if code == "ConditionalCheckFailed"
                }
                duplicates.extend(sorted(found))
                records = [r for r in records if r.request_id not in found]
                if not found:  # a concurrent fold changed a total: back off, read again
                    await anyio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
                continue
            after = [_after(key, seen.get(key), d) for key, d in sorted(add.items())]
            return records, duplicates, after
        if records:
            raise ServiceUnavailableError(
                f"dynamodb TransactWriteItems on {self.table}: still conflicting after "
                f"{ATTEMPTS} attempts; nothing of the chunk was counted"
            )
        return records, duplicates, []

    def _items(
        self, records: list[UsageRecord], add: dict[Key, _Delta], seen: dict[Key, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The transaction: the records' markers, then the totals' ``ADD``s, each conditional
        on the total's ``version`` being the one read (or on its absence)."""
        now = int(time.time())
        markers = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "pk": {"S": f"req#{r.request_id}"},
                        "sk": {"S": "req"},
                        "counted_at": {"N": str(now)},
                        "expires_at": {"N": str(now + self.marker_ttl_s)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for r in records
        ]
        totals = []
        for key, d in sorted(add.items()):
            values = {f":{name}": {"N": str(value)} for name, value in asdict(d).items()}
            values[":one"] = {"N": "1"}
            update: dict[str, Any] = {
                "TableName": self.table,
                "Key": {"pk": {"S": key[0]}, "sk": {"S": key[1]}},
                "UpdateExpression": "ADD "
                + ", ".join(f"{name} :{name}" for name in COUNTERS)
                + ", #version :one",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": values,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            if key in seen:
                update["ConditionExpression"] = "#version = :version"
                values[":version"] = seen[key]["version"]
            totals.append({"Update": update})
        return markers + totals

    def _transact(self, items: list[dict[str, Any]]) -> None:
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons", [])
            raise _CancelledError([str(r.get("Code", "")) for r in reasons]) from exc

    async def _read(self, keys: list[Key]) -> dict[Key, dict[str, Any]]:
        """The items of the totals ``keys`` that exist (strongly consistent)."""
        out: dict[Key, dict[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET_MAX):
            for item in await call(
                f"dynamodb BatchGetItem on {self.table}",
                partial(self._batch_get, keys[start : start + BATCH_GET_MAX]),
            ):
                out[(item["pk"]["S"], item["sk"]["S"])] = item
        return out

    def _batch_get(self, keys: list[Key]) -> list[dict[str, Any]]:
        """Every item of ``keys`` (unprocessed keys asked for again, a bounded number of
        times)."""
        request: dict[str, Any] = {
            self.table: {
                "Keys": [{"pk": {"S": s}, "sk": {"S": p}} for s, p in keys],
                "ConsistentRead": True,
            }
        }
        items: list[dict[str, Any]] = []
        for _ in range(ATTEMPTS):
            reply = self.client.batch_get_item(RequestItems=request)
            items.extend(reply.get("Responses", {}).get(self.table, []))
            request = reply.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(0.05)
        raise ServiceUnavailableError(f"dynamodb BatchGetItem on {self.table}: keys unprocessed")

    async def totals(self, scope: str, period: str) -> LedgerTotal | None:
        """The totals of ``scope`` in ``period`` (``added_nanos`` 0), if any were counted.

        Raises:
            ServiceUnavailableError: DynamoDB could not be reached.
        """
        reply = await call(
            f"dynamodb GetItem on {self.table}",
            partial(
                self.client.get_item,
                TableName=self.table,
                Key={"pk": {"S": scope}, "sk": {"S": period}},
                ConsistentRead=True,
            ),
        )
        item = reply.get("Item")
        return None if item is None else _total(item, 0)

    async def aclose(self) -> None:
        self.client.close()


class _CancelledError(Exception):
    """A cancelled transaction, with the reason code of each item (``None``: that one was
    fine)."""

    def __init__(self, codes: list[str]) -> None:
        super().__init__(codes)
        self.codes = codes


def _after(key: Key, before: dict[str, Any] | None, d: _Delta) -> LedgerTotal:
    """The total ``key`` after adding ``d`` to ``before`` (None: it did not exist)."""
    was = _total(before, 0) if before is not None else None
    return LedgerTotal(
        scope=key[0],
        period=key[1],
        cost_nanos=(was.cost_nanos if was else 0) + d.cost_nanos,
        prompt_tokens=(was.prompt_tokens if was else 0) + d.prompt_tokens,
        completion_tokens=(was.completion_tokens if was else 0) + d.completion_tokens,
        requests=(was.requests if was else 0) + d.requests,
        added_nanos=d.cost_nanos,
    )


def _merge(totals: list[LedgerTotal], last: dict[Key, int], new: LedgerTotal) -> None:
    """Add a chunk's total to a fold's: merged with the fold's earlier one for that scope and
    period when they are contiguous (nothing else was added between), else beside it."""
    key = (new.scope, new.period)
    i = last.get(key)
    if i is not None and totals[i].cost_nanos == new.cost_nanos - new.added_nanos:
        totals[i] = replace(new, added_nanos=totals[i].added_nanos + new.added_nanos)
        return
    last[key] = len(totals)
    totals.append(new)


def _total(item: dict[str, Any], added_nanos: int) -> LedgerTotal:
    def number(name: str) -> int:
        return int(item.get(name, {}).get("N", "0"))

    return LedgerTotal(
        scope=item["pk"]["S"],
        period=item["sk"]["S"],
        cost_nanos=number("cost_nanos"),
        prompt_tokens=number("prompt_tokens"),
        completion_tokens=number("completion_tokens"),
        requests=number("requests"),
        added_nanos=added_nanos,
    )
