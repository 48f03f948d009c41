"""The ``node:`` section: what the loader refuses, naming the file and the field."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config_loader import ConfigError, settings_from_mapping


def deployment(**extra: Any) -> dict[str, Any]:
    return {"name": "chat", "model": "m", "group": "chat", "memory_mib": 1000, **extra}


def refused(node: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"node": node}, "node.yaml")
    return str(caught.value)


def test_defaults_read_nvml_and_place_best_fit() -> None:
    settings = settings_from_mapping({"node": {"deployments": [deployment()]}}, "node.yaml")
    assert settings.node is not None
    assert settings.node.gpus.backend == "nvml"
    assert settings.node.placement.backend == "best_fit"
    [d] = settings.node.deployments
    assert (d.gpus, d.replicas, d.replica_ceiling, d.answers_to) == (1, 1, 1, "m")


def test_a_file_without_node_configures_none() -> None:
    assert settings_from_mapping({}, "gateway.yaml").node is None


@pytest.mark.parametrize(
    ("node", "field"),
    [
        ({"deployments": [deployment(), deployment()]}, "node.deployments[1].name"),
        ({"deployments": [deployment(name="a/b")]}, "node.deployments[0].name"),
        ({"name": "box 1"}, "node.name"),
        ({"deployments": [deployment(command=[])]}, "node.deployments[0].command"),
        ({"deployments": [deployment(health_path="health")]}, "node.deployments[0].health_path"),
        ({"deployments": [deployment(memory_mib=0)]}, "node.deployments[0].memory_mib"),
        ({"deployments": [deployment(gpus=0)]}, "node.deployments[0].gpus"),
        ({"port": 70000}, "node.port"),
        ({"gpu_hour_usd": {"NVIDIA H200": -1}}, "node.gpu_hour_usd"),
        ({"bogus": 1}, "node.bogus"),
        (
            {"deployments": [deployment(replicas=3, max_replicas=1)]},
            "node.deployments[0].max_replicas",
        ),
        ({"deployments": [deployment(command=["vllm", "{modle}"])]}, "node.deployments[0].command"),
    ],
)
def test_bad_fields_are_named(node: dict[str, Any], field: str) -> None:
    message = refused(node)
    assert message.startswith("node.yaml: ")
    assert field in message
