"""publish-config end to end: a gateway served for real follows the shared store (a real
redis-server, a real directory) and serves what is published to it, live."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.redis_store import RedisControlStore
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli import main
from gateway.control.publish import publish_config, rollback
from tests.support.processes import GATEWAY
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import eventually, group, http_json, running_gateway, running_sim

MASTER = {"authorization": "Bearer sk-master"}
AUTH = {"master_key": "sk-master"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def served_by(url: str, model: str) -> str | None:
    """The backend that served one chat completion of ``model`` (None: not served)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    status, headers, _ = http_json("POST", f"{url}/v1/chat/completions", body, MASTER)
    return headers.get("x-gateway-backend") if status == 200 else None


def admin_config(url: str) -> dict[str, Any]:
    status, _, body = http_json("GET", f"{url}/admin/config", headers=MASTER)
    assert status == 200, body
    return dict(body)


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no sample {name}")


def config_text(models: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"auth": AUTH, "models": models})


def with_store(make: Any, action: Any) -> Any:
    """Runs ``action(store)`` on a store made in its own event loop, then closes the store."""

    async def run() -> Any:
        store = make()
        try:
            return await action(store)
        finally:
            await store.aclose()

    return asyncio.run(run())


def test_replicas_follow_the_published_config(redis_server: RedisServer) -> None:
    options = {"url": redis_server.url, "prefix": "e2e-follow:"}

    def store() -> RedisControlStore:
        return RedisControlStore(url=redis_server.url, prefix=options["prefix"])

    with running_sim() as sim, running_sim() as sim2:
        a = group("a", sim.url)
        file_config = {
            "auth": AUTH,
            "models": [a],
            "control": {"store": {"backend": "redis", "options": options}},
        }
        with running_gateway(file_config) as gw:
            assert served_by(gw.url, "a") == "a-0"
            assert served_by(gw.url, "b") is None
            assert admin_config(gw.url)["version"] is None

            # A config adding model `b`: served within two seconds.
            v1 = config_text([a, group("b", sim.url)])
            outcome = with_store(store, lambda s: publish_config(v1, "s3://c/v1.yaml", s))
            assert outcome.ok
            assert outcome.version.version == 1
            assert eventually(lambda: served_by(gw.url, "b") == "b-0", timeout_s=2.0)
            seen = admin_config(gw.url)
            assert seen["version"] == 1
            assert seen["source"] == "s3://c/v1.yaml"
            assert seen["digest"] == outcome.version.digest
            assert seen["needs_restart"] == []

            # A broken config: nothing published, the errors name the source and the field.
            broken = config_text([a, {**group("b", sim.url), "bogus": 1}])
            refused = with_store(store, lambda s: publish_config(broken, "s3://c/bad.yaml", s))
            assert not refused.ok
            assert refused.version is None
            assert len(refused.errors) == 1
            assert "s3://c/bad.yaml: models[1].bogus" in refused.errors[0]
            refused = with_store(
                store,
                lambda s: publish_config(
                    config_text([a, {**group("c", sim.url), "routing": {"strategy": "nope"}}]),
                    "s3://c/bad2.yaml",
                    s,
                ),
            )  # built like `gateway check` builds it: an unknown strategy is refused too
            assert refused.errors
            assert "models[1].routing.strategy" in refused.errors[0]
            assert with_store(store, lambda s: s.current_version()) == 1

            # A second version moves `b` to another backend; rolling back brings it back.
            v2 = config_text(
                [
                    a,
                    {
                        **group("b", sim2.url),
                        "backends": [{"url": sim2.url, "model": "sim-model", "name": "b-two"}],
                    },
                ]
            )
            assert with_store(store, lambda s: publish_config(v2, "s3://c/v2.yaml", s)).ok
            assert eventually(lambda: served_by(gw.url, "b") == "b-two")
            back = with_store(store, lambda s: rollback(s, 1))
            assert back.ok
            assert back.version.version == 3
            assert back.version.digest == outcome.version.digest
            assert eventually(lambda: served_by(gw.url, "b") == "b-0")
            assert admin_config(gw.url)["version"] == 3

            # A version the replica itself refuses (written past the job's validation): the
            # last good version keeps serving.
            bad = with_store(store, lambda s: s.publish_config(broken, "by hand"))
            assert bad.version == 4
            assert eventually(lambda: admin_config(gw.url)["last_refused"] is not None)
            seen = admin_config(gw.url)
            assert seen["version"] == 3
            assert seen["last_refused"]["version"] == 4
            assert "models[1].bogus" in seen["last_refused"]["error"]
            assert served_by(gw.url, "b") == "b-0"
            assert metric(gw.url, "gateway_config_version") == 3
            assert metric(gw.url, "gateway_config_apply_failures_total") == 1

            # A replica starting now serves the last good version before its first request.
            with running_gateway(file_config) as late:
                assert served_by(late.url, "b") == "b-0"
                assert admin_config(late.url)["version"] == 3

            # The store going down changes nothing served; publishing after it is back works.
            redis_server.stop()
            try:
                assert eventually(
                    lambda: metric(gw.url, "gateway_config_store_failures_total") >= 1
                )
                assert served_by(gw.url, "b") == "b-0"
            finally:
                redis_server.start()
            v5 = config_text([a, group("b", sim.url), group("d", sim2.url)])
            assert with_store(store, lambda s: publish_config(v5, "s3://c/v5.yaml", s)).ok
            assert eventually(lambda: served_by(gw.url, "d") == "d-0")


