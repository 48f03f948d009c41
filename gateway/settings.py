"""The gateway's configuration: msgspec Structs mirroring the YAML config file.

Unknown keys are rejected (``forbid_unknown_fields``) so that a misspelt option fails at load with
its path instead of being silently ignored. Loading, ``${ENV}`` interpolation and error messages
live in :mod:`gateway.config_loader`; the embedded default lives in :mod:`gateway.defaults`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.settings_agents import (
    AgentSettings,
    GuardrailSettings,
    ServerToolSettings,
    ToolSourceSettings,
    WorkflowSettings,
)
from gateway.settings_base import PluginChoice, _Config
from gateway.settings_control import ControlSettings
from gateway.settings_dashboard import DashboardSettings
from gateway.settings_node import NodeSettings
from gateway.settings_scheduling import SchedulingSettings
from gateway.settings_tracing import TracingSettings

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class TimeoutSettings(_Config):
    """Upstream timeouts in seconds.

    Attributes:
        connect: establishing the TCP (and TLS) connection.
        first_byte: from sending the request to receiving the response headers.
        idle: the longest silence allowed between two chunks of a body or stream.
        total: the whole exchange, stream included.
    """

    connect: PositiveFloat = 5.0
    first_byte: PositiveFloat = 120.0
    idle: PositiveFloat = 60.0
    total: PositiveFloat = 600.0


NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class PriceSettings(_Config):
    """What a backend charges (the ``cost`` routing strategy and spend accounting read it).

    Attributes:
        input_per_mtok: US dollars per million prompt tokens.
        output_per_mtok: US dollars per million completion tokens.
        cached_input_per_mtok: per million prompt tokens served from a prompt or prefix cache
            (None: the input price).
        gpu_hour_usd: price a self-hosted backend by GPU time instead: a request is charged its
            share of the replica's busy time at this hourly rate.
        gpu_tokens_per_s: with ``gpu_hour_usd``, the slowest output rate a request is assumed
            to get, which sizes its worst-case cost reserved against budgets.
    """

    input_per_mtok: NonNegativeFloat = 0.0
    output_per_mtok: NonNegativeFloat = 0.0
    cached_input_per_mtok: NonNegativeFloat | None = None
    gpu_hour_usd: NonNegativeFloat | None = None
    gpu_tokens_per_s: PositiveFloat = 20.0


class BackendSettings(_Config):
    """One upstream deployment serving a model group.

    Attributes:
        provider: the registered provider type (``vllm`` for any OpenAI-compatible server).
        url: base URL of the upstream, without ``/v1``.
        model: the model name the upstream knows; defaults to the group's public name.
        name: a stable identifier for metrics and logs; defaults to ``<group>-<index>``.
        api_key: sent as ``Authorization: Bearer``; use ``${ENV_VAR}`` to keep it out of the file.
        weight: relative share for weighted strategies.
        timeouts: per-backend override of the group's timeouts.
        options: provider-specific settings, passed to the provider factory as they are.
        price: what it charges (the ``cost`` strategy picks the cheapest); None: looked up in
            the offline price table by ``model`` (cloud providers), else zero with a warning.
        context_window: the longest prompt plus output it accepts, in tokens (0: unknown).
        local: the backend runs on the operator's own machines (a vLLM replica), not a cloud
            API: only such backends serve agents routed ``privacy: local_only``.
    """

    provider: str = "vllm"
    url: str = ""
    model: str | None = None
    name: str | None = None
    api_key: str | None = None
    weight: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    timeouts: TimeoutSettings | None = None
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    price: PriceSettings | None = None
    context_window: Annotated[int, msgspec.Meta(ge=0)] = 0
    local: bool = False


class RetrySettings(_Config):
    """Retries of failed upstream calls (never after bytes reached the client).

    Attributes:
        attempts: tries per model group, the first included.
        backoff_ms: first back-off; doubled each retry, with full jitter.
        max_backoff_ms: longest back-off.
        budget_ratio: retries allowed per request over time (0.2: at most one retry for five
            requests), so retries cannot multiply the load of an outage.
        budget_min: retries always available in a quiet period.
    """

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    backoff_ms: Annotated[float, msgspec.Meta(ge=0)] = 25.0
    max_backoff_ms: Annotated[float, msgspec.Meta(ge=0)] = 1000.0
    budget_ratio: Annotated[float, msgspec.Meta(ge=0)] = 0.2
    budget_min: Annotated[float, msgspec.Meta(ge=0)] = 10.0


class BreakerConfig(_Config):
    """A circuit breaker per backend (see ``gateway.routing.health``)."""

    consecutive_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    failure_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    window: Annotated[int, msgspec.Meta(ge=1)] = 20
    min_requests: Annotated[int, msgspec.Meta(ge=1)] = 10
    cooldown_s: PositiveFloat = 10.0


class HealthCheckSettings(_Config):
    """Active health checks of a group's backends.

    Attributes:
        enabled: probe the backends at all.
        interval_s: time between probes of one backend.
        timeout_s: a probe slower than this failed.
        unhealthy_after: consecutive failed probes before routing stops.
        healthy_after: consecutive good probes before routing resumes.
    """

    enabled: bool = True
    interval_s: PositiveFloat = 5.0
    timeout_s: PositiveFloat = 2.0
    unhealthy_after: Annotated[int, msgspec.Meta(ge=1)] = 2
    healthy_after: Annotated[int, msgspec.Meta(ge=1)] = 1


class GroupCacheSettings(_Config):
    """Response caching for a model group.

    Attributes:
        enabled: cache this group's chat, completion and embedding responses.
        ttl_s: how long an entry lives.
        deterministic_only: cache only requests whose answer is deterministic (temperature 0 or
            a seed; embeddings always are); False caches every request.
    """

    enabled: bool = False
    ttl_s: PositiveFloat = 300.0
    deterministic_only: bool = True


class BatchingSettings(_Config):
    """Micro-batching of a group's embedding requests (``gateway.batching.embeddings``).

    Attributes:
        enabled: merge embedding requests that arrive close together.
        max_inputs: most inputs in one upstream call.
        max_tokens: most estimated tokens in one upstream call.
        max_wait_ms: longest a request waits for others to join.
    """

    enabled: bool = False
    max_inputs: Annotated[int, msgspec.Meta(ge=1)] = 64
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 8192
    max_wait_ms: Annotated[float, msgspec.Meta(ge=0)] = 2.0


Ceiling = Annotated[int, msgspec.Meta(ge=1)] | None


class LimitSettings(_Config):
    """Ceilings on what one request to a model group may ask for; each is off when unset.

    Checked before the request is dispatched (:mod:`gateway.pipeline.limits`): a request over
    one gets 400 naming the field, so that no client can tie up an upstream through the gateway.

    Attributes:
        max_tokens: the most output tokens (``max_tokens``, ``max_completion_tokens``; Anthropic's
            ``max_tokens``).
        max_n: the most choices (``n``).
        max_inputs: the most inputs of one embeddings request (``input``) or prompts of one
            completions request (``prompt``).
        max_dimensions: the largest embedding ``dimensions``.
    """

    max_tokens: Ceiling = None
    max_n: Ceiling = None
    max_inputs: Ceiling = None
    max_dimensions: Ceiling = None


class RoutingSettings(_Config):
    """How a model group spreads requests over its backends.

    Attributes:
        strategy: a registered routing strategy name.
        params: keyword arguments for the strategy's factory.
    """

    strategy: str = "round_robin"
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class ModelGroupSettings(_Config):
    """A public model name served by one or more backends.

    Attributes:
        name: the name clients send as ``model``.
        aliases: other names that resolve to this group.
        backends: where requests go. Empty for a group whose backends node agents register
            (``gateway node``): it answers 503 until one is registered.
        routing: the routing strategy and its parameters.
        timeouts: default upstream timeouts for the group's backends.
        owned_by: reported by ``/v1/models``.
        retry: retries within the group.
        breaker: the circuit breaker of each backend.
        health_check: active probes of each backend.
        fallbacks: groups tried, in order, when this one cannot answer (every backend down,
            retries exhausted).
        context_window_fallbacks: groups tried when an upstream says the prompt is too long.
        cache: response caching.
        batching: embedding micro-batching.
        limits: ceilings on what one request may ask for (none when unset).
        capabilities: what the group supports (``tools``, ``vision``, ``json_schema``), for
            the ``cheapest_capable`` cost policy; None: everything.
        cost_policy: a ``governance.cost_policies`` name applied to the group's requests
            (a key's or tenant's own policy wins).
        reserve_output_tokens: output tokens reserved against token limits and budgets when a
            request sets no ``max_tokens`` (None: ``governance.reserve_output_tokens``).
        tools: ``client`` (tool calls go back to the client) or ``server`` (the gateway runs
            calls to registered tools itself; the long form lists which).
        guardrails: ``guardrails`` names checked on the group's requests and answers.
        scheduling: admission control while the group is saturated (None: none).
    """

    name: Annotated[str, msgspec.Meta(min_length=1)]
    backends: list[BackendSettings]
    aliases: list[str] = msgspec.field(default_factory=list)
    routing: RoutingSettings = msgspec.field(default_factory=RoutingSettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    owned_by: str = "gateway"
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    health_check: HealthCheckSettings = msgspec.field(default_factory=HealthCheckSettings)
    fallbacks: list[str] = msgspec.field(default_factory=list)
    context_window_fallbacks: list[str] = msgspec.field(default_factory=list)
    cache: GroupCacheSettings = msgspec.field(default_factory=GroupCacheSettings)
    batching: BatchingSettings = msgspec.field(default_factory=BatchingSettings)
    limits: LimitSettings | None = None
    capabilities: list[str] | None = None
    cost_policy: str | None = None
    reserve_output_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    tools: Literal["client", "server"] | ServerToolSettings = "client"
    guardrails: list[str] = msgspec.field(default_factory=list)
    scheduling: SchedulingSettings | None = None

    @property
    def server_tools(self) -> ServerToolSettings | None:
        """Server-side tool execution, when on (``tools: server`` offers every registered
        tool)."""
        tools = self.tools
        if tools == "server":
            return ServerToolSettings(mode="server", tools=["*"])
        if isinstance(tools, ServerToolSettings) and tools.mode == "server":
            return tools
        return None


class ServerSettings(_Config):
    """The HTTP server.

    Attributes:
        host: address to bind; a non-loopback address requires API keys (or an explicit opt-out).
        port: TCP port.
        workers: worker processes.
        max_body_bytes: request bodies over this size get 413.
        shutdown_grace_s: on SIGTERM, how long in-flight requests and streams may finish.
        allow_unauthenticated: serve a non-loopback address without API keys.
    """

    host: str = "127.0.0.1"
    port: Port = 8080
    workers: Annotated[int, msgspec.Meta(ge=1)] = 1
    max_body_bytes: Annotated[int, msgspec.Meta(gt=0)] = 10 * 1024 * 1024
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    allow_unauthenticated: bool = False


class AuthSettings(_Config):
    """Client authentication.

    Attributes:
        api_keys: keys accepted as ``Authorization: Bearer <key>`` on ``/v1`` routes.
        master_key: an operator key, accepted everywhere a key is (admin routes use it later).
    """

    api_keys: list[str] = msgspec.field(default_factory=list)
    master_key: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether any key is configured, and so whether ``/v1`` requires one."""
        return bool(self.api_keys) or bool(self.master_key)


