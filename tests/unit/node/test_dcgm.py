"""``/metrics`` in dcgm-exporter's names: parsed back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.node.base import GpuProcess, GpuReading
from gateway.node.dcgm import counter, gauge, render_metrics

H100 = GpuReading(
    index=0,
    uuid="GPU-aaaa",
    name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559,
    memory_used_mib=20480,
    memory_free_mib=61079,
    pci_bus_id="00000000:18:00.0",
    utilization_pct=87,
    temperature_c=64,
    power_w=512.345,
    power_limit_w=700,
    sm_clock_mhz=1980,
    processes=(GpuProcess(4242, 20000.5), GpuProcess(4343, None)),
)
# No power, clock, temperature or utilization figures (a GPU that does not report them).
L4 = GpuReading(
    index=1,
    uuid="GPU-bbbb",
    name='odd "name"\\',
    memory_total_mib=23034,
    memory_used_mib=0,
    memory_free_mib=23034,
)
DCGM = {
    "DCGM_FI_DEV_GPU_UTIL": (87, None),
    "DCGM_FI_DEV_FB_USED": (20480, 0),
    "DCGM_FI_DEV_FB_FREE": (61079, 23034),
    "DCGM_FI_DEV_FB_TOTAL": (81559, 23034),
    "DCGM_FI_DEV_GPU_TEMP": (64, None),
    "DCGM_FI_DEV_POWER_USAGE": (512.345, None),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": (700, None),
    "DCGM_FI_DEV_SM_CLOCK": (1980, None),
}


def parse(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text.decode())
    }


def test_gpu_figures_carry_dcgm_names_labels_and_units_and_unsupported_ones_are_left_out() -> None:
    families = parse(render_metrics([H100, L4], hostname="node-a"))
    for name, (first, second) in DCGM.items():
        samples = families[name]
        by_gpu = {labels["gpu"]: value for labels, value in samples}
        assert by_gpu["0"] == first, name
        if second is None:
            assert "1" not in by_gpu, name  # left out, not 0
        else:
            assert by_gpu["1"] == second, name
    (labels, _), *_ = families["DCGM_FI_DEV_FB_USED"]
    assert labels == {
        "gpu": "0",
        "UUID": "GPU-aaaa",
        "pci_bus_id": "00000000:18:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "node-a",
    }
    odd = [labels for labels, _ in families["DCGM_FI_DEV_FB_USED"] if labels["gpu"] == "1"]
    assert odd[0]["modelName"] == 'odd "name"\\'
    assert odd[0]["pci_bus_id"] == ""
    assert families["gateway_node_gpu_process_memory_mib"] == [
        ({"gpu": "0", "UUID": "GPU-aaaa", "pid": "4242"}, 20000.5)
    ]


def test_whole_numbers_are_written_without_a_fraction() -> None:
    text = render_metrics([H100], hostname="h").decode()
    assert 'DCGM_FI_DEV_SM_CLOCK{gpu="0",' in text
    assert text.split("DCGM_FI_DEV_SM_CLOCK{", 1)[1].split("\n", 1)[0].endswith("} 1980")
    assert '"} 512.345\n' in text


def test_the_agents_own_families_are_appended() -> None:
    extra = [
        gauge("gateway_node_engine_busy", "How busy (0 to 1).", [({"engine": "a-0"}, 0.5)]),
        counter("gateway_node_engine_restarts_total", "Engine restarts.", [({}, 3)]),
    ]
    families = parse(render_metrics([], hostname="h", extra=extra))
    assert families["gateway_node_engine_busy"] == [({"engine": "a-0"}, 0.5)]
    # The parser names a counter family without ``_total``, its sample with it.
    assert families["gateway_node_engine_restarts"] == [({}, 3.0)]


def test_bad_family_names_are_refused() -> None:
    with pytest.raises(ValueError, match="must end in `_total`"):
        counter("restarts", "x", [])
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        gauge("engine-busy", "x", [])
    with pytest.raises(ValueError, match="not Prometheus label names"):
        gauge("busy", "x", [({"the engine": "a"}, 1.0)])
