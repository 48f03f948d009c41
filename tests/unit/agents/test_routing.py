"""Per-step model choice: the complexity heuristic, and the router's privacy gate and policies
over a directory of model facts the test sets."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import pytest

from gateway.agents.routing import StepRouter, complexity
from gateway.settings_agents import AgentRoutingSettings, TierSettings
from tests.unit.agents.agent_support import Directory, Facts

Policy: TypeAlias = Literal["fixed", "complexity", "cost"]
Privacy: TypeAlias = Literal["any", "local_only"]

_TOOL = {"type": "function", "function": {"name": "calculator", "parameters": {}}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def routing(
    policy: Policy, *tiers: str | tuple[str, float], privacy: Privacy = "any"
) -> AgentRoutingSettings:
    entries = [
        TierSettings(model=t)
        if isinstance(t, str)
        else TierSettings(model=t[0], max_complexity=t[1])
        for t in tiers
    ]
    return AgentRoutingSettings(privacy=privacy, policy=policy, tiers=entries)


# -- complexity -----------------------------------------------------------------------------------


def test_a_short_chat_line_is_simple() -> None:
    assert complexity([user("hi there")]) < 0.05


def test_each_sign_of_effort_raises_the_score() -> None:
    base = complexity([user("tell me about cats")])

    code = complexity([user("tell me about cats\n```python\ndef cat(): pass\n```")])
    reasoning = complexity([user("tell me about cats, step by step, and explain why")])
    tools = complexity([user("tell me about cats")], [_TOOL])
    long = complexity([user("tell me about cats " * 300)])
    turns = complexity([user("tell me about cats")] * 7)

    for score in (code, reasoning, tools, long, turns):
        assert base < score <= 1.0


def test_longer_text_scores_higher() -> None:
    scores = [complexity([user("word " * n)]) for n in (10, 500, 1000, 1500)]

    assert scores == sorted(scores)
    assert scores[0] < scores[-1]


def test_reasoning_words_count_in_the_last_user_message_only() -> None:
    earlier = [user("prove it"), {"role": "assistant", "content": "ok"}, user("thanks")]
    last = [user("thanks"), {"role": "assistant", "content": "ok"}, user("prove it")]

    assert complexity(last) > complexity(earlier)


def test_content_parts_are_read() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "```\nSELECT 1\n```"}]}]

    assert complexity(parts) > complexity([user("hi")])


def test_the_score_is_clamped_to_one() -> None:
    everything = [user("```def f(): return 1```\nprove and design it step by step " * 400)] * 8

    assert complexity(everything, [_TOOL]) == 1.0


# -- StepRouter -----------------------------------------------------------------------------------


def test_without_routing_the_model_is_fixed() -> None:
    router = StepRouter("chat", None, Directory({"chat": Facts()}))

    choice = router.choose([user("hi")])

    assert (choice.model, choice.reason, choice.local_only) == ("chat", None, False)
    assert router.models() == ["chat"]


def test_an_agent_needs_a_model_or_tiers() -> None:
    with pytest.raises(ValueError, match=r"needs a `model` or `routing\.tiers`"):
        StepRouter(None, None, Directory())
    with pytest.raises(ValueError, match=r"needs a `model` or `routing\.tiers`"):
        StepRouter(None, routing("complexity"), Directory())


def test_fixed_picks_the_model_among_its_tiers() -> None:
    directory = Directory({"small": Facts(), "large": Facts()})

    router = StepRouter("large", routing("fixed", "small", "large"), directory)

    assert router.choose([user("prove " * 500)], [_TOOL]).model == "large"


def test_complexity_picks_the_first_tier_that_covers_the_score() -> None:
    directory = Directory({"small": Facts(), "medium": Facts(), "large": Facts()})
    router = StepRouter(
        None, routing("complexity", ("small", 0.1), ("medium", 0.5), ("large", 1.0)), directory
    )

    simple = router.choose([user("hi")])
    code = router.choose([user("```\ndef f(): return 1\n```")])
    hard = router.choose([user("```\ndef f(): return 1\n``` prove it step by step")], [_TOOL])

    assert simple.model == "small"
    assert code.model == "medium"
    assert hard.model == "large"
    assert hard.reason is not None
    assert hard.reason.startswith("complexity=0.60 -> large")
    assert router.models() == ["small", "medium", "large"]


def test_complexity_above_every_ceiling_takes_the_last_tier() -> None:
    directory = Directory({"small": Facts(), "medium": Facts()})
    router = StepRouter(None, routing("complexity", ("small", 0.1), ("medium", 0.3)), directory)

    assert router.choose([user("```\nprove the design step by step\n```")], [_TOOL]).model == (
        "medium"
    )


def test_local_only_keeps_the_local_candidates() -> None:
    directory = Directory(
        {"cloud": Facts(local=False), "laptop": Facts(local=True), "rack": Facts(local=True)}
    )
    router = StepRouter(
        "cloud",
        routing("complexity", ("cloud", 0.1), ("laptop", 0.5), "rack", privacy="local_only"),
        directory,
    )

    assert router.models() == ["laptop", "rack"]
    choice = router.choose([user("hi")])
    assert choice.model == "laptop"  # the cloud tier would have served this
    assert choice.local_only
    assert choice.reason is not None
    assert choice.reason.startswith("local_only; complexity=")


def test_local_only_fixed_replaces_a_cloud_model() -> None:
    directory = Directory({"cloud": Facts(), "laptop": Facts(local=True)})

    router = StepRouter(
        "cloud", routing("fixed", "cloud", "laptop", privacy="local_only"), directory
    )

    choice = router.choose([user("hi")])
    assert (choice.model, choice.reason, choice.local_only) == (
        "laptop",
        "local_only; fixed -> laptop",
        True,
    )


def test_local_only_without_a_local_candidate_is_refused() -> None:
    directory = Directory({"cloud": Facts(), "other": Facts()})

    with pytest.raises(ValueError, match="no candidate model has only `local` backends"):
        StepRouter(None, routing("cost", "cloud", "other", privacy="local_only"), directory)
    with pytest.raises(ValueError, match=r"candidates: cloud\)"):
        StepRouter("cloud", routing("fixed", privacy="local_only"), directory)


def test_cost_picks_the_cheapest_tier() -> None:
    directory = Directory(
        {"dear": Facts(price=30.0), "cheap": Facts(price=0.5), "middle": Facts(price=3.0)}
    )
    router = StepRouter(None, routing("cost", "dear", "cheap", "middle"), directory)

    choice = router.choose([user("hi")])

    assert (choice.model, choice.reason) == ("cheap", "cost -> cheap")


def test_cost_skips_a_tier_whose_context_window_is_too_small() -> None:
    directory = Directory(
        {
            "tiny": Facts(price=0.1, window=1000),
            "roomy": Facts(price=1.0, window=100_000),
            "dear": Facts(price=10.0, window=0),  # unknown: assumed to fit
        }
    )
    router = StepRouter(None, routing("cost", "tiny", "roomy", "dear"), directory)

    assert router.choose([user("hi")], prompt_tokens=lambda: 500).model == "tiny"
    assert router.choose([user("hi")], prompt_tokens=lambda: 5000).model == "roomy"
    assert router.choose([user("hi")], prompt_tokens=lambda: 500_000).model == "dear"


def test_cost_skips_a_tier_without_tools_when_tools_are_offered() -> None:
    directory = Directory(
        {"plain": Facts(price=0.1, tools=False), "capable": Facts(price=2.0, tools=True)}
    )
    router = StepRouter(None, routing("cost", "plain", "capable"), directory)

    assert router.choose([user("hi")]).model == "plain"
    assert router.choose([user("hi")], [_TOOL]).model == "capable"


def test_cost_falls_back_to_the_cheapest_when_none_fits() -> None:
    directory = Directory(
        {"a": Facts(price=2.0, window=100, tools=False), "b": Facts(price=1.0, window=100)}
    )
    router = StepRouter(None, routing("cost", "a", "b"), directory)

    assert router.choose([user("hi")], [_TOOL], prompt_tokens=lambda: 10_000).model == "b"


def test_cost_under_local_only_stays_local() -> None:
    directory = Directory({"cloud": Facts(price=0.01), "laptop": Facts(price=5.0, local=True)})
    router = StepRouter(None, routing("cost", "cloud", "laptop", privacy="local_only"), directory)

    choice = router.choose([user("hi")])

    assert (choice.model, choice.reason, choice.local_only) == (
        "laptop",
        "local_only; cost -> laptop",
        True,
    )
