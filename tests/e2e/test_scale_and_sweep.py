"""health-sweep and scale-fleet end to end: simulators and a gateway served for real.

- The sweep probes the published config's backends: a stopped simulator is marked down, and a
  gateway replica given the hints routes around the hinted-down backend while it has another,
  and still uses it when it has none (a hint, never the only truth).
- A simulator under load (requests held at a gate while one sequence fits its batch, so
  ``num_requests_waiting`` rises): scale-fleet raises the ``file`` scaler's desired replicas,
  holds through the scale-up cooldown, and stops at the upper bound.

The control store is the ``directory`` store in ``tmp_path``, which the CLIs and the gateway
build from the config like any plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_control.directory_store import DirectoryControlStore
from gateway_control.file_scaler import FileScaler

from gateway.config_loader import settings_from_mapping
from gateway.control.base import GroupLoad, HealthHint
from gateway.control.health_cli import SUBCOMMAND as HEALTH_SWEEP
from gateway.control.hints import apply_health_hints
from gateway.control.scaling import read_loads, scale_fleet
from gateway.control.scaling_cli import SUBCOMMAND as SCALE_FLEET
from gateway.control.subcommands import Subcommand
from gateway.settings import Settings
from tests.support.servers import Sim, group, http_json, running_gateway, running_sim

MASTER = {"authorization": "Bearer sk-master"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def store(tmp_path: Path) -> DirectoryControlStore:
    """The shared store: a directory, as one box (or ``gateway control``) uses it."""
    return DirectoryControlStore(str(tmp_path / "control"))


def store_choice(store: DirectoryControlStore) -> dict[str, Any]:
    return {"backend": "directory", "options": {"path": str(store.path)}}


def hints_of(store: DirectoryControlStore) -> list[HealthHint]:
    return asyncio.run(store.health())


def states_of(store: DirectoryControlStore) -> dict[str, Any]:
    return dict(asyncio.run(store.get_state("scale-fleet")))


def run_cli(job: Subcommand, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    args: argparse.Namespace = parser.parse_args(argv)
    return job.run(args)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_sweep_marks_a_stopped_simulator_down_and_replicas_take_the_hint(
    store: DirectoryControlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_sim() as up, running_sim() as sick:
        with running_sim() as gone:
            stopped_url = gone.url
        sick.set_faults(health_status=503)  # its health route fails; it still serves
        # The replicas' own probes are off: what they do with the sweep's hints is the test.
        no_probes = {"enabled": False}
        config = {
            "models": [
                group("chat", up.url, sick.url, health_check=no_probes),
                group("spare", stopped_url, health_check=no_probes),
            ],
            "control": {"store": store_choice(store), "metric_publishers": []},
        }
        # What the fleet serves is the published config; the local file only names the store.
        asyncio.run(store.publish_config(yaml.safe_dump(config), "test://config.yaml"))
        local = tmp_path / "gateway.yaml"
        local.write_text(yaml.safe_dump({"control": config["control"]}))

        assert run_cli(HEALTH_SWEEP, "--config", str(local), "--published", "--timeout", "2") == 0

        printed = {line["backend"]: line for line in json_lines(capsys.readouterr().out)}
        assert {name: line["healthy"] for name, line in printed.items()} == {
            "chat-0": True,
            "chat-1": False,
            "spare-0": False,
        }
        assert printed["chat-1"]["error"] == "its health check failed"
        assert printed["spare-0"]["latency_ms"] is None
        assert printed["chat-0"]["latency_ms"] is not None
        assert [(h.backend, h.healthy) for h in hints_of(store)] == [
            ("chat-0", True),
            ("chat-1", False),
            ("spare-0", False),
        ]

        with running_gateway({**config, "auth": {"master_key": "sk-master"}}) as gw:
            # What follow_health_hints does every few seconds on a replica, done once here.
            hinted = apply_health_hints(gw.state.catalog, hints_of(store), time.time(), 180)
            assert hinted == ["chat-1", "spare-0"]
            _, _, listed = http_json("GET", f"{gw.url}/admin/backends", headers=MASTER)
            assert {b["name"]: b["hinted_down"] for b in listed["backends"]} == {
                "chat-0": False,
                "chat-1": True,
                "spare-0": True,
            }
            url = f"{gw.url}/v1/chat/completions"
            served = [
                http_json("POST", url, CHAT, MASTER)[1]["x-gateway-backend"] for _ in range(4)
            ]
            assert served == ["chat-0"] * 4  # round robin would alternate without the hint
            # A hint, never the only truth: when chat-0 fails, the hinted-down one serves.
            up.set_faults(down=True)
            status, headers, _ = http_json("POST", url, CHAT, MASTER)
            assert status == 200
            assert headers["x-gateway-backend"] == "chat-1"


def scaled(
    sim: Sim, gateway_url: str, fleet_file: Path, store: DirectoryControlStore
) -> dict[str, Any]:
    return {
        "models": [group("chat", sim.url)],
        "control": {
            "store": store_choice(store),
            "gateway_urls": [gateway_url],
            "scaling": {
                "chat": {
                    "scaler": {"backend": "file", "options": {"path": str(fleet_file)}},
                    "min_replicas": 1,
                    "max_replicas": 3,
                    "target_waiting": 2,
                    "max_step": 1,
                    "scale_up_cooldown_s": 60,
                },
            },
        },
    }


def wait_for_load(settings: Settings, predicate: Callable[[GroupLoad], bool]) -> GroupLoad:
    """Read the fleet's load until ``predicate`` holds (bounded); returns the last reading."""
    deadline = time.monotonic() + 10
    while True:
        loaded = asyncio.run(read_loads(settings, timeout_s=2))["chat"]
        if predicate(loaded) or time.monotonic() > deadline:
            return loaded
        time.sleep(0.05)


