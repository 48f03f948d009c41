"""``gateway node`` from the command line: NVML absent said cleanly, a reading of fake GPUs, and
the placements of three deployments on two fake GPUs by each strategy, made by the real agent
with simulators as engines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.node_agent import deployment, fake_gpus, running_node
from tests.support.processes import GATEWAY, free_port

pytestmark = pytest.mark.slow


def node_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, "node", *args], capture_output=True, text=True, timeout=60, check=False
    )


def nvml_readable() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # any failure means no GPU can be read here
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(nvml_readable(), reason="this machine has an NVIDIA driver")
def test_no_driver_is_said_once_and_fake_is_named() -> None:
    done = node_cli("--once", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    message = done.stderr.strip()
    assert message.count("\n") == 0, message  # once, on one line
    assert "no GPU can be read here" in message
    assert "libnvidia-ml.so.1" in message
    assert "--backend fake" in message


def test_once_reads_declared_fake_gpus_as_json() -> None:
    done = node_cli("--backend", "fake", "--gpus", "3", "--once", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [g["index"] for g in out["gpus"]] == [0, 1, 2]
    first = out["gpus"][0]
    assert first["name"] == "NVIDIA H100 80GB HBM3"
    assert first["memory_free_mib"] == first["memory_total_mib"] == 81559
    assert first["utilization_pct"] == 0
    assert out["cost"] == {"usd_per_hour": 0.0, "unpriced_gpus": ["NVIDIA H100 80GB HBM3"]}


def test_a_config_error_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node:\n  deployments:\n    - {name: a, model: m, group: g, memory_mib: -1}\n")
    done = node_cli("--config", str(path), "--backend", "fake", "--once")
    assert done.returncode == 2
    assert str(path) in done.stderr
    assert "node.deployments[0].memory_mib" in done.stderr


# Three deployments on two 81,559 MiB GPUs, in this order: a 30 GB (priority 0), b 50 GB
# (priority 5), c 40 GB (priority 1).
PLACEMENTS = {
    # tightest fit: a and b share GPU 0 (b fits in what a left), c takes GPU 1
    "best_fit": {"a-0": [0], "b-0": [0], "c-0": [1]},
    # equally idle: the most free memory: a on 0, b on the empty 1, c back on 0 (51.5 GB free)
    "least_utilized": {"a-0": [0], "b-0": [1], "c-0": [0]},
    # turn by turn: 0, 1, then 0 again
    "round_robin": {"a-0": [0], "b-0": [1], "c-0": [0]},
    # b first (GPU 0), c next (GPU 1: 0 has 31.5 GB left), a where it fits tightest (GPU 0)
    "priority": {"a-0": [0], "b-0": [0], "c-0": [1]},
}


@pytest.mark.parametrize("strategy", sorted(PLACEMENTS))
def test_three_deployments_on_two_gpus_by_each_strategy(strategy: str, tmp_path: Path) -> None:
    config = {
        "node": {
            "name": "box",
            "engine_ports": free_port(),
            "gpus": fake_gpus(81559, 81559),
            "placement": {"backend": strategy},
            "read_interval_s": 0.2,
            "order_interval_s": 0.2,
            "deployments": [
                deployment("a", "chat", 30000),
                deployment("b", "chat", 50000, priority=5),
                deployment("c", "chat", 40000, priority=1),
            ],
        }
    }
    with running_node(config, tmp_path) as node:
        ready = node.wait_ready(3)
        assert {name: e["gpus"] for name, e in ready.items()} == PLACEMENTS[strategy]
        status = node.status()
        assert status["unplaced"] == {}
        used = {g["index"]: g["memory_used_mib"] for g in status["gpus"]}
        expected = {0: 0.0, 1: 0.0}
        for name, engine in ready.items():
            expected[engine["gpus"][0]] += {"a": 30000, "b": 50000, "c": 40000}[name[0]]
        assert used == expected
