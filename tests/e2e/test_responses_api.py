"""The Responses API and stored chat completions through the gateway, with the official SDK.

A gateway in front of the simulator translates Responses to Chat Completions; a second gateway
in front of the first, with the backend option ``responses: true``, relays the Responses API
natively (bytes in, bytes out). Bodies and stream events are validated against OpenAI's spec.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from openai.types.responses import FunctionToolParam

from gateway import hookimpl
from gateway.hookspecs import RegisterProvider
from gateway.providers.base import (
    BackendSpec,
    ProviderContext,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
)
from gateway.testing import serve_gateway
from tests.support.servers import Sim, group, http_json, running_gateway, running_sim
from tests.support.spec import validate

# The SDK's TypedDict requires `strict`, which the API takes as optional; sent without it.
WEATHER_TOOL = cast(
    FunctionToolParam,
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
)


def store(tmp_path: Path, name: str = "responses.sqlite3") -> dict[str, Any]:
    return {"backend": "sqlite", "options": {"path": str(tmp_path / name)}}


@pytest.fixture(scope="module")
def translating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway translating Responses for a chat-only simulator (model `chat`)."""
    tmp = tmp_path_factory.mktemp("responses")
    with running_sim() as sim:
        config = {"models": [group("chat", sim.url)], "store": store(tmp)}
        with running_gateway(config) as gw:
            yield gw.url


