"""The response-store contract, run against every built-in store (``sqlite``, ``redis``)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.stores import (
    BrokenChainError,
    ChainTooLongError,
    Kind,
    ResponseStore,
    StoredObject,
    chain,
    conversation,
)
from tests.unit.stores.conftest import StoreMaker

pytestmark = pytest.mark.anyio

NS, OTHER = "kaaaa", "kbbbb"


def completion(id: str, created_at: float, **fields: Any) -> StoredObject:
    message = {"role": "assistant", "content": f"answer {id}"}
    body = {
        "id": id,
        "object": "chat.completion",
        "created": int(created_at),
        "model": fields.get("model", "chat"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "metadata": fields.get("metadata", {}),
    }
    return StoredObject(
        id=id,
        kind="chat.completion",
        created_at=created_at,
        body=body,
        input_items=[{"role": "user", "content": f"question {id}"}],
        **{"model": "chat", **fields},
    )


def response(id: str, created_at: float, previous_id: str | None = None) -> StoredObject:
    output = [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": f"out {id}"}],
        }
    ]
    return StoredObject(
        id=id,
        kind="response",
        created_at=created_at,
        model="chat",
        body={"id": id, "object": "response", "output": output, "metadata": {}},
        input_items=[{"role": "user", "content": f"in {id}"}],
        previous_id=previous_id,
    )


async def ids(store: ResponseStore, kind: Kind = "chat.completion", **query: Any) -> list[str]:
    page = await store.list(NS, kind, **query)
    return [r.id for r in page.data]


async def test_the_stores_satisfy_the_protocol(store: ResponseStore) -> None:
    assert isinstance(store, ResponseStore)


async def test_put_get_delete(store: ResponseStore) -> None:
    record = completion("chatcmpl-1", 10.0, metadata={"topic": "a"}, status="completed")
    await store.put(NS, record)
    assert await store.get(NS, "chatcmpl-1") == record
    assert await store.delete(NS, "chatcmpl-1") is True
    assert await store.get(NS, "chatcmpl-1") is None
    assert await store.delete(NS, "chatcmpl-1") is False
    assert await ids(store) == []


async def test_put_replaces_the_object_of_the_same_id(store: ResponseStore) -> None:
    await store.put(NS, completion("c1", 10.0, status="in_progress"))
    done = completion("c1", 10.0, status="completed")
    await store.put(NS, done)
    assert await store.get(NS, "c1") == done
    assert await ids(store) == ["c1"]


async def test_namespaces_are_apart(store: ResponseStore) -> None:
    await store.put(NS, completion("c1", 10.0))
    assert await store.get(OTHER, "c1") is None
    assert (await store.list(OTHER, "chat.completion")).data == ()
    assert await store.update_metadata(OTHER, "c1", {"x": "y"}) is None
    assert await store.delete(OTHER, "c1") is False
    assert await store.get(NS, "c1") is not None
    # the same id in two namespaces: two objects
    await store.put(OTHER, completion("c1", 20.0, model="other"))
    mine, theirs = await store.get(NS, "c1"), await store.get(OTHER, "c1")
    assert mine is not None
    assert mine.model == "chat"
    assert theirs is not None
    assert theirs.model == "other"


async def test_listing_is_by_created_at_then_id_in_either_order(store: ResponseStore) -> None:
    for id, at in [("c3", 30.0), ("c1", 10.0), ("c2b", 20.0), ("c2a", 20.0), ("c4", 40.5)]:
        await store.put(NS, completion(id, at))
    await store.put(NS, response("resp_1", 15.0))  # another kind: not listed
    assert await ids(store) == ["c1", "c2a", "c2b", "c3", "c4"]
    assert await ids(store, order="desc") == ["c4", "c3", "c2b", "c2a", "c1"]
    assert await ids(store, kind="response") == ["resp_1"]


async def test_pagination_with_after_and_limit(store: ResponseStore) -> None:
    for i in range(7):
        await store.put(NS, completion(f"c{i}", 100.0 + i))
    seen: list[str] = []
    after = None
    while True:
        page = await store.list(NS, "chat.completion", after=after, limit=3)
        seen += [r.id for r in page.data]
        assert page.first_id == page.data[0].id
        if not page.has_more:
            break
        after = page.last_id
    assert seen == [f"c{i}" for i in range(7)]
    page = await store.list(NS, "chat.completion", after="c5", limit=3, order="desc")
    assert [r.id for r in page.data] == ["c4", "c3", "c2"]
    assert page.has_more is True
    last = await store.list(NS, "chat.completion", after="c2", limit=2, order="desc")
    assert [r.id for r in last.data] == ["c1", "c0"]
    assert last.has_more is False
    assert await ids(store, after="c6") == []
    missing = await store.list(NS, "chat.completion", after="nope")
    assert missing.data == ()
    assert missing.has_more is False
    assert (missing.first_id, missing.last_id) == (None, None)


async def test_filters_by_metadata_and_model(store: ResponseStore) -> None:
    await store.put(NS, completion("c1", 1.0, metadata={"team": "a", "env": "prod"}))
    await store.put(NS, completion("c2", 2.0, metadata={"team": "b", "env": "prod"}))
    await store.put(NS, completion("c3", 3.0, metadata={"team": "a"}, model="big"))
    await store.put(NS, completion("c4", 4.0, metadata={"team": "a", "env": "prod"}, model="big"))
    assert await ids(store, metadata={"team": "a"}) == ["c1", "c3", "c4"]
    assert await ids(store, metadata={"team": "a", "env": "prod"}) == ["c1", "c4"]
    assert await ids(store, model="big") == ["c3", "c4"]
    assert await ids(store, model="big", metadata={"env": "prod"}) == ["c4"]
    assert await ids(store, metadata={"team": "c"}) == []
    assert await ids(store, metadata={"odd key \"'.$": "v"}) == []
    page = await store.list(NS, "chat.completion", metadata={"team": "a"}, limit=1)
    assert [r.id for r in page.data] == ["c1"]
    assert page.has_more is True
    page = await store.list(NS, "chat.completion", metadata={"team": "a"}, after="c1", limit=2)
    assert [r.id for r in page.data] == ["c3", "c4"]
    assert page.has_more is False


async def test_filtered_listing_scans_past_many_non_matching_objects(
    store: ResponseStore,
) -> None:
    for i in range(250):
        await store.put(NS, completion(f"c{i:03}", float(i), metadata={"n": str(i % 50)}))
    assert await ids(store, metadata={"n": "7"}, order="desc") == [
        "c207", "c157", "c107", "c057", "c007",
    ]  # fmt: skip


async def test_bad_list_arguments_are_value_errors(store: ResponseStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list(NS, "chat.completion", limit=0)
    with pytest.raises(ValueError, match="order"):
        await store.list(NS, "chat.completion", order="up")  # type: ignore[arg-type]


async def test_update_metadata_replaces_it_in_the_record_and_body(store: ResponseStore) -> None:
    await store.put(NS, completion("c1", 1.0, metadata={"old": "1", "keep": "no"}))
    updated = await store.update_metadata(NS, "c1", {"new": "2"})
    assert updated is not None
    assert updated.metadata == {"new": "2"}
    assert updated.body["metadata"] == {"new": "2"}
    assert await store.get(NS, "c1") == updated
    assert await ids(store, metadata={"new": "2"}) == ["c1"]
    assert await ids(store, metadata={"old": "1"}) == []
    assert await store.update_metadata(NS, "missing", {"a": "b"}) is None


async def test_objects_expire_after_the_retention(
    make_store: StoreMaker, clock: ManualClock
) -> None:
    store = make_store(ttl_s=100)
    await store.put(NS, completion("old", 1.0))
    clock.advance(60)
    await store.put(NS, completion("new", 2.0))
    clock.advance(39)
    assert await ids(store) == ["old", "new"]
    clock.advance(1)  # `old` is 100 s old
    assert await store.get(NS, "old") is None
    assert await ids(store) == ["new"]
    assert await store.update_metadata(NS, "old", {"a": "b"}) is None
    assert await store.delete(NS, "old") is False
    assert await store.get(NS, "new") is not None
    clock.advance(60)
    assert await store.get(NS, "new") is None
    assert await ids(store) == []


async def test_a_new_put_restarts_the_retention_and_update_keeps_it(
    make_store: StoreMaker, clock: ManualClock
) -> None:
    store = make_store(ttl_s=100)
    await store.put(NS, completion("c1", 1.0, status="in_progress"))
    clock.advance(80)
    await store.put(NS, completion("c1", 1.0, status="completed"))
    clock.advance(80)
    assert await store.get(NS, "c1") is not None  # 80 s after the last put
    await store.update_metadata(NS, "c1", {"a": "b"})
    clock.advance(20)
    assert await store.get(NS, "c1") is None


async def test_writes_sweep_expired_objects_out_of_the_listing(
    make_store: StoreMaker, clock: ManualClock
) -> None:
    store = make_store(ttl_s=10)
    for i in range(5):
        await store.put(NS, completion(f"c{i}", float(i)))
    clock.advance(11)
    await store.put(NS, completion("fresh", 100.0))
    assert await ids(store) == ["fresh"]
    # a cursor that has been swept away: an empty page, not an error
    assert await ids(store, after="c1") == []


async def test_bad_options_are_config_errors(make_store: StoreMaker) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        make_store(ttl_s=0)
    with pytest.raises(TypeError, match="ttl_s"):
        make_store(ttl_s="30d")
    with pytest.raises(TypeError):
        make_store(no_such_option=1)


async def test_conversation_walks_the_chain_oldest_first(store: ResponseStore) -> None:
    await store.put(NS, response("resp_1", 1.0))
    await store.put(NS, response("resp_2", 2.0, previous_id="resp_1"))
    await store.put(NS, response("resp_3", 3.0, previous_id="resp_2"))
    turns = await chain(store, NS, "resp_3")
    assert [t.id for t in turns] == ["resp_1", "resp_2", "resp_3"]
    history = await conversation(store, NS, "resp_3")
    assert [item.get("content") for item in history][::2] == ["in resp_1", "in resp_2", "in resp_3"]
    assert [item["content"][0]["text"] for item in history[1::2]] == [
        "out resp_1", "out resp_2", "out resp_3",
    ]  # fmt: skip
    assert len(await conversation(store, NS, "resp_1")) == 2


async def test_conversation_of_chat_completions_uses_the_message(store: ResponseStore) -> None:
    await store.put(NS, completion("c1", 1.0))
    assert await conversation(store, NS, "c1") == [
        {"role": "user", "content": "question c1"},
        {"role": "assistant", "content": "answer c1"},
    ]


async def test_a_missing_link_is_a_clear_error(store: ResponseStore) -> None:
    await store.put(NS, response("resp_2", 2.0, previous_id="resp_1"))
    await store.put(NS, response("resp_3", 3.0, previous_id="resp_2"))
    with pytest.raises(BrokenChainError, match="'resp_1' not found") as caught:
        await conversation(store, NS, "resp_3")
    assert caught.value.missing_id == "resp_1"
    assert caught.value.depth == 2
    assert caught.value.status == 400
    assert caught.value.param == "previous_response_id"
    assert caught.value.code == "previous_response_not_found"
    with pytest.raises(BrokenChainError) as other:
        await conversation(store, OTHER, "resp_3")  # another key's response: not found
    assert other.value.depth == 0


async def test_conversation_depth_is_bounded_and_loops_are_caught(store: ResponseStore) -> None:
    for i in range(1, 6):
        await store.put(NS, response(f"resp_{i}", float(i), f"resp_{i - 1}" if i > 1 else None))
    assert len(await chain(store, NS, "resp_5", max_depth=5)) == 5
    with pytest.raises(ChainTooLongError, match="longer than 4 turns"):
        await chain(store, NS, "resp_5", max_depth=4)
    await store.put(NS, response("resp_1", 1.0, previous_id="resp_5"))
    with pytest.raises(ChainTooLongError, match="loops"):
        await chain(store, NS, "resp_5")


async def test_objects_survive_a_reopen(make_store: StoreMaker) -> None:
    first = make_store()
    record = completion("c1", 1.0, metadata={"a": "b"})
    await first.put(NS, record)
    await first.aclose()
    second = make_store()
    assert await second.get(NS, "c1") == record
    assert [r.id for r in (await second.list(NS, "chat.completion")).data] == ["c1"]


async def test_a_record_of_an_unknown_kind_is_refused(store: ResponseStore) -> None:
    odd = StoredObject(id="x", kind="thread", created_at=1.0, model="m", body={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        await store.put(NS, odd)
