"""Agents served as models, end to end: the tool loop through the OpenAI, Anthropic and Responses
SDKs (plain and streamed), parallel calls, each limit stopping a loop with a final answer, tool
errors and timeouts fed back to the model, the client's own tools, approvals, server-side tools
on a plain group, ``local_only`` routing, and every step charged to the caller's key.

Real parts: the simulator (its prompt script decides the tool calls, ``docs/simulator.md``) and
the gateway served on loopback, a local HTTP server for ``http_request``, SQLite files in
``tmp_path``, the official SDKs as clients.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall

from tests.support.servers import (
    GatewayServer,
    Sim,
    eventually,
    group,
    http_json,
    running_gateway,
    running_sim,
)

MASTER = "sk-master-agents"


def calc(expression: str) -> str:
    return f"calculator {json.dumps({'expression': expression})}"


def script(*steps: str, answer: str | None = None) -> str:
    """A user message scripting the simulated model: one ``[[tools: ...]]`` block per step."""
    text = " ".join(f"[[tools: {step}]]" for step in steps)
    return text + (f" [[answer: {answer}]]" if answer else "")


def agent(name: str = "helper", model: str | None = "m", **fields: Any) -> dict[str, Any]:
    spec = {"name": name, "tools": ["calculator", "current_time"], **fields}
    return spec if model is None else {"model": model, **spec}


def config(sim: Sim, *agents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"models": [group("m", sim.url)], "agents": list(agents), **extra}


_CLIENTS: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """The SDK clients a test made are closed when it ends (no socket left to the collector)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def oai(gw: GatewayServer, key: str = "x") -> openai.OpenAI:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


def claude(gw: GatewayServer) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    _CLIENTS.append(client)
    return client


def ask(gw: GatewayServer, model: str, text: str, **kwargs: Any) -> Any:
    return oai(gw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )


def sse_lines(
    gw: GatewayServer, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> list[str]:
    with httpx.stream("POST", f"{gw.url}{path}", json=body, timeout=30) as response:
        assert response.status_code == 200, response.read()
        return [line for line in response.iter_lines() if line]


def calls_of(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    return [
        c for c in message.tool_calls or [] if isinstance(c, ChatCompletionMessageFunctionToolCall)
    ]


def comments(lines: list[str], kind: str) -> list[dict[str, Any]]:
    prefix = f": {kind} "
    return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with running_sim() as s:
        yield s


@pytest.fixture(scope="module")
def gw(sim: Sim) -> Iterator[GatewayServer]:
    with running_gateway(
        config(
            sim,
            agent(),
            agent("stepper", tools=["calculator"], max_steps=3),
            agent("approver", tools=[{"name": "calculator", "require_approval": True}]),
        )
    ) as server:
        yield server


# -- the loop through each SDK ---------------------------------------------------------------


def test_an_agent_is_listed_and_answers_with_the_tool_result(gw: GatewayServer) -> None:
    assert "helper" in [m.id for m in oai(gw).models.list().data]
    raw = oai(gw).chat.completions.with_raw_response.create(
        model="helper", messages=[{"role": "user", "content": script(calc("6*7"))}]
    )
    answer = raw.parse()
    assert "42" in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "helper"
    extra = answer.model_extra or {}
    assert extra["agent"]["stop_reason"] == "answered"
    assert extra["agent"]["steps"] == 2
    assert extra["agent"]["tool_calls"] == 1
    assert "stop=answered; steps=2" in raw.headers["x-gateway-agent"]
    assert answer.usage is not None
    assert answer.usage.total_tokens > 0


def test_a_streamed_run_shows_tool_activity_and_sums_usage(gw: GatewayServer) -> None:
    text = script(calc("6*7"))
    stream = oai(gw).chat.completions.create(
        model="helper",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            content.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "42" in "".join(content)
    plain = ask(gw, "helper", text)
    assert usage is not None
    assert plain.usage is not None
    assert usage.prompt_tokens == plain.usage.prompt_tokens  # both steps, summed
    lines = sse_lines(
        gw, {"model": "helper", "stream": True, "messages": [{"role": "user", "content": text}]}
    )
    calls = comments(lines, "tool_call")
    results = comments(lines, "tool_result")
    assert [c["name"] for c in calls] == ["calculator"]
    assert results[0]["id"] == calls[0]["id"]
    assert "42" in results[0]["content"]
    assert comments(lines, "agent")[0]["stop_reason"] == "answered"
    assert [s["number"] for s in comments(lines, "step")] == [1, 2]
    assert lines[-1] == "data: [DONE]"


def test_the_anthropic_sdk_calls_an_agent_plain_and_streamed(gw: GatewayServer) -> None:
    client = claude(gw)
    message = client.messages.create(
        model="helper",
        max_tokens=200,
        messages=[{"role": "user", "content": script(calc("6*7"))}],
    )
    assert message.stop_reason == "end_turn"
    assert "42" in "".join(b.text for b in message.content if b.type == "text")
    with client.messages.stream(
        model="helper", max_tokens=200, messages=[{"role": "user", "content": script(calc("2*8"))}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "16" in text
    assert final.usage.output_tokens > 0


def test_the_responses_api_calls_an_agent_plain_and_streamed(gw: GatewayServer) -> None:
    client = oai(gw)
    response = client.responses.create(model="helper", input=script(calc("6*7")))
    assert "42" in response.output_text
    events = list(client.responses.create(model="helper", input=script(calc("3*3")), stream=True))
    done = [e for e in events if e.type == "response.completed"]
    assert done
    assert "9" in done[0].response.output_text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", {"max_tokens": 200}),
        ("/v1/responses", {}),
    ],
)
def test_tool_activity_shows_in_messages_and_responses_streams(
    gw: GatewayServer, path: str, body: dict[str, Any]
) -> None:
    text = script(calc("6*7"))
    request = {"model": "helper", "stream": True, **body}
    if path == "/v1/messages":
        request["messages"] = [{"role": "user", "content": text}]
    else:
        request["input"] = text
    lines = sse_lines(gw, request, path)
    assert [c["name"] for c in comments(lines, "tool_call")] == ["calculator"]
    assert "42" in comments(lines, "tool_result")[0]["content"]
    assert comments(lines, "agent")[0]["stop_reason"] == "answered"


def test_a_responses_conversation_with_an_agent_goes_on(gw: GatewayServer) -> None:
    client = oai(gw)
    first = client.responses.create(model="helper", input=script(calc("6*7")))
    assert "42" in first.output_text
    second = client.responses.create(
        model="helper", input=script(calc("2+2")), previous_response_id=first.id
    )
    assert "4" in second.output_text


def test_parallel_tool_calls_run_and_come_back_in_order(gw: GatewayServer) -> None:
    answer = ask(gw, "helper", script(f"{calc('1+1')} | {calc('2+3')} | current_time {{}}"))
    content = answer.choices[0].message.content or ""
    results = content.split("Tool results:", 1)[1]
    first, second, third = (part.strip() for part in results.split(";", 2))
    assert json.loads(first)["result"] == 2
    assert json.loads(second)["result"] == 5
    assert "iso" in json.loads(third)
    assert (answer.model_extra or {})["agent"]["tool_calls"] == 3


def test_a_tool_error_goes_back_to_the_model_and_the_loop_goes_on(gw: GatewayServer) -> None:
    answer = ask(gw, "helper", script(calc("1/0"), calc("__import__('os')"), calc("2+2")))
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["steps"] == 4
    assert agent_field["tool_calls"] == 3
    assert "4" in (answer.choices[0].message.content or "")
    lines = sse_lines(
        gw,
        {
            "model": "helper",
            "stream": True,
            "messages": [{"role": "user", "content": script(calc("1/0"))}],
        },
    )
    result = comments(lines, "tool_result")[0]
    assert result["is_error"] is True
    assert "division by zero" in result["content"]


def test_invalid_arguments_are_an_error_result_not_a_failed_request(gw: GatewayServer) -> None:
    answer = ask(gw, "helper", script('calculator {"expression": 7}'))
    assert "Invalid arguments" in (answer.choices[0].message.content or "")


# -- limits ------------------------------------------------------------------------------------


def test_max_steps_stops_the_loop_with_a_final_answer(gw: GatewayServer) -> None:
    answer = ask(gw, "stepper", f"[[tools-forever: {calc('1+1')}]]")
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["stop_reason"] == "max_steps"
    assert agent_field["steps"] == 3  # two tool steps, then the final answer without tools
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content


def test_max_tokens_stops_the_loop(sim: Sim) -> None:
    with running_gateway(config(sim, agent(max_tokens=400, max_steps=50))) as gw:
        answer = ask(gw, "helper", f"[[tools-forever: {calc('1+1')}]]")
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["stop_reason"] == "max_tokens"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.total_tokens <= 400


def test_max_cost_stops_the_loop(sim: Sim) -> None:
    priced = {
        "name": "m",
        "backends": [{"url": sim.url, "model": "sim-model", "price": {"input_per_mtok": 1000.0}}],
    }
    cfg = {"models": [priced], "agents": [agent(max_cost_usd=0.5, max_steps=50)]}
    with running_gateway(cfg) as gw:
        answer = ask(gw, "helper", f"[[tools-forever: {calc('1+1')}]]")
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["stop_reason"] == "max_cost"
    assert 0 < agent_field["cost_usd"] <= 0.5


def test_max_seconds_stops_the_loop() -> None:
    with (
        running_sim(step_base_ms=20.0) as slow,
        running_gateway(config(slow, agent(max_seconds=1.0, max_steps=100))) as gw,
    ):
        answer = ask(gw, "helper", f"[[tools-forever: {calc('1+1')}]]")
    agent_field = (answer.model_extra or {})["agent"]
    assert agent_field["stop_reason"] == "max_seconds"
    assert 1 < agent_field["steps"] < 100


def test_a_slow_tool_times_out_and_the_model_hears_so(sim: Sim) -> None:
    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            release.wait(10)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"late")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/slow"
    tool = {"name": "http_request", "timeout_s": 0.3}
    network = {"allow_domains": ["*"], "allow_addresses": ["127.0.0.1/32"]}
    try:
        with running_gateway(config(sim, agent(tools=[tool], network=network))) as gw:
            answer = ask(gw, "helper", script(f"http_request {json.dumps({'url': url})}"))
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert "timed out" in (answer.choices[0].message.content or "")


# -- http_request through the network policy ---------------------------------------------------


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            body = b"the answer is forty-two"
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_request_reaches_an_opened_address_and_nothing_private(sim: Sim, web: str) -> None:
    network = {"allow_domains": ["*"], "allow_addresses": ["127.0.0.1/32"]}
    blocked = agent("closed", tools=["http_request"], network={"allow_domains": ["*"]})
    cfg = config(sim, agent(tools=["http_request"], network=network), blocked)
    with running_gateway(cfg) as gw:
        fetched = ask(gw, "helper", script(f"http_request {json.dumps({'url': web + '/page'})}"))
        assert "forty-two" in (fetched.choices[0].message.content or "")
        for url in (
            web + "/page",  # loopback, not opened for this agent
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00:ec2::254]/",
            "file:///etc/passwd",
        ):
            refused = ask(gw, "closed", script(f"http_request {json.dumps({'url': url})}"))
            assert "refused" in (refused.choices[0].message.content or "").lower(), url
        redirected = ask(
            gw, "helper", script(f"http_request {json.dumps({'url': web + '/redirect'})}")
        )
        assert "169.254.169.254" in (redirected.choices[0].message.content or "")
        assert "refused" in (redirected.choices[0].message.content or "").lower()


# -- the client's own tools, approvals, server-side tools ----------------------------------------

CLIENT_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "The client's own tool.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}


def test_calls_to_the_clients_tools_come_back_to_the_client(gw: GatewayServer) -> None:
    client = oai(gw)
    messages: list[Any] = [
        {"role": "user", "content": script(f'{calc("2+2")} | lookup {{"q": "x"}}')}
    ]
    first = client.chat.completions.create(model="helper", messages=messages, tools=[CLIENT_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = calls_of(choice.message)
    assert [c.function.name for c in calls] == ["lookup"]  # the calculator ran in the gateway
    assert (first.model_extra or {})["agent"]["stop_reason"] == "tool_calls"
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "client says hi"},
    ]
    second = client.chat.completions.create(model="helper", messages=messages, tools=[CLIENT_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "client says hi" in (second.choices[0].message.content or "")


def test_a_tool_needing_approval_stops_and_runs_once_sent_back(gw: GatewayServer) -> None:
    client = oai(gw)
    messages: list[Any] = [{"role": "user", "content": script(calc("5*5"))}]
    pending = client.chat.completions.create(model="approver", messages=messages)
    assert pending.choices[0].finish_reason == "tool_calls"
    assert (pending.model_extra or {})["agent"]["stop_reason"] == "approval"
    calls = calls_of(pending.choices[0].message)
    assert calls[0].function.name == "calculator"
    messages.append(pending.choices[0].message.model_dump(exclude_none=True))
    approved = client.chat.completions.create(model="approver", messages=messages)
    assert "25" in (approved.choices[0].message.content or "")


def test_a_group_with_server_tools_runs_them_and_returns_the_clients(sim: Sim) -> None:
    cfg = {"models": [group("chat", sim.url, tools={"mode": "server", "tools": ["calculator"]})]}
    with running_gateway(cfg) as gw:
        client = oai(gw)
        only_ours = ask(gw, "chat", script(calc("7*6")))
        assert "42" in (only_ours.choices[0].message.content or "")
        mixed = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": script(f"{calc('1+1')} | lookup {{}}")}],
            tools=[CLIENT_TOOL],
        )
        assert mixed.choices[0].finish_reason == "tool_calls"
        names = [c.function.name for c in calls_of(mixed.choices[0].message)]
        assert names == ["lookup"]


def test_messages_and_responses_reach_a_server_tools_group_with_native_backends(
    sim: Sim,
) -> None:
    native = {"url": sim.url, "model": "sim-model", "options": {"messages": True}}
    cfg = {"models": [{"name": "chat", "backends": [native], "tools": "server"}]}
    with running_gateway(cfg) as gw:
        message = claude(gw).messages.create(
            model="chat",
            max_tokens=100,
            system="Be brief.",
            messages=[{"role": "user", "content": script(calc("6*7"))}],
        )
        assert "42" in "".join(b.text for b in message.content if b.type == "text")
        response = oai(gw).responses.create(model="chat", input=script(calc("2*4")))
        assert "8" in response.output_text


def test_a_streamed_agent_reads_a_cached_step(sim: Sim) -> None:
    cached = group("m", sim.url, cache={"enabled": True, "deterministic_only": False})
    with running_gateway({"models": [cached], "agents": [agent()]}) as gw:
        text = script(calc("6*7"))
        first = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in oai(gw).chat.completions.create(
                model="helper", messages=[{"role": "user", "content": text}], stream=True
            )
            if chunk.choices
        )
        again = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in oai(gw).chat.completions.create(
                model="helper", messages=[{"role": "user", "content": text}], stream=True
            )
            if chunk.choices
        )
    assert "42" in first
    assert again == first  # both steps answered from the cache this time