@pytest.mark.slow  # a `gateway` subprocess
def test_the_cli_publishes_to_a_directory_a_gateway_follows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "control"
    with running_sim() as sim:
        a = group("a", sim.url)
        file_config = {
            "auth": AUTH,
            "models": [a],
            "control": {"store": {"backend": "directory", "options": {"path": str(store_dir)}}},
        }
        with running_gateway(file_config) as gw:
            good = tmp_path / "gateway.yaml"
            good.write_text(config_text([a, group("b", sim.url)]))
            result = subprocess.run(
                [*GATEWAY, "control", "publish-config", str(good), "--store-dir", str(store_dir)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            assert "published version 1" in result.stdout
            assert eventually(lambda: served_by(gw.url, "b") == "b-0", timeout_s=2.0)

            bad = tmp_path / "broken.yaml"
            bad.write_text(config_text([{**group("x", sim.url), "colour": "red"}]))
            assert main(["control", "publish-config", str(bad), "--store-dir", str(store_dir)]) == 1
            assert f"gateway: error: {bad}: models[0].colour" in capsys.readouterr().err
            assert (store_dir / "current").read_text() == "1"
            assert main(["control", "publish-config", str(good)]) == 2  # no store named
            assert "name a store" in capsys.readouterr().err

            # The store named by a gateway config's `control.store`.
            settings_file = tmp_path / "replica.yaml"
            settings_file.write_text(yaml.safe_dump(file_config))
            assert (
                main(
                    ["control", "publish-config", "--config", str(settings_file), "--rollback", "1"]
                )
                == 0
            )
            assert eventually(lambda: admin_config(gw.url)["version"] == 2)
            listing = with_store(
                lambda: DirectoryControlStore(str(store_dir)), lambda s: s.config_versions()
            )
            assert [v.version for v in listing] == [2, 1]
            capsys.readouterr()
            assert main(["control", "publish-config", "--store-dir", str(store_dir), "--list"]) == 0
            lines = capsys.readouterr().out.splitlines()
            assert next(line.split()[:2] for line in lines) == ["*", "2"]
            assert lines[1].split()[0] == "1"
            assert lines[1].endswith(str(good))
            assert lines[0].endswith(f"rollback to version 1 of {good}")
