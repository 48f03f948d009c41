"""Workflows served as models: two sequential and two parallel agents, templates and named
outputs, one budget over the whole run, streamed progress.

Real parts: the simulator (its ``[[answer: ...]]`` directive makes each agent's answer
predictable from its input) and the gateway served on loopback; the OpenAI SDK as client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import GatewayServer, Sim, group, running_gateway, running_sim


def helper(name: str) -> dict[str, Any]:
    return {"name": name, "model": "m", "tools": ["calculator"]}


WORKFLOW = {
    "name": "pipeline",
    "steps": [
        {"agent": "first", "output": "facts"},
        {
            "parallel": [
                {"agent": "left", "input": "[[answer: L({facts})]]", "output": "left"},
                {"agent": "right", "input": "[[answer: R({facts})]]", "output": "right"},
            ]
        },
        {"agent": "last", "input": "[[answer: final {left} {right}]]"},
    ],
}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with running_sim() as sim:
        cfg = workflows_config(sim, WORKFLOW, {**WORKFLOW, "name": "tight", "max_steps": 2})
        with running_gateway(cfg) as server:
            yield server


def workflows_config(sim: Sim, *workflows: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": [group("m", sim.url)],
        "agents": [helper(n) for n in ("first", "left", "right", "last")],
        "workflows": list(workflows),
    }


def ask(gw: GatewayServer, model: str, text: str) -> Any:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


def test_a_workflow_runs_sequential_and_parallel_agents(gw: GatewayServer) -> None:
    answer = ask(gw, "pipeline", "[[answer: alpha]]")
    content = answer.choices[0].message.content or ""
    assert content.startswith("final L(alpha) R(alpha)"), content
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["stop_reason"] == "answered"
    assert agent_field["steps"] == 4  # one model call per agent (none used a tool)


def test_a_workflow_stops_at_its_budget_and_says_so(gw: GatewayServer) -> None:
    answer = ask(gw, "tight", "[[answer: alpha]]")
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["stop_reason"] == "max_steps"
    assert agent_field["steps"] <= 2


def test_a_workflow_streams_its_progress(gw: GatewayServer) -> None:
    body = {
        "model": "pipeline",
        "stream": True,
        "messages": [{"role": "user", "content": "[[answer: beta]]"}],
    }
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=30) as resp:
        lines = [line for line in resp.iter_lines() if line]
    steps = [json.loads(line[len(": step ") :]) for line in lines if line.startswith(": step ")]
    assert [s["model"] for s in steps][:1] == ["first"]
    assert "last" in [s["model"] for s in steps]
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in lines
        if line.startswith("data: {") and json.loads(line[6:]).get("choices")
    )
    assert text.startswith("final L(beta) R(beta)")


def test_a_workflow_calling_itself_is_a_config_error() -> None:
    from gateway.config_loader import ConfigError

    with running_sim() as sim:
        loop = {"name": "ouroboros", "steps": [{"agent": "ouroboros"}]}
        with (
            pytest.raises(ConfigError, match="cycle"),
            running_gateway(workflows_config(sim, loop)),
        ):
            pass


def test_parallel_branches_lose_no_usage_record(tmp_path: Any) -> None:
    import sqlite3

    from tests.support.servers import eventually

    db = tmp_path / "usage.db"
    with running_sim() as sim:
        cfg = {
            **workflows_config(sim, WORKFLOW),
            "governance": {
                "usage": {
                    "sinks": [{"backend": "sqlite", "options": {"path": str(db)}}],
                    "flush_interval_s": 0.05,
                }
            },
        }
        with running_gateway(cfg) as gw:
            ask(gw, "pipeline", "[[answer: alpha]]")

            def ids() -> list[str]:
                with sqlite3.connect(db) as conn:
                    try:
                        return [r[0] for r in conn.execute("SELECT request_id FROM usage")]
                    except sqlite3.OperationalError:
                        return []

            # The workflow, its four agent runs, and one model step in each.
            assert eventually(lambda: len(ids()) == 9)
    assert len(set(ids())) == 9