# -- routing -------------------------------------------------------------------------------------


def test_local_only_never_reaches_a_cloud_backend() -> None:
    with running_sim() as local_sim, running_sim() as cloud_sim:
        cfg = {
            "models": [
                {"name": "cloud", "backends": [{"url": cloud_sim.url, "model": "sim-model"}]},
                {
                    "name": "local",
                    "backends": [{"url": local_sim.url, "model": "sim-model", "local": True}],
                    "fallbacks": ["cloud"],
                },
            ],
            "agents": [
                {
                    "name": "private",
                    "tools": ["calculator"],
                    "routing": {
                        "privacy": "local_only",
                        "policy": "cost",
                        "tiers": [{"model": "cloud"}, {"model": "local"}],
                    },
                }
            ],
        }
        with running_gateway(cfg) as gw:
            answer = ask(gw, "private", script(calc("2+3")))
            assert "5" in (answer.choices[0].message.content or "")
            local_sim.set_faults(error_rates={"503": 1.0})  # no fallback to cloud
            with pytest.raises(openai.APIStatusError):
                ask(gw, "private", script(calc("2+3")))
            local_sim.set_faults(error_rates={})
        assert sum(cloud_sim.stats()["requests"].values()) == 0
        assert sum(local_sim.stats()["requests"].values()) >= 2


