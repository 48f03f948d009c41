"""The keys function (the control plane's admin API without a web server): the same
operations, validation and JSON as the gateway's ``/admin/keys``; a key it creates is accepted
by a gateway replica sharing the key store. Real parts: SQLite key store files in ``tmp_path``,
the simulator and the gateway served on loopback, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.config_loader import settings_from_mapping
from gateway.control.keys import KeysAnswer, handle_keys, keys_service
from tests.support.servers import group, running_gateway, running_sim

MASTER = "sk-master-keys-function"
PEPPER = "pepper-for-the-keys-function-tests"


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", PEPPER)


def config(tmp_path: Path, sim_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "governance": {
            "data_dir": str(tmp_path),
            "key_store": {"backend": "sqlite", "options": {"path": str(tmp_path / "keys.db")}},
            "usage": {
                "sinks": [{"backend": "jsonl", "options": {"path": str(tmp_path / "u.jsonl")}}]
            },
        },
        "models": [group("chat", sim_url)],
    }


def call(
    cfg: dict[str, Any],
    method: str,
    path: str,
    body: Any = None,
    key: str = MASTER,
    query: dict[str, str] | None = None,
) -> tuple[KeysAnswer, Any]:
    settings = settings_from_mapping(cfg, "keys-test")

    async def run() -> KeysAnswer:
        async with keys_service(settings) as (admin, authorize):
            data = b"" if body is None else json.dumps(body).encode()
            headers = {"authorization": f"Bearer {key}"} if key else {}
            return await handle_keys(admin, authorize, method, path, query or {}, headers, data)

    answer = asyncio.run(run())
    return answer, json.loads(answer.body)


def test_a_key_made_by_the_function_is_accepted_by_a_replica(tmp_path: Path) -> None:
    with running_sim() as sim:
        cfg = config(tmp_path, sim.url)
        created, key = call(cfg, "POST", "/admin/keys", {"name": "ci", "models": ["chat"]})
        assert created.status == 201
        assert key["key"].startswith("sk-gw-")
        listed, keys = call(cfg, "GET", "/admin/keys")
        assert listed.status == 200
        assert [k["id"] for k in keys["data"]] == [key["id"]]
        with running_gateway(cfg) as gw:
            client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key["key"], max_retries=0)
            answer = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            client.close()
    assert answer.choices[0].message.content
    audit = [json.loads(line) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert any(rec.get("action") == "key.create" for rec in audit)


@pytest.mark.parametrize(
    ("method", "path", "body", "key", "status", "code"),
    [
        ("POST", "/admin/keys", {"name": "x"}, "", 401, None),
        ("POST", "/admin/keys", {"name": "x"}, "sk-wrong", 401, None),
        ("POST", "/admin/keys", {"name": "x", "rpm": -1}, MASTER, 400, None),
        ("PUT", "/admin/keys", None, MASTER, 405, None),
        ("GET", "/admin/nothing", None, MASTER, 404, None),
        ("GET", "/admin/keys/k-unknown", None, MASTER, 404, None),
    ],
)
def test_refusals_are_the_admin_apis(
    tmp_path: Path, method: str, path: str, body: Any, key: str, status: int, code: str | None
) -> None:
    answer, data = call(config(tmp_path), method, path, body, key)
    assert answer.status == status
    assert set(data["error"]) >= {"message", "type", "param", "code"}
    if status == 400:
        assert data["error"]["param"] == "rpm"
    if status == 405:
        assert "POST" in answer.headers["allow"]


def test_the_cli_runs_the_function_without_a_gateway(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path)))
    env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER, "GATEWAY_KEY_PEPPER": PEPPER}
    command = [sys.executable, "-m", "gateway.cli", "control", "keys", "--config", str(path)]
    created = subprocess.run(
        [*command, "POST", "/admin/tenants", "--body", json.dumps({"name": "team-a"})],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "team-a"
    again = subprocess.run(
        [*command, "POST", "/admin/tenants", "--body", json.dumps({"name": "team-a"})],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert again.returncode == 1
    assert "error" in json.loads(again.stdout)
