"""The vendor-neutral pieces: the record's helpers and the metadata check."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequestError
from gateway.stores import StoredObject
from gateway.stores.base import check_metadata, decode_record, encode_record


def test_output_items_of_each_kind() -> None:
    response = StoredObject(
        id="r", kind="response", created_at=1, model="m", body={"output": [{"type": "x"}]}
    )
    assert response.output_items() == [{"type": "x"}]
    message = {"role": "assistant", "content": "hi"}
    completion = StoredObject(
        id="c", kind="chat.completion", created_at=1, model="m",
        body={"choices": [{"message": message}]},
    )  # fmt: skip
    assert completion.output_items() == [message]
    empty = StoredObject(id="e", kind="chat.completion", created_at=1, model="m", body={})
    assert empty.output_items() == []


def test_records_round_trip() -> None:
    record = StoredObject(
        id="r", kind="response", created_at=1.5, model="m", body={"a": [1, {"b": None}]},
        metadata={"k": "v"}, status="in_progress", input_items=[{"role": "user"}],
        previous_id="p",
    )  # fmt: skip
    assert decode_record(encode_record(record)) == record


def test_metadata_is_checked_as_openai_does() -> None:
    assert check_metadata({"a": "b"}) == {"a": "b"}
    for bad in (
        ["a"],
        {"a": 1},
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
    ):
        with pytest.raises(InvalidRequestError) as caught:
            check_metadata(bad)
        assert caught.value.param == "metadata"
