"""``gateway sim``: serve simulated vLLM replicas."""

from __future__ import annotations

import argparse

from gateway.commands import Command
from gateway_sim.app import Faults, SimConfig, create_sim_app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``gateway sim``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model name to serve (repeatable; default sim-model)",
    )
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="time to first token")
    parser.add_argument("--itl-ms", type=float, default=5.0, help="time between tokens")
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of requests answered with --error-status",
    )
    parser.add_argument("--error-status", type=int, default=503)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added latency")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """A :class:`SimConfig` from parsed options."""
    faults = Faults(
        error_rate=args.error_rate, error_status=args.error_status, delay_ms=args.delay_ms
    )
    return SimConfig(
        models=args.models or ["sim-model"],
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        embedding_dim=args.embedding_dim,
        max_model_len=args.max_model_len,
        faults=faults,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    import uvicorn

    config = config_from_args(args)
    print(f"simulating {', '.join(config.models)} on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        create_sim_app(config),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    return 0


SIM_COMMAND = Command(
    help="serve a simulated vLLM OpenAI-compatible server", add_arguments=add_arguments, run=run
)
