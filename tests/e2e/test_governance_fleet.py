"""Governance across replicas: two ``gateway serve`` processes sharing one real redis-server for
keys and limits. An RPM limit holds across both, concurrent clients cannot overspend a budget, a
revoked key is refused by both within a second, and with Redis killed mid-run (``fail_open``)
clients get no errors and each replica enforces its share of the limit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import serving
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import Sim, eventually, http_json

pytestmark = pytest.mark.slow

MASTER = "sk-master-fleet"
ENV = {"GATEWAY_KEY_PEPPER": "pepper-shared-by-the-fleet", "GATEWAY_LOG_LEVEL": "warning"}


def fleet_config(tmp_path: Path, sim: Sim, redis: RedisServer, name: str) -> Path:
    config = {
        "auth": {"master_key": MASTER},
        "governance": {
            "data_dir": str(tmp_path / name),
            "key_store": {"backend": "redis", "options": {"url": redis.url}},
            "limiter": {
                "backend": "redis",
                "options": {"url": redis.url, "on_error": "fail_open", "timeout_s": 0.2},
            },
            "usage": {
                "sinks": [{"backend": "sqlite", "options": {"path": str(tmp_path / f"{name}.db")}}]
            },
        },
        "models": [
            {
                "name": "chat",
                "backends": [
                    {
                        "url": sim.url,
                        "model": "sim-model",
                        "price": {"input_per_mtok": 100.0, "output_per_mtok": 300.0},
                    }
                ],
            }
        ],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def fleet(tmp_path: Path, sim: Sim, redis: RedisServer) -> Iterator[list[str]]:
    with ExitStack() as stack:
        urls = [
            stack.enter_context(
                serving("--config", str(fleet_config(tmp_path, sim, redis, name)), env=ENV)
            )[1]
            for name in ("a", "b")
        ]
        yield urls


def create_key(url: str, **fields: Any) -> dict[str, Any]:
    status, _, data = http_json(
        "POST", f"{url}/admin/keys", fields, {"authorization": f"Bearer {MASTER}"}
    )
    assert status == 201, data
    return dict(data)


def call(url: str, key: str, tokens: int = 5) -> int:
    status, _, _ = http_json(
        "POST",
        f"{url}/v1/chat/completions",
        {
            "model": "chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": tokens,
            "ignore_eos": True,
        },
        {"authorization": f"Bearer {key}"},
    )
    return status


def hammer(
    urls: list[str], key: str, seconds: float, workers: int = 16
) -> tuple[Counter[int], float]:
    """Requests from ``workers`` threads spread over ``urls`` for ``seconds``; the statuses and
    the time between the first and the last request sent."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds

    def worker(i: int) -> None:
        url = urls[i % len(urls)]
        while time.monotonic() < deadline:
            status = call(url, key)
            with lock:
                statuses[status] += 1

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    return statuses, time.monotonic() - start


def test_an_rpm_limit_holds_across_two_replicas(fleet: list[str]) -> None:
    rpm = 600
    key = create_key(fleet[0], rpm=rpm)["key"]
    statuses, elapsed = hammer(fleet, key, seconds=3.0)
    admitted = statuses[200]
    allowed = rpm + rpm / 60 * elapsed  # the burst, plus the refill while the test ran
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[429] > 0
    assert abs(admitted - allowed) <= 0.02 * allowed, (admitted, allowed)


def test_a_hundred_concurrent_clients_cannot_overspend_a_budget(fleet: list[str]) -> None:
    budget = 0.05
    created = create_key(fleet[0], budgets=[{"usd": budget, "window": "month"}])
    with ThreadPoolExecutor(100) as pool:
        statuses = Counter(pool.map(lambda i: call(fleet[i % 2], created["key"], 20), range(300)))
    assert statuses[429] > 0, statuses
    assert statuses[200] > 0, statuses

    def spent() -> float:
        _, _, shown = http_json(
            "GET",
            f"{fleet[1]}/admin/keys/{created['id']}",
            None,
            {"authorization": f"Bearer {MASTER}"},
        )
        (rule,) = [r for r in shown["usage"]["limits"] if r["kind"] == "budget"]
        return float(rule["spent_usd"])

    one_request = (20 * 300 + 100 * 100) / 1e6  # output exact; a generous prompt estimate
    assert eventually(lambda: spent() >= budget - one_request)
    assert spent() <= budget


def test_a_revoked_key_is_refused_by_every_replica_within_a_second(fleet: list[str]) -> None:
    created = create_key(fleet[0])
    assert call(fleet[0], created["key"]) == 200
    assert call(fleet[1], created["key"]) == 200
    status, _, _ = http_json(
        "POST",
        f"{fleet[0]}/admin/keys/{created['id']}/revoke",
        {},
        {"authorization": f"Bearer {MASTER}"},
    )
    assert status == 200
    assert eventually(lambda: call(fleet[1], created["key"]) == 401, timeout_s=1.0)
    assert call(fleet[0], created["key"]) == 401


def test_redis_killed_mid_run_fail_open_splits_the_limit(
    fleet: list[str], redis: RedisServer
) -> None:
    rpm = 120
    created = create_key(fleet[0], rpm=rpm)
    key = created["key"]
    assert call(fleet[0], key) == 200  # both replicas know the key
    assert call(fleet[1], key) == 200
    time.sleep(1.2)  # both replicas have heartbeated: each knows the fleet is two
    redis.stop()
    try:
        statuses, elapsed = hammer([fleet[0]], key, seconds=1.5, workers=8)
        assert set(statuses) <= {200, 429}, statuses  # no client errors
        share = rpm // 2
        assert statuses[429] > 0
        assert statuses[200] <= share + share / 60 * elapsed + 2, statuses
    finally:
        redis.start()
    assert eventually(lambda: call(fleet[0], key) in (200, 429), timeout_s=5)


def test_the_sqlite_ledger_survives_restarts_with_nothing_lost(
    tmp_path: Path, sim: Sim, redis: RedisServer
) -> None:
    """Usage records are buffered off the request path; SIGTERM flushes them: after two runs of
    one gateway process on one ledger file, every request has exactly one record."""
    config = fleet_config(tmp_path, sim, redis, "solo")
    key: dict[str, Any] = {}
    for run in range(2):
        with serving("--config", str(config), env=ENV) as (_, url):
            if run == 0:
                key = create_key(url)
            for _ in range(40):
                assert call(url, key["key"]) == 200
    with sqlite3.connect(tmp_path / "solo.db") as db:
        count, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage WHERE key_id = ?",
            (key["id"],),
        ).fetchone()
    assert count == distinct == 80
