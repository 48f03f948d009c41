"""The ``fake`` GPU backend: declarations (inline, a file, ``count``), the errors that name
the field, and readings that follow the engines exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gateway_node.fake_gpus import IDLE_SM_CLOCK_MHZ, FakeGpuBackend
from gateway_nvml.backend import NvmlBackend

from gateway.node.base import EngineLoad, GpuBackend, GpuProcess
from gateway.plugins import collect_registries, make_plugin_manager

H100 = "NVIDIA H100 80GB HBM3"


def two() -> FakeGpuBackend:
    return FakeGpuBackend(
        gpus=[
            {"name": H100, "memory_mib": 81559},
            {"name": "NVIDIA L4", "memory_mib": 23034, "power_limit_w": 72, "idle_power_w": 16},
        ]
    )


def test_idle_gpus_read_empty_cool_and_at_the_idle_clock() -> None:
    backend = two()
    assert isinstance(backend, GpuBackend)
    first, second = backend.read()
    assert (first.index, first.name, second.index, second.name) == (0, H100, 1, "NVIDIA L4")
    assert first.uuid != second.uuid
    assert (first.memory_total_mib, first.memory_used_mib, first.memory_free_mib) == (
        81559.0,
        0.0,
        81559.0,
    )
    assert first.utilization_pct == 0.0
    assert first.temperature_c == 30.0
    assert (first.power_w, first.power_limit_w) == (70.0, 700.0)
    assert (second.power_w, second.power_limit_w) == (16.0, 72.0)
    assert first.sm_clock_mhz == IDLE_SM_CLOCK_MHZ
    assert first.processes == ()


def test_readings_follow_the_engines() -> None:
    backend = two()
    backend.note_engines(
        [
            EngineLoad(name="a-0", pid=100, gpus=(0,), memory_mib=40000, busy=0.5),
            EngineLoad(name="b-0", pid=None, gpus=(0, 1), memory_mib=10000, busy=0.25),
        ]
    )
    first, second = backend.read()
    assert (first.memory_used_mib, first.memory_free_mib) == (50000.0, 31559.0)
    assert first.utilization_pct == 75.0
    assert first.power_w == 70.0 + 630.0 * 0.75
    assert first.temperature_c == 30.0 + 37.5
    assert first.sm_clock_mhz == 1980.0
    assert first.processes == (GpuProcess(100, 40000.0),)  # b-0 has not started: no pid
    assert (second.memory_used_mib, second.memory_free_mib) == (10000.0, 13034.0)
    assert second.utilization_pct == 25.0
    assert second.power_w == 16.0 + 56.0 * 0.25

    # Busier than the GPU can be, and more memory than it has: both stop at the GPU's limits.
    backend.note_engines(
        [
            EngineLoad(name="a-0", pid=100, gpus=(1,), memory_mib=20000, busy=0.9),
            EngineLoad(name="a-1", pid=101, gpus=(1,), memory_mib=20000, busy=0.9),
        ]
    )
    first, second = backend.read()
    assert (first.memory_used_mib, first.utilization_pct, first.power_w) == (0.0, 0.0, 70.0)
    assert (second.memory_used_mib, second.memory_free_mib) == (23034.0, 0.0)
    assert (second.utilization_pct, second.temperature_c, second.power_w) == (100.0, 80.0, 72.0)


def test_count_declares_identical_gpus() -> None:
    readings = FakeGpuBackend(count=8).read()
    assert [r.index for r in readings] == list(range(8))
    assert {r.name for r in readings} == {H100}
    assert {r.memory_total_mib for r in readings} == {81559.0}
    assert len({r.uuid for r in readings}) == 8
    small = FakeGpuBackend(count=2, name="NVIDIA L4", memory_mib=23034).read()
    assert [(r.name, r.memory_total_mib) for r in small] == [("NVIDIA L4", 23034.0)] * 2


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_gpus_from_a_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gpus.{suffix}"
    gpus = [{"name": "NVIDIA H200", "memory_mib": 143771, "uuid": "GPU-1234"}]
    path.write_text(
        json.dumps(gpus)
        if suffix == "json"
        else "- name: NVIDIA H200\n  memory_mib: 143771\n  uuid: GPU-1234\n"
    )
    (reading,) = FakeGpuBackend(file=str(path)).read()
    assert (reading.name, reading.memory_total_mib, reading.uuid) == (
        "NVIDIA H200",
        143771.0,
        "GPU-1234",
    )


@pytest.mark.parametrize(
    ("gpus", "error", "message"),
    [
        (
            [{"name": H100, "memory_mib": 1}, {"name": H100, "memory_mib": 0}],
            ValueError,
            r"`gpus\[1\]\.memory_mib` must be a positive number",
        ),
        (
            [{"name": H100, "memory_mib": "80GB"}],
            TypeError,
            r"`gpus\[0\]\.memory_mib` must be a positive number, not str",
        ),
        ([{"name": H100}], ValueError, r"`gpus\[0\]\.memory_mib` is required"),
        ([{"memory_mib": 1}], TypeError, r"`gpus\[0\]\.name` must be a GPU model name"),
        (
            [{"name": H100, "memory_mib": 1, "memory": 2}],
            ValueError,
            r"`gpus\[0\]` has unknown field\(s\) \['memory'\]",
        ),
        (
            [{"name": H100, "memory_mib": 1, "idle_power_w": 800}],
            ValueError,
            r"`gpus\[0\]\.idle_power_w` \(800\) exceeds `power_limit_w` \(700\)",
        ),
        ([], ValueError, "`gpus` must name at least one GPU"),
        (["H100"], TypeError, r"`gpus\[0\]` must be a mapping"),
    ],
)
def test_bad_declarations_name_the_field(
    gpus: list[dict[str, object]], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        FakeGpuBackend(gpus=gpus)


def test_bad_options_and_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of `gpus`"):
        FakeGpuBackend()
    with pytest.raises(ValueError, match="got gpus, count"):
        FakeGpuBackend(gpus=[{"name": H100, "memory_mib": 1}], count=2)
    with pytest.raises(ValueError, match="`count` must be 1 or more"):
        FakeGpuBackend(count=0)
    with pytest.raises(ValueError, match="go with `count`"):
        FakeGpuBackend(gpus=[{"name": H100, "memory_mib": 1}], name=H100)
    with pytest.raises(ValueError, match="cannot read"):
        FakeGpuBackend(file=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "gpus.yaml"
    bad.write_text("- name: NVIDIA H200\n  memory_mib: -1\n")
    with pytest.raises(ValueError, match=r"gpus\.yaml: `gpus\[0\]\.memory_mib` must be"):
        FakeGpuBackend(file=str(bad))
    bad.write_text("gpus: [\n")
    with pytest.raises(ValueError, match="is not YAML or JSON"):
        FakeGpuBackend(file=str(bad))


def test_the_built_in_plugins_register_fake_and_nvml() -> None:
    backends = collect_registries(make_plugin_manager()).gpu_backends
    assert backends.get("fake") is FakeGpuBackend
    assert backends.get("nvml") is NvmlBackend
