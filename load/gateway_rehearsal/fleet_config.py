"""The fleet's one config file, as a Kubernetes ConfigMap would hold it.

Every replica starts from the same file, and the same text is published to the shared store:
what differs between replicas comes from each one's environment, as it would in a pod. The
replicas listen on one port, each on its own loopback address (``127.0.0.2``, ``127.0.0.3``...;
Linux routes all of ``127.0.0.0/8`` to the loopback interface), as pods share a port on
different IPs; so a replica that follows the store finds the published ``server`` section equal
to its own and applies it with nothing left over to restart for.

Everything a request touches that must be shared lives in the one Redis: keys and tenants, the
limiter (limits and budgets, one atomic script per request), the response cache's second tier,
the response store, and the control store (published config, health hints). Usage records go
to a JSON-lines file per replica, which ``gateway control usage-rollup`` folds into the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HOST_VAR = "REHEARSAL_REPLICA_HOST"
NAME_VAR = "REHEARSAL_REPLICA"
MODEL_GROUP = "chat"
# Dear enough that a small budget binds after a few requests; whole nano-dollars per token.
PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 6.0}


def replica_names(count: int) -> list[str]:
    """``a``, ``b``, ... (then ``r26``, ``r27``...)."""
    return [chr(ord("a") + i) if i < 26 else f"r{i}" for i in range(count)]


def replica_host(index: int) -> str:
    """The loopback address replica ``index`` listens on."""
    return f"127.0.0.{index + 2}"


def fleet_config(
    *,
    work_dir: Path,
    port: int,
    redis_url: str,
    backends: Sequence[str],
    backend_model: str,
    replica_urls: Sequence[str],
    cache: bool = True,
) -> dict[str, Any]:
    """The fleet's config as a mapping.

    Args:
        work_dir: where replicas and jobs keep their files.
        port: the port every replica listens on.
        redis_url: the shared Redis.
        backends: the OpenAI-compatible servers of model group ``chat`` (the simulators).
        backend_model: the model name they serve.
        replica_urls: the replicas' own URLs (``control.gateway_urls``).
        cache: whether group ``chat`` caches deterministic requests (off in the benchmark,
            which measures relaying).
    """
    redis = {"url": redis_url}
    replica_dir = f"{work_dir}/replicas/${{{NAME_VAR}:-a}}"
    return {
        "server": {
            "host": f"${{{HOST_VAR}:-{replica_host(0)}}}",
            "port": port,
            "workers": 1,
            "shutdown_grace_s": 5,
        },
        "auth": {"master_key": "${GATEWAY_MASTER_KEY}"},
        "cache": {"tiers": [{"backend": "memory"}, {"backend": "redis", "options": redis}]},
        "store": {"backend": "redis", "options": redis},
        "governance": {
            "data_dir": replica_dir,
            "key_store": {"backend": "redis", "options": redis},
            "limiter": {"backend": "redis", "options": redis},
            "usage": {
                "sinks": [
                    {"backend": "jsonl", "options": {"path": f"{replica_dir}/usage.jsonl"}},
                ]
            },
        },
        "control": {
            "store": {"backend": "redis", "options": redis},
            "poll_interval_s": 0.5,
            "ledger": {"backend": "sqlite", "options": {"path": f"{work_dir}/ledger.sqlite3"}},
            "archive": {"backend": "directory", "options": {"path": f"{work_dir}/archive"}},
            "gateway_urls": list(replica_urls),
        },
        "models": [
            {
                "name": MODEL_GROUP,
                "routing": {"strategy": "round_robin"},
                "cache": {"enabled": cache},
                "backends": [
                    {"url": url, "model": backend_model, "name": f"sim-{i}", "price": PRICE}
                    for i, url in enumerate(backends)
                ],
            }
        ],
    }


def write_fleet_config(path: Path, config: dict[str, Any]) -> None:
    """Write ``config`` as YAML, with a header saying what it is."""
    header = (
        "# The rehearsal's fleet config: every replica serves it, and it is published to the\n"
        f"# shared store. ${{{NAME_VAR}}} and ${{{HOST_VAR}}} come from each replica's "
        "environment.\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
