"""Every hook a gateway plugin may implement. These docstrings are the plugin contract.

Plugins are modules or objects with functions decorated by ``gateway.hookimpl``, found through the
``gateway`` entry-point group (built-ins included). Registration hooks run once, when the app (or
the CLI) is built; each receives a typed ``register(name, obj)`` callback (the ``Register*``
aliases below). The host rejects a duplicate name or an object of the wrong kind with an error
naming the plugin. The request path then calls the registered objects directly through their
Protocols: no hook is called per request.

``docs/plugins.md`` documents each hook; ``tests/contract`` keeps it in step with this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import pluggy

if TYPE_CHECKING:
    from litestar import Router
    from litestar.handlers import BaseRouteHandler

    from gateway.agents.base import AgentFactory
    from gateway.cache.base import CacheBackend
    from gateway.commands import Command
    from gateway.control.base import (
        BudgetPublisherFactory,
        ControlStoreFactory,
        FleetScalerFactory,
        MetricPublisherFactory,
        RecordArchiveFactory,
        UsageLedgerFactory,
    )
    from gateway.cost.base import CostPolicy
    from gateway.defaults import DefaultSource, EmbeddedDefault
    from gateway.governance.keystore import KeyStoreFactory
    from gateway.governance.limiter import LimiterFactory
    from gateway.governance.sinks import AlertSinkFactory, UsageSinkFactory
    from gateway.guardrails.base import GuardrailFactory
    from gateway.node.base import (
        EngineRegistrarFactory,
        GpuBackendFactory,
        PlacementStrategyFactory,
    )
    from gateway.providers.base import ProviderFactory
    from gateway.routing.base import RoutingStrategyFactory
    from gateway.scheduling.base import SchedulerFactory
    from gateway.state import GatewayState
    from gateway.stores.base import ResponseStoreFactory
    from gateway.telemetry.tracing import SpanExporterFactory
    from gateway.tools.base import Tool, ToolSourceFactory

PROJECT_NAME = "gateway"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# Forward references as strings: importing the contracts here would make `import gateway` (for
# `hookimpl`) load litestar and aiohttp. Type checkers resolve them through TYPE_CHECKING.
RegisterProvider: TypeAlias = Callable[[str, "ProviderFactory"], None]
RegisterRoutingStrategy: TypeAlias = Callable[[str, "RoutingStrategyFactory"], None]
RegisterCacheBackend: TypeAlias = Callable[[str, "Callable[..., CacheBackend]"], None]
RegisterCostPolicy: TypeAlias = Callable[[str, "Callable[..., CostPolicy]"], None]
RegisterTool: TypeAlias = Callable[[str, "Tool"], None]
RegisterToolSource: TypeAlias = Callable[[str, "ToolSourceFactory"], None]
RegisterAgent: TypeAlias = Callable[[str, "AgentFactory"], None]
RegisterGuardrail: TypeAlias = Callable[[str, "GuardrailFactory"], None]
RegisterScheduler: TypeAlias = Callable[[str, "SchedulerFactory"], None]
RegisterUsageSink: TypeAlias = Callable[[str, "UsageSinkFactory"], None]
RegisterAlertSink: TypeAlias = Callable[[str, "AlertSinkFactory"], None]
RegisterKeyStore: TypeAlias = Callable[[str, "KeyStoreFactory"], None]
RegisterLimiter: TypeAlias = Callable[[str, "LimiterFactory"], None]
RegisterResponseStore: TypeAlias = Callable[[str, "ResponseStoreFactory"], None]
RegisterControlStore: TypeAlias = Callable[[str, "ControlStoreFactory"], None]
RegisterUsageLedger: TypeAlias = Callable[[str, "UsageLedgerFactory"], None]
RegisterRecordArchive: TypeAlias = Callable[[str, "RecordArchiveFactory"], None]
RegisterBudgetPublisher: TypeAlias = Callable[[str, "BudgetPublisherFactory"], None]
RegisterMetricPublisher: TypeAlias = Callable[[str, "MetricPublisherFactory"], None]
RegisterFleetScaler: TypeAlias = Callable[[str, "FleetScalerFactory"], None]
RegisterGpuBackend: TypeAlias = Callable[[str, "GpuBackendFactory"], None]
RegisterPlacementStrategy: TypeAlias = Callable[[str, "PlacementStrategyFactory"], None]
RegisterEngineRegistrar: TypeAlias = Callable[[str, "EngineRegistrarFactory"], None]
RegisterSpanExporter: TypeAlias = Callable[[str, "SpanExporterFactory"], None]
RegisterRoute: TypeAlias = Callable[[str, "BaseRouteHandler | Router"], None]
RegisterCommand: TypeAlias = Callable[[str, "Command"], None]
RegisterDefaultSource: TypeAlias = Callable[[str, "DefaultSource"], None]
RegisterEmbeddedDefault: TypeAlias = Callable[[str, "EmbeddedDefault"], None]


@hookspec
def register_providers(register: RegisterProvider) -> None:
    """Register provider types, the ways to talk to an upstream.

    Call ``register(name, factory)`` once per type. ``name`` is what a backend's ``provider:``
    names in the config. ``factory(spec: BackendSpec, context: ProviderContext) -> Provider``
    (``gateway.providers``) builds the provider for one backend when the app is built; it may raise
    ``ValueError`` for unusable options, which the gateway reports with the config field. A
    provider may also offer capabilities (``gateway.providers.base.CAPABILITIES``).
    """


@hookspec
def register_routing_strategies(register: RegisterRoutingStrategy) -> None:
    """Register routing strategies, the ways a model group picks a backend.

    Call ``register(name, factory)``. ``name`` is what ``routing.strategy`` names in the config.
    ``factory(**params) -> RoutingStrategy`` (``gateway.routing.base``) is called once per model
    group with that group's ``routing.params``; ``TypeError``/``ValueError`` become config errors.
    """


@hookspec
def register_cache_backends(register: RegisterCacheBackend) -> None:
    """Register response-cache backends.

    Call ``register(name, factory)``; ``factory(**options) -> CacheBackend``
    (``gateway.cache.base``) is called with the backend's config options. Keys arrive already
    namespaced per tenant; values are opaque bytes with a time to live.
    """


@hookspec
def register_cost_policies(register: RegisterCostPolicy) -> None:
    """Register cost policies, which price usage and act on requests before dispatch.

    Call ``register(name, factory)``; ``factory(**options) -> CostPolicy`` (``gateway.cost.base``)
    is called once per ``governance.cost_policies`` entry that names it, with its options.
    ``policy.cost(usage)`` returns nano-dollars or None; ``policy.decide(situation)`` returns a
    ``Decision`` (reroute or reject) or None. Both are on the request path: pure, no I/O.
    """


@hookspec
def register_tools(register: RegisterTool) -> None:
    """Register tools that agents (and server-side tool execution) may call.

    Call ``register(name, tool)`` with an object satisfying ``Tool`` (``gateway.tools.base``);
    ``name`` must equal ``tool.name``. ``tool.call(arguments, context)`` returns a ``ToolResult``.
    """


@hookspec
def register_tool_sources(register: RegisterToolSource) -> None:
    """Register tool sources, which list tools at run time (MCP servers, tool catalogues).

    Call ``register(name, factory)``; ``name`` is what a ``tool_sources`` entry's ``type:`` names.
    ``factory(**options) -> ToolSource`` (``gateway.tools.base``) is called with the entry's
    options. Its ``list_tools()`` is awaited when the gateway starts and when tools are needed
    (cached briefly); its ``aclose()`` at shutdown. Its tools are named ``<entry>.<tool>``.
    """


@hookspec
def register_agents(register: RegisterAgent) -> None:
    """Register agents, served as model names.

    Call ``register(name, factory)`` once per agent *type*; ``name`` is what an agent's ``type:``
    names. ``factory(settings) -> Agent`` (``gateway.agents.base``) is called once per configured
    agent with its ``AgentSettings`` (``gateway.settings_agents``; type-specific settings in its
    ``options``). ``Agent.run(request, session)`` answers a chat request and
    ``Agent.stream(request, session)`` yields its events, calling models through
    ``session.models`` (the gateway's own pipeline, as the caller) and tools through
    ``session.tools``.
    """


@hookspec
def register_guardrails(register: RegisterGuardrail) -> None:
    """Register guardrails, checks on what passes through the gateway.

    Call ``register(name, factory)``; ``name`` is what a ``guardrails`` entry's ``type:`` names.
    ``factory(**options) -> Guardrail`` (``gateway.guardrails.base``) is called once per entry with
    its options. Its checks of the request, the response and each stream chunk (in OpenAI chat
    format) return a verdict: allow, block or rewrite. Only the model groups and agents that list
    the entry run it.
    """


@hookspec
def register_schedulers(register: RegisterScheduler) -> None:
    """Register schedulers, which decide who goes next while a model group is saturated.

    Call ``register(name, factory)``; ``name`` is what ``models[].scheduling.scheduler.backend``
    names. ``factory(**options) -> Scheduler`` (``gateway.scheduling.base``) is called once
    per model group that names it: a queue discipline (``push``, ``pop``, ``remove``, and
    ``started``/``finished`` for the service each request got); the core does the waiting.
    """


@hookspec
def register_usage_sinks(register: RegisterUsageSink) -> None:
    """Register usage sinks, where usage records are written off the hot path.

    Call ``register(name, factory)``; ``factory(**options) -> UsageSink``
    (``gateway.governance.sinks``) is called with the sink's config options. Its
    ``write(records)`` receives batches and must be idempotent by ``request_id``.
    """


@hookspec
def register_alert_sinks(register: RegisterAlertSink) -> None:
    """Register alert sinks, where budget alerts go.

    Call ``register(name, factory)``; ``factory(**options) -> AlertSink``
    (``gateway.governance.sinks``) is called with the sink's config options. Its
    ``send(alert, context)`` is awaited off the request path, once per threshold per window.
    """


@hookspec
def register_key_stores(register: RegisterKeyStore) -> None:
    """Register key stores, where virtual keys and tenants live.

    Call ``register(name, factory)``; ``factory(**options, clock=clock, pepper=pepper) ->
    KeyStore`` (``gateway.governance.keystore``) is called with ``governance.key_store.options``
    (``pepper``: the bytes secrets are HMAC'd with). Records
    hold only the HMAC of each key's secret; ``changes()`` streams invalidations to every replica.
    """


@hookspec
def register_limiters(register: RegisterLimiter) -> None:
    """Register limiters, which enforce rate, concurrency and budget limits.

    Call ``register(name, factory)``; ``factory(**options, clock=clock, events=events) ->
    Limiter`` (``gateway.governance.limiter``) is called with ``governance.limiter.options``.
    ``reserve(demand)`` takes every rule of a request atomically or none; ``settle`` reconciles
    off the request path.
    """


@hookspec
def register_response_stores(register: RegisterResponseStore) -> None:
    """Register response stores, where stored responses and chat completions are kept.

    Call ``register(name, factory)``; ``factory(**options, clock=clock) -> ResponseStore``
    (``gateway.stores.base``) is called with the store's config options and the gateway's clock.
    Records are keyed by ``(namespace, id)``, the namespace being the caller's
    ``Principal.namespace``, and expire after the store's retention (``ttl_s``).
    """


@hookspec
def register_control_stores(register: RegisterControlStore) -> None:
    """Register control stores, the shared store of the control plane and the replicas.

    Call ``register(name, factory)``; ``name`` is what ``control.store.backend`` names.
    ``factory(**options) -> ControlStore`` (``gateway.control.base``) keeps published config
    versions (assigned atomically), the health sweep's hints and the jobs' small state.
    """


@hookspec
def register_usage_ledgers(register: RegisterUsageLedger) -> None:
    """Register usage ledgers, where usage-rollup folds usage records.

    Call ``register(name, factory)``; ``name`` is what ``control.ledger.backend`` names.
    ``factory(**options) -> UsageLedger`` (``gateway.control.base``): ``fold(records)`` adds
    each record not counted before to its tenant, key and model totals per day and month
    (atomic increments) and is idempotent by request id.
    """


@hookspec
def register_record_archives(register: RegisterRecordArchive) -> None:
    """Register record archives, where raw usage records are kept as JSON lines by date.

    Call ``register(name, factory)``; ``factory(**options) -> RecordArchive``
    (``gateway.control.base``); ``put(day, name, data)`` replaces an object of the same name.
    """


@hookspec
def register_budget_publishers(register: RegisterBudgetPublisher) -> None:
    """Register budget publishers, where thresholds the ledger's totals cross are announced.

    Call ``register(name, factory)``; ``factory(**options) -> BudgetPublisher``
    (``gateway.control.base``); ``publish(crossings)`` is awaited once per crossing.
    """


@hookspec
def register_metric_publishers(register: RegisterMetricPublisher) -> None:
    """Register metric publishers, where the control plane's measurements go.

    Call ``register(name, factory)``; ``factory(**options) -> MetricPublisher``
    (``gateway.control.base``); ``put(namespace, points)`` sends a batch of ``MetricPoint``s.
    """


@hookspec
def register_fleet_scalers(register: RegisterFleetScaler) -> None:
    """Register fleet scalers, which change how many replicas serve a model group.

    Call ``register(name, factory)``; ``name`` is what a ``control.scaling.<group>.scaler``
    names. ``factory(**options) -> FleetScaler`` (``gateway.control.base``) is called once per
    group that names it: ``current()`` reads the desired replicas, ``set_desired(n)`` asks.
    """


@hookspec
def register_gpu_backends(register: RegisterGpuBackend) -> None:
    """Register GPU backends, where the node agent reads its GPUs.

    Call ``register(name, factory)``; ``name`` is what ``node.gpus.backend`` names.
    ``factory(**options) -> GpuBackend`` (``gateway.node.base``) raises ``GpuUnavailableError``
    when there is nothing to read; ``read()`` returns every GPU's ``GpuReading`` (a figure the
    GPU does not report is None, never 0), and ``note_engines(engines)`` tells it what runs.
    """


@hookspec
def register_placement_strategies(register: RegisterPlacementStrategy) -> None:
    """Register placement strategies, which choose GPUs for the node agent's engines.

    Call ``register(name, factory)``; ``name`` is what ``node.placement.backend`` names.
    ``factory(**options) -> PlacementStrategy`` (``gateway.node.base``): ``place(demands, gpus,
    running)`` is pure and returns a ``Placement`` (GPUs per engine, the unplaced with a
    reason, the running engines to displace).
    """


@hookspec
def register_engine_registrars(register: RegisterEngineRegistrar) -> None:
    """Register engine registrars, which tell the gateway fleet where the node's engines are.

    Call ``register(name, factory)``; ``name`` is what ``node.registrar.backend`` names.
    ``factory(**options) -> EngineRegistrar`` (``gateway.node.base``): ``register``, ``drain``
    and ``deregister`` an ``EngineEndpoint``, each idempotent.
    """


@hookspec
def register_span_exporters(register: RegisterSpanExporter) -> None:
    """Register span exporters, where the gateway's traces go when ``tracing.enabled`` is on.

    Call ``register(name, factory)``; ``name`` is what ``tracing.exporter.backend`` names.
    ``factory(**options) -> SpanExporter`` (OpenTelemetry's ``opentelemetry.sdk.trace.export``
    contract) is called once, when the app is built, with ``tracing.exporter.options``; it may
    raise ``ValueError`` naming a bad option. Import OpenTelemetry inside the factory, not at
    module level: the gateway imports none of it while tracing is off. Spans reach it through
    a batch processor, off the request path; ``shutdown()`` is called when the app stops.
    """


@hookspec
def register_routes(register: RegisterRoute) -> None:
    """Add HTTP routes to the gateway.

    Call ``register(name, handler)`` with a Litestar route handler (``@get``/``@post``...) or a
    ``litestar.Router``. Paths must not collide with the gateway's own. Routes under ``/v1`` get
    the gateway's authentication; others are public unless the handler guards itself.
    """


@hookspec
def register_commands(register: RegisterCommand) -> None:
    """Add ``gateway <name>`` CLI subcommands.

    Call ``register(name, command)`` with a ``gateway.commands.Command``: its ``help`` line, an
    ``add_arguments(parser)`` that declares its options, and ``run(args)`` returning the exit
    status. Built-in command names (serve, check, plugins) cannot be replaced.
    """


@hookspec
def register_default_sources(register: RegisterDefaultSource) -> None:
    """Register what ``gateway serve`` without a config file may find in the environment.

    Call ``register(name, source)`` with a ``DefaultSource`` (``gateway.defaults``):
    ``source.discover(env)`` returns model groups (config mappings) for the backends the
    environment names, or nothing. Groups of the same name from several sources are merged.
    """


@hookspec
def register_embedded_defaults(register: RegisterEmbeddedDefault) -> None:
    """Register backends to start in-process when neither a file nor the environment names any.

    Call ``register(name, default)`` with an ``EmbeddedDefault`` (``gateway.defaults``):
    ``default.start()`` starts its backends and returns their model groups and a banner note.
    Every registered one is started and served.
    """


@hookspec
def startup(state: GatewayState) -> Awaitable[None] | None:
    """Run when the app starts, before it serves, inside the event loop.

    ``state`` is the app's ``GatewayState`` (settings, registries, model catalog, metrics). Return
    None, or an awaitable the gateway awaits. An exception aborts start-up.
    """


@hookspec
def shutdown(state: GatewayState) -> Awaitable[None] | None:
    """Run when the app stops, after in-flight requests have finished.

    Return None, or an awaitable the gateway awaits. Exceptions are logged and do not stop the
    other plugins' shutdown.
    """