@pytest.fixture(scope="module")
def native(translating: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway relaying Responses natively to the translating one (model `front`)."""
    tmp = tmp_path_factory.mktemp("native")
    backend = {"url": translating, "model": "chat", "options": {"responses": True}}
    config = {"models": [{"name": "front", "backends": [backend]}], "store": store(tmp)}
    with running_gateway(config) as gw:
        yield gw.url


def client_for(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(("which", "model"), [("translating", "chat"), ("native", "front")])
def test_create_plain(which: str, model: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(which)
    with client_for(url) as client:
        raw = client.responses.with_raw_response.create(
            model=model, input="hello there", instructions="be brief", max_output_tokens=8
        )
        validate("Response", json.loads(raw.text))
        response = raw.parse()
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    # Relayed answers carry the upstream's model name, as chat's do; translated ones the client's.
    assert response.model == "chat"
    assert response.usage is not None
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert raw.headers["x-gateway-backend"]


@pytest.mark.parametrize(("which", "model"), [("translating", "chat"), ("native", "front")])
def test_stream_and_final_response(which: str, model: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(which)
    with client_for(url) as client:
        events = list(client.responses.create(model=model, input="tell me a story", stream=True))
        with client.responses.stream(model=model, input="tell me a story") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in kinds
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
    for event in events:
        validate("ResponseStreamEvent", event.model_dump(mode="json", exclude_unset=True))
    assert "".join(deltas) == final.output_text
    assert final.output_text


def test_function_call_round_trip(translating: str) -> None:
    with client_for(translating) as client:
        first = client.responses.create(
            model="chat",
            input="What is the weather in Paris?",
            tools=[WEATHER_TOOL],
            tool_choice="required",
        )
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1
        call = calls[0]
        assert call.name == "get_weather"
        assert "city" in json.loads(call.arguments)
        second = client.responses.create(
            model="chat",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[WEATHER_TOOL],
        )
    assert second.previous_response_id == first.id
    assert second.output_text  # the model answered in words once the tool's result was in


def test_streamed_function_call(translating: str) -> None:
    with (
        client_for(translating) as client,
        client.responses.stream(
            model="chat",
            input="weather in Oslo?",
            tools=[WEATHER_TOOL],
            tool_choice="required",
        ) as stream,
    ):
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = next(item for item in final.output if item.type == "function_call")
    assert json.loads(call.arguments)


@pytest.mark.parametrize(("which", "model"), [("translating", "chat"), ("native", "front")])
def test_previous_response_id_continues_the_conversation(
    which: str, model: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(which)
    with client_for(url) as client:
        first = client.responses.create(model=model, input="my name is Ada")
        second = client.responses.create(
            model=model, input="what is my name?", previous_response_id=first.id
        )
        items = client.responses.input_items.list(second.id)
        with pytest.raises(openai.BadRequestError) as missing:
            client.responses.create(model=model, input="hi", previous_response_id="resp_nope")
    assert second.previous_response_id == first.id
    assert [i.type for i in items.data] == ["message"]  # this turn's own input
    with (
        client_for(url) as client,
        client.responses.stream(
            model=model, input="and again?", previous_response_id=second.id
        ) as stream,
    ):
        third = stream.get_final_response()
    assert third.previous_response_id == second.id
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_retrieve_delete_and_input_items(translating: str) -> None:
    with client_for(translating) as client:
        created = client.responses.create(
            model="chat", input=[{"role": "user", "content": "one"}], metadata={"k": "v"}
        )
        status, _, body = http_json("GET", f"{translating}/v1/responses/{created.id}")
        assert status == 200
        validate("Response", body)
        assert client.responses.retrieve(created.id).output_text == created.output_text
        listed = client.responses.input_items.list(created.id)
        status, _, page = http_json("GET", f"{translating}/v1/responses/{created.id}/input_items")
        validate("ResponseItemList", page)
        assert listed.data[0].type == "message"
        with pytest.raises(openai.BadRequestError):
            client.responses.cancel(created.id)
        client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(created.id)
        unstored = client.responses.create(model="chat", input="x", store=False)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(unstored.id)


def test_stored_responses_are_namespaced_per_key(sim: Sim, tmp_path: Path) -> None:
    config = {
        "auth": {"api_keys": ["sk-a", "sk-b"]},
        "models": [group("chat", sim.url)],
        "store": store(tmp_path),
    }
    with (
        running_gateway(config) as gw,
        client_for(gw.url, "sk-a") as a,
        client_for(gw.url, "sk-b") as b,
    ):
        mine = a.responses.create(model="chat", input="secret")
        assert a.responses.retrieve(mine.id).id == mine.id
        with pytest.raises(openai.NotFoundError):
            b.responses.retrieve(mine.id)
        with pytest.raises(openai.BadRequestError):
            b.responses.create(model="chat", input="x", previous_response_id=mine.id)


def test_what_has_no_chat_equivalent_is_refused_naming_the_field(translating: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
    ]
    for extra, param in cases:
        body = {"model": "chat", "input": "hi", **extra}
        status, _, error = http_json("POST", f"{translating}/v1/responses", body)
        assert status == 400
        validate("ErrorResponse", error)
        assert error["error"]["param"] == param


def test_stored_chat_completions(sim: Sim, tmp_path: Path) -> None:
    config = {"models": [group("chat", sim.url)], "store": store(tmp_path)}
    with running_gateway(config) as gw, client_for(gw.url) as client:
        kept = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "remember me"}],
            store=True,
            metadata={"topic": "a"},
        )
        streamed = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "me too"}], store=True, stream=True
        )
        streamed_id = {chunk.id for chunk in streamed}.pop()
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "no"}])
        listed = client.chat.completions.list()
        status, _, page = http_json("GET", f"{gw.url}/v1/chat/completions?metadata[topic]=a")
        assert status == 200
        validate("ChatCompletionList", page)
        assert [c["id"] for c in page["data"]] == [kept.id]
        assert {c.id for c in listed.data} == {kept.id, streamed_id}
        assert client.chat.completions.retrieve(kept.id).id == kept.id
        messages = client.chat.completions.messages.list(kept.id)
        assert messages.data[0].content == "remember me"
        updated = client.chat.completions.update(kept.id, metadata={"topic": "b"})
        assert updated.metadata == {"topic": "b"}
        deleted = client.chat.completions.delete(kept.id)
        assert deleted.deleted
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.retrieve(kept.id)


def test_the_cache_and_coalescing_serve_responses(sim: Sim, tmp_path: Path) -> None:
    cached = group("chat", sim.url, cache={"enabled": True, "ttl_s": 60})
    config = {"models": [cached], "store": store(tmp_path)}
    with running_gateway(config) as gw, client_for(gw.url) as client:

        def ask(text: str) -> Any:
            return client.responses.with_raw_response.create(
                model="chat", input=text, temperature=0
            )

        first, second = ask("cache me"), ask("cache me")
        assert first.headers["x-gateway-cache"] == "miss"
        assert second.headers["x-gateway-cache"] == "hit"
        one, two = first.parse(), second.parse()
        validate("Response", json.loads(second.text))
        assert one.output_text == two.output_text
        assert one.id != two.id  # the cached answer is this request's own response
        assert client.responses.retrieve(two.id).output_text == two.output_text  # and stored
        events = list(
            client.responses.create(model="chat", input="cache me", temperature=0, stream=True)
        )
        for event in events:
            validate("ResponseStreamEvent", event.model_dump(mode="json", exclude_unset=True))
        assert [e.sequence_number for e in events] == list(range(len(events)))
        replayed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert replayed == one.output_text
        assert sim.stats()["completed"] == 1

        # Identical requests in flight at once share one upstream call; each gets its own id.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with sim.gate():
                futures = [pool.submit(lambda: ask("together").parse()) for _ in range(4)]
                sim.wait_held(1)
                gw.wait_coalesced(3)
            answers = [f.result(timeout=30) for f in futures]
        assert len({a.id for a in answers}) == 4
        assert len({a.output_text for a in answers}) == 1
        assert sim.stats()["completed"] == 2


class GarbageProvider:
    """A chat backend whose successful answers are not JSON."""

    def __init__(self, spec: BackendSpec, context: ProviderContext) -> None:
        self.calls = 0

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.calls += 1
        return UpstreamResponse(200, b"not json")

    async def open_stream(self, request: UpstreamRequest) -> UpstreamStream:
        raise AssertionError("not streamed in this test")


class GarbagePlugin:
    @hookimpl
    def register_providers(self, register: RegisterProvider) -> None:
        register("garbage", GarbageProvider)


def test_an_unreadable_answer_is_a_502_and_never_holds_up_identical_requests(
    tmp_path: Path,
) -> None:
    backend = {"provider": "garbage", "url": "http://127.0.0.1:9", "name": "junk"}
    config = {
        "models": [{"name": "junk", "backends": [backend], "cache": {"enabled": True}}],
        "store": store(tmp_path),
    }
    body = {"model": "junk", "input": "hi", "temperature": 0}
    with serve_gateway(config, plugins=[GarbagePlugin()]) as gw:
        for _ in range(2):  # the second would wait forever on an unfinished flight
            status, _, error = http_json("POST", f"{gw.url}/v1/responses", body)
            assert status == 502
            validate("ErrorResponse", error)


def test_shared_answers_carry_the_requests_own_fields_and_no_gateway_extension(
    sim: Sim, tmp_path: Path
) -> None:
    cached = group("chat", sim.url, cache={"enabled": True, "ttl_s": 60})
    config = {"models": [cached], "store": store(tmp_path)}
    ask = {"model": "chat", "input": "shared", "temperature": 0, "cache_control": "max-age=60"}
    with running_gateway(config) as gw:
        first = {**ask, "metadata": {"who": "a"}, "store": False, "user": "alice"}
        second = {**ask, "metadata": {"who": "b"}, "user": "bob"}
        assert http_json("POST", f"{gw.url}/v1/responses", first)[0] == 200
        status, headers, answer = http_json("POST", f"{gw.url}/v1/responses", second)
        assert (status, headers["x-gateway-cache"]) == (200, "hit")
        assert (answer["metadata"], answer["store"], answer["user"]) == ({"who": "b"}, True, "bob")
        stored = http_json("GET", f"{gw.url}/v1/responses/{answer['id']}")[2]
        assert stored["metadata"] == {"who": "b"}
    assert all("cache_control" not in r["body"] for r in sim.stats()["recent"])