class CacheTierSettings(_Config):
    """One tier of the response cache: a registered cache backend and its options."""

    backend: str
    options: dict[str, Any] = msgspec.field(default_factory=dict)


def _default_tiers() -> list[CacheTierSettings]:
    return [CacheTierSettings(backend="memory")]


class CacheSettings(_Config):
    """The response cache's tiers, first looked up first (memory before Redis).

    Attributes:
        tiers: the backends, e.g. ``[{backend: memory}, {backend: redis, options: {url: ...}}]``.
        retry_after_s: how long a failed tier is skipped before it is tried again.
    """

    tiers: list[CacheTierSettings] = msgspec.field(default_factory=_default_tiers)
    retry_after_s: PositiveFloat = 1.0


class StoreSettings(_Config):
    """Where stored responses (the Responses API's ``store``, ``previous_response_id``) and
    stored chat completions (``store: true``) are kept.

    Attributes:
        backend: a registered response store: ``sqlite`` (one box; the default) or ``redis``
            (shared by a fleet).
        options: the store's options (``path`` or ``url``, ``ttl_s`` retention...).
    """

    backend: str = "sqlite"
    options: dict[str, Any] = msgspec.field(default_factory=dict)


def _sqlite_keys() -> PluginChoice:
    return PluginChoice(backend="sqlite")


