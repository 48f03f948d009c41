"""usage-rollup without a cloud, end to end: a gateway served for real with a virtual key that
has a budget, its ``jsonl`` usage sink, real traffic from the simulator, then ``gateway control
usage-rollup`` as an operator runs it (a subprocess) over the sink's file: the ``sqlite``
ledger's totals equal the gateway's own usage records (its ``sqlite`` sink) exactly, the budget
threshold crossed is announced once, running it again changes nothing, and a malformed line is
reported alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.processes import GATEWAY
from tests.support.servers import Sim, http_json, running_gateway

pytestmark = pytest.mark.slow

MASTER = "sk-master-rollup"
PEPPER = "pepper-for-the-rollup-tests"
KEY_BUDGET_USD = 0.03


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", PEPPER)


def config(sim: Sim, tmp_path: Path) -> dict[str, Any]:
    def backend(name: str, inp: float, out: float) -> dict[str, Any]:
        price = {"input_per_mtok": inp, "output_per_mtok": out}
        return {"url": sim.url, "model": "sim-model", "name": name, "price": price}

    return {
        "auth": {"master_key": MASTER},
        "governance": {
            "data_dir": str(tmp_path / "data"),
            "usage": {
                "sinks": [
                    {"backend": "jsonl", "options": {"path": str(tmp_path / "usage.jsonl")}},
                    {"backend": "sqlite", "options": {"path": str(tmp_path / "usage.sqlite3")}},
                ],
                "flush_interval_s": 0.05,
            },
        },
        "control": {
            "ledger": {"backend": "sqlite", "options": {"path": str(tmp_path / "ledger.sqlite3")}},
            "archive": {"backend": "directory", "options": {"path": str(tmp_path / "archive")}},
            "budget_publishers": [{"backend": "log"}],
        },
        "models": [
            {"name": "big", "backends": [backend("big-0", 100.0, 300.0)]},
            {"name": "small", "backends": [backend("small-0", 1.0, 2.0)]},
        ],
    }


def admin(url: str, path: str, body: Any) -> dict[str, Any]:
    status, _, data = http_json("POST", f"{url}{path}", body, {"authorization": f"Bearer {MASTER}"})
    assert status == 201, data
    return dict(data)


def chat(c: openai.OpenAI, model: str) -> None:
    c.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=10,
        extra_body={"ignore_eos": True},
    )


def roll_up(config_file: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, "control", "usage-rollup", "--config", str(config_file), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


def ledger_rows(path: Path) -> set[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return set(db.execute("SELECT * FROM totals"))


def gateway_sums(path: Path) -> set[tuple[Any, ...]]:
    """The gateway's own records (its sqlite sink) summed per scope and UTC day and month."""
    sums = []
    with sqlite3.connect(path) as db:
        for scope in ("'tenant:' || tenant", "'key:' || key_id", "'model:' || model"):
            for period in ("'%Y-%m-%d'", "'%Y-%m'"):
                column = scope.split("|| ")[1]
                sums += db.execute(
                    f"SELECT {scope}, strftime({period}, started_at, 'unixepoch'), "
                    "SUM(cost_nanos), SUM(prompt_tokens), SUM(completion_tokens), COUNT(*) "
                    f"FROM usage WHERE {column} IS NOT NULL AND {column} != '' GROUP BY 1, 2"
                ).fetchall()
    return set(sums)


def test_the_rollup_cli_folds_the_jsonl_sink_into_totals_equal_to_the_gateways_records(
    sim: Sim, tmp_path: Path
) -> None:
    settings = config(sim, tmp_path)
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(json.dumps(settings))  # JSON is YAML
    with running_gateway(settings) as gw:
        admin(gw.url, "/admin/tenants", {"name": "acme"})
        key = admin(
            gw.url,
            "/admin/keys",
            {"tenant": "acme", "budgets": [{"usd": KEY_BUDGET_USD, "window": "day"}]},
        )
        other = admin(gw.url, "/admin/keys", {})
        c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0)
        for _ in range(7):  # $0.0038 each: past 80 % of the key's $0.03
            chat(c, "big")
        for _ in range(3):
            chat(c, "small")
        chat(openai.OpenAI(base_url=f"{gw.url}/v1", api_key=other["key"], max_retries=0), "small")
        with pytest.raises(openai.AuthenticationError):
            chat(openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-gw-nope", max_retries=0), "big")
    # The gateway has stopped: every record is in both sinks.
    lines = (tmp_path / "usage.jsonl").read_text().splitlines()
    usage = [json.loads(ln) for ln in lines if json.loads(ln)["type"] == "usage"]
    assert len(usage) == 12
    assert len(lines) > len(usage)  # audit lines (the keys created) are skipped, not failed

    first = roll_up(config_file, tmp_path / "usage.jsonl")
    assert first.returncode == 0, first.stderr
    assert "counted 12, duplicates 0, failed 0" in first.stdout
    want = gateway_sums(tmp_path / "usage.sqlite3")
    assert ledger_rows(tmp_path / "ledger.sqlite3") == want
    assert any(row[0] == f"key:{key['id']}" and row[2] > 0 for row in want)

    spent = sum(r["cost_nanos"] for r in usage if r["key_id"] == key["id"])
    limit = round(KEY_BUDGET_USD * 1e9)
    expected = [t for t in (0.8, 0.9, 1.0) if spent >= t * limit]
    assert expected  # the traffic did cross a threshold
    crossings = [ln.split() for ln in first.stdout.splitlines() if ln.startswith("crossing:")]
    assert [(c[1], c[2], float(c[4])) for c in crossings] == [
        (f"key:{key['id']}", "day", t) for t in expected
    ]
    assert "budget threshold crossed" in first.stderr  # the `log` publisher heard it
    archived = sorted((tmp_path / "archive").rglob("*.jsonl"))
    assert sorted(
        json.loads(ln)["request_id"] for f in archived for ln in f.read_text().splitlines()
    ) == sorted(r["request_id"] for r in usage)

    second = roll_up(config_file, tmp_path / "usage.jsonl")
    assert second.returncode == 0, second.stderr
    assert "counted 0, duplicates 12, failed 0, crossings 0" in second.stdout
    assert ledger_rows(tmp_path / "ledger.sqlite3") == want
    assert sorted((tmp_path / "archive").rglob("*.jsonl")) == archived

    jsonl = tmp_path / "usage.jsonl"
    with jsonl.open("a") as f:
        f.write('{"type": "usage", "request_id": "broken", "cost_nanos": "12"}\n')
    third = roll_up(config_file, jsonl)
    assert third.returncode == 1
    assert "counted 0, duplicates 12, failed 1" in third.stdout
    assert f"failed: {jsonl.resolve()}:{len(lines) + 1}" in third.stderr
    assert ledger_rows(tmp_path / "ledger.sqlite3") == want
