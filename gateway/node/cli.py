"""``gateway node``: run the GPU node agent, or read the GPUs once (``--once``).

Exit status: 0 after a clean stop (SIGTERM or SIGINT: every engine drained, deregistered and
stopped) or a reading; 2 when the config is invalid or no GPU can be read (said once, in
words: no driver, no library), with ``--backend fake`` named as the way to rehearse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import asdict

import msgspec

from gateway.commands import Command
from gateway.config_loader import ConfigError, load_settings
from gateway.control.parts import plugin_registries
from gateway.node.agent import NodeAgent
from gateway.node.base import GpuBackend, GpuUnavailableError
from gateway.node.cost import fleet_usd_per_hour
from gateway.node.runtime import gpu_backend, node_parts
from gateway.node.server import serve
from gateway.plugins import PluginError, Registries
from gateway.providers.base import ProviderContext
from gateway.settings import Settings
from gateway.settings_base import PluginChoice
from gateway.settings_node import NodeSettings

log = logging.getLogger("gateway.node")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG"),
        help="YAML config with a `node:` section (default: $GATEWAY_CONFIG; none: read the "
        "GPUs with the nvml backend only)",
    )
    parser.add_argument(
        "--backend", choices=["nvml", "fake"], help="the GPU backend, overriding node.gpus"
    )
    parser.add_argument("--gpus", type=int, default=8, help="with --backend fake: how many")
    parser.add_argument(
        "--gpu-name", default="NVIDIA H100 80GB HBM3", help="with --backend fake: their model"
    )
    parser.add_argument(
        "--gpu-memory-mib", type=float, default=81559.0, help="with --backend fake: memory each"
    )
    parser.add_argument("--host", help="address of /metrics and /status (default node.host)")
    parser.add_argument("--port", type=int, help="their port (default node.port, 9400)")
    parser.add_argument("--once", action="store_true", help="read the GPUs once and exit")
    parser.add_argument("--json", action="store_true", help="with --once: print JSON")


def settings_for(args: argparse.Namespace) -> Settings:
    """The config, with the command line's overrides applied.

    Raises:
        ConfigError: the file is invalid.
    """
    settings = load_settings(args.config) if args.config else Settings(source="<command line>")
    node = settings.node or NodeSettings()
    if args.backend == "fake":
        options = {"count": args.gpus, "name": args.gpu_name, "memory_mib": args.gpu_memory_mib}
        node = msgspec.structs.replace(node, gpus=PluginChoice(backend="fake", options=options))
    elif args.backend == "nvml":
        node = msgspec.structs.replace(node, gpus=PluginChoice(backend="nvml"))
    if args.host:
        node = msgspec.structs.replace(node, host=args.host)
    if args.port is not None:
        node = msgspec.structs.replace(node, port=args.port)
    return msgspec.structs.replace(settings, node=node)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_for(args)
        registries = plugin_registries(settings)
        gpus = gpu_backend(settings, registries)
    except (ConfigError, PluginError) as exc:
        print(f"gateway node: {exc}", file=sys.stderr)
        return 2
    except GpuUnavailableError as exc:
        print(
            f"gateway node: no GPU can be read here: {exc}. To rehearse without GPUs, run with "
            "--backend fake (or node.gpus.backend: fake).",
            file=sys.stderr,
        )
        return 2
    try:
        if args.once:
            return read_once(settings, gpus, as_json=args.json)
        return asyncio.run(run_agent(settings, registries, gpus))
    except ConfigError as exc:
        print(f"gateway node: {exc}", file=sys.stderr)
        return 2
    finally:
        gpus.close()


def read_once(settings: Settings, gpus: GpuBackend, *, as_json: bool) -> int:
    assert settings.node is not None
    readings = gpus.read()
    usd_per_hour, unpriced = fleet_usd_per_hour(readings, settings.node.gpu_hour_usd)
    if as_json:
        out = {
            "gpus": [asdict(r) for r in readings],
            "cost": {"usd_per_hour": usd_per_hour, "unpriced_gpus": unpriced},
        }
        print(json.dumps(out, indent=2))
        return 0
    for r in readings:
        print(
            f"GPU {r.index} {r.name} {r.uuid}: {r.memory_used_mib:.0f}/{r.memory_total_mib:.0f} "
            f"MiB, util {_figure(r.utilization_pct, '%')}, {_figure(r.temperature_c, ' C')}, "
            f"{_figure(r.power_w, ' W')}, SM {_figure(r.sm_clock_mhz, ' MHz')}, "
            f"{len(r.processes)} processes"
        )
    return 0


def _figure(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.0f}{unit}"


async def run_agent(settings: Settings, registries: Registries, gpus: GpuBackend) -> int:
    """Run the agent and its HTTP face until SIGTERM or SIGINT, then stop cleanly."""
    node = settings.node
    assert node is not None
    context = ProviderContext()
    await context.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(context.close)
        parts = node_parts(settings, registries, context, gpus)
        if parts.registrar is not None:
            stack.push_async_callback(parts.registrar.aclose)
        if parts.store is not None:
            stack.push_async_callback(parts.store.aclose)
        agent = NodeAgent(settings, parts)
        runner = await serve(agent, node.host, node.port)
        stack.push_async_callback(runner.cleanup)
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def on_signal() -> None:
            if not stopping:  # a second signal while stopping changes nothing
                stopping.append(loop.create_task(agent.stop()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        print(
            f"gateway node {agent.name} on http://{node.host}:{node.port} "
            f"({len(agent.parts.gpus.read())} GPUs, {node.gpus.backend}; placement "
            f"{node.placement.backend}; {len(node.deployments)} deployments)",
            file=sys.stderr,
            flush=True,
        )
        await agent.run()
        await asyncio.gather(*stopping)
    return 0


COMMAND = Command(help="run the GPU node agent", add_arguments=add_arguments, run=run)
