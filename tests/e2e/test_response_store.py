"""The response stores as the gateway gets them: through the installed plugins' registry, built
from config options, on a real SQLite file and a real redis-server, across restarts and gateways."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import cmd_plugins
from gateway.clock import ManualClock
from gateway.plugins import PluginError, Registries, collect_registries, make_plugin_manager
from gateway.stores import BrokenChainError, ResponseStore, StoredObject, conversation
from gateway.testing import plugin_manager
from tests.support.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.anyio

NS = "k0123456789abcdef"


@pytest.fixture(scope="module")
def registries() -> Registries:
    return collect_registries(make_plugin_manager())


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def build(registries: Registries, name: str, options: dict[str, Any], clock: Any) -> ResponseStore:
    """What the gateway's assembly does with `responses: {store: name, options: {...}}`."""
    factory = registries.response_stores.get(name)
    assert factory is not None, registries.response_stores.names()
    store = factory(**options, clock=clock)
    assert isinstance(store, ResponseStore)
    return store


def turn(id: str, at: float, previous_id: str | None, text: str) -> StoredObject:
    answer = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": f"re: {text}"}],
    }
    return StoredObject(
        id=id,
        kind="response",
        created_at=at,
        model="chat",
        body={"id": id, "object": "response", "status": "completed", "output": [answer]},
        input_items=[{"role": "user", "content": text}],
        previous_id=previous_id,
    )


def test_the_builtins_register_both_stores(registries: Registries) -> None:
    assert registries.response_stores.names() == ["redis", "sqlite"]
    assert registries.response_stores.owner("sqlite") == "store_sqlite"
    assert registries.response_stores.owner("redis") == "store_redis"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cmd_plugins(None) == 0  # type: ignore[arg-type]
    assert "response_stores: sqlite" in out.getvalue()
    assert "response_stores: redis" in out.getvalue()


def test_a_third_party_store_is_checked_like_any_registration() -> None:
    from gateway import hookimpl

    class Bad:
        @hookimpl
        def register_response_stores(self, register: Any) -> None:
            register("mine", "not a factory")

    with pytest.raises(PluginError, match="response store `mine` as str"):
        collect_registries(plugin_manager(Bad()))


async def test_one_box_a_conversation_survives_a_restart(
    registries: Registries, tmp_path: Path
) -> None:
    clock = ManualClock()
    options = {"path": str(tmp_path / "data" / "responses.sqlite3"), "ttl_s": 3600}
    store = build(registries, "sqlite", options, clock)
    await store.put(NS, turn("resp_1", clock.time(), None, "hello"))
    await store.put(NS, turn("resp_2", clock.time() + 1, "resp_1", "and then?"))
    await store.aclose()

    restarted = build(registries, "sqlite", options, clock)
    history = await conversation(restarted, NS, "resp_2")
    assert [item.get("content") for item in history[::2]] == ["hello", "and then?"]
    clock.advance(3600)  # the retention passed: the chain is gone
    with pytest.raises(BrokenChainError):
        await conversation(restarted, NS, "resp_2")
    await restarted.aclose()


async def test_a_fleet_shares_conversations_through_redis(
    registries: Registries, redis_server: RedisServer
) -> None:
    clock = ManualClock()
    options = {"url": redis_server.url, "prefix": "e2e:"}
    gateway_a = build(registries, "redis", options, clock)
    gateway_b = build(registries, "redis", options, clock)
    await gateway_a.put(NS, turn("resp_1", clock.time(), None, "hello"))
    await gateway_b.put(NS, turn("resp_2", clock.time() + 1, "resp_1", "more"))
    history = await conversation(gateway_a, NS, "resp_2")
    assert [item.get("content") for item in history[::2]] == ["hello", "more"]
    with pytest.raises(BrokenChainError):  # another key's conversation is not found
        await conversation(gateway_b, "kother", "resp_2")
    await gateway_a.aclose()
    await gateway_b.aclose()


@pytest.mark.parametrize(
    ("name", "options", "error"),
    [
        ("sqlite", {"ttl_s": -1}, ValueError),
        ("sqlite", {"paht": "x"}, TypeError),
        ("redis", {"url": "localhost:6379"}, ValueError),
        ("redis", {"ttl_s": "forever"}, TypeError),
    ],
)
def test_bad_options_raise_what_the_gateway_reports_as_config_errors(
    registries: Registries, name: str, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build(registries, name, options, ManualClock())
