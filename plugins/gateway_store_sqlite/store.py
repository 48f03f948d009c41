"""The ``sqlite`` response store: stored responses and chat completions in one SQLite file.

The embedded default for one box. One connection (WAL mode, so readers never wait on the
writer, and several gateway worker processes can share the file), used under a lock from
worker threads: the event loop never blocks on the disk. Expired rows are filtered out on every
read and deleted a bounded batch at a time on writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.sqlite_file import SqliteFile
from gateway.stores.base import (
    DEFAULT_TTL_S,
    Kind,
    Order,
    StoredObject,
    StoredPage,
    StoreUnavailableError,
    check_list_args,
    check_record,
    check_ttl,
    decode_record,
    encode_record,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stored_objects (
    namespace  TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at REAL NOT NULL,
    model      TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    expires_at REAL NOT NULL,
    record     BLOB NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE INDEX IF NOT EXISTS stored_objects_listing
    ON stored_objects (namespace, kind, created_at, id);
CREATE INDEX IF NOT EXISTS stored_objects_expiry ON stored_objects (expires_at);
"""

_UPSERT = """
INSERT INTO stored_objects (namespace, id, kind, created_at, model, metadata, expires_at, record)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (namespace, id) DO UPDATE SET
    kind = excluded.kind, created_at = excluded.created_at, model = excluded.model,
    metadata = excluded.metadata, expires_at = excluded.expires_at, record = excluded.record
"""

_SWEEP = """
DELETE FROM stored_objects WHERE rowid IN
    (SELECT rowid FROM stored_objects WHERE expires_at <= ? LIMIT ?)
"""


