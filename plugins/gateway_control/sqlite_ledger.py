"""The ``sqlite`` usage ledger: spend and tokens per tenant, key and model group, per UTC day
and month, in one SQLite file (one box; ``dynamodb`` for a cloud).

Two tables: ``counted`` remembers every request id folded in, ``totals`` holds one row per
``(scope, period)``. A fold is one ``BEGIN IMMEDIATE`` transaction: each id is inserted with
``INSERT OR IGNORE`` (a row inserted means counted now, none means counted before), then only the
newly counted records are added to their totals with ``ON CONFLICT DO UPDATE SET x = x +
excluded.x``. The write lock is taken up front, so concurrent folds (threads, processes) wait
their turn rather than deadlock, and each sees the totals exactly as it left them: what the
fold added is known exactly, for budget thresholds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.control.base import FoldResult, LedgerTotal
from gateway.control.totals import Increment, LedgerKey, increments
from gateway.errors import ServiceUnavailableError
from gateway.governance.sinks import UsageRecord
from gateway.sqlite_file import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS counted (
    request_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    scope             TEXT    NOT NULL,
    period            TEXT    NOT NULL,
    cost_nanos        INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    requests          INTEGER NOT NULL,
    PRIMARY KEY (scope, period)
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO totals (scope, period, cost_nanos, prompt_tokens, completion_tokens, requests)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (scope, period) DO UPDATE SET
    cost_nanos = cost_nanos + excluded.cost_nanos,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    requests = requests + excluded.requests
RETURNING cost_nanos, prompt_tokens, completion_tokens, requests
"""

_SELECT = """
SELECT cost_nanos, prompt_tokens, completion_tokens, requests FROM totals
WHERE scope = ? AND period = ?
"""


class SqliteLedger:
    """The ledger in the SQLite file at ``path`` (created, with its directory, on first use).

    Args:
        path: the database file.
        busy_timeout_ms: how long a fold waits for another process's fold.

    Raises:
        TypeError: ``path`` is not a string.
        ValueError: ``busy_timeout_ms`` is not a non-negative integer.
    """

    def __init__(self, path: str, busy_timeout_ms: int = 5000) -> None:
        self._db = SqliteFile(
            path,
            SCHEMA,
            busy_timeout_ms=busy_timeout_ms,
            failure=ServiceUnavailableError,
            what="the usage ledger",
        )

    async def fold(self, records: Sequence[UsageRecord]) -> FoldResult:
        def work(db: sqlite3.Connection) -> FoldResult:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = _fold(db, records)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._db.run(work)

    async def totals(self, scope: str, period: str) -> LedgerTotal | None:
        def work(db: sqlite3.Connection) -> LedgerTotal | None:
            row = db.execute(_SELECT, (scope, period)).fetchone()
            return None if row is None else _total(scope, period, row, 0)

        return await self._db.run(work)

    async def aclose(self) -> None:
        await self._db.aclose()


def _fold(db: sqlite3.Connection, records: Sequence[UsageRecord]) -> FoldResult:
    counted: list[UsageRecord] = []
    duplicates: list[str] = []
    for rec in records:
        inserted = db.execute(
            "INSERT OR IGNORE INTO counted (request_id) VALUES (?)", (rec.request_id,)
        ).rowcount
        if inserted:
            counted.append(rec)
        else:
            duplicates.append(rec.request_id)
    totals = [_add(db, key, inc) for key, inc in increments(counted).items()]
    return FoldResult([r.request_id for r in counted], duplicates, totals)


def _add(db: sqlite3.Connection, key: LedgerKey, inc: Increment) -> LedgerTotal:
    scope, period = key
    values = (inc.cost_nanos, inc.prompt_tokens, inc.completion_tokens, inc.requests)
    [row] = db.execute(_UPSERT, (scope, period, *values)).fetchall()
    return _total(scope, period, row, inc.cost_nanos)


def _total(scope: str, period: str, row: tuple[int, int, int, int], added: int) -> LedgerTotal:
    cost, prompt, completion, requests = row
    return LedgerTotal(scope, period, cost, prompt, completion, requests, added_nanos=added)
