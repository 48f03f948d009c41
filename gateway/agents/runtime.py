"""Agents, workflows and server-side tools, built from the settings and plugins.

:func:`build_agents` runs when the app is built (``gateway check`` too): every agent and
workflow becomes a model group (listed by ``/v1/models``, governed like any other) served by an
:class:`~gateway.agents.runner.AgentRunner`; a model group with ``tools: server`` gets a runner
for its client requests; the guardrail chains (:mod:`gateway.guardrails.assembly`) are held
here for the pipeline. Every problem is a
:class:`~gateway.config_loader.ConfigError` naming the file and the field. Nothing here runs per
request; a gateway with none of these configured holds empty dicts, which the pipeline skips.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.agents.base import Agent
from gateway.agents.client import StepPipeline
from gateway.agents.metrics import AgentMetrics
from gateway.agents.runner import AgentRunner, RunSpec
from gateway.config_loader import ConfigError
from gateway.governance.pricing import PriceBook
from gateway.governance.records import PEPPER_ENV
from gateway.guardrails.assembly import build_guardrail_chains
from gateway.guardrails.chain import GuardrailChain
from gateway.pipeline.context import Dialect
from gateway.plugins import Registries, build_registered
from gateway.providers.base import BackendSpec, UpstreamRequest, UpstreamResponse, UpstreamStream
from gateway.routing.backends import Backend, ModelCatalog, ModelGroup
from gateway.routing.base import RouteRequest
from gateway.settings import BackendSettings, ModelGroupSettings, Settings, TimeoutSettings
from gateway.settings_agents import AgentSettings, NetworkSettings, WorkflowSettings
from gateway.telemetry.metrics import GatewayMetrics
from gateway.tools.base import ToolSource
from gateway.tools.network import GuardedHttpClient, NetworkPolicy
from gateway.tools.toolbox import ToolCatalog

log = logging.getLogger("gateway.agents")


class _RunnerOnly:
    """The provider of an agent's backend: never called (its runner answers instead)."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        raise RuntimeError("an agent's backend is served by its runner")

    async def open_stream(self, request: UpstreamRequest) -> UpstreamStream:
        raise RuntimeError("an agent's backend is served by its runner")


class _OnlyBackend:
    """The routing strategy of an agent's group: its one backend."""

    def choose(self, request: RouteRequest, candidates: Any) -> int:
        return 0


class CatalogDirectory:
    """Facts about the model groups for agents' routing (satisfies
    :class:`gateway.agents.routing.ModelDirectory`)."""

    def __init__(self, catalog: ModelCatalog, prices: PriceBook) -> None:
        self._catalog = catalog
        self._prices = prices

    def _group(self, model: str) -> ModelGroup | None:
        try:
            return self._catalog.resolve(model)
        except Exception:  # noqa: BLE001 - an unknown name simply has no facts
            return None

    def exists(self, model: str) -> bool:
        return self._group(model) is not None

    def is_local(self, model: str) -> bool:
        group = self._group(model)
        return group is not None and all(b.spec.local for b in group.backends)

    def context_window(self, model: str) -> int:
        return self._prices.group_facts(model).context_window

    def price_per_mtok(self, model: str) -> float:
        facts = self._prices.group_facts(model)
        return facts.input_per_mtok + facts.output_per_mtok

    def supports_tools(self, model: str) -> bool:
        capabilities = self._prices.group_facts(model).capabilities
        return capabilities is None or "tools" in capabilities


@dataclass(slots=True)
class AgentRuntime:
    """What :func:`build_agents` made, held by the app's state.

    Attributes:
        runners: runners by the model name they serve.
        guards: guardrail chains by model group (and agent) name.
        tools: every tool the gateway can offer.
        clients: the outbound HTTP clients of agents' tools (closed at shutdown).
    """

    runners: dict[str, AgentRunner] = field(default_factory=dict)
    guards: dict[str, GuardrailChain] = field(default_factory=dict)
    tools: ToolCatalog = field(default_factory=lambda: ToolCatalog({}))
    clients: list[GuardedHttpClient] = field(default_factory=list)

    def bind(self, pipeline: StepPipeline, dialect: Dialect) -> None:
        """Let every runner make its steps through ``pipeline`` in the chat ``dialect``."""
        for runner in self.runners.values():
            runner.bind(pipeline, dialect)

    async def start(self) -> None:
        """List the tool sources' tools (a source that is down is retried when needed)."""
        await self.tools.start()

    async def aclose(self) -> None:
        """Close the tool sources and HTTP clients."""
        await self.tools.aclose()
        for client in self.clients:
            await client.aclose()


