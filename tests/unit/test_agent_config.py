"""Agents, workflows, tools, guardrails and tool sources in the config: every mistake is a
config error naming the file and the field, found when the app is built (``gateway check``)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.assembly import build_state
from gateway.config_loader import ConfigError, settings_from_mapping

MODELS = [
    {"name": "m", "backends": [{"url": "http://127.0.0.1:9", "model": "x"}]},
    {"name": "local", "backends": [{"url": "http://127.0.0.1:9", "model": "x", "local": True}]},
]


def build(**sections: Any) -> Any:
    return build_state(settings_from_mapping({"models": MODELS, **sections}, "agents.yaml"))


def error_of(**sections: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        build(**sections)
    assert "agents.yaml" in str(caught.value)
    return caught.value


def test_a_valid_agent_and_workflow_become_model_groups() -> None:
    state = build(
        agents=[{"name": "a", "model": "m", "tools": ["calculator", "current_time"]}],
        workflows=[{"name": "w", "steps": [{"agent": "a"}]}],
    )
    assert {"a", "w"} <= {g.name for g in state.catalog.groups}
    assert set(state.agents.runners) == {"a", "w"}


@pytest.mark.parametrize(
    ("sections", "field", "words"),
    [
        (
            {"agents": [{"name": "a", "model": "m", "tools": ["nope"]}]},
            "agents[0].tools",
            "unknown tool `nope`",
        ),
        (
            {"agents": [{"name": "a", "model": "m", "type": "nope"}]},
            "agents[0].type",
            "unknown agent type",
        ),
        ({"agents": [{"name": "m", "model": "m"}]}, "agents[0].name", "already a model name"),
        ({"agents": [{"name": "a", "model": "ghost"}]}, "agents[0]", "unknown model `ghost`"),
        ({"agents": [{"name": "a"}]}, "agents[0]", "needs a `model`"),
        (
            {"agents": [{"name": "a", "model": "m", "routing": {"privacy": "local_only"}}]},
            "agents[0]",
            "local_only",
        ),
        (
            {"agents": [{"name": "a", "model": "m", "guardrails": ["g"]}]},
            "agents[0].guardrails[0]",
            "unknown guardrail `g`",
        ),
        (
            {"agents": [{"name": "a", "model": "b"}, {"name": "b", "model": "a"}]},
            "agents[0]",
            "cycle: a -> b -> a",
        ),
        (
            {
                "agents": [
                    {"name": "a", "model": "m", "network": {"allow_addresses": ["10.0.0.1/8"]}}
                ]
            },
            "agents[0].network",
            "10.0.0.1/8",
        ),
        (
            {
                "workflows": [
                    {"name": "w", "steps": [{"agent": "a", "sequential": [{"agent": "a"}]}]}
                ]
            },
            "workflows[0]",
            "exactly one of",
        ),
        ({"guardrails": {"g": {"type": "nope"}}}, "guardrails.g.type", "unknown guardrail"),
        (
            {"guardrails": {"g": {"type": "max_input_chars", "options": {"max_chars": 0}}}},
            "guardrails.g.options",
            "max_chars",
        ),
        (
            {"tool_sources": {"s": {"type": "mcp", "options": {"transport": "carrier-pigeon"}}}},
            "tool_sources.s.options",
            "transport",
        ),
    ],
)
def test_a_mistake_names_its_field(sections: dict[str, Any], field: str, words: str) -> None:
    error = error_of(**sections)
    assert field in str(error)
    assert words in str(error)


def test_server_tools_on_a_group_need_known_tools() -> None:
    models = [{**MODELS[0], "tools": {"mode": "server", "tools": ["nope"]}}]
    with pytest.raises(ConfigError, match=r"models\[0\]\.tools.*unknown tool"):
        build_state(settings_from_mapping({"models": models}, "agents.yaml"))
