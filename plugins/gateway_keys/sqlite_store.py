"""The ``sqlite`` key store: virtual keys and tenants in one SQLite file (the embedded default).

One connection (WAL mode, so several gateway worker processes can share the file and readers
never wait on the writer), used under a lock from worker threads: the event loop never blocks
on the disk. Each record is stored as msgspec JSON beside the columns it is looked up and listed
by. Every write is one transaction. There is no change feed (:meth:`changes` is None): another
process's cache expires by time (``governance.key_cache_ttl_s``), and the admin API drops its
own process's entries at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from gateway.clock import SYSTEM_CLOCK, Clock
from gateway.governance.keystore import Change, ConflictError, KeyStoreUnavailableError
from gateway.governance.records import KeyRecord, TenantRecord
from gateway.sqlite_file import SqliteFile
from gateway_keys.codec import decode_key, decode_tenant, encode

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT,
    created_at REAL NOT NULL,
    record     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_keys_listing ON gateway_keys (created_at, id);
CREATE INDEX IF NOT EXISTS gateway_keys_tenant ON gateway_keys (tenant, created_at, id);
CREATE TABLE IF NOT EXISTS gateway_tenants (
    name       TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    record     BLOB NOT NULL
);
"""


class SqliteKeyStore:
    """Keys and tenants in the SQLite file at ``path``.

    Args:
        path: the database file, created (with its directory) on first use; ``:memory:`` for a
            private in-memory database (tests).
        busy_timeout_ms: how long a write waits for another process's write lock.
        clock: the gateway's clock (unused: records carry their own times).
        pepper: unused (records hold hashes already).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        path: str = "data/keys.sqlite3",
        busy_timeout_ms: int = 5000,
        *,
        clock: Clock = SYSTEM_CLOCK,
        pepper: bytes = b"",
    ) -> None:
        self._file = SqliteFile(
            path,
            _SCHEMA,
            busy_timeout_ms=busy_timeout_ms,
            failure=KeyStoreUnavailableError,
            what="the key store",
        )
        self.path = path

    @property
    def writable(self) -> bool:
        return True

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._file.run(work)

    async def _one(self, sql: str, args: tuple[Any, ...]) -> bytes | None:
        def work(db: sqlite3.Connection) -> bytes | None:
            found = db.execute(sql, args).fetchone()
            return None if found is None else bytes(found[0])

        return await self._run(work)

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[bytes]:
        def work(db: sqlite3.Connection) -> list[bytes]:
            return [bytes(row[0]) for row in db.execute(sql, args)]

        return await self._run(work)

    # -- reads ---------------------------------------------------------------------------------

    async def get_key(self, key_id: str) -> KeyRecord | None:
        data = await self._one("SELECT record FROM gateway_keys WHERE id = ?", (key_id,))
        return None if data is None else decode_key(data)

    async def get_tenant(self, name: str) -> TenantRecord | None:
        data = await self._one("SELECT record FROM gateway_tenants WHERE name = ?", (name,))
        return None if data is None else decode_tenant(data)

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        if tenant is None:
            rows = await self._all("SELECT record FROM gateway_keys ORDER BY created_at, id", ())
        else:
            rows = await self._all(
                "SELECT record FROM gateway_keys WHERE tenant = ? ORDER BY created_at, id",
                (tenant,),
            )
        return [decode_key(row) for row in rows]

    async def list_tenants(self) -> list[TenantRecord]:
        rows = await self._all("SELECT record FROM gateway_tenants ORDER BY name", ())
        return [decode_tenant(row) for row in rows]

    # -- writes: one transaction each ----------------------------------------------------------

    async def put_key(self, record: KeyRecord, *, create: bool) -> None:
        row = (record.tenant, record.created_at, encode(record), record.id)

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                if create:
                    try:
                        db.execute(
                            "INSERT INTO gateway_keys (tenant, created_at, record, id)"
                            " VALUES (?, ?, ?, ?)",
                            row,
                        )
                    except sqlite3.IntegrityError:
                        raise ConflictError(f"a key with id `{record.id}` exists") from None
                else:
                    cursor = db.execute(
                        "UPDATE gateway_keys SET tenant = ?, created_at = ?, record = ?"
                        " WHERE id = ?",
                        row,
                    )
                    if cursor.rowcount == 0:
                        raise KeyError(record.id)

        await self._run(work)

    async def put_tenant(self, record: TenantRecord, *, create: bool) -> None:
        row = (record.created_at, encode(record), record.name)

        def work(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                if create:
                    try:
                        db.execute(
                            "INSERT INTO gateway_tenants (created_at, record, name)"
                            " VALUES (?, ?, ?)",
                            row,
                        )
                    except sqlite3.IntegrityError:
                        raise ConflictError(f"a tenant named `{record.name}` exists") from None
                else:
                    cursor = db.execute(
                        "UPDATE gateway_tenants SET created_at = ?, record = ? WHERE name = ?",
                        row,
                    )
                    if cursor.rowcount == 0:
                        raise KeyError(record.name)

        await self._run(work)

    async def delete_tenant(self, name: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            with db:  # the check and the delete in one transaction: no key slips in between
                db.execute("BEGIN IMMEDIATE")
                keys = db.execute(
                    "SELECT COUNT(*) FROM gateway_keys WHERE tenant = ?", (name,)
                ).fetchone()[0]
                if keys:
                    raise ConflictError(f"the tenant `{name}` still has {keys} key(s)")
                cursor = db.execute("DELETE FROM gateway_tenants WHERE name = ?", (name,))
                if cursor.rowcount == 0:
                    raise KeyError(name)

        await self._run(work)

    def changes(self) -> AsyncIterator[Change] | None:
        return None

    async def aclose(self) -> None:
        await self._file.aclose()
