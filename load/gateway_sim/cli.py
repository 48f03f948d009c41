"""``gateway sim``: serve one or more simulated vLLM replicas."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from gateway.commands import Command
from gateway_sim.app import create_sim_app
from gateway_sim.profiles import DEFAULT_PROFILE, PROFILES
from gateway_sim.state import Faults, SimConfig


def _error_rate(text: str) -> tuple[int, float]:
    status, _, rate = text.partition(":")
    try:
        return int(status), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected STATUS:RATE such as 503:0.1, got {text}"
        ) from None


def _override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text}")
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gateway sim``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="port of the first replica")
    parser.add_argument("--base-port", type=int, dest="port", help="same as --port")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="replicas on consecutive ports, each with its own engine",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model name to serve (repeatable; default sim-model)",
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help=f"engine profile (default {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--set",
        action="append",
        type=_override,
        default=[],
        metavar="FIELD=VALUE",
        help="override a profile field, e.g. --set num_gpu_blocks=2000",
    )
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument(
        "--error",
        action="append",
        type=_error_rate,
        default=[],
        metavar="STATUS:RATE",
        help="inject errors, e.g. --error 503:0.05",
    )
    parser.add_argument("--delay-ms", type=float, default=0.0, help="latency added per request")
    parser.add_argument(
        "--legacy-metric-names",
        action="store_true",
        help="expose older vLLM metric names (gpu_cache_usage_perc...)",
    )
    parser.add_argument("--seed", type=int, help="seed of the fault dice")
    parser.add_argument("--list-profiles", action="store_true", help="list profiles and exit")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """A :class:`SimConfig` from parsed options.

    Raises:
        ValueError: an unknown profile field in ``--set``, or an embedding size over the
            profile's maximum.
    """
    profile = PROFILES[args.profile].with_overrides(dict(args.set))
    if not 1 <= args.embedding_dim <= profile.max_embedding_dim:
        raise ValueError(
            f"--embedding-dim must be between 1 and max_embedding_dim ({profile.max_embedding_dim})"
        )
    faults = Faults(error_rates=dict(args.error), delay_ms=args.delay_ms)
    return SimConfig(
        models=args.models or ["sim-model"],
        profile=profile,
        embedding_dim=args.embedding_dim,
        faults=faults,
        legacy_metric_names=args.legacy_metric_names,
        seed=args.seed,
    )


def _serve_all(args: argparse.Namespace) -> None:
    """Each replica on its own thread and event loop; the main thread waits for a signal."""
    from gateway.server import BackgroundServer

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    servers = [
        BackgroundServer(create_sim_app(config_from_args(args)), args.host, args.port + i)
        for i in range(args.replicas)
    ]
    try:
        for server in servers:
            server.start()
        stop.wait()
    finally:
        for server in servers:
            server.stop()


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    if args.list_profiles:
        for name, profile in sorted(PROFILES.items()):
            print(f"{name}: {profile.description}")
        return 0
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"gateway sim: error: {exc}", file=sys.stderr)
        return 2
    urls = ", ".join(f"http://{args.host}:{args.port + i}" for i in range(args.replicas))
    print(f"simulating {', '.join(config.models)} ({config.profile.name}) on {urls}", flush=True)
    _serve_all(args)
    return 0


SIM_COMMAND = Command(
    help="serve simulated vLLM replicas (OpenAI and Anthropic APIs)",
    add_arguments=add_arguments,
    run=run,
)
