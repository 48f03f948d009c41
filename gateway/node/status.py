"""What the node agent shows: ``/status`` (JSON, for the dashboard and operators) and
``/metrics`` (dcgm-exporter's GPU names, plus the agent's engines, placement and cost)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from gateway.node.agent import EngineRecord, NodeAgent
from gateway.node.cost import fleet_usd_per_hour, usd_per_million_tokens
from gateway.node.dcgm import counter, gauge, render_metrics


def engine_status(record: EngineRecord) -> dict[str, Any]:
    engine, spec = record.engine, record.engine.spec
    return {
        "name": spec.name,
        "deployment": spec.deployment,
        "group": spec.group,
        "backend": record.endpoint.backend,
        "state": "stopping" if record.stopping and engine.serving else engine.state.value,
        "pid": engine.pid,
        "url": spec.url,
        "gpus": list(spec.gpus),
        "memory_mib": spec.memory_mib,
        "priority": spec.priority,
        "restarts": engine.restarts,
        "last_exit": engine.last_exit,
        "started_at": engine.started_at,
        "ready_at": engine.ready_at,
        "last_error": engine.last_error,
        "running": record.load.running if record.load else None,
        "waiting": record.load.waiting if record.load else None,
        "tokens": record.tokens,
        "usd_per_hour": record.usd_per_hour,
        "usd_per_mtok": _per_mtok(record),
    }


def _per_mtok(record: EngineRecord) -> float | None:
    if record.usd_per_hour is None:
        return None
    return usd_per_million_tokens(record.usd_per_hour, record.served_s, record.tokens)


def node_status(agent: NodeAgent) -> dict[str, Any]:
    """The agent's state as JSON-ready data."""
    usd_per_hour, unpriced = fleet_usd_per_hour(agent.readings, agent.node.gpu_hour_usd)
    return {
        "node": agent.name,
        "at": time.time(),
        "started_at": agent.started_at,
        "gpus": [asdict(r) for r in agent.readings],
        "gpu_error": agent.gpu_error,
        "engines": [engine_status(r) for r in agent.engines.values()],
        "unplaced": dict(agent.unplaced),
        "pending_deregistration": sorted(agent.pending_deregistration),
        "wanted": dict(agent.wanted),
        "orders": dict(agent.orders),
        "cost": {"usd_per_hour": usd_per_hour, "unpriced_gpus": unpriced},
    }


def node_metrics(agent: NodeAgent) -> bytes:
    """``/metrics``: the GPUs in dcgm-exporter's names, then the agent's own families."""
    records = list(agent.engines.values())
    usd_per_hour, _ = fleet_usd_per_hour(agent.readings, agent.node.gpu_hour_usd)
    states = [
        (
            {
                "engine": r.engine.spec.name,
                "deployment": r.engine.spec.deployment,
                "group": r.engine.spec.group,
                "state": engine_status(r)["state"],
            },
            1.0,
        )
        for r in records
    ]
    placed = [
        ({"engine": r.engine.spec.name, "gpu": str(g)}, 1.0)
        for r in records
        for g in r.engine.spec.gpus
    ]
    restarts = [({"engine": r.engine.spec.name}, float(r.engine.restarts)) for r in records]
    per_mtok = [
        ({"engine": r.engine.spec.name, "group": r.engine.spec.group}, cost)
        for r in records
        if (cost := _per_mtok(r)) is not None
    ]
    extra = [
        gauge("gateway_node_engine_state", "Engines by state (1 per engine).", states),
        gauge("gateway_node_engine_gpu", "The GPUs each engine is placed on.", placed),
        counter("gateway_node_engine_restarts_total", "Restarts after a crash.", restarts),
        gauge(
            "gateway_node_engine_unplaced",
            "Engines wanted that fit on no GPU.",
            [({"engine": name}, 1.0) for name in sorted(agent.unplaced)],
        ),
        gauge(
            "gateway_node_gpus_readable",
            "1 while the GPU backend answers; 0 once it failed (the GPU families are then empty).",
            [({"node": agent.name}, 0.0 if agent.gpu_error else 1.0)],
        ),
        gauge(
            "gateway_node_cost_usd_per_hour",
            "The node's GPUs' cost per hour (priced GPUs only).",
            [({"node": agent.name}, usd_per_hour)],
        ),
        gauge(
            "gateway_node_engine_cost_usd_per_mtok",
            "Each engine's GPU cost per million tokens the gateway served through it.",
            per_mtok,
        ),
    ]
    return render_metrics(agent.readings, hostname=agent.name, extra=extra)
