"""The JSON shape of a usage record, both ways: what every sink writes is what the roll-up
reads, and anything else is refused with the field named."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from gateway_usage import encoding

from gateway.governance.sinks import UsageRecord
from gateway.governance.usage_json import USAGE_FIELDS, usage_dict, usage_from_dict


def full_record() -> UsageRecord:
    """A record with every field away from its default."""
    return UsageRecord(
        "chat",
        "chat-0",
        123,
        45,
        cached_tokens=7,
        busy_s=0.25,
        request_id="req-1.2",
        key_id="abcdefabcdef",
        tenant="acme",
        cost_nanos=9_876_543_210_123,
        status=200,
        started_at=1_764_547_200.125,
        finished_at=1_764_547_201.5,
        endpoint="chat",
        cached=True,
        coalesced=True,
        reserved_tokens=1024,
        error_code="upstream_timeout",
        parent_id="req-1",
        agent="researcher",
        step=2,
        route="cheapest",
    )


def test_a_record_survives_the_json_round_trip_exactly() -> None:
    rec = full_record()
    wire = msgspec.json.encode(usage_dict(rec))
    back = usage_from_dict(msgspec.json.decode(wire))
    assert back == rec
    assert isinstance(back.cost_nanos, int)
    assert back.cost_nanos == 9_876_543_210_123
    assert set(usage_dict(rec)) == set(USAGE_FIELDS)


def test_the_sinks_encoding_is_the_cores() -> None:
    assert encoding.usage_dict is usage_dict


def test_fields_with_defaults_may_be_absent_and_unknown_keys_are_ignored() -> None:
    required = {
        "model": "m",
        "backend": "b",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "request_id": "r",
        "key_id": None,
        "tenant": None,
        "cost_nanos": 3,
        "status": 200,
        "started_at": 1_764_547_200,  # an integer time is a float time
        "finished_at": 1_764_547_201,
    }
    rec = usage_from_dict({"type": "usage", "from_a_newer_gateway": [1], **required})
    assert rec.started_at == 1_764_547_200.0
    assert (rec.cached_tokens, rec.cached, rec.parent_id, rec.step) == (0, False, None, 0)


@pytest.mark.parametrize("name", ["request_id", "key_id", "cost_nanos", "started_at", "model"])
def test_a_missing_required_field_is_named(name: str) -> None:
    data = usage_dict(full_record())
    del data[name]
    with pytest.raises(ValueError, match=f"`{name}`"):
        usage_from_dict(data)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cost_nanos", "5"),
        ("cost_nanos", 5.0),  # money is an exact integer, never a float
        ("cost_nanos", True),
        ("prompt_tokens", None),
        ("cached", 1),
        ("started_at", "yesterday"),
        ("tenant", 7),
        ("step", "2"),
    ],
)
def test_a_mistyped_field_is_named(name: str, value: Any) -> None:
    data = usage_dict(full_record())
    data[name] = value
    with pytest.raises(ValueError, match=f"`\\$.{name}`"):
        usage_from_dict(data)


@pytest.mark.parametrize("name", ["cost_nanos", "prompt_tokens", "completion_tokens"])
def test_negative_counters_are_refused(name: str) -> None:
    data = usage_dict(full_record())
    data[name] = -1
    with pytest.raises(ValueError, match=f"`{name}` is negative"):
        usage_from_dict(data)


def test_an_empty_request_id_and_a_non_object_are_refused() -> None:
    data = usage_dict(full_record())
    data["request_id"] = ""
    with pytest.raises(ValueError, match="`request_id` is empty"):
        usage_from_dict(data)
    with pytest.raises(ValueError, match="expected an object, got list"):
        usage_from_dict([1, 2])  # type: ignore[arg-type]