def _tool_sources(settings: Settings, registries: Registries) -> dict[str, ToolSource]:
    return {
        name: build_registered(
            registries.tool_sources,
            s.type,
            s.options,
            settings.source,
            f"tool_sources.{name}",
            named_by="type",
        )
        for name, s in settings.tool_sources.items()
    }


def _http(network: NetworkSettings, source: str, where: str) -> GuardedHttpClient:
    try:
        return GuardedHttpClient(NetworkPolicy.from_settings(network))
    except ValueError as exc:
        raise ConfigError(source, where, str(exc)) from None


def _agent_group(name: str, owned_by: str, guardrails: list[str], total_s: float) -> ModelGroup:
    timeouts = TimeoutSettings(total=total_s)
    backend_name = f"agent:{name}"
    settings = ModelGroupSettings(
        name=name,
        backends=[BackendSettings(provider="agent", name=backend_name)],
        owned_by=owned_by,
        guardrails=guardrails,
        timeouts=timeouts,
    )
    spec = BackendSpec(
        name=backend_name,
        group=name,
        url="",
        model=name,
        api_key=None,
        weight=1.0,
        timeouts=timeouts,
    )
    return ModelGroup(name, settings, [Backend(spec, _RunnerOnly())], _OnlyBackend())


class _Builder:
    def __init__(
        self,
        settings: Settings,
        registries: Registries,
        catalog: ModelCatalog,
        runtime: AgentRuntime,
        metrics: AgentMetrics,
        directory: CatalogDirectory,
    ) -> None:
        self.settings = settings
        self.source = settings.source
        self.registries = registries
        self.catalog = catalog
        self.runtime = runtime
        self.metrics = metrics
        self.directory = directory
        self.calls: dict[str, list[str]] = {}
        self.seal_key = _seal_key()

    def _name_free(self, name: str, where: str) -> None:
        if self.directory.exists(name):
            raise ConfigError(self.source, f"{where}.name", f"`{name}` is already a model name")

    def _spec(
        self, s: AgentSettings | WorkflowSettings, tools: Any, network: NetworkSettings, where: str
    ) -> RunSpec:
        try:
            static, dynamic = self.runtime.tools.offer(tools)
        except ValueError as exc:
            raise ConfigError(self.source, f"{where}.tools", str(exc)) from None
        http = _http(network, self.source, f"{where}.network")
        self.runtime.clients.append(http)
        return RunSpec(
            max_steps=s.max_steps,
            max_seconds=s.max_seconds,
            max_cost_usd=s.max_cost_usd,
            max_tokens=s.max_tokens,
            tools=static,
            source_tools=dynamic,
            http=http,
            seal_key=self.seal_key,
        )

    def _serve(
        self,
        name: str,
        agent: Agent,
        spec: RunSpec,
        owned_by: str,
        guardrails: list[str],
        total_s: float,
    ) -> None:
        group = _agent_group(name, owned_by, guardrails, total_s)
        runner = AgentRunner(
            name, agent, spec, group.backends[0], self.runtime.tools, self.metrics, nests=True
        )
        self.catalog.add(group)
        self.runtime.runners[name] = runner
        self.calls[name] = list(agent.models())

    def agent(self, i: int, s: AgentSettings) -> None:
        where = f"agents[{i}]"
        self._name_free(s.name, where)
        factory = self.registries.agents.get(s.type)
        if factory is None:
            raise ConfigError(
                self.source,
                f"{where}.type",
                f"unknown agent type `{s.type}`; registered: "
                f"{', '.join(self.registries.agents.names()) or 'none'}",
            )
        try:
            agent = factory(s, self.directory)
        except (TypeError, ValueError) as exc:
            raise ConfigError(self.source, where, str(exc)) from None
        spec = self._spec(s, s.tools, s.network, where)
        self._serve(s.name, agent, spec, s.owned_by, s.guardrails, s.max_seconds or 600.0)

    def workflow(self, i: int, s: WorkflowSettings) -> None:
        where = f"workflows[{i}]"
        self._name_free(s.name, where)
        factory = self.registries.agents.get("workflow")
        if factory is None:
            raise ConfigError(self.source, where, "no `workflow` agent type is registered")
        try:
            agent = factory(s, self.directory)
        except (TypeError, ValueError) as exc:
            raise ConfigError(self.source, where, str(exc)) from None
        spec = self._spec(s, [], NetworkSettings(), where)
        self._serve(s.name, agent, spec, s.owned_by, s.guardrails, s.max_seconds or 600.0)

    def server_tools(self, gi: int, gs: ModelGroupSettings) -> None:
        tools = gs.server_tools
        if tools is None:
            return
        where = f"models[{gi}].tools"
        factory: Callable[..., Agent] | None = self.registries.agents.get("tool_loop")
        if factory is None:
            raise ConfigError(self.source, where, "no `tool_loop` agent type is registered")
        loop_settings = AgentSettings(
            name=gs.name,
            model=gs.name,
            tools=tools.tools,
            max_steps=tools.max_steps,
            network=tools.network,
        )
        agent = factory(loop_settings, self.directory)
        spec = self._spec(loop_settings, tools.tools, tools.network, where)
        spec.max_seconds = None
        group = self.catalog.resolve(gs.name)
        b = group.backends[0].spec
        pseudo = Backend(
            BackendSpec(
                name=f"tools:{gs.name}",
                group=gs.name,
                url="",
                model=gs.name,
                api_key=None,
                weight=1.0,
                timeouts=b.timeouts,
            ),
            _RunnerOnly(),
        )
        self.runtime.runners[gs.name] = AgentRunner(
            gs.name, agent, spec, pseudo, self.runtime.tools, self.metrics, nests=False
        )

    def check_calls(self) -> None:
        """Every model a run calls exists, and no run calls itself, however indirectly."""
        for name, models in self.calls.items():
            for model in models:
                if not self.directory.exists(model):
                    raise ConfigError(
                        self.source,
                        _where_of(self.settings, name),
                        f"`{name}` calls unknown model `{model}`",
                    )
        for name in self.calls:
            path = _cycle(name, self.calls, [name])
            if path:
                raise ConfigError(
                    self.source,
                    _where_of(self.settings, name),
                    f"runs call each other in a cycle: {' -> '.join(path)}",
                )


