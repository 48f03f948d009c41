"""One SQLite file shared by the gateway's embedded stores (responses, keys, usage).

One connection in WAL mode (readers never wait on the writer, and several worker processes can
share the file), opened on first use, used from worker threads under a lock: the event loop never
blocks on the disk, and statements never interleave.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

T = TypeVar("T")


def check_busy_timeout(value: object) -> int:
    """``busy_timeout_ms`` as given, if it is a non-negative integer.

    Raises:
        ValueError: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`busy_timeout_ms` must be a non-negative integer, got {value!r}")
    return value


class SqliteFile:
    """A SQLite file with its schema, run from worker threads.

    Args:
        path: the file (its directory is created), or ``:memory:``.
        schema: statements run once when the connection opens (``CREATE TABLE IF NOT
            EXISTS...``).
        busy_timeout_ms: how long a write waits for another process's write lock.
        failure: turns a failure's description into the exception the owner's callers expect
            (``StoreUnavailableError``...); None lets ``sqlite3`` errors through.
        what: the owner, for messages (``the key store``).
        migrate: run after the schema when the connection opens, to bring a file made by an
            earlier version up to date (columns added since).
    """

    def __init__(
        self,
        path: str,
        schema: str,
        *,
        busy_timeout_ms: int = 5000,
        failure: Callable[[str], Exception] | None = None,
        what: str = "the database",
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"`path` must be a file path, got {path!r}")
        self.path = path
        self.busy_timeout_ms = check_busy_timeout(busy_timeout_ms)
        self._schema = schema
        self._failure = failure
        self._what = what
        self._migrate = migrate
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise self._error(f"{self._what} is closed")
        if self._db is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=0
            )
            try:
                db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.executescript(self._schema)
                if self._migrate is not None:
                    self._migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _error(self, message: str) -> Exception:
        return self._failure(message) if self._failure is not None else RuntimeError(message)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in a worker thread, under the lock.

        Raises:
            Exception: what ``failure`` makes of a ``sqlite3`` or OS error (the error itself
                when there is no ``failure``).
        """

        def locked() -> T:
            with self._lock:
                return work(self._connect())

        if self._failure is None:
            return await anyio.to_thread.run_sync(locked)
        try:
            return await anyio.to_thread.run_sync(locked)
        except (sqlite3.Error, OSError) as exc:
            raise self._failure(f"{self._what} failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the connection; later calls fail as closed."""

        def work() -> None:
            with self._lock:
                self._closed = True
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await anyio.to_thread.run_sync(work)
