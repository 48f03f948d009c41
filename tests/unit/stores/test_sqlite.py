"""What is particular to the ``sqlite`` store: the file, WAL, threads, purging, failures."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import anyio
import pytest
from gateway_store_sqlite.store import SqliteResponseStore

from gateway.clock import ManualClock
from gateway.stores import StoredObject, StoreUnavailableError

pytestmark = pytest.mark.anyio


def record(id: str, at: float = 1.0) -> StoredObject:
    return StoredObject(id=id, kind="response", created_at=at, model="m", body={"id": id})


async def test_the_file_and_its_directory_are_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "responses.sqlite3"
    store = SqliteResponseStore(path=str(path))
    assert not path.parent.exists()  # nothing happens before the first use
    await store.put("ns", record("r1"))
    await store.aclose()
    assert path.exists()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT namespace, id, kind FROM stored_objects").fetchall() == [
            ("ns", "r1", "response")
        ]


async def test_concurrent_calls_share_the_connection(tmp_path: Path) -> None:
    store = SqliteResponseStore(path=str(tmp_path / "r.sqlite3"))
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(store.put, "ns", record(f"r{i:02}", float(i)))
    page = await store.list("ns", "response", limit=100)
    assert [r.id for r in page.data] == [f"r{i:02}" for i in range(50)]
    await store.aclose()


async def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    """Several gateway worker processes on one box share the file."""
    path = str(tmp_path / "r.sqlite3")
    a, b = SqliteResponseStore(path=path), SqliteResponseStore(path=path)
    await a.put("ns", record("r1"))
    assert await b.get("ns", "r1") == record("r1")
    assert await b.delete("ns", "r1") is True
    assert await a.get("ns", "r1") is None
    await a.aclose()
    await b.aclose()


async def test_expired_rows_are_purged_in_bounded_sweeps(tmp_path: Path) -> None:
    clock = ManualClock(start=1000.0)
    path = tmp_path / "r.sqlite3"
    store = SqliteResponseStore(path=str(path), ttl_s=10, sweep_limit=3, clock=clock)
    for i in range(8):
        await store.put("ns", record(f"r{i}"))
    clock.advance(10)

    def rows() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM stored_objects").fetchone()[0])

    assert rows() == 8
    await store.put("ns", record("fresh"))  # sweeps 3 of the 8 expired
    assert rows() == 6
    assert await store.purge_expired() == 5
    assert rows() == 1
    await store.aclose()


async def test_in_memory(tmp_path: Path) -> None:
    store = SqliteResponseStore(path=":memory:")
    await store.put("ns", record("r1"))
    assert await store.get("ns", "r1") == record("r1")
    await store.aclose()
    assert os.listdir(tmp_path) == []


async def test_failures_are_store_unavailable(tmp_path: Path) -> None:
    not_a_db = tmp_path / "garbage.sqlite3"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailableError, match="DatabaseError") as caught:
        await SqliteResponseStore(path=str(not_a_db)).get("ns", "r1")
    assert caught.value.status == 503
    blocked = tmp_path / "file"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(StoreUnavailableError):
        await SqliteResponseStore(path=str(blocked / "r.sqlite3")).put("ns", record("r1"))
    closed = SqliteResponseStore(path=str(tmp_path / "r.sqlite3"))
    await closed.aclose()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await closed.get("ns", "r1")


def test_bad_options() -> None:
    with pytest.raises(TypeError, match="path"):
        SqliteResponseStore(path="")
    with pytest.raises(ValueError, match="sweep_limit"):
        SqliteResponseStore(sweep_limit=-1)
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        SqliteResponseStore(busy_timeout_ms=1.5)  # type: ignore[arg-type]