def test_scale_fleet_follows_the_load_within_cooldown_and_bounds(
    store: DirectoryControlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet_file = tmp_path / "fleet" / "chat.json"
    held = 7
    # One sequence fits the batch: the first request is held in it, the rest queue behind it.
    with running_sim(max_num_seqs=1, step_base_ms=5.0) as sim:
        with running_gateway({"models": [group("chat", sim.url)]}) as gw:
            config = scaled(sim, gw.url, fleet_file, store)
            settings = settings_from_mapping(config)
            pool = ThreadPoolExecutor(held)
            try:
                with sim.gate(after_tokens=1):
                    url = f"{gw.url}/v1/chat/completions"
                    answers = [pool.submit(http_json, "POST", url, CHAT) for _ in range(held)]
                    sim.wait_held(1)
                    load = wait_for_load(settings, lambda g: g.waiting >= held - 1)
                    assert (load.replicas, load.waiting, load.running) == (1, held - 1, 1)
                    assert load.gateway_in_flight == held

                    scaler = FileScaler(str(fleet_file), initial=1)
                    t0 = time.time() - 1_000

                    def step(at: float) -> tuple[int, int, str]:
                        [d] = asyncio.run(
                            scale_fleet(
                                settings,
                                loads={"chat": load},
                                scalers={"chat": scaler},
                                store=store,
                                now=at,
                            )
                        )
                        return d.current, d.desired, d.reason

                    # 6 waiting on one replica: 3x the target of 2, one replica more per step.
                    assert step(t0) == (1, 2, "waiting 3.00x target")
                    assert json.loads(fleet_file.read_text())["replicas"] == 2
                    assert step(t0 + 10)[:2] == (2, 2)  # the scale-up cooldown
                    assert step(t0 + 61) == (2, 3, "waiting 3.00x target")
                    assert step(t0 + 200) == (3, 3, "waiting 3.00x target (at the upper bound)")
                    assert json.loads(fleet_file.read_text())["replicas"] == 3
                    assert states_of(store)["groups"]["chat"]["replicas"] == 3

                    # The CLI reads the same load itself; a dry run changes nothing.
                    local = tmp_path / "gateway.yaml"
                    local.write_text(yaml.safe_dump(config))
                    state = states_of(store)
                    assert run_cli(SCALE_FLEET, "--config", str(local), "--dry-run") == 0
                    [printed] = json_lines(capsys.readouterr().out)
                    assert printed["dry_run"] is True
                    assert (printed["current"], printed["desired"]) == (3, 3)
                    assert printed["inputs"]["waiting"] == held - 1
                    assert states_of(store) == state
                assert all(a.result(timeout=30)[0] == 200 for a in answers)
            finally:
                pool.shutdown(wait=True)
        # Idle, the gateway gone (its figures cannot be read: the job goes on without them):
        # the CLI, acting, takes a replica away (the last change is long past the cooldown).
        assert run_cli(SCALE_FLEET, "--config", str(local)) == 0
        [printed] = json_lines(capsys.readouterr().out)
        assert (printed["current"], printed["desired"]) == (3, 2)
        assert printed["inputs"]["waiting"] == 0
        assert printed["inputs"]["gateway_in_flight"] == 0
        assert json.loads(fleet_file.read_text())["replicas"] == 2
