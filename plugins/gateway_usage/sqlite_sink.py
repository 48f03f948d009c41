"""The ``sqlite`` usage sink: usage and audit records in one SQLite file, which also answers
spend reports (:class:`~gateway.governance.sinks.SpendReader`).

The embedded default for one box. One connection (WAL mode, so a report never waits on the
writer and several gateway worker processes can share the file), used under a lock from worker
threads: the event loop never blocks on the disk. Writes are ``INSERT OR IGNORE`` keyed by
``request_id`` / ``audit_id``, so a batch delivered twice counts once. Money is an ``INTEGER``
column of nano-dollars, summed exactly by SQLite's integer ``SUM``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from gateway.governance.sinks import AuditRecord, SpendQuery, SpendRow, UsageRecord
from gateway.sqlite_file import SqliteFile

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    request_id        TEXT PRIMARY KEY,
    model             TEXT NOT NULL,
    backend           TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    busy_s            REAL NOT NULL,
    key_id            TEXT,
    tenant            TEXT,
    cost_nanos        INTEGER NOT NULL,
    status            INTEGER NOT NULL,
    started_at        REAL NOT NULL,
    finished_at       REAL NOT NULL,
    endpoint          TEXT NOT NULL,
    cached            INTEGER NOT NULL,
    coalesced         INTEGER NOT NULL,
    reserved_tokens   INTEGER NOT NULL,
    error_code        TEXT,
    parent_id         TEXT,
    agent             TEXT,
    step              INTEGER NOT NULL DEFAULT 0,
    route             TEXT
);
CREATE INDEX IF NOT EXISTS usage_tenant ON usage (tenant, started_at);
CREATE INDEX IF NOT EXISTS usage_key ON usage (key_id, started_at);
CREATE INDEX IF NOT EXISTS usage_model ON usage (model, started_at);
CREATE TABLE IF NOT EXISTS audit (
    audit_id TEXT PRIMARY KEY,
    at       REAL NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    tenant   TEXT,
    before   TEXT,
    after    TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, at);
"""

# Columns added after the first release, for files made before them (``ALTER TABLE`` on open).
_ADDED_COLUMNS = {
    "parent_id": "TEXT",
    "agent": "TEXT",
    "step": "INTEGER NOT NULL DEFAULT 0",
    "route": "TEXT",
}


def _add_missing_columns(db: sqlite3.Connection) -> None:
    present = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")  # constants only


