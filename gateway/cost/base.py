"""The cost-policy contract, registered through ``register_cost_policies``.

A policy prices a finished request from its usage; the gateway records the result against the
caller's key and budgets. Factories are called with the policy's config options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What a request consumed.

    Attributes:
        model: the public model group name.
        backend: the backend that served it.
        prompt_tokens: input tokens.
        completion_tokens: output tokens.
        cached_tokens: input tokens served from a prefix or prompt cache.
    """

    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@runtime_checkable
class CostPolicy(Protocol):
    """Turns usage into money."""

    def cost(self, usage: UsageRecord) -> float:
        """The cost of ``usage`` in US dollars. Must be pure and cheap."""
        ...


class CostPolicyFactory(Protocol):
    """What ``register_cost_policies`` registers."""

    def __call__(self, **options: Any) -> CostPolicy: ...
