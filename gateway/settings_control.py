"""The ``control:`` config section: the shared store the control plane and the replicas use,
and the settings of its jobs (``docs/control-plane.md``). Unknown keys are rejected."""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.settings_base import PluginChoice, PositiveFloat, _Config


def _sqlite_ledger() -> PluginChoice:
    return PluginChoice(backend="sqlite", options={"path": "data/ledger.sqlite3"})


def _log_only() -> list[PluginChoice]:
    return [PluginChoice(backend="log")]


class ScalingPolicy(_Config):
    """Target tracking for one model group's replicas.

    Attributes:
        scaler: the fleet scaler acting on it (``aws_autoscaling``: ``{group_name}``).
        min_replicas / max_replicas: the bounds.
        target_waiting: engine-queued requests per replica to hold (vLLM
            ``num_requests_waiting``).
        target_kv_cache: the share of KV cache in use to hold (``kv_cache_usage_perc``).
        max_step: the most replicas added or removed in one decision.
        scale_up_cooldown_s / scale_down_cooldown_s: the least time after a change before the
            next one up (or down).
    """

    scaler: PluginChoice
    min_replicas: Annotated[int, msgspec.Meta(ge=0)] = 1
    max_replicas: Annotated[int, msgspec.Meta(ge=1)] = 10
    target_waiting: PositiveFloat = 4.0
    target_kv_cache: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.8
    max_step: Annotated[int, msgspec.Meta(ge=1)] = 2
    scale_up_cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    scale_down_cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0


class ControlSettings(_Config):
    """The control plane.

    Attributes:
        store: the shared store (``redis``: ``{url}``; ``directory``: ``{path}``); None: no
            shared store (replicas follow their file only).
        follow_config: replicas apply each published config version live (what cannot change
            live is reported in the log and ``/admin/reload``'s report).
        poll_interval_s: how often replicas look for a new version.
        use_health_hints: replicas take the health sweep's hints (a backend the sweep saw
            down is tried last), never as the only truth.
        ledger: where usage-rollup folds usage records (``sqlite``; ``dynamodb``).
        archive: where raw records are kept as JSON lines by date (``directory``; ``s3``);
            None: not kept.
        budget_publishers: where crossed budget thresholds are announced (``log``;
            ``eventbridge``).
        metric_publishers: where health-sweep results go as metrics (``log``; ``cloudwatch``).
        probe_timeout_s: the health sweep's timeout per backend.
        gateway_urls: the gateway replicas' base URLs, whose ``/metrics`` scale-fleet reads
            (requests in flight per group) beside the engines' own.
        scaling: target-tracking policies by model group (scale-fleet).
    """

    store: PluginChoice | None = None
    follow_config: bool = True
    poll_interval_s: PositiveFloat = 0.5
    use_health_hints: bool = True
    ledger: PluginChoice = msgspec.field(default_factory=_sqlite_ledger)
    archive: PluginChoice | None = None
    budget_publishers: list[PluginChoice] = msgspec.field(default_factory=_log_only)
    metric_publishers: list[PluginChoice] = msgspec.field(default_factory=_log_only)
    probe_timeout_s: PositiveFloat = 2.0
    gateway_urls: list[str] = msgspec.field(default_factory=list)
    scaling: dict[str, ScalingPolicy] = msgspec.field(default_factory=dict)
