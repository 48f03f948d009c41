"""The guardrail chains of a gateway, built from the settings and the plugins.

Each ``guardrails.<name>`` entry is built once; every model group, agent and workflow that lists
names gets the chain of those, in order. A name nobody defined is a config error naming the
field. Nothing here runs per request.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config_loader import ConfigError
from gateway.guardrails.base import Guardrail
from gateway.guardrails.chain import GuardrailChain
from gateway.plugins import Registries, build_registered
from gateway.settings import Settings


def _chain(
    names: list[str], instances: Mapping[str, Guardrail], source: str, where: str
) -> GuardrailChain | None:
    for i, name in enumerate(names):
        if name not in instances:
            raise ConfigError(
                source,
                f"{where}[{i}]",
                f"unknown guardrail `{name}`; defined: {', '.join(instances) or 'none'}",
            )
    return GuardrailChain([(name, instances[name]) for name in names]) if names else None


def build_guardrail_chains(settings: Settings, registries: Registries) -> dict[str, GuardrailChain]:
    """The chain of every model group, agent and workflow that lists guardrails, by name.

    Raises:
        ConfigError: an unknown guardrail type or name, or options its factory rejects.
    """
    source = settings.source
    instances: dict[str, Guardrail] = {
        name: build_registered(
            registries.guardrails, g.type, g.options, source, f"guardrails.{name}", named_by="type"
        )
        for name, g in settings.guardrails.items()
    }
    listed = [
        *((gs.name, gs.guardrails, f"models[{i}]") for i, gs in enumerate(settings.models)),
        *((a.name, a.guardrails, f"agents[{i}]") for i, a in enumerate(settings.agents)),
        *((w.name, w.guardrails, f"workflows[{i}]") for i, w in enumerate(settings.workflows)),
    ]
    chains: dict[str, GuardrailChain] = {}
    for name, names, where in listed:
        chain = _chain(names, instances, source, f"{where}.guardrails")
        if chain is not None:
            chains[name] = chain
    return chains