def test_local_only_without_a_local_candidate_is_a_config_error(sim: Sim) -> None:
    from gateway.config_loader import ConfigError

    cfg = config(sim, agent(routing={"privacy": "local_only"}))
    with pytest.raises(ConfigError, match="local_only"), running_gateway(cfg):
        pass


def test_complexity_routing_records_the_choice_per_step(sim: Sim) -> None:
    cfg = {
        "models": [group("small", sim.url), group("large", sim.url)],
        "agents": [
            agent(
                model=None,
                routing={
                    "policy": "complexity",
                    "tiers": [{"model": "small", "max_complexity": 0.3}, {"model": "large"}],
                },
            )
        ],
    }
    with running_gateway(cfg) as gw:
        lines = sse_lines(
            gw,
            {
                "model": "helper",
                "stream": True,
                "messages": [{"role": "user", "content": "hi " + script(calc("1+1"))}],
            },
        )
        hard = "Prove step by step that this design is optimal: ```def f(): return 1```"
        hard_lines = sse_lines(
            gw, {"model": "helper", "stream": True, "messages": [{"role": "user", "content": hard}]}
        )
    assert {s["model"] for s in comments(lines, "step")} == {"small"}
    assert "complexity=" in comments(lines, "step")[0]["route"]
    assert comments(hard_lines, "step")[0]["model"] == "large"


