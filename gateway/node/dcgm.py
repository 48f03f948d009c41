"""The node agent's ``/metrics``: GPU figures in dcgm-exporter's names, labels and units, so
the dashboards and alerts written for dcgm-exporter read the agent unchanged, plus the agent's
own families (:func:`gauge`, :func:`counter`).

The text is written directly rather than through ``prometheus_client``'s registry: the agent
renders it every read interval (1 s) for every GPU, and building collector objects per render
costs more than the formatting itself. The output is Prometheus text format 0.0.4
(:data:`CONTENT_TYPE`).

A figure a GPU does not report (None) is left out for that GPU, never written as 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from gateway.node.base import GpuReading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, help, the figure), in dcgm-exporter's names and units.
_GPU_FAMILIES: tuple[tuple[str, str, Callable[[GpuReading], float | None]], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda r: r.sm_clock_mhz),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda r: r.temperature_c),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda r: r.power_w),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", lambda r: r.power_limit_w),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda r: r.utilization_pct),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", lambda r: r.memory_free_mib),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda r: r.memory_used_mib),
    ("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", lambda r: r.memory_total_mib),
)
PROCESS_MEMORY = "gateway_node_gpu_process_memory_mib"
_PROCESS_HELP = "GPU memory held by a process (in MiB)."

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One family of the agent's own metrics, as :func:`render_metrics` writes it (build it
    with :func:`gauge` or :func:`counter`, which check the names)."""

    name: str
    help: str
    kind: Literal["gauge", "counter"]
    samples: tuple[tuple[Mapping[str, str], float], ...]


def gauge(name: str, help: str, samples: Sequence[tuple[Mapping[str, str], float]]) -> MetricFamily:
    """A gauge family: ``samples`` are ``(labels, value)``.

    Raises:
        ValueError: a name or label name Prometheus does not accept.
    """
    return _family(name, help, "gauge", samples)


def counter(
    name: str, help: str, samples: Sequence[tuple[Mapping[str, str], float]]
) -> MetricFamily:
    """A counter family; ``name`` ends in ``_total``.

    Raises:
        ValueError: a name without ``_total``, or one Prometheus does not accept.
    """
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in `_total`")
    return _family(name, help, "counter", samples)


def _family(
    name: str,
    help: str,
    kind: Literal["gauge", "counter"],
    samples: Sequence[tuple[Mapping[str, str], float]],
) -> MetricFamily:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a Prometheus metric name")
    for labels, _ in samples:
        bad = [k for k in labels if not _LABEL_RE.fullmatch(k) or k.startswith("__")]
        if bad:
            raise ValueError(f"{name}: {bad} are not Prometheus label names")
    return MetricFamily(name, help, kind, tuple(samples))


def render_metrics(
    readings: Sequence[GpuReading], *, hostname: str, extra: Sequence[MetricFamily] = ()
) -> bytes:
    """The Prometheus text for ``readings`` (dcgm-exporter's families), the processes'
    memory, and ``extra``.

    Labels per GPU are dcgm-exporter's: ``gpu`` (index), ``UUID``, ``pci_bus_id``, ``device``
    (``nvidia<index>``), ``modelName``, ``Hostname``.
    """
    host = _escape(hostname)
    labels = [
        f'gpu="{r.index}",UUID="{_escape(r.uuid)}",pci_bus_id="{_escape(r.pci_bus_id or "")}",'
        f'device="nvidia{r.index}",modelName="{_escape(r.name)}",Hostname="{host}"'
        for r in readings
    ]
    out: list[str] = []
    for name, help, figure in _GPU_FAMILIES:
        out.append(f"# HELP {name} {help}\n# TYPE {name} gauge\n")
        for reading, label in zip(readings, labels, strict=True):
            value = figure(reading)
            if value is not None:
                out.append(f"{name}{{{label}}} {_number(value)}\n")
    out.append(f"# HELP {PROCESS_MEMORY} {_PROCESS_HELP}\n# TYPE {PROCESS_MEMORY} gauge\n")
    for r in readings:
        for p in r.processes:
            if p.used_mib is not None:
                out.append(
                    f'{PROCESS_MEMORY}{{gpu="{r.index}",UUID="{_escape(r.uuid)}",pid="{p.pid}"}}'
                    f" {_number(p.used_mib)}\n"
                )
    for family in extra:
        out.append(
            f"# HELP {family.name} {_escape_help(family.help)}\n"
            f"# TYPE {family.name} {family.kind}\n"
        )
        for sample_labels, value in family.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sample_labels.items())
            braces = f"{{{text}}}" if text else ""
            out.append(f"{family.name}{braces} {_number(value)}\n")
    return "".join(out).encode()


def _escape(value: str) -> str:
    """A label value as the text format escapes it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _escape_help(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n")


def _number(number: float) -> str:
    """A sample value: whole numbers without a fraction (as dcgm-exporter writes them)."""
    value = float(number)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