def _seal_key() -> bytes:
    """The secret approvals are sealed with: derived from ``GATEWAY_KEY_PEPPER`` when set (a
    fleet's replicas share it, so an approval sent to another replica holds), else none (a
    random key per process)."""
    pepper = os.environ.get(PEPPER_ENV)
    if not pepper:
        return b""
    return hmac.digest(pepper.encode(), b"gateway agent approvals", hashlib.sha256)


def _where_of(settings: Settings, name: str) -> str:
    for i, a in enumerate(settings.agents):
        if a.name == name:
            return f"agents[{i}]"
    for i, w in enumerate(settings.workflows):
        if w.name == name:
            return f"workflows[{i}]"
    return name


def _cycle(start: str, calls: Mapping[str, list[str]], path: list[str]) -> list[str] | None:
    for model in calls.get(path[-1], ()):
        if model == start:
            return [*path, model]
        if model in calls and model not in path:
            found = _cycle(start, calls, [*path, model])
            if found:
                return found
    return None


def build_agents(
    settings: Settings,
    registries: Registries,
    catalog: ModelCatalog,
    prices: PriceBook,
    metrics: GatewayMetrics,
) -> AgentRuntime:
    """Build every agent, workflow, server-tools runner and guardrail chain of ``settings``,
    adding the agents and workflows to ``catalog``.

    Raises:
        ConfigError: an unknown type, tool, guardrail or model, a name already taken, bad
            options, or runs that call each other in a cycle.
    """
    runtime = AgentRuntime(
        tools=ToolCatalog(dict(registries.tools.items()), _tool_sources(settings, registries)),
        guards=build_guardrail_chains(settings, registries),
    )
    if not (settings.agents or settings.workflows or any(g.server_tools for g in settings.models)):
        return runtime
    agent_metrics = AgentMetrics(metrics.registry)
    builder = _Builder(
        settings, registries, catalog, runtime, agent_metrics, CatalogDirectory(catalog, prices)
    )
    for i, a in enumerate(settings.agents):
        builder.agent(i, a)
    for i, w in enumerate(settings.workflows):
        builder.workflow(i, w)
    builder.check_calls()
    for gi, gs in enumerate(settings.models):
        builder.server_tools(gi, gs)
    return runtime