class SqliteResponseStore:
    """Stored objects in the SQLite file at ``path``.

    Args:
        path: the database file, created (with its directory) on first use; ``:memory:`` for a
            private in-memory database (tests).
        ttl_s: retention in seconds from the last write (default 30 days).
        sweep_limit: most expired rows deleted per write.
        busy_timeout_ms: how long a write waits for another process's write lock.
        clock: the gateway's clock (expiry).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        path: str = "data/responses.sqlite3",
        ttl_s: float = DEFAULT_TTL_S,
        sweep_limit: int = 100,
        busy_timeout_ms: int = 5000,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if isinstance(sweep_limit, bool) or not isinstance(sweep_limit, int) or sweep_limit < 0:
            raise ValueError(f"`sweep_limit` must be a non-negative integer, got {sweep_limit!r}")
        self._file = SqliteFile(
            path,
            _SCHEMA,
            busy_timeout_ms=busy_timeout_ms,
            failure=StoreUnavailableError,
            what="the response store",
        )
        self.path = path
        self.ttl_s = check_ttl(ttl_s)
        self.sweep_limit = sweep_limit
        self._clock = clock

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._file.run(work)

    # -- the contract --------------------------------------------------------------------------

    async def put(self, namespace: str, record: StoredObject) -> None:
        check_record(record)
        now = self._clock.time()
        row = (
            namespace,
            record.id,
            record.kind,
            record.created_at,
            record.model,
            _json(record.metadata),
            now + self.ttl_s,
            encode_record(record),
        )

        def work(db: sqlite3.Connection) -> None:
            with db:  # one transaction: the write and the sweep
                db.execute("BEGIN IMMEDIATE")
                db.execute(_UPSERT, row)
                if self.sweep_limit:
                    db.execute(_SWEEP, (now, self.sweep_limit))

        await self._run(work)

    async def get(self, namespace: str, id: str) -> StoredObject | None:
        now = self._clock.time()

        def work(db: sqlite3.Connection) -> bytes | None:
            found = db.execute(
                "SELECT record FROM stored_objects"
                " WHERE namespace = ? AND id = ? AND expires_at > ?",
                (namespace, id, now),
            ).fetchone()
            return None if found is None else bytes(found[0])

        data = await self._run(work)
        return None if data is None else _decode(data)

    async def delete(self, namespace: str, id: str) -> bool:
        now = self._clock.time()

        def work(db: sqlite3.Connection) -> bool:
            with db:
                db.execute("BEGIN IMMEDIATE")
                live = db.execute(
                    "SELECT expires_at > ? FROM stored_objects WHERE namespace = ? AND id = ?",
                    (now, namespace, id),
                ).fetchone()
                db.execute(
                    "DELETE FROM stored_objects WHERE namespace = ? AND id = ?", (namespace, id)
                )
            return bool(live and live[0])

        return await self._run(work)

    async def list(
        self,
        namespace: str,
        kind: Kind,
        *,
        after: str | None = None,
        limit: int = 20,
        order: Order = "asc",
        metadata: Mapping[str, str] | None = None,
        model: str | None = None,
    ) -> StoredPage:
        check_list_args(limit, order)
        now = self._clock.time()
        sql = [
            "SELECT record FROM stored_objects o"
            " WHERE o.namespace = ? AND o.kind = ? AND o.expires_at > ?"
        ]
        args: list[Any] = [namespace, kind, now]
        if model is not None:
            sql.append("AND o.model = ?")
            args.append(model)
        for key, value in (metadata or {}).items():
            sql.append(
                "AND EXISTS (SELECT 1 FROM json_each(o.metadata) m"
                " WHERE m.key = ? AND m.type = 'text' AND m.value = ?)"
            )
            args += [key, value]
        direction, compare = ("ASC", ">") if order == "asc" else ("DESC", "<")
        if after is not None:
            # An `after` that is not there (deleted, purged) compares with NULL: an empty page.
            sql.append(
                f"AND (o.created_at, o.id) {compare} (SELECT c.created_at, c.id"  # noqa: S608
                " FROM stored_objects c WHERE c.namespace = ? AND c.id = ? AND c.kind = ?)"
            )
            args += [namespace, after, kind]
        sql.append(f"ORDER BY o.created_at {direction}, o.id {direction} LIMIT ?")
        args.append(limit + 1)
        query = " ".join(sql)  # (only constants are interpolated; values are parameters)

        def work(db: sqlite3.Connection) -> list[bytes]:
            return [bytes(row[0]) for row in db.execute(query, args)]

        rows = await self._run(work)
        return StoredPage(tuple(_decode(row) for row in rows[:limit]), len(rows) > limit)

    async def update_metadata(
        self, namespace: str, id: str, metadata: Mapping[str, str]
    ) -> StoredObject | None:
        now = self._clock.time()

        def work(db: sqlite3.Connection) -> StoredObject | None:
            with db:  # read, change and write in one transaction
                db.execute("BEGIN IMMEDIATE")
                found = db.execute(
                    "SELECT record FROM stored_objects"
                    " WHERE namespace = ? AND id = ? AND expires_at > ?",
                    (namespace, id, now),
                ).fetchone()
                if found is None:
                    return None
                record = _decode(bytes(found[0])).with_metadata(metadata)
                db.execute(
                    "UPDATE stored_objects SET metadata = ?, record = ?"
                    " WHERE namespace = ? AND id = ?",
                    (_json(record.metadata), encode_record(record), namespace, id),
                )
                return record

        return await self._run(work)

    async def purge_expired(self, limit: int | None = None) -> int:
        """Delete expired rows now (at most ``limit``, else all); how many went."""
        now = self._clock.time()

        def work(db: sqlite3.Connection) -> int:
            with db:
                if limit is None:
                    cursor = db.execute("DELETE FROM stored_objects WHERE expires_at <= ?", (now,))
                else:
                    cursor = db.execute(_SWEEP, (now, limit))
                return cursor.rowcount

        return await self._run(work)

    async def aclose(self) -> None:
        await self._file.aclose()


def _json(metadata: Mapping[str, str]) -> str:
    return msgspec.json.encode(metadata).decode()


def _decode(data: bytes) -> StoredObject:
    try:
        return decode_record(data)
    except msgspec.DecodeError as exc:
        raise StoreUnavailableError(f"the response store holds a corrupt record: {exc}") from exc
