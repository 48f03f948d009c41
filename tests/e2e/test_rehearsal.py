"""The local multi-replica rehearsal, started as an operator starts it (``python -m
gateway_rehearsal``, what ``scripts/rehearsal.sh`` runs): Redis, two gateway replicas behind
nginx, two simulators, the config published to the shared store, the health sweep and the usage
roll-up once at start. Real traffic goes through nginx with the official openai SDK; then SIGTERM
stops everything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway import cli as gateway_cli
from tests.support.servers import eventually, http_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPLICA_HEADER = "x-gateway-replica"
NANOS_PER_INPUT_TOKEN, NANOS_PER_OUTPUT_TOKEN = 2_000, 6_000  # the fleet config's price
BODY: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


class Fleet:
    """The rehearsal process and what it wrote to its ready file."""

    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any], out: Path) -> None:
        self.proc = proc
        self.info = info
        self.out = out
        self.url: str = info["url"]
        self.replicas: dict[str, str] = info["replica_urls"]
        self.master: str = info["master_key"]

    def admin(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        status, _, data = http_json(method, url, body, {"authorization": f"Bearer {self.master}"})
        return status, data

    def client(self, key: str, url: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{url or self.url}/v1", api_key=key, max_retries=0)

    def control_log(self) -> str:
        path = Path(self.info["work_dir"]) / "logs" / "control.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C or an init system would; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("rehearsal")
    ready, out = work / "ready.json", work / "rehearsal.out"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway_rehearsal"),
                *("--replicas", "2", "--sims", "2", "--profile", "instant", "--port", "0"),
                *("--dir", str(work / "fleet"), "--ready-file", str(ready)),
                *("--control-every", "0"),  # one round at start; the test runs the rest
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the teardown can reach every process
        )
    started = eventually(lambda: ready.exists() or proc.poll() is not None, timeout_s=180)
    if not ready.exists():
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the rehearsal did not start ({started=}):\n{out.read_text()}")
    running = Fleet(proc, json.loads(ready.read_text()), out)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def user_key(fleet: Fleet) -> dict[str, Any]:
    """A virtual key with a budget, created through replica ``a``."""
    status, created = fleet.admin(
        "POST",
        f"{fleet.replicas['a']}/admin/keys",
        {"models": ["chat"], "budgets": [{"usd": 5, "window": "month"}]},
    )
    assert status == 201, created
    return dict(created)


def test_a_key_created_through_one_replica_works_through_the_other(
    fleet: Fleet, user_key: dict[str, Any]
) -> None:
    with fleet.client(user_key["key"], fleet.replicas["b"]) as client:
        answer = client.chat.completions.create(**BODY, max_tokens=3)
    assert answer.choices[0].message.content
    with (
        fleet.client("sk-gw-not-a-key", fleet.replicas["b"]) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(**BODY, max_tokens=3)


def test_plain_and_streamed_requests_through_nginx_reach_both_replicas(
    fleet: Fleet, user_key: dict[str, Any]
) -> None:
    served: Counter[str] = Counter()
    with fleet.client(user_key["key"]) as client:
        for _ in range(4):
            raw = client.chat.completions.with_raw_response.create(**BODY, max_tokens=4)
            served[raw.headers[REPLICA_HEADER]] += 1
            assert raw.parse().choices[0].message.content
        for _ in range(4):
            raw_stream = client.chat.completions.with_raw_response.create(
                **BODY, max_tokens=4, stream=True
            )
            served[raw_stream.headers[REPLICA_HEADER]] += 1
            with raw_stream.parse() as stream:
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text
    # nginx balances over both replicas' addresses
    addresses = {url.removeprefix("http://") for url in fleet.replicas.values()}
    assert set(served) == addresses, served
    for url in fleet.replicas.values():
        assert requests_served(url) >= 4


def requests_served(replica: str) -> float:
    """``gateway_requests_total`` with status 200 on one replica's ``/metrics``."""
    with urllib.request.urlopen(f"{replica}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    pattern = re.compile(r'^gateway_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', re.M)
    return sum(float(value) for value in pattern.findall(text))


def test_budget_spend_is_shared_and_the_rollup_counts_each_request_once(
    fleet: Fleet,
    user_key: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, created = fleet.admin(
        "POST",
        f"{fleet.replicas['b']}/admin/keys",
        {"models": ["chat"], "budgets": [{"usd": 1, "window": "month"}]},
    )
    assert status == 201, created
    cost = 0
    with fleet.client(created["key"]) as client:
        for _ in range(6):
            usage = client.chat.completions.create(**BODY, max_tokens=5).usage
            assert usage is not None
            cost += usage.prompt_tokens * NANOS_PER_INPUT_TOKEN
            cost += usage.completion_tokens * NANOS_PER_OUTPUT_TOKEN
    expected = Decimal(cost) / 10**9

    def spent(replica: str) -> Decimal:
        _, shown = fleet.admin("GET", f"{fleet.replicas[replica]}/admin/keys/{created['id']}")
        (rule,) = [r for r in shown["usage"]["limits"] if r["kind"] == "budget"]
        return Decimal(rule["spent_usd"])

    # both replicas read the one Redis budget: the six requests, each counted once
    assert eventually(lambda: spent("a") == expected), (spent("a"), expected)
    assert spent("b") == expected

    ledger = Path(fleet.info["ledger"])
    scope = f"key:{created['id']}"

    def month_total() -> tuple[int, int] | None:
        if not ledger.exists():
            return None
        with sqlite3.connect(ledger, timeout=5) as db:
            row = db.execute(
                "SELECT requests, cost_nanos FROM totals WHERE scope = ? AND length(period) = 7",
                (scope,),
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    # both replicas' usage files hold the six records (written off the request path)...
    def records() -> int:
        lines = [x for f in fleet.info["usage_files"] for x in Path(f).read_text().splitlines()]
        usage = [r for r in map(json.loads, lines) if r["type"] == "usage"]  # not audit lines
        return sum(r["key_id"] == created["id"] for r in usage)

    assert eventually(lambda: records() == 6), records()
    # ...which `gateway control usage-rollup` folds into the ledger once...
    for name, value in fleet.info["control_env"].items():
        monkeypatch.setenv(name, value)
    _, *rollup = fleet.info["control_commands"]["usage-rollup"]  # the command it printed

    def control() -> str:
        """The printed command, run in this process (it has imported the gateway already)."""
        assert gateway_cli.main(rollup) == 0
        return capsys.readouterr().out

    first = control()
    assert month_total() == (6, cost), (month_total(), first)
    # ...and, run again over the same files, counts nothing twice
    again = control()
    assert re.search(r"^counted 0, duplicates [1-9]\d*,", again, re.M), again
    assert month_total() == (6, cost)


def test_the_response_cache_is_shared(fleet: Fleet, user_key: dict[str, Any]) -> None:
    body = {**BODY, "temperature": 0, "max_tokens": 6, "seed": 7}
    with fleet.client(user_key["key"], fleet.replicas["a"]) as client:
        first = client.chat.completions.with_raw_response.create(**body)
    assert first.headers["x-gateway-cache"] == "miss"

    def hit_on_b() -> bool:
        with fleet.client(user_key["key"], fleet.replicas["b"]) as client:
            raw = client.chat.completions.with_raw_response.create(**body)
        return raw.headers["x-gateway-cache"] == "hit"

    assert eventually(hit_on_b)


def test_the_health_sweep_ran_over_both_simulators(fleet: Fleet) -> None:
    def healthy() -> set[str]:
        lines = [json.loads(x) for x in fleet.control_log().splitlines() if x.startswith("{")]
        return {line["backend"] for line in lines if line["healthy"]}

    assert eventually(lambda: healthy() == {"sim-0", "sim-1"}, timeout_s=60), healthy()


def test_sigterm_stops_every_process(fleet: Fleet) -> None:
    pids = list(fleet.info["pids"].values())
    assert fleet.stop() == 0, fleet.out.read_text()
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    stopped = fleet.out.read_text()
    assert "stopped: nginx" in stopped, stopped
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(fleet.url.rsplit(":", 1)[1])), timeout=2)
