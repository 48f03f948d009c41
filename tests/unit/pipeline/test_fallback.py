"""The dispatch stage's fallback policy, against fake providers (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.assembly import build_state
from gateway.config_loader import settings_from_mapping
from gateway.errors import GatewayError, UpstreamStatusError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.fallback import FallbackPolicy, fallback_reason
from gateway.pipeline.telemetry import Telemetry
from gateway.routes.openai import CHAT
from gateway.routing.dispatch import Dispatched
from gateway.state import GatewayState
from gateway.testing import FakeProviders, plugin_manager

pytestmark = pytest.mark.anyio
BODY = b'{"model": "primary", "messages": [{"role": "user", "content": "hi"}]}'
NO_RETRY = {"attempts": 1}


def fake_group(name: str, *backends: str, **extra: Any) -> dict[str, Any]:
    members = [{"provider": "fake", "name": b, "model": f"{b}-model"} for b in backends]
    return {"name": name, "backends": members, "retry": NO_RETRY, **extra}


def assembled(*groups: dict[str, Any]) -> tuple[GatewayState, FakeProviders]:
    pm = plugin_manager(builtins=True)
    fakes = pm.get_plugin("testing-fakes")
    assert isinstance(fakes, FakeProviders)
    settings = settings_from_mapping({"models": list(groups)}, "test")
    return build_state(settings, pm), fakes


def context_for(state: GatewayState, body: bytes = BODY) -> RequestContext:
    ctx = RequestContext(CHAT, {}, "req-1", 0.0)
    ctx.body = body
    ctx.payload = CHAT.decode(body)
    ctx.group = state.catalog.resolve(ctx.payload.model)
    return ctx


def too_long() -> UpstreamStatusError:
    return UpstreamStatusError(
        400, "This model's maximum context length is 8192 tokens.", code="context_length_exceeded"
    )


async def dispatch(state: GatewayState, ctx: RequestContext) -> Dispatched:
    result = await FallbackPolicy(state.catalog, Telemetry(state.metrics)).dispatch(ctx)
    assert isinstance(result, Dispatched)
    return result


async def test_an_unavailable_group_falls_back_with_the_fallbacks_model_name() -> None:
    state, fakes = assembled(
        fake_group("primary", "a", fallbacks=["spare"]), fake_group("spare", "b")
    )
    fakes["a"].fail_next()
    result = await dispatch(state, ctx := context_for(state))
    assert result.backend.name == "b"
    assert fakes["b"].bodies[0]["model"] == "b-model"  # renamed for the fallback's upstream
    assert ctx.upstream_s > 0


async def test_a_long_prompt_goes_to_the_context_window_fallback_only() -> None:
    state, fakes = assembled(
        fake_group("primary", "a", fallbacks=["spare"], context_window_fallbacks=["wide"]),
        fake_group("spare", "b"),
        fake_group("wide", "c"),
    )
    fakes["a"].fail_next(too_long())
    result = await dispatch(state, context_for(state))
    assert result.backend.name == "c"
    assert fakes["b"].requests == []


async def test_the_requests_own_fault_never_falls_back() -> None:
    state, fakes = assembled(
        fake_group("primary", "a", fallbacks=["spare"]), fake_group("spare", "b")
    )
    refused = UpstreamStatusError(400, "bad `temperature`", param="temperature")
    fakes["a"].fail_next(refused)
    with pytest.raises(GatewayError) as raised:
        await dispatch(state, context_for(state))
    assert raised.value is refused
    assert fakes["b"].requests == []


async def test_each_group_is_tried_once_and_the_last_failure_is_raised() -> None:
    state, fakes = assembled(
        fake_group("primary", "a", fallbacks=["spare"]),
        fake_group("spare", "b", fallbacks=["primary"]),
    )
    fakes["a"].fail_next(times=5)
    fakes["b"].fail_next(times=5)
    with pytest.raises(GatewayError) as raised:
        await dispatch(state, context_for(state))
    assert raised.value.backend == "b"
    # One attempt each: the way back to `primary` is not taken again.
    assert (len(fakes["a"].requests), len(fakes["b"].requests)) == (1, 1)


def test_reasons() -> None:
    assert fallback_reason(too_long()) == "context_window"
    assert fallback_reason(UpstreamStatusError(503, "busy")) == "unavailable"
    assert fallback_reason(UpstreamStatusError(422, "no")) is None