def _memory_limiter() -> PluginChoice:
    return PluginChoice(backend="memory")


def _log_alerts() -> list[PluginChoice]:
    return [PluginChoice(backend="log")]


class UsageSettings(_Config):
    """Usage records and the audit log.

    Attributes:
        sinks: where records go; None: ``sqlite`` when authentication is on (a gateway without
            keys has no one to account to), nothing otherwise.
        buffer_size: records waiting per sink at most; beyond it new ones are dropped (counted).
        batch_size: records per write.
        flush_interval_s: the longest a record waits for its batch to fill.
    """

    sinks: list[PluginChoice] | None = None
    buffer_size: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 500
    flush_interval_s: PositiveFloat = 0.5


class CostPolicySettings(_Config):
    """A named cost-policy instance: a registered policy and its options."""

    policy: str
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class GovernanceSettings(_Config):
    """Virtual keys, tenants, limits, usage, budgets and cost policies.

    Attributes:
        key_store: where virtual keys and tenants live (``sqlite``, ``redis``, ``config``).
        key_cache_ttl_s: how long a replica trusts a cached key or tenant when its store cannot
            push changes (stores that can drop entries at once).
        limiter: where limits are counted (``memory``: one process; ``redis``: a fleet).
        usage: usage records and the audit log.
        alert_sinks: where budget alerts go.
        cost_policies: named cost-policy instances that keys, tenants and groups refer to.
        pricing: the cost policy (registered name) that prices usage.
        reserve_output_tokens: output tokens reserved when a request sets no ``max_tokens``.
        key_metrics: label spend metrics with the key id too (tenant and model always);
            off by default to keep label cardinality bounded.
        data_dir: where embedded defaults keep their files (SQLite ledgers, the pepper file).
    """

    key_store: PluginChoice = msgspec.field(default_factory=_sqlite_keys)
    key_cache_ttl_s: PositiveFloat = 1.0
    limiter: PluginChoice = msgspec.field(default_factory=_memory_limiter)
    usage: UsageSettings = msgspec.field(default_factory=UsageSettings)
    alert_sinks: list[PluginChoice] = msgspec.field(default_factory=_log_alerts)
    cost_policies: dict[str, CostPolicySettings] = msgspec.field(default_factory=dict)
    pricing: str = "price_table"
    reserve_output_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    key_metrics: bool = False
    data_dir: str = "data"