# -- money ---------------------------------------------------------------------------------------


def test_every_step_is_charged_to_the_callers_key(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", "pepper-for-agents")
    db = tmp_path / "usage.db"
    cfg = {
        "auth": {"master_key": MASTER},
        "governance": {
            "data_dir": str(tmp_path),
            "usage": {
                "sinks": [{"backend": "sqlite", "options": {"path": str(db)}}],
                "flush_interval_s": 0.05,
            },
        },
        "models": [
            {
                "name": "m",
                "backends": [
                    {
                        "url": sim.url,
                        "model": "sim-model",
                        "price": {"input_per_mtok": 10.0, "output_per_mtok": 30.0},
                    }
                ],
            }
        ],
        "agents": [agent()],
    }
    with running_gateway(cfg) as gw:
        status, _, key = http_json(
            "POST",
            f"{gw.url}/admin/keys",
            {"name": "agent-user", "models": ["helper"]},
            {"authorization": f"Bearer {MASTER}"},
        )
        assert status == 201, key
        raw = oai(gw, key["key"]).chat.completions.with_raw_response.create(
            model="helper", messages=[{"role": "user", "content": script(calc("1+1"))}]
        )
        run_id = raw.headers["x-request-id"]
        answer = raw.parse()

        def rows() -> list[sqlite3.Row]:
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                try:
                    return conn.execute("SELECT * FROM usage ORDER BY step").fetchall()
                except sqlite3.OperationalError:  # the sink has not made its table yet
                    return []

        assert eventually(lambda: len(rows()) == 3)
    run, *steps = rows()
    assert run["request_id"] == run_id
    assert run["model"] == "helper"
    assert run["cost_nanos"] == 0
    assert run["prompt_tokens"] == 0  # carried by the steps
    assert [s["step"] for s in steps] == [1, 2]
    assert {s["parent_id"] for s in steps} == {run_id}
    assert {s["agent"] for s in steps} == {"helper"}
    assert {s["key_id"] for s in steps} == {key["id"]}
    assert all(s["cost_nanos"] > 0 for s in steps)
    assert sum(s["prompt_tokens"] for s in steps) == answer.usage.prompt_tokens  # type: ignore[union-attr]
    cost = sum(s["cost_nanos"] for s in steps)
    assert (answer.model_extra or {})["agent"]["cost_usd"] == pytest.approx(cost / 1e9)


# -- MCP tools -----------------------------------------------------------------------------------


def test_an_agent_calls_the_tools_of_an_mcp_server(sim: Sim) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    cfg = config(
        sim,
        agent(tools=["files.*"]),
        tool_sources={
            "files": {
                "type": "mcp",
                "options": {
                    "transport": "stdio",
                    "command": sys.executable,
                    "args": [str(fixtures / "mcp_server.py"), "stdio"],
                },
            }
        },
    )
    with running_gateway(cfg) as gw:
        added = ask(gw, "helper", script('files__add {"a": 2, "b": 3}'))
        assert "5" in (added.choices[0].message.content or "")
        failed = ask(gw, "helper", script("files__fail {}"))
        assert "always fails" in (failed.choices[0].message.content or "")
