"""The cost policies that act before dispatch, and the governor's rate-limit headers."""

from __future__ import annotations

import pytest
from gateway_cost.policies import CheapestCapablePolicy, DowngradePolicy, RejectPolicy

from gateway.cost.base import GroupFacts, Situation
from gateway.governance.governor import format_reset, needs_of, rate_limit_headers
from gateway.governance.limiter import Demand, Grant, Reservation, Rule, RuleState

GROUPS = {
    "big": GroupFacts("big", 128_000, None, 10.0, 30.0),
    "mid": GroupFacts("mid", 32_000, frozenset({"tools"}), 1.0, 3.0),
    "small": GroupFacts("small", 8_000, frozenset(), 0.1, 0.3),
}


def situation(group: str = "big", used: float = 0.0, **kw: object) -> Situation:
    base: dict[str, object] = {
        "group": group,
        "prompt_tokens": 1000,
        "output_tokens": 500,
        "needs": frozenset(),
        "key_id": "k",
        "tenant": "acme",
        "budget_used": {"tenant:acme": used},
        "groups": GROUPS,
    }
    base.update(kw)
    return Situation(**base)  # type: ignore[arg-type]


def test_reject_refuses_from_its_threshold() -> None:
    policy = RejectPolicy(threshold=0.9)
    assert policy.decide(situation(used=0.89)) is None
    decision = policy.decide(situation(used=0.9))
    assert decision is not None
    assert decision.action == "reject"


def test_downgrade_steps_down_the_chain_per_threshold_passed() -> None:
    policy = DowngradePolicy(chain=["big", "mid", "small"], thresholds=[0.5, 0.8])
    assert policy.decide(situation(used=0.4)) is None
    first = policy.decide(situation(used=0.6))
    assert first is not None
    assert (first.action, first.group) == ("reroute", "mid")
    second = policy.decide(situation(used=0.85))
    assert second is not None
    assert second.group == "small"
    assert policy.decide(situation("small", used=0.9)) is None  # the end of the chain
    assert policy.decide(situation("other", used=0.9)) is None  # not in the chain
    # A step to a group the caller may not use is skipped.
    only = {k: v for k, v in GROUPS.items() if k != "mid"}
    skipped = policy.decide(situation(used=0.6, groups=only))
    assert skipped is not None
    assert skipped.group == "small"


def test_downgrade_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="at least two"):
        DowngradePolicy(chain=["big"])
    with pytest.raises(ValueError, match="fraction"):
        DowngradePolicy(chain=["big", "small"], thresholds=[1.5])


def test_cheapest_capable_honours_context_window_and_capabilities() -> None:
    policy = CheapestCapablePolicy()
    cheap = policy.decide(situation())
    assert cheap is not None
    assert cheap.group == "small"
    tools = policy.decide(situation(needs=frozenset({"tools"})))
    assert tools is not None
    assert tools.group == "mid"
    long = policy.decide(situation(prompt_tokens=20_000))
    assert long is not None
    assert long.group == "mid"
    assert policy.decide(situation("small")) is None  # already the cheapest
    assert policy.decide(situation(needs=frozenset({"vision"}))) is None  # only big can


def test_needs_are_read_from_the_body() -> None:
    body = {
        "tools": [{"type": "function"}],
        "response_format": {"type": "json_schema"},
        "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
    }
    assert needs_of(body) == {"tools", "json_schema", "vision"}
    assert needs_of({"messages": [{"role": "user", "content": "hi"}]}) == frozenset()


def test_reset_durations_are_written_like_openai() -> None:
    assert format_reset(0.02) == "20ms"
    assert format_reset(1) == "1s"
    assert format_reset(360) == "6m0s"
    assert format_reset(1.5) == "1.5s"
    assert format_reset(3725) == "1h2m5s"


def test_headers_come_from_the_tightest_rules() -> None:
    key, tenant = Rule("key:k", "requests", 60), Rule("tenant:t", "requests", 600)
    tokens = Rule("key:k", "tokens", 1000)
    states = (RuleState(key, 10, 50.0), RuleState(tenant, 5, 1.0), RuleState(tokens, 900, 6.0))
    demand = Demand("r", "t:t", (key, tenant, tokens), 100)
    grant = Grant(Reservation(demand, 100), states)
    headers = rate_limit_headers(grant)
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert headers["x-ratelimit-remaining-requests"] == "5"
    assert headers["x-ratelimit-reset-requests"] == "1s"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