class PluginSettings(_Config):
    """Plugin loading.

    Attributes:
        disabled: plugin names (entry-point names) not to load.
    """

    disabled: list[str] = msgspec.field(default_factory=list)


class Settings(_Config):
    """The whole configuration file.

    Attributes:
        models: the model groups served.
        server: HTTP server settings.
        auth: client authentication.
        plugins: plugin loading.
        cache: the response cache's tiers.
        store: the response store.
        governance: virtual keys, tenants, limits, usage, budgets and cost policies.
        agents: agents, served as model names.
        workflows: workflows over agents, served as model names.
        guardrails: named guardrail instances, which model groups and agents refer to.
        tool_sources: named tool sources (MCP servers); their tools are ``<name>.<tool>``.
        control: the control plane: the shared store and its jobs' settings.
        node: the GPU node agent (``gateway node``); None: this file configures no node.
        tracing: OpenTelemetry traces (off by default).
        dashboard: the live page at ``/dashboard``.
        source: where the settings came from (a path, or a description of the default); set by
            the loader, not by the file.
    """

    models: list[ModelGroupSettings] = msgspec.field(default_factory=list)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    plugins: PluginSettings = msgspec.field(default_factory=PluginSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    governance: GovernanceSettings = msgspec.field(default_factory=GovernanceSettings)
    agents: list[AgentSettings] = msgspec.field(default_factory=list)
    workflows: list[WorkflowSettings] = msgspec.field(default_factory=list)
    guardrails: dict[str, GuardrailSettings] = msgspec.field(default_factory=dict)
    tool_sources: dict[str, ToolSourceSettings] = msgspec.field(default_factory=dict)
    control: ControlSettings = msgspec.field(default_factory=ControlSettings)
    node: NodeSettings | None = None
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    dashboard: DashboardSettings = msgspec.field(default_factory=DashboardSettings)
    source: str = "<memory>"