_COLUMNS = (
    "request_id",
    "model",
    "backend",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "busy_s",
    "key_id",
    "tenant",
    "cost_nanos",
    "status",
    "started_at",
    "finished_at",
    "endpoint",
    "cached",
    "coalesced",
    "reserved_tokens",
    "error_code",
    "parent_id",
    "agent",
    "step",
    "route",
)
_INSERT_USAGE = (
    f"INSERT OR IGNORE INTO usage ({', '.join(_COLUMNS)})"  # noqa: S608 (constants only)
    f" VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_INSERT_AUDIT = (
    "INSERT OR IGNORE INTO audit (audit_id, at, actor, action, target, tenant, before, after)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

# How each spend dimension is computed (only these constants ever reach the SQL text).
_DIMENSIONS = {
    "tenant": "tenant",
    "key": "key_id",
    "model": "model",
    "day": "strftime('%Y-%m-%d', started_at, 'unixepoch')",
}

_json = msgspec.json.Encoder()
_decode_json = msgspec.json.Decoder(dict[str, Any] | None)


def _usage_row(rec: UsageRecord) -> tuple[Any, ...]:
    return (
        rec.request_id,
        rec.model,
        rec.backend,
        rec.prompt_tokens,
        rec.completion_tokens,
        rec.cached_tokens,
        rec.busy_s,
        rec.key_id,
        rec.tenant,
        rec.cost_nanos,
        rec.status,
        rec.started_at,
        rec.finished_at,
        rec.endpoint,
        int(rec.cached),
        int(rec.coalesced),
        rec.reserved_tokens,
        rec.error_code,
        rec.parent_id,
        rec.agent,
        rec.step,
        rec.route,
    )


def _audit_row(rec: AuditRecord) -> tuple[Any, ...]:
    return (
        rec.audit_id,
        rec.at,
        rec.actor,
        rec.action,
        rec.target,
        rec.tenant,
        None if rec.before is None else _json.encode(rec.before).decode(),
        None if rec.after is None else _json.encode(rec.after).decode(),
    )


class SqliteUsageSink:
    """Usage and audit records in the SQLite file at ``path``.

    Args:
        path: the database file, created (with its directory) on first use; ``:memory:`` for a
            private in-memory database.
        busy_timeout_ms: how long a write waits for another process's write lock.

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(self, path: str = "data/usage.sqlite3", busy_timeout_ms: int = 5000) -> None:
        # sqlite3 errors reach the ledger as they are: it retries the batch.
        self._file = SqliteFile(
            path,
            _SCHEMA,
            busy_timeout_ms=busy_timeout_ms,
            what="the usage sink",
            migrate=_add_missing_columns,
        )
        self.path = path

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._file.run(work)

    # -- UsageSink -----------------------------------------------------------------------------

    async def write(self, records: Sequence[UsageRecord]) -> None:
        rows = [_usage_row(r) for r in records]

        def work(db: sqlite3.Connection) -> None:
            with db:  # one transaction per batch
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_INSERT_USAGE, rows)

        await self._run(work)

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        rows = [_audit_row(r) for r in records]

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_INSERT_AUDIT, rows)

        await self._run(work)

    async def aclose(self) -> None:
        await self._file.aclose()

    # -- SpendReader ---------------------------------------------------------------------------

    async def spend(self, query: SpendQuery) -> list[SpendRow]:
        dims = list(query.group_by)
        unknown = [d for d in dims if d not in _DIMENSIONS]
        if unknown or len(set(dims)) != len(dims):
            raise ValueError(f"bad spend dimensions: {', '.join(dims)}")
        exprs = [_DIMENSIONS[d] for d in dims]
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("tenant", query.tenant),
            ("key_id", query.key_id),
            ("model", query.model),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            where.append("started_at >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("started_at < ?")
            args.append(query.until)
        select = [*exprs, "COUNT(*)", "SUM(prompt_tokens)", "SUM(completion_tokens)"]
        select += ["SUM(cached_tokens)", "SUM(cost_nanos)"]
        sql = f"SELECT {', '.join(select)} FROM usage"  # noqa: S608 (constants only)
        if where:
            sql += " WHERE " + " AND ".join(where)
        if exprs:
            positions = ", ".join(str(i + 1) for i in range(len(exprs)))
            sql += f" GROUP BY {positions} ORDER BY {positions}"

        def work(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(sql, args).fetchall()

        rows = await self._run(work)
        n = len(dims)
        return [
            SpendRow(
                keys={
                    d: (None if v is None else str(v)) for d, v in zip(dims, row[:n], strict=True)
                },
                requests=int(row[n]),
                prompt_tokens=int(row[n + 1] or 0),
                completion_tokens=int(row[n + 2] or 0),
                cached_tokens=int(row[n + 3] or 0),
                cost_nanos=int(row[n + 4] or 0),
            )
            for row in rows
            if row[n]  # no grouping and no rows: one all-NULL row, which is no spend at all
        ]

    async def audit_log(self, *, tenant: str | None = None, limit: int = 100) -> list[AuditRecord]:
        sql = "SELECT audit_id, at, actor, action, target, tenant, before, after FROM audit"
        args: list[Any] = []
        if tenant is not None:
            sql += " WHERE tenant = ?"
            args.append(tenant)
        sql += " ORDER BY at DESC, audit_id DESC LIMIT ?"
        args.append(max(int(limit), 0))

        def work(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(sql, args).fetchall()

        return [
            AuditRecord(
                audit_id=row[0],
                at=row[1],
                actor=row[2],
                action=row[3],
                target=row[4],
                tenant=row[5],
                before=None if row[6] is None else _decode_json.decode(row[6]),
                after=None if row[7] is None else _decode_json.decode(row[7]),
            )
            for row in await self._run(work)
        ]
